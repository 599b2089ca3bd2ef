"""Benchmark scripts (run as files: ``python benchmarks/<name>.py``)."""
