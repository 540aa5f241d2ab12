"""Messages every wire format shares. Pure."""

from __future__ import annotations

import orjson

from scribeline.events import format_ms

__all__ = ["encode_pong"]


def encode_pong(now: int) -> bytes:
    """The answer to a client's ``{"type":"ping"}``, the same in every format."""
    return orjson.dumps({"type": "pong", "timestamp": format_ms(now)})
