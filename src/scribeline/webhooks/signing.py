"""Standard Webhooks signatures (https://www.standardwebhooks.com). Pure.

A message is signed with HMAC-SHA256 over ``{id}.{timestamp}.{body}`` under the
endpoint's secret, given to its owner once as ``whsec_<base64 of the key>``;
``webhook-signature`` is ``v1,<base64 of the MAC>`` (a space-separated list in
the spec, so keys can be rotated; one entry here).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = ["SECRET_PREFIX", "headers", "new_secret", "sign"]

SECRET_PREFIX = "whsec_"
#: Bytes of a new secret's key (the spec allows 24 to 64).
KEY_BYTES = 32


def new_secret() -> str:
    """A fresh signing secret, ``whsec_`` and its key in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` of ``body`` sent as ``msg_id`` at ``timestamp``
    (Unix seconds)."""
    signed = msg_id.encode() + b"." + str(timestamp).encode() + b"." + body
    mac = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one attempt: the id stays, the timestamp is the attempt's."""
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }
