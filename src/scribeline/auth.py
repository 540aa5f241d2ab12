"""API keys, the credentials a request carries, and who it belongs to.

Keys are ``scl_`` followed by 43 URL-safe base64 characters (256 random bits):
every character is valid in an HTTP token, so a key fits in the
``burki-token-<key>`` WebSocket subprotocol. Only a SHA-256 hash is stored; a
fast hash is right for secrets of this entropy (no dictionary to guess from)
and keeps authentication cheap at thousands of connects per second.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

from aiohttp import hdrs, web

from scribeline.errors import AuthenticationFailed, Forbidden
from scribeline.storage import Catalog

__all__ = [
    "SCOPES",
    "SUBPROTOCOL_PREFIX",
    "Authenticator",
    "Credentials",
    "Principal",
    "extract_credentials",
    "hash_key",
    "new_api_key",
    "parse_scopes",
]

KEY_PREFIX = "scl_"
SUBPROTOCOL_PREFIX = "burki-token-"
SCOPES = frozenset({"read", "write", "admin"})


def new_api_key() -> tuple[str, str, bytes]:
    """A fresh key: (the key, its displayable prefix, its hash)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, key[:12], hash_key(key)


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def parse_scopes(text: str) -> frozenset[str]:
    """``"read,write"`` → ``{"read", "write"}``; raises ``ValueError`` on unknown scopes."""
    scopes = frozenset(s.strip() for s in text.split(",") if s.strip())
    unknown = scopes - SCOPES
    if unknown or not scopes:
        raise ValueError(f"scopes must be a comma list of {', '.join(sorted(SCOPES))}")
    return scopes


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as: an organization, scopes, and possibly one resource.

    An access token may be restricted to one call or one campaign; such a
    principal can reach that resource and nothing organization-wide.
    """

    org_id: int
    scopes: frozenset[str]
    key_id: int
    call_sid: str | None = None
    campaign_id: int | None = None

    @property
    def restricted(self) -> bool:
        return self.call_sid is not None or self.campaign_id is not None

    def require(self, scope: str) -> None:
        if scope not in self.scopes and "admin" not in self.scopes:
            raise Forbidden(f"This credential lacks the '{scope}' scope")

    def allow_call(self, call_sid: str) -> None:
        """Refuse a credential restricted to something other than this call."""
        if self.restricted and self.call_sid != call_sid:
            raise Forbidden("This token is restricted to another call or campaign")

    def allow_campaign(self, campaign_id: int) -> None:
        """Refuse a credential restricted to something other than this campaign."""
        if self.restricted and self.campaign_id != campaign_id:
            raise Forbidden("This token is restricted to another call or campaign")

    def allow_organization(self) -> None:
        """Refuse a credential restricted to one call or campaign."""
        if self.restricted:
            raise Forbidden("This token is restricted to one call or campaign")


@dataclass(frozen=True, slots=True)
class Credentials:
    """A token and, when it came as a subprotocol, the subprotocol to echo."""

    token: str | None
    subprotocol: str | None = None


def extract_credentials(request: web.Request) -> Credentials:
    """The token from ``?token=``, ``Authorization: Bearer`` or the subprotocol."""
    offered = request.headers.get(hdrs.SEC_WEBSOCKET_PROTOCOL, "")
    subprotocol = None
    for proto in (p.strip() for p in offered.split(",")):
        if proto.startswith(SUBPROTOCOL_PREFIX):
            subprotocol = proto
            break
    token = request.query.get("token")
    if not token:
        auth = request.headers.get(hdrs.AUTHORIZATION, "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            token = value.strip()
    if not token and subprotocol is not None:
        token = subprotocol[len(SUBPROTOCOL_PREFIX) :]
    return Credentials(token or None, subprotocol)


class Authenticator:
    """Resolves tokens to principals, with a short-lived cache of valid keys.

    A revoked key stops working everywhere within ``cache_seconds``.
    """

    def __init__(self, catalog: Catalog, cache_seconds: float = 5.0, cache_size: int = 10_000):
        self._catalog = catalog
        self._ttl = cache_seconds
        self._size = cache_size
        self._cache: OrderedDict[bytes, tuple[float, Principal]] = OrderedDict()

    async def authenticate(self, token: str | None) -> Principal:
        if not token or not token.startswith(KEY_PREFIX) or len(token) > 256:
            raise AuthenticationFailed()
        digest = hash_key(token)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        key = await self._catalog.find_api_key(digest)
        if key is None or not key.active:
            self._cache.pop(digest, None)
            raise AuthenticationFailed()
        principal = Principal(key.org_id, key.scopes, key.id)
        self._cache[digest] = (now + self._ttl, principal)
        self._cache.move_to_end(digest)
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return principal
