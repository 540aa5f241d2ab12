"""API keys, access tokens, the credentials a request carries, and who it belongs to.

Keys are ``scl_`` followed by 43 URL-safe base64 characters (256 random bits):
every character is valid in an HTTP token, so a key fits in the
``burki-token-<key>`` WebSocket subprotocol. Only a SHA-256 hash is stored; a
fast hash is right for secrets of this entropy (no dictionary to guess from)
and keeps authentication cheap at thousands of connects per second.

Any other token is tried as an access token (``scribeline.tokens``): a signed
JWT, valid only while the API key it was minted from is active. JWTs are
base64url and dots, so they fit in the subprotocol too.

A dashboard session (``scribeline.sessions``) is a row of the keys' table
that expires; its secret is no bearer credential (it is not an ``scl_`` key,
so it is tried as a JWT and refused), but the access tokens minted from it
work like any other until the session is revoked or expires.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from aiohttp import hdrs, web

from scribeline import tokens
from scribeline.cluster import Signals
from scribeline.domain import ApiKey, KeyKind
from scribeline.errors import AuthenticationFailed, Forbidden, InvalidRequest
from scribeline.events import now_ms
from scribeline.storage import Catalog
from scribeline.ttl_cache import TtlCache

__all__ = [
    "KEY_REVOKED",
    "SCOPES",
    "SUBPROTOCOL_PREFIX",
    "Authenticator",
    "Credentials",
    "Principal",
    "hash_key",
    "is_api_key",
    "new_api_key",
    "new_secret",
    "parse_scopes",
    "rest_credentials",
    "scopes_within",
    "websocket_credentials",
]

KEY_PREFIX = "scl_"
#: The cluster notice that an API key was revoked (``{"id": key id}``).
KEY_REVOKED = "key.revoked"
SUBPROTOCOL_PREFIX = "burki-token-"
SCOPES = frozenset({"read", "write", "admin"})
#: Longer than any access token this server mints (a few hundred characters).
MAX_ACCESS_TOKEN_CHARS = 2048


def new_api_key() -> tuple[str, str, bytes]:
    """A fresh key: (the key, its displayable prefix, its hash)."""
    return new_secret(KEY_PREFIX)


def new_secret(prefix: str) -> tuple[str, str, bytes]:
    """A fresh ``prefix`` + 256 random bits: (the secret, its displayable prefix,
    its hash). Keys, dashboard sessions and sign-in codes are made so."""
    secret = prefix + secrets.token_urlsafe(32)
    return secret, secret[:12], hash_key(secret)


def is_api_key(token: str) -> bool:
    """Whether a token is an API key (else it can only be an access token)."""
    return token.startswith(KEY_PREFIX)


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def parse_scopes(text: str) -> frozenset[str]:
    """``"read,write"`` → ``{"read", "write"}``; raises ``ValueError`` on unknown scopes."""
    scopes = frozenset(s.strip() for s in text.split(",") if s.strip())
    unknown = scopes - SCOPES
    if unknown or not scopes:
        raise ValueError(f"scopes must be a comma list of {', '.join(sorted(SCOPES))}")
    return scopes


def scopes_within(requested: frozenset[str], granted: frozenset[str]) -> bool:
    """Whether ``requested`` asks for nothing beyond ``granted`` (admin grants every scope)."""
    return requested <= SCOPES and ("admin" in granted or requested <= granted)


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
    #: A bot capability token: the bot and what it opens (it has no scopes).
    bot_id: str | None = None
    bot_role: str | None = None

    @property
    def restricted(self) -> bool:
        return self.call_sid is not None or self.campaign_id is not None or self.bot_id is not None

    def has(self, scope: str) -> bool:
        """Whether the credential grants ``scope`` (``admin`` grants every scope)."""
        return scopes_within(frozenset({scope}), self.scopes)

    def require(self, scope: str) -> None:
        if not self.has(scope):
            raise Forbidden(f"This credential lacks the '{scope}' scope")

    def allow_call(self, call_sid: str) -> None:
        """Refuse a credential restricted to something other than this call."""
        if self.restricted and self.call_sid != call_sid:
            raise Forbidden("This token is restricted to another call or campaign")

    def allow_campaign(self, campaign_id: int) -> None:
        """Refuse a credential restricted to something other than this campaign."""
        if self.restricted and self.campaign_id != campaign_id:
            raise Forbidden("This token is restricted to another call or campaign")

    def allow_bot(self, bot_id: str, roles: frozenset[str]) -> str:
        """The role a capability token holds on this bot, if it is one of ``roles``."""
        role = self.bot_role
        if self.bot_id != bot_id or role is None or role not in roles:
            raise Forbidden("This credential does not open this bot's stream")
        return role

    def allow_organization(self) -> None:
        """Refuse a credential restricted to one call, campaign or bot."""
        if self.restricted:
            raise Forbidden("This token is restricted to one call, campaign or bot")


@dataclass(frozen=True, slots=True)
class Credentials:
    """A token and, when it came as a subprotocol, the subprotocol to echo."""

    token: str | None
    subprotocol: str | None = None


def _bearer(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if any."""
    scheme, _, value = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    token = value.strip()
    return token if scheme.lower() == "bearer" and token else None


def rest_credentials(request: web.Request) -> Credentials:
    """A REST request's token, from ``Authorization: Bearer`` only.

    A credential in a URL ends up in proxy logs, browser history and Referer
    headers, so REST refuses ``?token=`` outright rather than ignore it
    (WebSocket clients in browsers cannot set headers; REST clients can).
    """
    if "token" in request.query:
        raise InvalidRequest(
            "Credentials are not accepted in the query string on REST endpoints;"
            " send Authorization: Bearer <token>"
        )
    return Credentials(_bearer(request))


