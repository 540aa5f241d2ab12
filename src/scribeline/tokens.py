"""Access tokens: short-lived JWTs minted from an API key (PROTOCOL.md section 5).

A token is an HS256 JWT signed with the server's secret. It names the
organization, the minting key (``sub``), its scopes and, optionally, the one
call or campaign it is restricted to. Verification accepts HS256 only (so
``alg: none`` and every other algorithm are refused), requires every
registered claim this module writes, and reports any failure as the generic
``AuthenticationFailed``: why a token was refused is logged at debug level,
never told to the client.

A bot capability token (PROTOCOL.md section 4) is the same kind of JWT with
claims ``bot`` (the bot's id) and ``cap`` (``read-write``, ``read-only`` or
``producer``) and no scopes: it opens that bot's WebSocket and nothing else.

This module does no I/O except :func:`load_or_create_secret`, which runs once
at start-up. Whether the minting key is still active is the
``Authenticator``'s business.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt

from scribeline.errors import AuthenticationFailed
from scribeline.files import private_dir
from scribeline.ingest.models import valid_call_sid

if TYPE_CHECKING:
    from scribeline.config import Settings

__all__ = [
    "ALGORITHM",
    "AUDIENCE",
    "BOT_ROLES",
    "ISSUER",
    "LEEWAY_SECONDS",
    "MIN_SECRET_BYTES",
    "SECRET_FILE",
    "Claims",
    "TokenSecretError",
    "load_or_create_secret",
    "mint",
    "mint_capability",
    "verify",
]

log = logging.getLogger(__name__)

ALGORITHM = "HS256"
ISSUER = "scribeline"
AUDIENCE = "scribeline"
#: Clock skew tolerated between the nodes that mint and verify.
LEEWAY_SECONDS = 5
#: RFC 7518 section 3.2: an HS256 key of at least the hash size.
MIN_SECRET_BYTES = 32
#: Where a generated secret lives, inside the data directory.
SECRET_FILE = "token_secret"

_REQUIRED = ["iss", "aud", "sub", "iat", "nbf", "exp"]

#: What a bot capability token opens: the read-write or the read-only
#: subscriber URL, or the bot's producer URL.
BOT_ROLES = frozenset({"read-write", "read-only", "producer"})


class TokenSecretError(ValueError):
    """The configured or stored token secret is unusable; the server does not start."""


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified access token grants. ``expires_at`` is in epoch milliseconds."""

    org_id: int
    key_id: int
    scopes: frozenset[str]
    call_sid: str | None
    campaign_id: int | None
    expires_at: int
    bot_id: str | None = None
    bot_role: str | None = None


def mint(
    secret: str,
    *,
    org_id: int,
    key_id: int,
    scopes: Collection[str],
    ttl_seconds: int,
    now: float,
    call_sid: str | None = None,
    campaign_id: int | None = None,
) -> str:
    """A signed token valid from ``int(now)`` for ``ttl_seconds``.

    ``exp`` is ``int(now) + ttl_seconds``: a caller that needs the expiry
    computes it the same way.
    """
    if not scopes:
        raise ValueError("a token needs at least one scope")
    if call_sid is not None and campaign_id is not None:
        raise ValueError("a token is restricted to a call or a campaign, not both")
    payload = _registered(org_id, key_id, ttl_seconds, now)
    payload["scopes"] = sorted(set(scopes))
    if call_sid is not None:
        payload["call_sid"] = call_sid
    if campaign_id is not None:
        payload["campaign_id"] = campaign_id
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def mint_capability(
    secret: str,
    *,
    org_id: int,
    key_id: int,
    bot_id: str,
    role: str,
    ttl_seconds: int,
    now: float,
) -> str:
    """A bot capability token: opens ``bot_id``'s WebSocket as ``role``, nothing else."""
    if role not in BOT_ROLES:
        raise ValueError(f"role must be one of {', '.join(sorted(BOT_ROLES))}")
    payload = _registered(org_id, key_id, ttl_seconds, now)
    payload |= {"bot": bot_id, "cap": role}
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def _registered(org_id: int, key_id: int, ttl_seconds: int, now: float) -> dict[str, Any]:
    """The claims every token has: issuer, audience, minting key, organization, times."""
    if ttl_seconds < 1:
        raise ValueError("ttl_seconds must be positive")
    issued = int(now)
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(key_id),
        "org": org_id,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl_seconds,
        "jti": secrets.token_urlsafe(16),
    }


