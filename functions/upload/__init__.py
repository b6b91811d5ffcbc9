"""The upload function (its entry point: main.py)."""
