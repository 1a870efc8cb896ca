"""Benchmarks: each writes a JSON result and a PNG a person can look at."""
