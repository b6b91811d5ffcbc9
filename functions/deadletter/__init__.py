"""The deadletter function (its entry point: main.py)."""
