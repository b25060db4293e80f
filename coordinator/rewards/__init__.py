"""Rewards and charges: the price table, checking reported usage, and what each party pays or earns."""
