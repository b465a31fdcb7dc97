"""Benchmark runners behind `robustops bench` (one module per op)."""
