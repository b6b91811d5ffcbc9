"""The convert function (its entry point: main.py)."""
