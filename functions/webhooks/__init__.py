"""The webhooks function (its entry point: main.py)."""
