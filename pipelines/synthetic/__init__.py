"""Synthetic tabular data generators for scale tests and benchmarks."""
