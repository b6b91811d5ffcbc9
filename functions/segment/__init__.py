"""The segment function (its entry point: main.py)."""