def websocket_credentials(request: web.Request) -> Credentials:
    """A WebSocket upgrade's token: from ``?token=``, ``Authorization: Bearer`` or
    the ``burki-token-`` subprotocol."""
    offered = request.headers.get(hdrs.SEC_WEBSOCKET_PROTOCOL, "")
    subprotocol = None
    for proto in (p.strip() for p in offered.split(",")):
        if proto.startswith(SUBPROTOCOL_PREFIX):
            subprotocol = proto
            break
    token = request.query.get("token") or _bearer(request)
    if not token and subprotocol is not None:
        token = subprotocol[len(SUBPROTOCOL_PREFIX) :]
    return Credentials(token or None, subprotocol)


class Authenticator:
    """Resolves tokens (API keys and access tokens) to principals.

    Valid keys are cached for ``cache_seconds``, so a revoked key, and every
    access token minted from it, stops working everywhere within that time;
    at once on every node that hears a ``KEY_REVOKED`` notice (``signals``),
    which is also passed on to ``on_revoked`` (the registry closes the key's
    open connections).
    """

    def __init__(
        self,
        catalog: Catalog,
        secret: str,
        cache_seconds: float = 5.0,
        cache_size: int = 10_000,
        signals: Signals | None = None,
        on_revoked: Callable[[int], object] | None = None,
    ):
        self._catalog = catalog
        self._on_revoked = on_revoked
        self._secret = secret
        self._by_hash: TtlCache[bytes, Principal] = TtlCache(cache_seconds, cache_size)
        self._by_id: TtlCache[int, ApiKey] = TtlCache(cache_seconds, cache_size)
        if signals is not None:
            signals.on(KEY_REVOKED, self._revoked)

    def forget_key(self, key_id: int) -> None:
        """Stop trusting what this node cached of key ``key_id`` (it was revoked)."""
        self._by_id.drop(key_id)
        self._by_hash.drop_where(lambda principal: principal.key_id == key_id)

    def _revoked(self, notice: dict[str, Any]) -> None:
        self.forget_key(notice["id"])
        if self._on_revoked is not None:
            self._on_revoked(notice["id"])

    async def inactive_keys(self, key_ids: Collection[int]) -> set[int]:
        """Those of ``key_ids`` (API keys or dashboard sessions) no longer active:
        revoked, expired or gone, as storage says now (the cache is what this
        re-checks). Each is forgotten, as on a notice."""
        gone = await self._catalog.inactive_keys(key_ids, now_ms())
        for key_id in gone:
            self.forget_key(key_id)
        return gone

    async def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise AuthenticationFailed()
        if is_api_key(token):
            return await self._api_key(token)
        return await self._access_token(token)

    def mint(
        self,
        principal: Principal,
        *,
        scopes: frozenset[str],
        ttl_seconds: int,
        now: float,
        call_sid: str | None = None,
        campaign_id: int | None = None,
    ) -> str:
        """An access token for ``principal``'s key, with at most its scopes."""
        if not scopes_within(scopes, principal.scopes):
            raise Forbidden("The requested scopes exceed this API key's scopes")
        return tokens.mint(
            self._secret,
            org_id=principal.org_id,
            key_id=principal.key_id,
            scopes=scopes,
            ttl_seconds=ttl_seconds,
            now=now,
            call_sid=call_sid,
            campaign_id=campaign_id,
        )

    def mint_capability(
        self, principal: Principal, *, bot_id: str, role: str, ttl_seconds: int, now: float
    ) -> str:
        """A capability token for one of the organization's bots (``principal`` is
        the unrestricted credential that asks for it)."""
        principal.allow_organization()
        return tokens.mint_capability(
            self._secret,
            org_id=principal.org_id,
            key_id=principal.key_id,
            bot_id=bot_id,
            role=role,
            ttl_seconds=ttl_seconds,
            now=now,
        )

    async def _api_key(self, token: str) -> Principal:
        if len(token) > 256:
            raise AuthenticationFailed()
        digest = hash_key(token)
        now = time.monotonic()
        principal = self._by_hash.get(digest, now)
        if principal is not None:
            return principal
        key = await self._catalog.find_api_key(digest)
        # A session's row never authenticates as a key (its secret is not an
        # ``scl_`` key anyway: this holds should a hash ever match).
        if key is None or key.kind != KeyKind.KEY or not key.active:
            self._by_hash.drop(digest)
            raise AuthenticationFailed()
        principal = Principal(key.org_id, key.scopes, key.id)
        self._by_hash.put(digest, principal, now)
        return principal

    async def _access_token(self, token: str) -> Principal:
        if len(token) > MAX_ACCESS_TOKEN_CHARS:
            raise AuthenticationFailed()
        claims = tokens.verify(self._secret, token)
        key = await self._minting_key(claims.key_id)
        if (
            key is None
            or key.org_id != claims.org_id
            or not scopes_within(claims.scopes, key.scopes)
        ):
            raise AuthenticationFailed()
        return Principal(
            claims.org_id,
            claims.scopes,
            claims.key_id,
            claims.call_sid,
            claims.campaign_id,
            claims.bot_id,
            claims.bot_role,
        )

    async def _minting_key(self, key_id: int) -> ApiKey | None:
        """The key a token was minted from, if it is still active."""
        now = time.monotonic()
        key = self._by_id.get(key_id, now)
        if key is not None and key.active:  # a cached session may have expired since
            return key
        key = await self._catalog.get_api_key(key_id)
        if key is None or not key.active:
            self._by_id.drop(key_id)
            return None
        self._by_id.put(key_id, key, now)
        return key
