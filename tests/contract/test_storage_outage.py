"""PostgreSQL going away: every storage call says ``StorageUnavailable`` (never a
false success) while the server is down, and the store recovers by itself once
it is back. Each test runs its own server, as it stops it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scribeline.errors import StorageUnavailable
from scribeline.events import NewEvent
from scribeline.storage import Storage, open_storage
from tests.services import Postgres, running_postgres


def ev(n: int) -> NewEvent:
    return NewEvent("transcript", {"n": n})


@pytest.fixture
def server() -> Iterator[Postgres]:
    with running_postgres() as instance:
        yield instance


@pytest.fixture
async def storage(server: Postgres, tmp_path: Path) -> AsyncIterator[Storage]:
    store = await open_storage(server.create_database("outage"), tmp_path)
    try:
        yield store
    finally:
        await store.close()


def _calls(storage: Storage, org_id: int) -> dict[str, Callable[[], Awaitable[Any]]]:
    """One call of each kind: appends and other writes, point reads, paged reads."""
    return {
        "append": lambda: storage.append("s", [ev(9)]),
        "read": lambda: storage.read("s"),
        "head": lambda: storage.head("s"),
        "heads": lambda: storage.heads(["s", "t"]),
        "segment_heads": lambda: storage.segment_heads("s", {"a"}),
        "ping": storage.ping,
        "create_org": lambda: storage.create_org("other"),
        "get_org": lambda: storage.get_org("acme"),
        "list_calls": lambda: storage.list_calls(org_id, None, 10, None),
        "create_campaign": lambda: storage.create_campaign(org_id, 1, "c"),
        "counters": lambda: storage.counters(1),
        "list_bots": lambda: storage.list_bots(org_id, None, 10),
    }


async def test_every_call_is_unavailable_while_down_and_works_again_after(
    server: Postgres, storage: Storage
) -> None:
    """With the server stopped, each kind of call raises StorageUnavailable; once it
    is started again, the same store appends (the next seq, no gap) and reads."""
    org = await storage.create_org("acme")
    await storage.append("s", [ev(1)])
    await asyncio.to_thread(server.stop, "immediate")
    calls = _calls(storage, org.id)
    outcomes: dict[str, str] = {}
    for name, call in calls.items():
        try:
            await call()
            outcomes[name] = "a success"
        except Exception as exc:
            outcomes[name] = type(exc).__name__
    assert outcomes == dict.fromkeys(calls, StorageUnavailable.__name__)
    await asyncio.to_thread(server.start)
    (stored,) = await storage.append("s", [ev(2)])
    assert stored.seq == 2
    assert [e.data["n"] for e in await storage.read("s")] == [1, 2]
    await storage.ping()
    assert (await storage.get_org("acme")) == org


async def test_appends_in_flight_when_the_server_dies_are_stored_or_unavailable(
    server: Postgres, storage: Storage
) -> None:
    """Appends running while the server crashes either succeed, and are then
    stored, or raise StorageUnavailable; none fails otherwise, and after the
    restart the stream holds every acknowledged event with seqs 1..head."""
    await storage.append("s", [ev(0)])
    tasks = [asyncio.create_task(storage.append("s", [ev(n)])) for n in range(1, 301)]
    await tasks[0]  # some are committed before the crash
    crash = asyncio.create_task(asyncio.to_thread(server.stop, "immediate"))
    n, after = 300, 0
    while after < 20:  # appends keep starting during the crash, and after it
        n += 1
        after += crash.done()
        tasks.append(asyncio.create_task(storage.append("s", [ev(n)])))
        await asyncio.sleep(0.001 if n % 10 == 0 else 0)
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    assert failures and all(isinstance(o, StorageUnavailable) for o in failures)
    acknowledged = {o[0].data["n"] for o in outcomes if isinstance(o, list)}
    assert len(acknowledged) >= 300
    await asyncio.to_thread(server.start)
    stored = await storage.read("s")
    assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
    assert acknowledged <= {e.data["n"] for e in stored}
