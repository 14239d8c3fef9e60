"""Benchmarks and synthetic data: the nightly harness, its gates and reports, data generators."""
