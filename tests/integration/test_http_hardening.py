"""The HTTP layer against clients that misbehave: slow or silent ones, malformed
requests, unmasked frames; and what every response says about the server."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import socket
import stat
import time
from collections.abc import Iterator

import pytest
from websockets.frames import Frame, Opcode

from .helpers import (
    OP_CLOSE,
    Api,
    RawWebSocket,
    ServerProcess,
    Tenant,
    new_sid,
    running_server,
)

HEADER_TIMEOUT = 1.0
KEEPALIVE_TIMEOUT = 2.0
BODY_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "SCRIBELINE_HTTP_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "SCRIBELINE_HTTP_KEEPALIVE_TIMEOUT": str(KEEPALIVE_TIMEOUT),
        "SCRIBELINE_HTTP_BODY_TIMEOUT": str(BODY_TIMEOUT),
    }
    with running_server(tmp_path_factory.mktemp("strict") / "data", env) as server:
        yield server


@pytest.fixture(scope="module")
def strict_tenant(strict_server: ServerProcess) -> Tenant:
    return strict_server.create_tenant("strict")


async def _open(server: ServerProcess) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
    return sock


async def _closed_after(sock: socket.socket, started: float, within: float = 10.0) -> float:
    """Read until the server closes the connection; seconds since ``started``."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + within
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), remaining)
        except ConnectionResetError:
            break
        except TimeoutError:
            break
        if not chunk:
            break
    else:
        raise AssertionError("the server kept the connection open")
    if time.monotonic() >= deadline:
        raise AssertionError(f"the server kept the connection open for {within} s")
    return time.monotonic() - started


async def _request(sock: socket.socket, raw: bytes) -> bytes:
    """Send ``raw`` and read one response head and body (Content-Length framed)."""
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, raw)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), 10)
        assert chunk, f"closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += await asyncio.wait_for(loop.sock_recv(sock, 65536), 10)
    return head + b"\r\n\r\n" + body


