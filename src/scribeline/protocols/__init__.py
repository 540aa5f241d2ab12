"""Wire formats: pure functions from events to bytes and from client bytes to commands."""
