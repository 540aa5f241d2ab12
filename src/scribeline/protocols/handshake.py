"""The server's side of the WebSocket opening handshake (RFC 6455 section 4.2). Pure.

:func:`accept` checks an upgrade request's headers and returns the complete
``101 Switching Protocols`` answer; a request that is not a valid upgrade
raises ``InvalidUpgrade`` (400) and the request is answered over HTTP.
Compression is never negotiated (one frame serves every subscriber).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping

from scribeline.errors import InvalidUpgrade

__all__ = ["accept", "accept_key"]

#: RFC 6455 section 1.3.
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: The characters of an HTTP token (RFC 9110 section 5.6.2), for a subprotocol.
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for the client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()


def _tokens(value: str) -> set[str]:
    return {part.strip().lower() for part in value.split(",")}


def accept(headers: Mapping[str, str], subprotocol: str | None, server: str) -> bytes:
    """The 101 answer to an upgrade request with ``headers`` (case-insensitive),
    choosing ``subprotocol`` (one the client offered, or None) and naming the
    ``server``."""
    # Exactly one protocol, as the HTTP layer reads it (``Upgrade: websocket, h2c``
    # is not taken as an upgrade there, so frames pipelined behind it would be lost).
    if headers.get("Upgrade", "").strip().lower() != "websocket":
        raise InvalidUpgrade("Expected a WebSocket upgrade (Upgrade: websocket)")
    if "upgrade" not in _tokens(headers.get("Connection", "")):
        raise InvalidUpgrade("Expected a WebSocket upgrade (Connection: Upgrade)")
    if headers.get("Sec-WebSocket-Version", "").strip() != "13":
        raise InvalidUpgrade("Unsupported WebSocket version: Sec-WebSocket-Version must be 13")
    key = headers.get("Sec-WebSocket-Key", "").strip()
    try:
        valid = len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        valid = False
    if not valid:
        raise InvalidUpgrade("Invalid Sec-WebSocket-Key")
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(key)}",
    ]
    if subprotocol and set(subprotocol) <= _TOKEN:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    lines.append(f"Server: {server}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
