"""Verification and trust: comparing replica results (quorum), adaptive replication, quarantine."""
