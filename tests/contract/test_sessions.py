"""The Catalog contract for dashboard sign-in: one-time codes, the sessions they
start (in the same transaction), listing, revoking and purging sessions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from scribeline.auth import hash_key, new_api_key, new_secret
from scribeline.domain import ApiKey, KeyKind
from scribeline.errors import Conflict
from scribeline.events import now_ms
from scribeline.storage import Storage, open_storage
from scribeline.storage.rules import SESSION_RETENTION_MS

READ = frozenset({"read"})
FULL = frozenset({"read", "write"})
HOUR = 3_600_000


async def _code(storage: Storage, org_id: int, scopes: frozenset[str] = FULL) -> bytes:
    """A stored code valid for a minute: its hash."""
    _, _, digest = new_secret("scd_")
    await storage.add_sign_in_code(org_id, digest, scopes, now_ms() + 60_000)
    return digest


async def _session(
    storage: Storage,
    org_id: int,
    expires_at: int,
    scopes: frozenset[str] = FULL,
    at: int | None = None,
) -> ApiKey:
    """A session started by a fresh code ``at`` a time (default now), ending at
    ``expires_at``."""
    _, prefix, digest = new_secret("scs_")
    code = await _code(storage, org_id, scopes)
    at = now_ms() if at is None else at
    session = await storage.redeem_sign_in_code(code, at, prefix, digest, expires_at)
    assert session is not None
    return session


async def test_a_code_starts_one_session_with_its_organization_and_scopes(
    storage: Storage,
) -> None:
    """Redeeming a stored code gives a session row of the code's organization and
    scopes; the same code again, or an unknown one, gives nothing and stores nothing."""
    org = await storage.create_org("acme")
    _, _, code = new_secret("scd_")
    now = now_ms()
    stored = await storage.add_sign_in_code(org.id, code, READ, now + 60_000)
    assert stored.org_id == org.id and stored.scopes == READ
    _, prefix, digest = new_secret("scs_")
    session = await storage.redeem_sign_in_code(code, now, prefix, digest, now + HOUR)
    assert session is not None
    assert (session.org_id, session.scopes, session.kind) == (org.id, READ, KeyKind.SESSION)
    assert (session.prefix, session.expires_at, session.name) == (prefix, now + HOUR, "dashboard")
    _, again_prefix, again = new_secret("scs_")
    assert await storage.redeem_sign_in_code(code, now, again_prefix, again, now + HOUR) is None
    unknown = hash_key("scd_unknown")
    assert await storage.redeem_sign_in_code(unknown, now, again_prefix, again, now + HOUR) is None
    assert await storage.find_api_key(again) is None
    assert await storage.list_sessions(org.id) == [session]


async def test_an_expired_code_is_refused_from_its_expiry_on(storage: Storage) -> None:
    """A code is valid strictly before ``expires_at``: at that moment and later
    redeeming it finds nothing, and the code stays unusable."""
    org = await storage.create_org("acme")
    _, _, code = new_secret("scd_")
    expires = now_ms() + 60_000
    await storage.add_sign_in_code(org.id, code, FULL, expires)
    _, prefix, digest = new_secret("scs_")
    assert await storage.redeem_sign_in_code(code, expires, prefix, digest, expires) is None
    assert await storage.redeem_sign_in_code(code, expires + 1, prefix, digest, expires) is None
    found = await storage.redeem_sign_in_code(code, expires - 1, prefix, digest, expires + HOUR)
    assert found is not None and found.scopes == FULL


async def test_two_nodes_redeeming_one_code_at_once_one_wins(
    storage: Storage, storage_url: str, tmp_path: Path
) -> None:
    """Two stores on one database (two nodes), each racing several redeemers of the
    same codes: every code starts exactly one session."""
    other = await open_storage(storage_url, tmp_path)
    try:
        org = await storage.create_org("acme")
        codes = [await _code(storage, org.id, READ) for _ in range(20)]
        now = now_ms()
        for code in codes:
            secrets = [new_secret("scs_") for _ in range(6)]
            results = await asyncio.gather(
                *(
                    node.redeem_sign_in_code(code, now, prefix, digest, now + HOUR)
                    for node, (_, prefix, digest) in zip((storage, other) * 3, secrets, strict=True)
                )
            )
            assert sum(r is not None for r in results) == 1, results
        assert len(await storage.list_sessions(org.id)) == len(codes)
    finally:
        await other.close()


async def test_a_session_that_cannot_be_stored_leaves_its_code_unused(storage: Storage) -> None:
    """The code's deletion and the session's insert are one transaction: when the
    insert fails (a hash already stored: ``Conflict``), the code is still there and
    starts a session on the next try."""
    org = await storage.create_org("acme")
    _, key_prefix, key_digest = new_api_key()
    await storage.add_api_key(org.id, key_prefix, key_digest, READ, "k")
    code = await _code(storage, org.id)
    now = now_ms()
    with pytest.raises(Conflict):
        await storage.redeem_sign_in_code(code, now, "scs_taken", key_digest, now + HOUR)
    assert await storage.list_sessions(org.id) == []
    _, prefix, digest = new_secret("scs_")
    session = await storage.redeem_sign_in_code(code, now, prefix, digest, now + HOUR)
    assert session is not None and session.kind == KeyKind.SESSION


async def test_a_session_is_a_key_row_that_expires_and_is_never_listed(storage: Storage) -> None:
    """A session is found by its hash and id like a key, is active until its expiry,
    is revocable like a key, and never appears in the organization's key list."""
    org = await storage.create_org("acme")
    _, key_prefix, key_digest = new_api_key()
    key = await storage.add_api_key(org.id, key_prefix, key_digest, READ, "k")
    assert key.kind == KeyKind.KEY and key.expires_at is None
    _, prefix, digest = new_secret("scs_")
    expires = now_ms() + 60_000
    session = await storage.redeem_sign_in_code(
        await _code(storage, org.id, READ), now_ms(), prefix, digest, expires
    )
    assert session is not None
    assert session.kind == KeyKind.SESSION and session.expires_at == expires
    assert await storage.find_api_key(digest) == session
    assert await storage.get_api_key(session.id) == session
    assert session.active and session.active_at(expires - 1) and not session.active_at(expires)
    assert await storage.list_api_keys(org.id) == [key]
    revoked = await storage.revoke_api_key(org.id, str(session.id))
    assert revoked is not None and revoked.kind == KeyKind.SESSION and not revoked.active
    assert await storage.list_api_keys(org.id) == [key]


