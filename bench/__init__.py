"""Benchmarks and the load run: figures printed side by side in one run (`make bench`, `make load`)."""
