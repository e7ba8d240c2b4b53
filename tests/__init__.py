"""The test suite: one package per layer (proto, client, testing, system) and the scenarios."""
