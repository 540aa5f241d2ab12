"""Pre-built WebSocket frames, serialized once and written to many transports. Pure.

Server frames are unmasked and compression is off everywhere, so one event's
frame is the same bytes for every subscriber (DESIGN.md, "Stack"). The
header is two, four or ten bytes (RFC 6455 section 5.2), packed here rather
than through a frame object: every event pays for it.
"""

from __future__ import annotations

from typing import Final

__all__ = ["PING_FRAME", "close_frame", "frame", "pong_frame", "text_frame"]

_TEXT: Final = 0x81  # FIN + text
_CLOSE: Final = 0x88
_PING: Final = 0x89
_PONG: Final = 0x8A
#: The longest close reason: a control frame's payload is at most 125 bytes.
_MAX_REASON: Final = 123


def frame(first: int, payload: bytes) -> bytes:
    """A complete unmasked frame: ``first`` is the first header byte (FIN and opcode)."""
    length = len(payload)
    if length < 126:
        return bytes((first, length)) + payload
    if length < 1 << 16:
        return bytes((first, 126)) + length.to_bytes(2, "big") + payload
    return bytes((first, 127)) + length.to_bytes(8, "big") + payload


def text_frame(payload: bytes) -> bytes:
    """A complete, unmasked text frame carrying ``payload`` (UTF-8 JSON)."""
    return frame(_TEXT, payload)


def pong_frame(payload: bytes) -> bytes:
    """The answer to a ping carrying ``payload`` (at most 125 bytes, as the ping's)."""
    return frame(_PONG, payload)


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame with ``code`` and ``reason`` (cut to fit, on a character boundary)."""
    data = reason.encode()
    if len(data) > _MAX_REASON:
        data = data[:_MAX_REASON].decode(errors="ignore").encode()
    return frame(_CLOSE, int(code).to_bytes(2, "big") + data)


#: The WebSocket-level keep-alive ping, the same bytes for every connection.
PING_FRAME: bytes = frame(_PING, b"")
