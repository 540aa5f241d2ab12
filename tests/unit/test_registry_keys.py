"""The registry's index of connections by key: a revoked key closes its connections
(1008 ``authentication_failed``, after the endpoint's error message) and no others."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from scribeline.connection import Connection
from scribeline.errors import ScribelineError
from scribeline.registry import _REVOKED_MEMORY, Registry


class _Transport:
    """Records what the connection writes (a stand-in for an asyncio transport)."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> Any:
        return None


class _Socket:
    """Records how the connection closed its WebSocket."""

    closed = False

    def __init__(self) -> None:
        self.close_frames: list[tuple[int, bytes]] = []

    async def close(self, *, code: int, message: bytes, drain: bool) -> None:
        self.close_frames.append((code, message))


def _render(error: ScribelineError) -> bytes:
    return orjson.dumps(error.to_dict())


def _connection(
    registry: Registry, ws: _Socket | None = None, **options: Any
) -> tuple[Connection, _Transport, _Socket]:
    transport = _Transport()
    ws = ws or _Socket()
    conn = Connection(
        ws,  # type: ignore[arg-type]
        SimpleNamespace(transport=transport),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        registry,
        limit=1 << 20,
        messages_per_second=100,
        close_timeout=1,
        **options,
    )
    return conn, transport, ws


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
    error = orjson.loads(first_out.written[0][2:])  # past the two-byte frame header
    assert error["error"] == "authentication_failed"
    assert first_ws.close_frames == [(1008, b"authentication_failed")]
    assert second_ws.close_frames == [(1008, b"authentication_failed")]
    assert not other.closing and not anonymous.closing and other_out.written == []
    assert other_ws.close_frames == anonymous_ws.close_frames == []
    assert len(registry) == 2


async def test_an_explaining_endpoint_says_why_in_the_close_reason() -> None:
    """A format with no messages at all (media streams) gets ``code: message``."""
    registry = Registry(20, 20)
    conn, transport, ws = _connection(registry, explain=True)
    conn.authenticated(3)
    registry.close_key(3)
    await _settle(conn)
    assert transport.written == []
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
    assert orjson.loads(out.written[0][2:])["error"] == "authentication_failed"
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


class _Inbox(_Socket):
    """A socket whose client has sent nothing yet (``receive`` waits)."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = asyncio.Event()

    async def receive(self) -> Any:
        self.waiting.set()
        await asyncio.get_running_loop().create_future()


async def test_an_acknowledging_connection_answers_what_it_read_before_it_closes() -> None:
    """Revoking a producer's key wakes its wait for a message (no further message is
    taken), lets the answer to a message already read go out, then sends the error
    and closes 1008 authentication_failed when the endpoint closes."""
    registry = Registry(20, 20)
    ws = _Inbox()
    conn, transport, _ = _connection(registry, ws, render=_render, acknowledges=True)
    conn.authenticated(9)
    reading = asyncio.create_task(conn.next_message())
    await ws.waiting.wait()
    assert registry.close_key(9) == 1
    assert await reading is None
    assert await conn.next_message() is None
    conn.send(b'{"type":"ack","seq":3}')  # the answer to a message read before
    await conn.close(1000)  # the endpoint is done: now the revocation's error and close
    assert [orjson.loads(frame[2:]).get("error") for frame in transport.written] == [
        None,
        "authentication_failed",
    ]
    assert ws.close_frames == [(1008, b"authentication_failed")]


async def test_cancelling_an_acknowledging_reader_still_cancels_it() -> None:
    """Only revoke's own wake-up is absorbed: a cancellation from elsewhere (a
    shutdown) still ends the reading task."""
    registry = Registry(20, 20)
    inbox = _Inbox()
    conn = Connection(
        inbox,  # type: ignore[arg-type]
        SimpleNamespace(transport=_Transport()),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        registry,
        limit=1 << 20,
        messages_per_second=100,
        close_timeout=1,
        acknowledges=True,
    )
    conn.authenticated(4)
    reading = asyncio.create_task(conn.next_message())
    await inbox.waiting.wait()
    reading.cancel()
    registry.close_key(4)
    with pytest.raises(asyncio.CancelledError):
        await reading
    await conn.close(1000)