async def test_silent_and_dribbling_clients_are_cut_off(strict_server: ServerProcess) -> None:
    """Connections that send nothing, or dribble a request head a byte at a time, are
    closed once the header timeout passes (not before, and not hours later)."""
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    silent = [await _open(strict_server) for _ in range(20)]
    dribbling = [await _open(strict_server) for _ in range(20)]
    for sock in dribbling:
        await loop.sock_sendall(sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")

    async def dribble() -> None:
        for _ in range(40):
            for sock in dribbling:
                with contextlib.suppress(OSError):  # closed by the server: the point
                    await loop.sock_sendall(sock, b"X")
            await asyncio.sleep(0.2)  # the attacker's pace

    dribbler = asyncio.create_task(dribble())
    try:
        lifetimes = await asyncio.gather(*(_closed_after(s, started) for s in silent + dribbling))
    finally:
        dribbler.cancel()
        for sock in silent + dribbling:
            sock.close()
    assert min(lifetimes) >= HEADER_TIMEOUT * 0.9, lifetimes
    assert max(lifetimes) < HEADER_TIMEOUT + 3, lifetimes


async def test_an_idle_kept_alive_connection_is_closed(strict_server: ServerProcess) -> None:
    """After a response, a connection may sit idle for the keep-alive timeout, and a
    request within it is served on the same connection."""
    sock = await _open(strict_server)
    try:
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        assert b" 200 " in await _request(sock, request)
        await asyncio.sleep(HEADER_TIMEOUT * 1.2)  # idle past the header timeout
        assert b" 200 " in await _request(sock, request)
        idle_from = time.monotonic()
        lifetime = await _closed_after(sock, idle_from)
    finally:
        sock.close()
    assert KEEPALIVE_TIMEOUT * 0.9 <= lifetime < KEEPALIVE_TIMEOUT + 3, lifetime


async def test_a_body_that_does_not_arrive_gets_408(
    strict_server: ServerProcess, strict_tenant: Tenant
) -> None:
    """A REST body that stops short is answered 408 request_timeout and the connection
    is closed."""
    sock = await _open(strict_server)
    try:
        head = (
            "POST /v1/calls HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {strict_tenant.rw}\r\nContent-Length: 1000\r\n\r\n"
        )
        response = await _request(sock, head.encode() + b'{"call_sid":')
        assert response.startswith(b"HTTP/1.1 408"), response
        assert b'"error":"request_timeout"' in response
        await _closed_after(sock, time.monotonic())
    finally:
        sock.close()


async def test_malformed_requests_log_one_line_and_no_credential(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A request line or header past the parser's limit, and garbage, each give one
    WARNING line without a traceback, and the key they carried is in no log line."""
    with running_server(tmp_path_factory.mktemp("logs") / "data") as server:
        key = server.create_tenant("logged").rw
        requests = [
            f"GET /v1/calls?token={key}&pad={'a' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n",
            f"GET /v1/calls HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}"
            f"{' ' * 9000}x\r\n\r\n",
            f"GET /live-transcript/CA1?token={key} HTTP/1.1\r\nHost: x\r\nX-Pad: {'b' * 9000}"
            "\r\n\r\n",
            f"G\x00T /?token={key} HTTP/1.1\r\n\r\n",
        ]
        for raw in requests:
            sock = await _open(server)
            try:
                response = await _request(sock, raw.encode("latin-1"))
            finally:
                sock.close()
            assert re.match(rb"HTTP/1\.[01] 4\d\d ", response), response[:200]
            assert b"\r\nServer: Scribeline\r\n" in response
        log = server.stderr_text()
    assert key not in log and key[4:20] not in log
    assert "Traceback" not in log
    warnings = [line for line in log.splitlines() if "malformed HTTP request" in line]
    assert len(warnings) == len(requests), log
    assert all(" WARNING " in line for line in warnings)


def _frame(payload: bytes, *, masked: bool) -> bytes:
    return Frame(Opcode.TEXT, payload).serialize(mask=masked)


async def _expect_protocol_error(ws: RawWebSocket) -> None:
    """Skip data frames; the server must send close 1002 and end the connection."""
    while True:
        frame = await ws.read_frame()
        assert frame is not None, "the connection ended without a close frame"
        opcode, payload = frame
        if opcode == OP_CLOSE:
            assert int.from_bytes(payload[:2], "big") == 1002, payload
            break
    assert await ws.read_frame() is None


async def test_an_unmasked_client_frame_fails_the_websocket(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """RFC 6455 5.1: an unmasked frame from a client closes the connection with 1002,
    whether it comes later or in the same packet as the upgrade request."""
    sid = new_sid()
    await api_a.create_call(sid)
    path = f"/live-transcript/{sid}?token={tenant_a.read}"
    ws = await RawWebSocket.connect(server, path)
    try:
        assert ws.status == 101
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(ws.sock, _frame(b'{"type":"ping"}', masked=True))
        await loop.sock_sendall(ws.sock, _frame(b'{"type":"ping"}', masked=False))
        await _expect_protocol_error(ws)
    finally:
        ws.close()

    # A frame in the same packet as the upgrade request, before any answer: the
    # connection ends without the frame being processed (no pong).
    sock = await _open(server)
    key = base64.b64encode(os.urandom(16)).decode()
    handshake = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, handshake + _frame(b'{"type":"ping"}', masked=False))
    received = b""
    try:
        while chunk := await asyncio.wait_for(loop.sock_recv(sock, 65536), 10):
            received += chunk
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    assert b"pong" not in received and b"connection_established" not in received, received


async def test_method_not_allowed_says_what_is_allowed(api_a: Api) -> None:
    """A 405 carries the Allow header (RFC 9110) along with the JSON error."""
    resp = await api_a.request("DELETE", "/v1/calls")
    assert resp.status == 405
    assert resp.body["error"] == "method_not_allowed"
    assert {m.strip() for m in resp.headers["Allow"].split(",")} >= {"GET", "POST"}


async def test_the_server_header_names_no_version(api_a: Api, server: ServerProcess) -> None:
    """Every kind of response says ``Server: Scribeline``, with no versions."""
    for method, path in (("GET", "/healthz"), ("GET", "/nowhere"), ("GET", "/v1/calls")):
        resp = await api_a.request(method, path)
        assert resp.headers["Server"] == "Scribeline", (path, resp.headers)
    ws = await RawWebSocket.connect(server, f"/live-transcript/{new_sid()}")
    ws.close()
    assert ws.headers["server"] == "Scribeline"


async def test_rest_refuses_credentials_in_the_query_string(api_a: Api, tenant_a: Tenant) -> None:
    """REST takes its credential from the Authorization header only: a ``token``
    query parameter is refused, with a header or without."""
    for key in (None, tenant_a.rw):
        resp = await api_a.request("GET", f"/v1/calls?token={tenant_a.rw}", key=key)
        assert resp.status == 422, resp.text
        assert resp.body["error"] == "invalid_request"
        assert "Authorization" in resp.body["message"]
    resp = await api_a.request("POST", f"/v1/tokens?token={tenant_a.rw}", key=None)
    assert resp.status == 422


async def test_the_data_directory_is_private(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A new data directory is 0700 and the database, its WAL files and the token
    secret are 0600."""
    data = tmp_path_factory.mktemp("private") / "data"
    with running_server(data) as server:
        server.create_tenant("private")  # writes, so the WAL files exist
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in data.iterdir()}
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert {"scribeline.db", "token_secret"} <= set(modes)
    assert all(mode == 0o600 for mode in modes.values()), {k: oct(v) for k, v in modes.items()}
