"""The delivery function (its entry point: main.py)."""
