"""Integration tests: a real server process on a free port and real clients."""
