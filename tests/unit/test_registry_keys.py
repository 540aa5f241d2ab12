"""The registry's index of connections by key: a revoked key closes its connections
(1008 ``authentication_failed``, after the endpoint's error message) and no others."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

import orjson
import pytest

from scribeline.connection import Connection
from scribeline.errors import ScribelineError
from scribeline.registry import _REVOKED_MEMORY, Registry
from tests.unit.fake_socket import FakeSocket, connection


def _render(error: ScribelineError) -> bytes:
    return orjson.dumps(error.to_dict())


def _connection(
    registry: Registry, socket: FakeSocket | None = None, **options: Any
) -> tuple[Connection, FakeSocket, FakeSocket]:
    """A connection, and its socket twice (what it wrote, how it closed)."""
    conn, socket = connection(registry, socket, **options)
    return conn, socket, socket


async def _settle(*conns: Connection) -> None:
    """Wait for the closes the registry started."""
    for conn in conns:
        await conn.close(1000)


async def test_a_revoked_key_closes_its_connections_and_no_others() -> None:
    """close_key sends each of the key's connections the endpoint's error, then closes
    it 1008 authentication_failed; another key's and an unauthenticated connection stay."""
    registry = Registry(20, 20)
    first, first_out, first_ws = _connection(registry, render=_render)
    second, _, second_ws = _connection(registry)  # a format without error messages
    other, other_out, other_ws = _connection(registry, render=_render)
    anonymous, _, anonymous_ws = _connection(registry)
    first.authenticated(7)
    second.authenticated(7)
    other.authenticated(8)

    assert registry.close_key(7) == 2
    assert registry.close_key(7) == 0  # already closing
    await _settle(first, second)
    error = orjson.loads(first_out.texts[0])  # past the two-byte frame header
    assert error["error"] == "authentication_failed"
    assert first_ws.close_frames == [(1008, b"authentication_failed")]
    assert second_ws.close_frames == [(1008, b"authentication_failed")]
    assert not other.closing and not anonymous.closing and other_out.texts == []
    assert other_ws.close_frames == anonymous_ws.close_frames == []
    assert len(registry) == 2


async def test_an_explaining_endpoint_says_why_in_the_close_reason() -> None:
    """A format with no messages at all (media streams) gets ``code: message``."""
    registry = Registry(20, 20)
    conn, transport, ws = _connection(registry, explain=True)
    conn.authenticated(3)
    registry.close_key(3)
    await _settle(conn)
    assert transport.texts == []
    assert ws.close_frames == [(1008, b"authentication_failed: The credential was revoked")]


async def test_the_key_is_set_once_and_forgotten_when_the_connection_closes() -> None:
    """A second ``authenticated`` changes nothing; a connection that closed on its own
    is out of the index (revoking its key later finds nothing)."""
    registry = Registry(20, 20)
    conn, _, _ = _connection(registry)
    conn.authenticated(1)
    conn.authenticated(2)
    assert conn.key_id == 1 and registry.close_key(2) == 0
    await conn.close(1000)
    assert registry.close_key(1) == 0


async def test_recheck_closes_the_connections_of_keys_no_longer_active() -> None:
    """The periodic re-check asks about every indexed key in one call and closes the
    inactive ones' connections; a look-up that fails (storage down) closes nothing."""
    registry = Registry(20, 20)
    conns = [_connection(registry)[0] for _ in range(3)]
    for conn, key_id in zip(conns, (1, 1, 2), strict=True):
        conn.authenticated(key_id)
    asked: list[list[int]] = []

    async def inactive(key_ids: Collection[int]) -> set[int]:
        asked.append(sorted(key_ids))
        return {1}

    assert await registry.recheck(inactive) == 1
    assert asked == [[1, 2]]
    await _settle(*conns[:2])
    assert [c.closing for c in conns] == [True, True, False]

    async def unreachable(key_ids: Collection[int]) -> set[int]:
        raise ConnectionError("storage is down")

    assert await registry.recheck(unreachable) == 0
    assert not conns[2].closing


async def test_a_join_that_binds_a_key_revoked_meanwhile_closes_at_once() -> None:
    """A revocation notice that came while a join authenticated (the key had no
    connection indexed yet) closes that connection when it binds; once the re-check
    interval has passed the key is forgotten (the re-check catches it then)."""
    registry = Registry(20, 20)
    assert registry.close_key(5) == 0  # the notice: nothing of key 5 is indexed yet
    joining, out, ws = _connection(registry, render=_render)
    joining.authenticated(5)
    await _settle(joining)
    assert orjson.loads(out.texts[0])["error"] == "authentication_failed"
    assert ws.close_frames == [(1008, b"authentication_failed")]

    registry._revoked_window = 0.0  # the window has passed
    later, _, later_ws = _connection(registry)
    later.authenticated(5)
    assert not later.closing and later_ws.close_frames == []


async def test_the_revoked_keys_remembered_are_bounded() -> None:
    """Past the bound the oldest revocations are forgotten first."""
    registry = Registry(20, 20)
    for key_id in range(_REVOKED_MEMORY + 10):
        registry.close_key(key_id)
    assert len(registry._revoked) == _REVOKED_MEMORY
    assert 9 not in registry._revoked and 10 in registry._revoked


async def test_an_acknowledging_connection_answers_what_it_read_before_it_closes() -> None:
    """Revoking a producer's key wakes its wait for a message (no further message is
    taken), lets the answer to a message already read go out, then sends the error
    and closes 1008 authentication_failed when the endpoint closes."""
    registry = Registry(20, 20)
    conn, transport, ws = _connection(registry, render=_render, acknowledges=True)
    conn.authenticated(9)
    reading = asyncio.create_task(conn.next_message())
    await asyncio.sleep(0)  # the reader is waiting for a message
    assert not reading.done()
    assert registry.close_key(9) == 1
    assert await reading is None
    assert await conn.next_message() is None
    conn.send(b'{"type":"ack","seq":3}')  # the answer to a message read before
    await conn.close(1000)  # the endpoint is done: now the revocation's error and close
    assert [orjson.loads(text).get("error") for text in transport.texts] == [
        None,
        "authentication_failed",
    ]
    assert ws.close_frames == [(1008, b"authentication_failed")]


async def test_cancelling_an_acknowledging_reader_still_cancels_it() -> None:
    """A cancellation from elsewhere (a shutdown) ends the reading task, and the
    revocation that follows still closes the connection 1008."""
    registry = Registry(20, 20)
    conn, _, ws = _connection(registry, acknowledges=True)
    conn.authenticated(4)
    reading = asyncio.create_task(conn.next_message())
    await asyncio.sleep(0)  # the reader is waiting for a message
    assert not reading.done()
    reading.cancel()
    registry.close_key(4)
    with pytest.raises(asyncio.CancelledError):
        await reading
    await conn.close(1000)
    assert ws.close_frames == [(1008, b"authentication_failed")]
