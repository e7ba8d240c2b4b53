"""Tests of the whole: the CLI, examples, docs, packaging, phoenix.js, Autobahn, soak."""
