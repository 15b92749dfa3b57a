"""Benchmark suites behind `anchor bench SUITE` (stages, e2e, lookahead, renderer, concurrency)."""
