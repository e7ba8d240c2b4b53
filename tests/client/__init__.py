"""Tests of the Trio layer: sockets, channels, transports, errors, hostile servers."""
