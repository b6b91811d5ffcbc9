"""The reconcile function (its entry point: main.py)."""
