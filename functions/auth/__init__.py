"""The auth function (its entry point: main.py)."""
