"""Benchmarks: measured side by side, written to BENCHMARKS.md and benchmarks/*.json."""
