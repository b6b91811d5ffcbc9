"""The download function (its entry point: main.py)."""
