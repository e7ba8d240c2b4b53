"""Tests of the sans-IO core (``trio_phoenix.proto``): synchronous, no I/O, full coverage."""
