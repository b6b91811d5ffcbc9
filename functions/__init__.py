"""vid2mp3's functions: one folder each, with a thin functions-framework entry point in `main.py`."""
