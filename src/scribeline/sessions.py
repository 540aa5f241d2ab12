"""Dashboard sign-in: one-time codes, sessions, and the access tokens a page holds.

No API key reaches the browser. An operator prints a one-time link
(``scribeline dashboard``, or the demo's banner) whose code, ``scd_`` and 256
random bits, is in the URL's fragment, so it never reaches a server log, a
proxy or a Referer. The page exchanges the code for a **session**: a row of
the keys' table (``kind`` session) that expires after a fixed lifetime, whose
secret (``scs_``...) travels only in an HttpOnly cookie scoped to the session
endpoints. With it the page gets short-lived access tokens (JWTs, held in
memory only), which work wherever access tokens do.

A session secret is no bearer credential: it is not an ``scl_`` key, so the
authenticator tries it as a JWT and refuses it. Every token minted from a
session names it as its minting key, so signing out (revoking the row, and the
``KEY_REVOKED`` notice to every node) ends them all at once, and none outlives
the session: their lifetimes are cut to what is left of it.

Only codes and secrets are stored as SHA-256 hashes (``auth.hash_key``); none
is ever logged. This module does no HTTP: ``api.sessions`` is the wiring.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from scribeline.auth import KEY_REVOKED, Authenticator, Principal, hash_key, new_secret
from scribeline.cluster import Signals
from scribeline.domain import ApiKey, KeyKind, Organization
from scribeline.errors import AuthenticationFailed, NotFound
from scribeline.storage import Catalog

__all__ = [
    "ACCESS_TTL",
    "CODE_PREFIX",
    "FULL_SCOPES",
    "MAX_SECRET_CHARS",
    "READ_ONLY_SCOPES",
    "SESSION_PREFIX",
    "CaptionsToken",
    "IssuedCode",
    "Session",
    "SessionService",
    "captions_link",
    "issue_code",
    "sign_in_link",
]

CODE_PREFIX = "scd_"
SESSION_PREFIX = "scs_"
#: Longer than any code or secret made here (4 + 43 characters): longer input
#: is refused before it is hashed.
MAX_SECRET_CHARS = 128
#: The longest an access token of the page lives (less when the session ends sooner).
ACCESS_TTL = 600
FULL_SCOPES = frozenset({"read", "write"})
READ_ONLY_SCOPES = frozenset({"read"})
#: What a captions link's token may do: read its one call.
CAPTIONS_SCOPES = READ_ONLY_SCOPES


# -- links (pure) ---------------------------------------------------------------


def sign_in_link(base: str, code: str) -> str:
    """The one-time link: the code in the fragment, which browsers never send."""
    return f"{base}/dashboard/#code={code}"


def captions_link(base: str, call_sid: str, token: str) -> str:
    """The captions page of one call, its token in the fragment."""
    return f"{base}/dashboard/captions.html#call={call_sid}&token={token}"


def _shaped(secret: str | None, prefix: str) -> bool:
    return secret is not None and secret.startswith(prefix) and len(secret) <= MAX_SECRET_CHARS


# -- what the service hands out ------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssuedCode:
    """A fresh sign-in code (shown once) and when it expires (epoch ms)."""

    code: str
    expires_at: int
    read_only: bool

    def link(self, base: str) -> str:
        return sign_in_link(base, self.code)


@dataclass(frozen=True, slots=True)
class Session:
    """A live session and a fresh access token of it (times in epoch seconds)."""

    key: ApiKey
    organization: Organization
    access_token: str
    issued_at: int
    access_expires_at: int
    #: The session's secret, for the cookie: only when it was just created.
    secret: str | None = None

    @property
    def expires_at_ms(self) -> int:
        """When the session ends (epoch ms)."""
        assert self.key.expires_at is not None
        return self.key.expires_at

    @property
    def read_only(self) -> bool:
        return "write" not in self.key.scopes


@dataclass(frozen=True, slots=True)
class CaptionsToken:
    """A token that reads one call's live transcript, and when it expires (epoch s)."""

    call_sid: str
    token: str
    expires_at: int


async def issue_code(
    catalog: Catalog, org_id: int, *, read_only: bool, ttl_seconds: int, now: float
) -> IssuedCode:
    """Store a new sign-in code for the organization; the code is returned once."""
    code, _, digest = new_secret(CODE_PREFIX)
    expires = int(now * 1000) + ttl_seconds * 1000
    scopes = READ_ONLY_SCOPES if read_only else FULL_SCOPES
    await catalog.add_sign_in_code(org_id, digest, scopes, expires)
    return IssuedCode(code, expires, read_only)