def verify(secret: str, token: str, now: float | None = None) -> Claims:
    """The claims of a valid token; ``AuthenticationFailed`` for anything else."""
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            # Times are checked below, against ``now``; presence is checked here.
            options={
                "require": _REQUIRED,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "strict_aud": True,
            },
        )
        return _claims(payload, time.time() if now is None else now)
    except (jwt.PyJWTError, _Invalid) as exc:
        log.debug("access token refused: %s", exc)
        raise AuthenticationFailed() from None


class _Invalid(Exception):
    """A signed token whose claims are not what this module writes."""


def _int(payload: dict[str, Any], name: str) -> int:
    value = payload.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Invalid(f"claim {name!r} is not an integer")
    return value


def _claims(payload: dict[str, Any], now: float) -> Claims:
    exp, nbf, iat = _int(payload, "exp"), _int(payload, "nbf"), _int(payload, "iat")
    if exp <= now - LEEWAY_SECONDS:
        raise _Invalid("expired")
    if nbf > now + LEEWAY_SECONDS or iat > now + LEEWAY_SECONDS:
        raise _Invalid("not yet valid")
    sub = payload["sub"]
    if not isinstance(sub, str) or not sub.isascii() or not sub.isdigit():
        raise _Invalid("subject is not a key id")
    if "bot" in payload:
        return _capability(payload, int(sub), exp)
    scopes = payload.get("scopes")
    if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes):
        raise _Invalid("scopes are not a list of names")
    call_sid = payload.get("call_sid")
    if call_sid is not None and not (isinstance(call_sid, str) and valid_call_sid(call_sid)):
        raise _Invalid("call_sid is not a call SID")
    campaign_id = _int(payload, "campaign_id") if "campaign_id" in payload else None
    if call_sid is not None and campaign_id is not None:
        raise _Invalid("restricted to both a call and a campaign")
    return Claims(
        org_id=_int(payload, "org"),
        key_id=int(sub),
        scopes=frozenset(scopes),
        call_sid=call_sid,
        campaign_id=campaign_id,
        expires_at=exp * 1000,
    )


def _capability(payload: dict[str, Any], key_id: int, exp: int) -> Claims:
    bot_id, role = payload["bot"], payload.get("cap")
    if not isinstance(bot_id, str) or not 1 <= len(bot_id) <= 64:
        raise _Invalid("bot is not a bot id")
    if role not in BOT_ROLES:
        raise _Invalid("cap is not a bot role")
    if any(name in payload for name in ("scopes", "call_sid", "campaign_id")):
        raise _Invalid("a capability token carries no scopes or other restriction")
    return Claims(
        org_id=_int(payload, "org"),
        key_id=key_id,
        scopes=frozenset(),
        call_sid=None,
        campaign_id=None,
        expires_at=exp * 1000,
        bot_id=bot_id,
        bot_role=role,
    )


def load_or_create_secret(settings: Settings) -> str:
    """The signing secret: configured, else ``<data_dir>/token_secret`` (created if absent).

    A generated secret is written with mode 0600 and published atomically
    (hard link of a complete file), so processes starting together on one data
    directory all end up with the same secret.
    """
    if settings.token_secret:
        _check(settings.token_secret, "SCRIBELINE_TOKEN_SECRET")
        return settings.token_secret
    private_dir(settings.data_dir)
    path = settings.data_dir / SECRET_FILE
    if not path.exists():
        tmp = path.with_name(f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(secrets.token_urlsafe(48) + "\n")
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):  # another process won the race
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        log.info("generated a token secret in %s", path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("%s is readable by other users (mode %o); chmod 600 it", path, mode)
    secret = path.read_text("utf-8").strip()
    _check(secret, str(path))
    return secret


def _check(secret: str, source: str) -> None:
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise TokenSecretError(
            f"the access-token secret from {source} is shorter than {MIN_SECRET_BYTES} bytes; "
            "use a longer random value (e.g. `python -c 'import secrets; "
            "print(secrets.token_urlsafe(48))'`)"
        )
