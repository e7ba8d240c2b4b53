"""Benchmarks of trio_phoenix against raw trio-websocket; run ``python -m benchmarks``."""
