"""A COMMIT whose reply is lost (PostgreSQL): the store asks what became of it.

A TCP proxy in front of a PostgreSQL of this module's own cuts the client off
at its COMMIT, either after passing the COMMIT on (the server commits; the
reply is lost) or instead of it (the server never commits). The writer must
then answer what really happened: the seqs of a committed append (a retry
would store it twice), ``StorageUnavailable`` for one that did not commit
(a retry is then safe and stores it once), and ``StorageUnavailable`` when the
answer cannot be trusted because the server crashed in between.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from scribeline.errors import StorageUnavailable
from scribeline.events import NewEvent
from scribeline.storage import Storage, open_storage, postgres_outcome
from scribeline.storage.postgres_outcome import committed, transaction_of
from tests.faults import TcpProxy
from tests.services import Postgres, running_postgres

#: What asyncpg sends to commit (``BEGIN ... READ COMMITTED;`` does not hold it).
COMMIT = b"COMMIT;"
#: Ample for a healthy store; a transaction left open would hold the stream forever.
WAIT = 15.0


def ev(n: int) -> NewEvent:
    return NewEvent("transcript", {"n": n})


async def stored(storage: Storage) -> list[tuple[int, int]]:
    return [(e.seq, e.data["n"]) for e in await storage.read("s")]


@pytest.fixture(scope="module")
def server() -> Iterator[Postgres]:
    """A server of this module's own: its backends get terminated."""
    with running_postgres() as instance:
        yield instance


@pytest.fixture
async def proxy(server: Postgres) -> AsyncIterator[TcpProxy]:
    proxy = await TcpProxy(server.port).start()
    try:
        yield proxy
    finally:
        await proxy.stop()


@pytest.fixture
async def storage(server: Postgres, proxy: TcpProxy, tmp_path: Path) -> AsyncIterator[Storage]:
    url = server.create_database().replace(f":{server.port}/", f":{proxy.port}/")
    store = await open_storage(url, tmp_path)
    try:
        await store.append("s", [ev(1)])
        yield store
    finally:
        await store.close()


async def test_appends_whose_commit_reply_is_lost_but_committed_are_acknowledged_once(
    storage: Storage, proxy: TcpProxy
) -> None:
    """Appends committed in one transaction whose COMMIT reached the server but
    whose reply never came back return their seqs (no StorageUnavailable, so
    no producer retries them), each is stored exactly once, and the next
    append follows with no gap."""
    proxy.cut_at(COMMIT, deliver=True)
    async with asyncio.timeout(WAIT):
        results = await asyncio.gather(*(storage.append("s", [ev(n)]) for n in (2, 3, 4)))
    assert proxy.cuts == 1
    assert [[(e.seq, e.data["n"]) for e in r] for r in results] == [[(2, 2)], [(3, 3)], [(4, 4)]]
    (after,) = await storage.append("s", [ev(5)])
    assert after.seq == 5
    assert await stored(storage) == [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)]


@pytest.mark.parametrize(
    "hold", [False, True], ids=["server-sees-the-close", "server-left-waiting"]
)
async def test_an_append_whose_commit_never_arrived_is_unavailable_and_stores_nothing(
    storage: Storage, proxy: TcpProxy, hold: bool
) -> None:
    """An append whose COMMIT never reached the server raises StorageUnavailable
    and stores nothing, also when the server is left holding the open
    transaction (and the stream's head row) because the client vanished
    without a word: that transaction is ended, so the retry is stored at once,
    with the next seq."""
    proxy.cut_at(COMMIT, deliver=False, hold_upstream=hold)
    async with asyncio.timeout(WAIT):
        with pytest.raises(StorageUnavailable):
            await storage.append("s", [ev(2)])
    assert proxy.cuts == 1
    assert await stored(storage) == [(1, 1)]
    async with asyncio.timeout(WAIT):
        (retry,) = await storage.append("s", [ev(2)])
    assert retry.seq == 2
    assert await stored(storage) == [(1, 1), (2, 2)]


async def test_an_outcome_that_cannot_be_learnt_in_time_is_unavailable(
    storage: Storage, proxy: TcpProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the server cannot be reached to ask about a lost COMMIT, the append
    raises StorageUnavailable once the bound has passed (it does not hang), and
    the store works again once the server can be reached."""
    monkeypatch.setattr(postgres_outcome, "OUTCOME_TIMEOUT", 0.5)
    proxy.cut_at(COMMIT, deliver=False)
    proxy.refuse()
    async with asyncio.timeout(WAIT):
        with pytest.raises(StorageUnavailable):
            await storage.append("s", [ev(2)])
    assert proxy.cuts == 1
    proxy.resume()
    (retry,) = await storage.append("s", [ev(2)])
    assert retry.seq == 2
    assert await stored(storage) == [(1, 1), (2, 2)]


async def test_an_id_handed_out_again_after_a_crash_is_not_taken_for_ours(
    server: Postgres,
) -> None:
    """A transaction id that never reached the disk is handed out again after a
    crash; once another transaction has committed under it, the outcome of the
    first one is reported unknown (not committed), not read from the other's."""
    url = server.create_database()
    before = await asyncpg.create_pool(url, min_size=1, max_size=1)
    async with before.acquire() as conn:
        await conn.execute("BEGIN")
        await conn.fetchval("SELECT pg_current_xact_id()")  # an id; nothing written to the WAL
        xact = await transaction_of(conn)
        assert xact is not None
        await asyncio.to_thread(server.restart, "immediate")
    before.terminate()
    after = await asyncpg.create_pool(url, min_size=1, max_size=2)
    try:
        async with after.acquire() as conn:
            for _ in range(1000):  # each statement in autocommit takes the next id
                reused = await conn.fetchval("SELECT pg_current_xact_id()::text")
                if int(reused) >= int(xact.xid):
                    break
            assert reused == xact.xid, "the crash did not hand the id out again"
            status = await conn.fetchval("SELECT pg_xact_status($1::text::xid8)", xact.xid)
            assert status == "committed"  # what asking by id alone would wrongly believe
        assert not await committed(after, xact)
    finally:
        await after.close()
