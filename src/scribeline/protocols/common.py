"""Messages every wire format shares. Pure."""

from __future__ import annotations

from typing import Any

import orjson

from scribeline.errors import InvalidMessage
from scribeline.events import format_ms

__all__ = ["decode_json", "decode_object", "encode_pong"]


def decode_json(text: str | bytes) -> Any:
    """A client message's JSON value; ``InvalidMessage`` if it is not JSON."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise InvalidMessage("Message is not valid JSON") from None


def decode_object(text: str | bytes) -> dict[str, Any]:
    """A client message that must be a JSON object."""
    message = decode_json(text)
    if not isinstance(message, dict):
        raise InvalidMessage("Expected a JSON object")
    return message


def encode_pong(now: int) -> bytes:
    """The answer to a client's ``{"type":"ping"}``, the same in every format."""
    return orjson.dumps({"type": "pong", "timestamp": format_ms(now)})
