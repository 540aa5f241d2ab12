"""A connection's join rules: held events go out after history, each seq at most once."""

from __future__ import annotations

from scribeline.connection import Connection
from tests.unit.fake_socket import FakeSocket, connection


def _connection() -> tuple[Connection, FakeSocket]:
    return connection()


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
