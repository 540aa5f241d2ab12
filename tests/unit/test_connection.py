"""A connection's join rules: held events go out after history, each seq at most once."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from scribeline.connection import Connection
from scribeline.registry import Registry


class _Transport:
    """Records what the connection writes (a stand-in for an asyncio transport)."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str) -> Any:
        return None


def _connection() -> tuple[Connection, _Transport]:
    transport = _Transport()
    conn = Connection(
        None,  # type: ignore[arg-type]  # the socket is never read here
        SimpleNamespace(transport=transport),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        Registry(20, 20),
        limit=1 << 20,
        messages_per_second=100,
        close_timeout=1,
    )
    return conn, transport


async def test_go_live_sends_only_what_comes_after_the_covered_seq() -> None:
    """Events held while joining go out after the join's covered seq, in order; a
    held event at or below it (a resume point delivered late) never goes out."""
    conn, transport = _connection()
    conn.hold()
    for seq in (5, 6, 7):
        conn.offer(seq, b"f%d" % seq, False)
    assert transport.written == []
    conn.go_live(5)  # resumed with since=5; history after it was empty
    assert transport.written == [b"f6", b"f7"]
    conn.offer(5, b"f5", False)  # the broker delivers 5 late
    conn.offer(7, b"f7", False)
    conn.offer(8, b"f8", False)
    assert transport.written == [b"f6", b"f7", b"f8"]


async def test_go_live_never_moves_the_position_back() -> None:
    """A covered seq below what was already sent changes nothing."""
    conn, transport = _connection()
    conn.offer(3, b"f3", False)
    conn.hold()
    conn.go_live(1)
    conn.offer(2, b"f2", False)
    assert transport.written == [b"f3"]
