"""Accounts: users, roles, password hashing, access and refresh tokens, sign-in rate limits."""
