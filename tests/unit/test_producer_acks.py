"""A producer's acknowledgements: one answer per message, in order, whatever fails."""

from __future__ import annotations

import asyncio

import orjson

from scribeline.api.producer import _acknowledge
from scribeline.errors import CallEnded
from scribeline.events import EventType, StoredEvent


class _Sent:
    """Stands in for the connection: records what would be sent."""

    def __init__(self) -> None:
        self.messages: list[dict[str, object]] = []

    def send(self, payload: bytes) -> None:
        self.messages.append(orjson.loads(payload))


def _done(result: list[StoredEvent] | BaseException) -> asyncio.Future[list[StoredEvent]]:
    future: asyncio.Future[list[StoredEvent]] = asyncio.get_running_loop().create_future()
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
    return future


async def test_an_unexpected_failure_is_answered_and_the_acks_go_on() -> None:
    """An append that fails with an internal error gets ``internal_error`` with its
    ref; refusals get their own code; the acknowledgements after them still come,
    in order."""
    event = StoredEvent("call:1", 7, EventType.TRANSCRIPT, 0, {})
    acks: asyncio.Queue[object] = asyncio.Queue()
    for item in (
        ("a", _done(RuntimeError("an encoder or a store failed")), False),
        ("b", _done(CallEnded("Call CA1 has ended")), False),
        ("c", _done([event]), False),
        (None, _done([event, event]), True),
        None,
    ):
        acks.put_nowait(item)
    conn = _Sent()
    await asyncio.wait_for(_acknowledge(conn, acks), 5)  # type: ignore[arg-type]
    assert [(m["type"], m.get("error"), m.get("ref")) for m in conn.messages] == [
        ("error", "internal_error", "a"),
        ("error", "call_ended", "b"),
        ("ack", None, "c"),
        ("ack", None, None),
    ]
    assert conn.messages[0]["message"] == "Internal server error"  # no internals
    assert conn.messages[2]["seq"] == 7 and conn.messages[3]["seqs"] == [7, 7]
