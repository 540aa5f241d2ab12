"""Messages every wire format shares. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from scribeline.errors import InvalidMessage
from scribeline.events import format_ms

__all__ = ["decode_json", "decode_object", "describe_problem", "encode_pong"]


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


def describe_problem(problems: Sequence[Mapping[str, Any]], at: Sequence[str] = ()) -> str:
    """The first problem of a message that failed validation (pydantic's
    ``errors()``), as ``where: what``; ``at`` is where the validated part sits."""
    first = problems[0]
    where = ".".join([*at, *(str(p) for p in first["loc"])]) or "message"
    return f"{where}: {first['msg']}"
