"""The web function (its entry point: main.py)."""
