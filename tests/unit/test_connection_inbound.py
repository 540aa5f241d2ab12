"""What a connection does with the client's frames: messages in order (those sent
before a close frame too), pings answered, the close handshake, limits."""

from __future__ import annotations

import asyncio

import pytest

from scribeline.connection import _INBOX_HIGH, _INBOX_LOW
from scribeline.errors import RateLimited
from scribeline.protocols.frames import text_frame
from tests.unit.fake_socket import client_frame, connection


def _text(data: str) -> bytes:
    return client_frame(0x1, data.encode())


async def test_messages_come_in_order_and_then_none_after_the_client_closes() -> None:
    """A producer's messages sent before its close frame are all handed out before
    the close is answered (with the client's code)."""
    conn, socket = connection()
    socket.feed(_text("a") + _text("b") + client_frame(0x8, (1000).to_bytes(2, "big")))
    assert socket.close_frames == []  # not yet: two messages are still to be taken
    assert (await conn.next_message()).data == "a"  # type: ignore[union-attr]
    assert (await conn.next_message()).data == "b"  # type: ignore[union-attr]
    assert await conn.next_message() is None
    assert socket.close_frames == [(1000, b"")]
    assert socket.closed


async def test_a_subscriber_is_told_of_each_message_and_of_the_end() -> None:
    conn, socket = connection()
    told: list[str] = []
    conn.on_message(lambda: told.append("message"), lambda: told.append("end"))
    socket.feed(_text("ping"))
    assert told == ["message"]
    assert conn.take_message().data == "ping"  # type: ignore[union-attr]
    assert conn.take_message() is None
    socket.feed(client_frame(0x8, b""))
    assert told == ["message", "end"]
    assert socket.close_frames == [(1000, b"")]  # no status from the client: 1000


async def test_pings_are_answered_and_count_against_the_rate() -> None:
    conn, socket = connection(messages_per_second=2)
    socket.feed(client_frame(0x9, b"1") + client_frame(0x9, b"2"))
    assert [f for f in socket.frames if f[0] == 0xA] == [(0xA, b"1"), (0xA, b"2")]
    socket.feed(client_frame(0x9, b"3"))
    assert [f for f in socket.frames if f[0] == 0xA] == [(0xA, b"1"), (0xA, b"2")]
    with pytest.raises(RateLimited):
        conn.take_message()


async def test_messages_past_the_rate_are_refused_when_taken() -> None:
    conn, socket = connection(messages_per_second=1)
    socket.feed(_text("a") + _text("b") + _text("c"))
    assert conn.take_message() is not None
    with pytest.raises(RateLimited):
        conn.take_message()
    assert conn.take_message() is None  # refused: "c" was never read


async def test_a_paced_connection_is_slowed_down_not_refused() -> None:
    conn, socket = connection(messages_per_second=50, pace=True)
    socket.feed(b"".join(_text(str(i)) for i in range(60)))
    loop = asyncio.get_running_loop()
    started = loop.time()
    taken = [(await conn.next_message()).data for _ in range(60)]  # type: ignore[union-attr]
    assert taken == [str(i) for i in range(60)]
    assert loop.time() - started >= 10 / 50 * 0.9  # 10 past the burst of 50, at 50/s


async def test_a_full_inbox_stops_reading_the_socket_until_it_drains() -> None:
    conn, socket = connection(messages_per_second=1000)
    socket.feed(b"".join(_text(str(i)) for i in range(_INBOX_HIGH)))
    assert not socket.reading
    for _ in range(_INBOX_HIGH - _INBOX_LOW - 1):
        await conn.next_message()
    assert not socket.reading
    await conn.next_message()
    assert socket.reading


async def test_a_protocol_error_closes_with_its_code() -> None:
    conn, socket = connection()
    told: list[str] = []
    conn.on_message(lambda: told.append("message"), lambda: told.append("end"))
    socket.feed(client_frame(0x1, b"\xff"))
    assert socket.close_frames == [(1007, b"text message is not UTF-8")]
    assert told == ["end"] and socket.closed


async def test_our_close_waits_for_the_clients_and_ignores_data_meanwhile() -> None:
    """The close handshake: our frame, then the client's answer ends it; a client
    that never answers is cut off after the close timeout."""
    conn, socket = connection()
    await conn.close(1001)
    assert socket.close_frames == [(1001, b"")] and socket.closed

    conn, socket = connection(close_timeout=0.05)
    socket.answers_close = False
    told: list[str] = []
    conn.on_message(lambda: told.append("message"), lambda: told.append("end"))
    loop = asyncio.get_running_loop()
    started = loop.time()
    closing = asyncio.create_task(conn.close(1000))
    await asyncio.sleep(0)
    socket.feed(_text("late"))  # data after our close frame is dropped
    await closing
    assert loop.time() - started >= 0.05  # the client never answered: cut off at the timeout
    assert socket.closed and told == ["end"] and not conn._inbox


async def test_a_close_frame_behind_unread_messages_does_not_make_our_close_wait() -> None:
    """The client's close came after messages nobody takes any more (we close on our
    own account): our close frame goes and the socket is released at once."""
    conn, socket = connection(close_timeout=30)
    socket.answers_close = False
    socket.feed(_text("a") + client_frame(0x8, (1000).to_bytes(2, "big")))
    await asyncio.wait_for(conn.close(1013), 5)
    assert socket.close_frames == [(1013, b"")] and socket.closed


async def test_a_close_decided_before_the_clients_close_arrives_is_still_sent() -> None:
    """Our close is written when decided: a client close in the same turn gets no
    second frame and ours is not lost."""
    conn, socket = connection()
    socket.answers_close = False
    conn.offer(1, text_frame(b"{}"), True)  # the stream's last event closes the connection
    socket.feed(client_frame(0x8, (1000).to_bytes(2, "big")))
    await conn.close(1000)
    assert socket.close_frames == [(1000, b"")]


async def test_too_many_pings_are_refused_after_the_messages_before_them() -> None:
    """Pings past the rate refuse the connection as a message past it would, once the
    messages sent before them have been taken (a producer acknowledges those)."""
    conn, socket = connection(messages_per_second=2)
    socket.feed(_text("a") + client_frame(0x9, b"") + client_frame(0x9, b""))
    socket.feed(_text("after the refusal"))  # not read any more
    assert (await conn.next_message()).data == "a"  # type: ignore[union-attr]
    with pytest.raises(RateLimited):
        await conn.next_message()
    assert not socket.reading and socket.close_frames == []  # the endpoint reports, closes


async def test_write_paced_waits_for_the_socket_to_drain() -> None:
    conn, socket = connection()
    conn.pause_writing()
    writing = asyncio.create_task(conn.write_paced(b"frame"))
    await asyncio.sleep(0)
    assert not writing.done() and socket.written == []
    conn.resume_writing()
    await writing
    assert socket.written == [b"frame"]
