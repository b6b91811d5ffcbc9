"""The notify function (its entry point: main.py)."""
