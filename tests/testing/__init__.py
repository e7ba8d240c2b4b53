"""Tests of ``trio_phoenix.testing``: the in-process test server, its proxy and fixtures."""