async def test_inactive_keys_names_the_revoked_expired_and_absent_in_one_call(
    storage: Storage,
) -> None:
    """inactive_keys returns exactly the ids not active at the given time (revoked,
    expired or unknown), across more ids than one query takes (500)."""
    org = await storage.create_org("acme")
    keys = []
    for n in range(3):
        _, prefix, digest = new_api_key()
        keys.append(await storage.add_api_key(org.id, prefix, digest, READ, f"k{n}"))
    now = now_ms()
    session = await _session(storage, org.id, now + HOUR)
    await storage.revoke_api_key(org.id, keys[1].prefix)
    absent = [keys[-1].id + 10_000 + n for n in range(600)]
    ids = [keys[0].id, keys[1].id, keys[2].id, session.id, *absent]
    assert await storage.inactive_keys(ids, now) == {keys[1].id, *absent}
    assert await storage.inactive_keys(ids, now + HOUR) == {keys[1].id, session.id, *absent}
    assert await storage.inactive_keys([keys[0].id, keys[0].id], now) == set()
    assert await storage.inactive_keys([], now) == set()


async def test_sessions_are_listed_and_revoked_within_their_organization(
    storage: Storage,
) -> None:
    """list_sessions shows an organization's sessions, revoked and expired ones too,
    and never a key; revoke_sessions ends one session by id (not a key, not another
    organization's, not twice), or every session still active."""
    acme, globex = await storage.create_org("acme"), await storage.create_org("globex")
    _, key_prefix, key_digest = new_api_key()
    key = await storage.add_api_key(acme.id, key_prefix, key_digest, FULL, "k")
    now = now_ms()
    first = await _session(storage, acme.id, now + HOUR)
    second = await _session(storage, acme.id, now + HOUR, READ)
    lapsed = await _session(storage, acme.id, now - 1)
    theirs = await _session(storage, globex.id, now + HOUR)
    assert await storage.list_sessions(acme.id) == [first, second, lapsed]

    assert await storage.revoke_sessions(acme.id, theirs.id, now) == []
    assert await storage.revoke_sessions(acme.id, key.id, now) == []
    (ended,) = await storage.revoke_sessions(acme.id, first.id, now)
    assert ended.id == first.id and ended.revoked_at == now and not ended.active
    assert await storage.revoke_sessions(acme.id, first.id, now + 5) == []

    everything = await storage.revoke_sessions(acme.id, None, now + 10)
    assert [s.id for s in everything] == [second.id]  # the expired one is left as it is
    listed = {s.id: s for s in await storage.list_sessions(acme.id)}
    assert listed[first.id].revoked_at == now and listed[second.id].revoked_at == now + 10
    assert listed[lapsed.id].revoked_at is None and not listed[lapsed.id].active
    assert (await storage.get_api_key(key.id)) == key
    assert await storage.list_sessions(globex.id) == [theirs] and theirs.active


async def test_starting_a_session_purges_long_expired_ones_no_bot_names(storage: Storage) -> None:
    """Sessions that expired more than the retention before a sign-in are deleted by
    it, unless a bot names one (its row stays, as the bot's key); sessions expired
    more recently, and keys, stay."""
    org = await storage.create_org("acme")
    now = now_ms()
    old = now - SESSION_RETENTION_MS - 1
    # Started back then: their own sign-ins purge nothing.
    gone = await _session(storage, org.id, old, at=old - HOUR)
    kept_for_bot = await _session(storage, org.id, old, at=old - HOUR)
    bot = await storage.create_bot(org.id, kept_for_bot.id, "https://meet.example.com/x", "B", "m")
    recent = await _session(storage, org.id, now - SESSION_RETENTION_MS + 60_000, at=old)
    assert len(await storage.list_sessions(org.id)) == 3
    _, prefix, digest = new_secret("scs_")
    code = await _code(storage, org.id)
    fresh = await storage.redeem_sign_in_code(code, now, prefix, digest, now + HOUR)
    assert fresh is not None
    ids = [s.id for s in await storage.list_sessions(org.id)]
    assert ids == [kept_for_bot.id, recent.id, fresh.id]
    assert await storage.get_api_key(gone.id) is None
    assert await storage.get_bot(org.id, bot.public_id) == bot


async def test_organizations_are_found_by_id(storage: Storage) -> None:
    """get_org_by_id finds what create_org made, and nothing for an unknown id."""
    org = await storage.create_org("acme")
    assert await storage.get_org_by_id(org.id) == org
    assert await storage.get_org_by_id(org.id + 1000) is None
