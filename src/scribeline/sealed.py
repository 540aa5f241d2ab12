"""Sealing the third-party secrets an organization stores with Scribeline.

A Twilio auth token is an HMAC key and a Deepgram key is sent to Deepgram, so
unlike Scribeline's own API keys (hashed) they must be recoverable. They are
stored sealed instead: AES-256-GCM under a key derived (HKDF-SHA256) from the
server's token secret, bound to the organization and the field, so a sealed
value neither reads as the secret nor works in another organization's row.
Every node of a deployment shares the token secret, so every node can open
them; a new token secret makes the stored ones unreadable (store them again).
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["SecretBox", "SecretUnreadable"]

_VERSION = b"\x01"
_NONCE = 12


class SecretUnreadable(Exception):
    """A sealed value that this server's secret cannot open (another secret, or tampering)."""


class SecretBox:
    """Seals and opens short secrets with a key derived from ``server_secret``."""

    def __init__(self, server_secret: str) -> None:
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"scribeline sealed secrets v1"
        ).derive(server_secret.encode())
        self._aead = AESGCM(key)

    def seal(self, secret: str, context: str) -> bytes:
        """``secret`` sealed for ``context`` (which names its owner and field)."""
        nonce = os.urandom(_NONCE)
        return _VERSION + nonce + self._aead.encrypt(nonce, secret.encode(), context.encode())

    def open(self, sealed: bytes, context: str) -> str:
        """The secret that :meth:`seal` sealed for the same ``context``."""
        if sealed[:1] != _VERSION or len(sealed) < 1 + _NONCE:
            raise SecretUnreadable("not a sealed secret")
        nonce, body = sealed[1 : 1 + _NONCE], sealed[1 + _NONCE :]
        try:
            return self._aead.decrypt(nonce, body, context.encode()).decode()
        except InvalidTag:
            raise SecretUnreadable("sealed with another secret or altered") from None