def _seconds_left(key: ApiKey, now: int) -> int:
    """Whole seconds from ``now`` (epoch s) until the session ends."""
    assert key.expires_at is not None
    return key.expires_at // 1000 - now


class SessionService:
    """Issues codes, turns them into sessions, refreshes and ends sessions, and
    mints captions tokens. Every refusal is ``AuthenticationFailed``, the same
    for an unknown, used, expired or revoked code or session."""

    def __init__(
        self,
        catalog: Catalog,
        auth: Authenticator,
        signals: Signals,
        *,
        code_ttl: int,
        session_ttl: int,
        captions_ttl: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._catalog = catalog
        self._auth = auth
        self._signals = signals
        self._code_ttl = code_ttl
        self._session_ttl = session_ttl
        self._captions_ttl = captions_ttl
        self._clock = clock

    @property
    def session_ttl(self) -> int:
        return self._session_ttl

    async def issue_code(self, org_id: int, *, read_only: bool = False) -> IssuedCode:
        return await issue_code(
            self._catalog,
            org_id,
            read_only=read_only,
            ttl_seconds=self._code_ttl,
            now=self._clock(),
        )

    async def sign_in(self, code: str, replacing: str | None = None) -> Session:
        """Consume ``code`` (once, on whichever node) and start a session: one
        transaction, so a failure leaves the code unused. ``replacing`` is the
        secret of the session the browser held until now, if any: it ends
        (``sign_out``, every node told) once the new one exists, so that a
        browser holds one session at a time."""
        if not _shaped(code, CODE_PREFIX):
            raise AuthenticationFailed()
        now = self._clock()
        secret, prefix, digest = new_secret(SESSION_PREFIX)
        expires = (int(now) + self._session_ttl) * 1000
        key = await self._catalog.redeem_sign_in_code(
            hash_key(code), int(now * 1000), prefix, digest, expires
        )
        if key is None:
            raise AuthenticationFailed()
        await self.sign_out(replacing)
        return await self._with_token(key, int(now), secret)

    async def refresh(self, secret: str | None) -> Session:
        """A fresh access token of the session whose secret this is."""
        now = self._clock()
        return await self._with_token(await self._find(secret, now), int(now))

    async def sign_out(self, secret: str | None) -> None:
        """Revoke the session, if it is one, and tell every node: the tokens
        minted from it stop working at once (this node before this returns)."""
        if not _shaped(secret, SESSION_PREFIX):
            return
        assert secret is not None
        key = await self._catalog.find_api_key(hash_key(secret))
        if key is None or key.kind != KeyKind.SESSION or key.revoked_at is not None:
            return
        await self._catalog.revoke_api_key(key.org_id, str(key.id))
        await self._signals.broadcast(KEY_REVOKED, {"id": key.id})

    async def captions(self, secret: str | None, call_sid: str) -> CaptionsToken:
        """A read token restricted to one of the organization's calls (NotFound
        for any other), living ``captions_ttl`` but never past the session."""
        now = self._clock()
        key = await self._find(secret, now)
        if await self._catalog.get_call(key.org_id, call_sid) is None:
            raise NotFound(f"Call {call_sid} not found")
        issued = int(now)
        ttl = min(self._captions_ttl, _seconds_left(key, issued))
        token = self._auth.mint(
            _principal(key),
            scopes=CAPTIONS_SCOPES,
            ttl_seconds=ttl,
            now=issued,
            call_sid=call_sid,
        )
        return CaptionsToken(call_sid, token, issued + ttl)

    async def _find(self, secret: str | None, now: float) -> ApiKey:
        """The live session whose secret this is, with a second at least to go."""
        if not _shaped(secret, SESSION_PREFIX):
            raise AuthenticationFailed()
        assert secret is not None
        key = await self._catalog.find_api_key(hash_key(secret))
        if (
            key is None
            or key.kind != KeyKind.SESSION
            or not key.active_at(int(now * 1000))
            or _seconds_left(key, int(now)) < 1
        ):
            raise AuthenticationFailed()
        return key

    async def _with_token(self, key: ApiKey, now: int, secret: str | None = None) -> Session:
        organization = await self._catalog.get_org_by_id(key.org_id)
        if organization is None:
            raise AuthenticationFailed()
        ttl = min(ACCESS_TTL, _seconds_left(key, now))
        if ttl < 1:
            raise AuthenticationFailed()
        token = self._auth.mint(_principal(key), scopes=key.scopes, ttl_seconds=ttl, now=now)
        return Session(key, organization, token, now, now + ttl, secret)


def _principal(key: ApiKey) -> Principal:
    return Principal(key.org_id, key.scopes, key.id)
