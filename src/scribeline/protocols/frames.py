"""Pre-built WebSocket frames, serialized once and written to many transports.

Server frames are unmasked and compression is off everywhere, so one event's
frame is the same bytes for every subscriber (DESIGN.md, "Stack").
"""

from __future__ import annotations

from websockets.frames import Frame, Opcode

__all__ = ["PING_FRAME", "text_frame"]


def text_frame(payload: bytes) -> bytes:
    """A complete, unmasked text frame carrying ``payload`` (UTF-8 JSON)."""
    return Frame(Opcode.TEXT, payload).serialize(mask=False)


#: The WebSocket-level keep-alive ping, the same bytes for every connection.
PING_FRAME: bytes = Frame(Opcode.PING, b"").serialize(mask=False)
