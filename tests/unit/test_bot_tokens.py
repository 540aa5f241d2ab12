"""Bot capability tokens: what they carry, what they open, and what is refused."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from scribeline.auth import Principal
from scribeline.errors import AuthenticationFailed, Forbidden
from scribeline.tokens import BOT_ROLES, mint_capability, verify

from .test_tokens import NOW, SECRET, FakeCatalog, _authenticator, _claims

BOT = "5f0c6c1e-0000-4000-8000-000000000001"


def _capability(role: str = "read-only", **overrides: Any) -> str:
    args: dict[str, Any] = {
        "org_id": 7,
        "key_id": 42,
        "bot_id": BOT,
        "role": role,
        "ttl_seconds": 600,
        "now": NOW,
    }
    args.update(overrides)
    return mint_capability(SECRET, **args)


@pytest.mark.parametrize("role", sorted(BOT_ROLES))
def test_a_capability_names_its_bot_and_role_and_no_scope(role: str) -> None:
    """Verified, a capability token carries its bot and role and grants no scope."""
    claims = verify(SECRET, _capability(role), now=NOW)
    assert (claims.bot_id, claims.bot_role, claims.org_id, claims.key_id) == (BOT, role, 7, 42)
    assert claims.scopes == frozenset()
    assert claims.call_sid is None and claims.campaign_id is None


def test_an_unknown_role_cannot_be_minted() -> None:
    """Minting refuses a role outside read-write, read-only and producer."""
    with pytest.raises(ValueError):
        _capability("admin")


@pytest.mark.parametrize(
    "overrides",
    [
        {"bot": BOT, "cap": "admin", "scopes": None},
        {"bot": BOT, "cap": None, "scopes": None},
        {"bot": 5, "cap": "read-only", "scopes": None},
        {"bot": "", "cap": "read-only", "scopes": None},
        {"bot": "x" * 65, "cap": "read-only", "scopes": None},
        # A capability must not also carry scopes or another restriction.
        {"bot": BOT, "cap": "read-only", "scopes": ["read"]},
        {"bot": BOT, "cap": "read-only", "scopes": None, "call_sid": "CA1"},
        {"bot": BOT, "cap": "read-only", "scopes": None, "campaign_id": 3},
    ],
)
def test_malformed_capabilities_are_refused(overrides: dict[str, Any]) -> None:
    """A signed token whose bot claims are not what mint_capability writes is refused."""
    token = jwt.encode(_claims(**overrides), SECRET, algorithm="HS256")
    with pytest.raises(AuthenticationFailed):
        verify(SECRET, token, now=NOW)


def test_an_expired_capability_is_refused() -> None:
    """Capabilities expire like access tokens."""
    with pytest.raises(AuthenticationFailed):
        verify(SECRET, _capability(ttl_seconds=60), now=NOW + 120)


async def test_a_capability_principal_opens_only_its_bot_in_its_role() -> None:
    """The principal reaches its bot in its role; no scope, call, campaign or organization."""
    catalog = FakeCatalog()
    catalog.add(42, 7, {"write"})
    auth = _authenticator(catalog)
    principal = await auth.authenticate(_capability("read-write", now=time.time()))
    assert principal == Principal(7, frozenset(), 42, None, None, BOT, "read-write")
    assert principal.allow_bot(BOT, frozenset({"read-write", "read-only"})) == "read-write"
    refusals = [
        lambda: principal.allow_bot(BOT, frozenset({"producer"})),
        lambda: principal.allow_bot("another-bot", frozenset({"read-write"})),
        lambda: principal.require("read"),
        lambda: principal.allow_call("CA1"),
        lambda: principal.allow_campaign(3),
        principal.allow_organization,
    ]
    for refuse in refusals:
        with pytest.raises(Forbidden):
            refuse()


async def test_a_revoked_creator_key_refuses_its_capabilities() -> None:
    """A capability works only while the key that created the bot is active."""
    catalog = FakeCatalog()
    catalog.add(42, 7, {"write"})
    auth = _authenticator(catalog, cache_seconds=0)
    token = _capability(now=time.time())
    await auth.authenticate(token)
    catalog.revoke(42)
    with pytest.raises(AuthenticationFailed):
        await auth.authenticate(token)


async def test_only_an_unrestricted_credential_mints_capabilities() -> None:
    """A token restricted to a call (or a capability) cannot mint bot capabilities."""
    catalog = FakeCatalog()
    auth = _authenticator(catalog)
    restricted = Principal(7, frozenset({"read", "write"}), 42, call_sid="CA1")
    with pytest.raises(Forbidden):
        auth.mint_capability(restricted, bot_id=BOT, role="read-only", ttl_seconds=60, now=NOW)
    capability = Principal(7, frozenset(), 42, bot_id=BOT, bot_role="read-write")
    with pytest.raises(Forbidden):
        auth.mint_capability(capability, bot_id=BOT, role="read-write", ttl_seconds=60, now=NOW)
