"""Scribeline: a live-transcript streaming server.

Sources push call events in; Scribeline stores them durably with a per-stream
sequence number and streams them, in order and exactly once, to authenticated
WebSocket subscribers of the owning organization.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
