"""Benchmarks: python -m bench (or ./dev bench). Results go to docs/BENCHMARKS.md."""
