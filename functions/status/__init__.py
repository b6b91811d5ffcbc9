"""The status function (its entry point: main.py)."""
