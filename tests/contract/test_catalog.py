"""The Catalog contract: organizations, keys, calls and the status projection."""

from __future__ import annotations

import pytest

from scribeline.auth import new_api_key
from scribeline.domain import Call
from scribeline.errors import Conflict
from scribeline.events import NewEvent
from scribeline.storage import Storage


def draft(org_id: int, assistant_id: int, sid: str) -> Call:
    return Call(0, org_id, assistant_id, sid, "in-progress", None, None, "inbound", 1, None)


def status(value: str, closes: bool = False) -> NewEvent:
    return NewEvent("call_status", {"status": value, "metadata": {}}, closes=closes)


async def test_organizations_are_unique_and_get_a_default_assistant(storage: Storage) -> None:
    """create_org makes a default assistant; a second org of that name conflicts."""
    org = await storage.create_org("acme")
    assistant = await storage.get_assistant(org.id, None)
    assert assistant is not None and assistant.is_default and assistant.org_id == org.id
    with pytest.raises(Conflict):
        await storage.create_org("acme")
    assert await storage.get_org("acme") == org


async def test_list_orgs_lists_every_organization_oldest_first(storage: Storage) -> None:
    """list_orgs is empty on a new store, then holds each organization once, by id."""
    assert await storage.list_orgs() == []
    created = [await storage.create_org(name) for name in ("zeta", "acme", "mid")]
    assert await storage.list_orgs() == created


async def test_keys_are_found_by_hash_and_revocable(storage: Storage) -> None:
    """A key is found by its hash only; revoking it marks it inactive."""
    org = await storage.create_org("acme")
    _, prefix, digest = new_api_key()
    record = await storage.add_api_key(org.id, prefix, digest, frozenset({"read"}), "k")
    found = await storage.find_api_key(digest)
    assert found == record and found.active
    assert await storage.get_api_key(record.id) == record
    assert await storage.get_api_key(record.id + 1000) is None
    revoked = await storage.revoke_api_key(org.id, prefix)
    assert revoked is not None and not revoked.active
    found_again = await storage.find_api_key(digest)
    assert found_again is not None and not found_again.active
    assert await storage.revoke_api_key(org.id + 1, prefix) is None


async def test_call_sids_are_scoped_to_the_organization(storage: Storage) -> None:
    """Two organizations may use the same SID; neither sees the other's call."""
    a, b = await storage.create_org("a"), await storage.create_org("b")
    aa = await storage.get_assistant(a.id, None)
    bb = await storage.get_assistant(b.id, None)
    assert aa is not None and bb is not None
    call_a, (first,) = await storage.create_call(draft(a.id, aa.id, "CA1"), status("in-progress"))
    await storage.create_call(draft(b.id, bb.id, "CA1"), status("in-progress"))
    assert first.seq == 1 and first.stream == call_a.stream
    with pytest.raises(Conflict):
        await storage.create_call(draft(a.id, aa.id, "CA1"), status("in-progress"))
    got = await storage.get_call(a.id, "CA1")
    assert got is not None and got.org_id == a.id
    assert await storage.get_assistant(a.id, bb.id) is None


async def test_status_is_a_projection_of_the_latest_status_event(storage: Storage) -> None:
    """Appending a status event updates the call's status and, when terminal, ended_at."""
    org = await storage.create_org("acme")
    assistant = await storage.get_assistant(org.id, None)
    assert assistant is not None
    call, _ = await storage.create_call(draft(org.id, assistant.id, "CA1"), status("ringing"))
    await storage.append(call.stream, [status("completed", closes=True)])
    updated = await storage.get_call(org.id, "CA1")
    assert updated is not None and updated.status == "completed" and updated.ended_at


async def test_list_calls_is_newest_first_filtered_and_paginated(storage: Storage) -> None:
    """Pages follow the cursor to the end; status filters; other orgs never appear."""
    org, other = await storage.create_org("acme"), await storage.create_org("other")
    assistant = await storage.get_assistant(org.id, None)
    other_assistant = await storage.get_assistant(other.id, None)
    assert assistant is not None and other_assistant is not None
    for n in range(7):
        call, _ = await storage.create_call(
            draft(org.id, assistant.id, f"CA{n}"), status("in-progress")
        )
        if n % 2:
            await storage.append(call.stream, [status("completed", closes=True)])
    await storage.create_call(draft(other.id, other_assistant.id, "CX"), status("in-progress"))
    sids: list[str] = []
    cursor = None
    while True:
        page = await storage.list_calls(org.id, None, 3, cursor)
        sids += [c.call_sid for c in page.calls]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sids == [f"CA{n}" for n in reversed(range(7))]
    active = await storage.list_calls(org.id, "in-progress", 50, None)
    assert [c.call_sid for c in active.calls] == ["CA6", "CA4", "CA2", "CA0"]
