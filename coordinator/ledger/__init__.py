"""The CPT token ledger: double-entry bookkeeping in integer micro-CPT. The only writer of ledger rows."""
