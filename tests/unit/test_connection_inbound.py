"""What a connection does with the client's frames: messages in order (those sent
before a close frame too), pings answered, the close handshake, limits."""

from __future__ import annotations

import asyncio

import pytest

from scribeline.connection import _INBOX_HIGH, _INBOX_LOW
from scribeline.errors import RateLimited
from tests.unit.fake_socket import FakeSocket, client_frame, connection


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
    conn.close_soon(1013)  # decided (a slow consumer), its task not yet run
    socket.feed(client_frame(0x8, (1000).to_bytes(2, "big")))  # the client closes too
    await conn.close(1000)
    assert socket.close_frames == [(1013, b"")]  # ours, once; not an echo of the client's


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


async def test_a_producer_answers_what_it_took_before_the_clients_close() -> None:
    """An acknowledging connection hands out the messages sent before the client's
    close, then None; its answers still go out, and its own close follows them."""
    conn, socket = connection(acknowledges=True, pace=True)
    socket.feed(_text("a") + _text("b") + client_frame(0x8, (1000).to_bytes(2, "big")))
    taken = []
    while (message := await conn.next_message()) is not None:
        taken.append(message.data)
    assert socket.close_frames == []  # not before the answers
    for _ in taken:
        conn.send(b'{"type":"ack"}')  # the appends commit; the acks go out
    await conn.close(1000)
    assert taken == ["a", "b"]
    assert socket.texts == [b'{"type":"ack"}'] * 2
    assert socket.close_frames == [(1000, b"")]


async def test_a_producer_that_never_closes_is_closed_after_the_clients_close() -> None:
    conn, socket = connection(acknowledges=True, close_timeout=0.05)
    socket.feed(client_frame(0x8, (1001).to_bytes(2, "big")))
    assert await conn.next_message() is None
    assert socket.close_frames == []
    await asyncio.wait_for(socket.closing.wait(), 1)  # twice the close timeout later
    assert socket.close_frames == [(1001, b"")]


async def test_a_refusal_while_joining_reaches_the_endpoint_when_it_registers() -> None:
    conn, socket = connection(messages_per_second=2)
    socket.feed(client_frame(0x9, b"") * 3)  # past the rate before anyone listens
    told: list[str] = []
    conn.on_message(lambda: told.append("message"), lambda: told.append("end"))
    assert told == ["message"]
    with pytest.raises(RateLimited):
        conn.take_message()


@pytest.mark.parametrize("cause", ["refusal", "full inbox"])
async def test_our_close_reads_the_clients_close_even_when_reading_had_stopped(
    cause: str,
) -> None:
    """A refusal or a full inbox stops reading; our close must still see the client's
    answer rather than wait for the close timeout."""
    conn, socket = connection(messages_per_second=1 if cause == "refusal" else 1000)
    if cause == "refusal":
        socket.feed(_text("a") + _text("b"))
    else:
        socket.feed(b"".join(_text(str(i)) for i in range(_INBOX_HIGH + 6)))
    assert not socket.reading
    await asyncio.wait_for(conn.close(1008), 0.5)  # the close timeout is 1 s
    assert socket.close_frames == [(1008, b"")] and socket.closed


async def test_next_message_returns_once_it_has_answered_the_clients_close() -> None:
    """Even while the socket lingers (output queued for a client that stopped reading)."""
    conn, socket = connection(socket=FakeSocket(lingers=True))
    socket.feed(_text("a") + client_frame(0x8, (1000).to_bytes(2, "big")))
    assert await conn.next_message() is not None
    assert await asyncio.wait_for(conn.next_message(), 0.5) is None


async def test_a_paced_message_is_not_handed_out_once_the_key_is_revoked() -> None:
    conn, socket = connection(acknowledges=True, pace=True, messages_per_second=10)
    socket.feed(b"".join(_text(str(i)) for i in range(12)))
    for _ in range(10):
        await conn.next_message()  # the burst
    taking = asyncio.create_task(conn.next_message())  # waits for its turn in the rate
    await asyncio.sleep(0)
    conn.revoke()
    assert await taking is None


async def test_large_waiting_messages_stop_reading_before_their_count_does() -> None:
    conn, socket = connection(messages_per_second=1000, max_message=100_000)
    socket.feed(b"".join(_text("x" * 90_000) for _ in range(3)))
    assert not socket.reading  # 270,000 bytes waiting: past the byte bound, at 3 messages
    for _ in range(3):
        await conn.next_message()
    assert socket.reading
