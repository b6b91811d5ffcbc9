"""Accounts in MySQL (sign-up, login, throttling, the sign-ups per address) and the access tokens auth issues and
every other function verifies."""
