"""The WebSocket endpoint skeleton: join, serve, leave and close, errors reported once."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from scribeline.api.websocket import Endpoint
from scribeline.auth import Credentials
from scribeline.broker import BrokerUnavailable
from scribeline.connection import Inbound
from scribeline.errors import BotEnded, InvalidMessage, NotFound, ScribelineError
from scribeline.registry import Registry
from tests.unit.fake_socket import client_frame, connection

CREDENTIALS = Credentials("token", None)


class FakeTransport:
    """The client's socket: open, or gone (the peer went away)."""

    def __init__(self, gone: bool) -> None:
        self.gone = gone

    def is_closing(self) -> bool:
        return self.gone


class FakeConnection:
    """Stands in for Connection: records what is sent and how it closes (the first
    close wins, as with the real one)."""

    def __init__(self, steps: list[str], *, peer_gone: bool = False) -> None:
        self.closing = False
        self.steps = steps
        self.transport = FakeTransport(peer_gone)

    def send(self, payload: bytes) -> None:
        self.steps.append("send " + orjson.loads(payload)["error"])

    def uncork(self) -> None:
        pass

    async def close(self, code: int, reason: str = "") -> None:
        if not self.closing:
            self.closing = True
            self.steps.append(f"close {code} {reason}".rstrip())


def _render(error: ScribelineError) -> bytes:
    return orjson.dumps(error.to_dict())


async def _run(
    join_result: Any = "state",
    join_error: Exception | None = None,
    serve_error: Exception | None = None,
    peer_gone: bool = False,
    **options: Any,
) -> list[str]:
    steps: list[str] = []

    async def join(conn: Any, credentials: Credentials) -> Any:
        steps.append("join " + str(credentials.token))
        if join_error is not None:
            raise join_error
        return join_result

    async def serve(conn: Any, state: str) -> None:
        steps.append("serve " + state)
        if serve_error is not None:
            raise serve_error

    async def leave(conn: Any, state: str) -> None:
        steps.append("leave " + state)

    options.setdefault("render", _render)
    endpoint = Endpoint(join, serve, leave=leave, **options)
    conn = FakeConnection(steps, peer_gone=peer_gone)
    await endpoint.run(conn, CREDENTIALS)  # type: ignore[arg-type]
    return steps


async def test_a_clean_session_joins_serves_leaves_and_closes_normally() -> None:
    """Without errors, leave runs after serve and the connection closes with 1000."""
    assert await _run() == ["join token", "serve state", "leave state", "close 1000"]


async def test_a_join_error_refuses_without_serving_or_leaving() -> None:
    """A join error is sent in the endpoint's format, then the connection closes with
    the error's close code and name; nothing was joined, so nothing is left."""
    steps = await _run(join_error=NotFound("Call not found"))
    assert steps == ["join token", "send not_found", "close 1008 not_found"]


async def test_a_join_with_nothing_to_serve_closes_normally() -> None:
    """A join that returns None (a bot that has ended) closes with 1000, nothing sent."""
    assert await _run(join_result=None) == ["join token", "close 1000"]


async def test_a_serve_error_that_keeps_the_connection_is_reported_then_left() -> None:
    """An error whose kind leaves a connection open is reported; the session still
    ends with leave and a normal close once serve has returned."""
    steps = await _run(serve_error=InvalidMessage("bad"))
    assert steps == [
        "join token",
        "serve state",
        "send invalid_message",
        "leave state",
        "close 1000",
    ]


async def test_an_ending_error_closes_with_its_own_code() -> None:
    """An error listed as ending closes with its code and name although its kind
    usually keeps the connection (a bot producer's bot_ended)."""
    steps = await _run(serve_error=BotEnded("ended"), ending=(BotEnded,))
    assert steps[2:] == ["send bot_ended", "close 1000 bot_ended", "leave state"]


async def test_without_a_renderer_every_error_closes_with_its_code_only() -> None:
    """A format with no error message gets no message; even an error that would keep
    the connection closes it with its close code and name."""
    steps = await _run(serve_error=InvalidMessage("bad"), render=None)
    assert steps[2:] == ["close 1008 invalid_message", "leave state"]


async def test_an_internal_error_reaches_the_client_only_as_a_generic_one() -> None:
    """An unexpected exception goes out as internal_error with 1011, never its text."""
    steps = await _run(serve_error=RuntimeError("secret detail"))
    assert steps[2:] == ["send internal_error", "close 1011 internal_error", "leave state"]


async def test_a_broker_outage_closes_with_try_again_later() -> None:
    """A broker that cannot be reached (a ConnectionError of our own side, while the
    client is still there) closes with 1013 broker_unavailable, so the client
    reconnects; it is not taken for the peer going away (a silent 1000, which a
    bot's subscriber reads as the bot's end)."""
    steps = await _run(serve_error=BrokerUnavailable("redis down"), render=None)
    assert steps[2:] == ["close 1013 broker_unavailable", "leave state"]


async def test_a_peer_that_went_away_is_not_reported() -> None:
    """A connection error because the client's socket is gone is routine: nothing is
    sent, nothing logged, the session just ends."""
    steps = await _run(serve_error=ConnectionResetError("gone"), peer_gone=True)
    assert steps == ["join token", "serve state", "leave state", "close 1000"]


async def test_a_subscriber_is_answered_per_message_and_leaves_when_it_closes() -> None:
    """An ``answer`` endpoint holds no task between messages: each message is
    answered in order; when the client closes, leave runs and the close completes."""
    registry = Registry(20, 20)
    conn, socket = connection(registry)
    steps: list[str] = []
    left = asyncio.Event()

    async def join(conn: Any, credentials: Credentials) -> str:
        return "joined"

    async def answer(conn: Any, state: str, message: Inbound) -> None:
        await asyncio.sleep(0)  # an answer that awaits (a storage read)
        steps.append(f"{state} {message.data}")

    async def leave(conn: Any, state: str) -> None:
        steps.append("leave")
        left.set()

    endpoint = Endpoint(join, None, _render, leave, answer=answer)
    await endpoint.run(conn, CREDENTIALS)
    assert not registry._tasks  # joined and quiet: no task left
    socket.feed(client_frame(0x1, b"a") + client_frame(0x1, b"b"))
    socket.feed(client_frame(0x1, b"c"))
    socket.feed(client_frame(0x8, (1000).to_bytes(2, "big")))
    await left.wait()
    await registry.close_all(1001)
    assert steps == ["joined a", "joined b", "joined c", "leave"]
    assert socket.close_frames == [(1000, b"")]


async def test_an_answer_that_fails_reports_leaves_and_closes() -> None:
    registry = Registry(20, 20)
    conn, socket = connection(registry)
    left = asyncio.Event()

    async def join(conn: Any, credentials: Credentials) -> str:
        return "joined"

    async def answer(conn: Any, state: str, message: Inbound) -> None:
        raise NotFound("Call CA1 not found")

    async def leave(conn: Any, state: str) -> None:
        left.set()

    await Endpoint(join, None, _render, leave, answer=answer).run(conn, CREDENTIALS)
    socket.feed(client_frame(0x1, b"request_status"))
    await left.wait()
    await registry.close_all(1001)
    assert [orjson.loads(t)["error"] for t in socket.texts] == ["not_found"]
    assert socket.close_frames == [(1008, b"not_found")]
