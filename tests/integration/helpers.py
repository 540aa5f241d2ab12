"""Machinery for the integration suite: a real server process, the admin CLI, clients.

Everything here talks to the server the way a user would: a subprocess started with
``python -m scribeline serve``, the admin CLI on the same data directory, REST over
aiohttp, WebSockets through the ``websockets`` client, and a hand-rolled raw WebSocket
client for what a well-behaved library will not do (never read, ignore pings).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import queue
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONT",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "RECV_TIMEOUT",
    "TIMESTAMP_RE",
    "Api",
    "RawWebSocket",
    "Response",
    "ServerProcess",
    "Tenant",
    "assert_timestamp",
    "check_established",
    "check_status_snapshot",
    "collect_until_closed",
    "connect_ingest",
    "connect_live",
    "expect_close",
    "expect_refusal",
    "new_sid",
    "open_live",
    "read_until_seq",
    "recv_json",
    "running_server",
    "send_json",
    "transcript",
]

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
CLI_TIMEOUT = 60.0
RECV_TIMEOUT = 10.0
READY_RE = re.compile(r"^Scribeline listening on http://127\.0\.0\.1:(\d+)$")
TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
KEY_RE = re.compile(r"^scl_[A-Za-z0-9_-]+$")


# --------------------------------------------------------------------------- server


@dataclass(frozen=True)
class Tenant:
    """An organization with one API key per scope combination the tests need."""

    org: str
    rw: str
    read: str
    write: str


@dataclass
class ServerProcess:
    """One ``scribeline serve`` subprocess on a free port with its own data directory."""

    data_dir: Path
    env_overrides: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    stdout_lines: list[str] = field(default_factory=list)
    #: ``serve``, or ``demo`` for the server with its simulations.
    command: str = "serve"
    _lines: queue.Queue[str | None] = field(default_factory=queue.Queue)

    @property
    def stderr_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.stderr.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_base(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCRIBELINE_")}
        env.update(self.env_overrides)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def start(self) -> None:
        """Start the server: on a free port the first time, on the same port (and data
        directory) again after :meth:`stop`, so that clients reconnect to one address."""
        # The server creates its data directory itself (mode 0700).
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._lines = queue.Queue()  # a stopped process's stdout ended with a None
        stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scribeline",
                self.command,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=self._env(),
        )
        stderr.close()
        lines = self._lines
        proc = self.proc

        def pump() -> None:
            # Keep draining stdout for the life of the process so it never blocks on a pipe.
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                self.stdout_lines.append(line)
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, name="server-stdout", daemon=True).start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise RuntimeError(
                    f"server did not print its ready line within {STARTUP_TIMEOUT} s\n"
                    f"stdout: {self.stdout_lines}\nstderr:\n{self.stderr_text()[-4000:]}"
                )
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                code = self.proc.wait()
                raise RuntimeError(
                    f"server exited with {code} before it was ready\n"
                    f"stdout: {self.stdout_lines}\nstderr:\n{self.stderr_text()[-4000:]}"
                )
            match = READY_RE.match(line)
            if match:
                self.port = int(match.group(1))
                return

    def expect_line(self, pattern: str, timeout: float = STARTUP_TIMEOUT) -> re.Match[str]:
        """Wait for the next stdout line (after the ready line) that matches ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(f"the server exited before printing {pattern!r}")
            match = regex.search(line)
            if match:
                return match
        raise AssertionError(f"no line matching {pattern!r} within {timeout} s")

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def terminate(self) -> None:
        """Send SIGTERM without waiting."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> int:
        """SIGTERM the server and wait for it; kill it if it does not exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc is not None else 0
        self.terminate()
        try:
            return self.wait()
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def cli(self, *args: str) -> str:
        """Run the admin CLI against this server's data directory; return its stdout."""
        result = subprocess.run(
            [sys.executable, "-m", "scribeline", *args, "--data-dir", str(self.data_dir)],
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            env=self._env(),
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"scribeline {' '.join(args)} exited {result.returncode}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result.stdout

    def create_key(self, org: str, scopes: str) -> str:
        out = self.cli("keys", "create", "--org", org, "--scopes", scopes)
        key = out.strip().splitlines()[-1].strip()
        assert KEY_RE.match(key), f"keys create did not print a key on its last line: {out!r}"
        return key

    def create_tenant(self, org: str) -> Tenant:
        self.cli("orgs", "create", org)
        return Tenant(
            org=org,
            rw=self.create_key(org, "read,write"),
            read=self.create_key(org, "read"),
            write=self.create_key(org, "write"),
        )


@contextlib.contextmanager
def running_server(data_dir: Path, env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """Start a server for the duration of the block; SIGTERM it afterwards."""
    server = ServerProcess(data_dir=data_dir, env_overrides=dict(env or {}))
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------- data


def new_sid(prefix: str = "CA") -> str:
    """A fresh Twilio-like call SID (34 characters)."""
    return prefix + uuid.uuid4().hex


def transcript(
    content: str = "Hello, how can I help you today?",
    *,
    speaker: str = "assistant",
    is_final: bool = True,
    confidence: float | None = 0.95,
    segment_start: float = 5.2,
    segment_end: float = 7.1,
    segment_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A transcript ingest body (PROTOCOL section 6)."""
    body: dict[str, Any] = {
        "content": content,
        "speaker": speaker,
        "is_final": is_final,
        "confidence": confidence,
        "segment_start": segment_start,
        "segment_end": segment_end,
    }
    if segment_id is not None:
        body["segment_id"] = segment_id
    body.update(extra)
    return body


def assert_timestamp(value: Any) -> None:
    """Assert an ISO 8601 UTC timestamp with milliseconds and a Z."""
    assert isinstance(value, str) and TIMESTAMP_RE.match(value), f"bad timestamp {value!r}"


# --------------------------------------------------------------------------- REST


@dataclass
class Response:
    status: int
    body: Any
    text: str
    headers: dict[str, str]


_NO_BODY = object()
_SELF_KEY = object()


class Api:
    """A REST client bound to one server and one API key."""

    def __init__(self, session: aiohttp.ClientSession, server: ServerProcess, key: str | None):
        self.session = session
        self.server = server
        self.key = key

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = _NO_BODY,
        data: bytes | str | None = None,
        key: Any = _SELF_KEY,
        headers: dict[str, str] | None = None,
    ) -> Response:
        hdrs: dict[str, str] = {}
        use_key = self.key if key is _SELF_KEY else key
        if use_key is not None:
            hdrs["Authorization"] = f"Bearer {use_key}"
        if json_body is not _NO_BODY:
            data = json.dumps(json_body)
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        async with self.session.request(
            method, self.server.base_url + path, data=data, headers=hdrs
        ) as resp:
            text = await resp.text()
            try:
                body = json.loads(text) if text else None
            except ValueError:
                body = None
            return Response(resp.status, body, text, dict(resp.headers))

    async def create_call(self, sid: str | None = None, **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "call_sid": sid or new_sid(),
            "to_phone_number": "+1234567890",
            "customer_phone_number": "+0987654321",
            "call_type": "inbound",
        }
        body.update(fields)
        resp = await self.request("POST", "/v1/calls", json_body=body)
        assert resp.status == 201, f"create call: {resp.status} {resp.text}"
        assert isinstance(resp.body, dict)
        return resp.body

    async def post_transcript(self, sid: str, body: dict[str, Any]) -> int:
        resp = await self.request("POST", f"/v1/calls/{sid}/transcripts", json_body=body)
        assert resp.status == 201, f"post transcript: {resp.status} {resp.text}"
        seq = resp.body["seq"]
        assert isinstance(seq, int)
        return seq

    async def post_transcripts(self, sid: str, bodies: list[dict[str, Any]]) -> list[int]:
        resp = await self.request("POST", f"/v1/calls/{sid}/transcripts", json_body=bodies)
        assert resp.status == 201, f"post batch: {resp.status} {resp.text}"
        seqs = resp.body["seqs"]
        assert isinstance(seqs, list)
        return seqs

    async def post_status(
        self, sid: str, status: str, metadata: dict[str, Any] | None = None
    ) -> int:
        body: dict[str, Any] = {"status": status, "metadata": metadata or {}}
        resp = await self.request("POST", f"/v1/calls/{sid}/status", json_body=body)
        assert resp.status == 201, f"post status: {resp.status} {resp.text}"
        seq = resp.body["seq"]
        assert isinstance(seq, int)
        return seq

    async def get_call(self, sid: str) -> dict[str, Any]:
        """The call with the first page of its final transcript."""
        resp = await self.request("GET", f"/v1/calls/{sid}")
        assert resp.status == 200, f"get call: {resp.status} {resp.text}"
        assert isinstance(resp.body, dict)
        return resp.body

    async def final_transcript(self, sid: str, limit: int = 1000) -> list[dict[str, Any]]:
        """Every final of the call, following ``next_cursor`` page by page."""
        segments: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            query = f"?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
            resp = await self.request("GET", f"/v1/calls/{sid}{query}")
            assert resp.status == 200, f"get call: {resp.status} {resp.text}"
            segments += resp.body["transcript"]
            cursor = resp.body["next_cursor"]
            if cursor is None:
                return segments


# --------------------------------------------------------------------------- WebSocket


def _auth_kwargs(key: str | None, method: str, query: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if key is None:
        return kwargs
    if method == "query":
        query["token"] = key
    elif method == "header":
        kwargs["additional_headers"] = {"Authorization": f"Bearer {key}"}
    elif method == "subprotocol":
        kwargs["subprotocols"] = [Subprotocol(f"burki-token-{key}")]
    else:
        raise ValueError(method)
    return kwargs


async def _connect(
    server: ServerProcess,
    path: str,
    key: str | None,
    method: str,
    query: dict[str, Any],
    **kwargs: Any,
) -> ClientConnection:
    query = {k: v for k, v in query.items() if v is not None}
    kwargs = {**_auth_kwargs(key, method, query), **kwargs}
    url = server.ws_base + path + ("?" + urlencode(query) if query else "")
    kwargs.setdefault("ping_interval", None)  # client pings are not what we test
    kwargs.setdefault("open_timeout", RECV_TIMEOUT)
    kwargs.setdefault("close_timeout", 5)
    try:
        return await connect(url, **kwargs)
    except InvalidStatus as exc:
        raise AssertionError(
            f"WebSocket upgrade of {path} refused with HTTP {exc.response.status_code}: "
            f"{exc.response.body!r}; the protocol requires accepting it"
        ) from exc


async def connect_live(
    server: ServerProcess,
    sid: str,
    key: str | None,
    *,
    method: str = "query",
    since: int | None = None,
    **kwargs: Any,
) -> ClientConnection:
    """Open ``/live-transcript/{sid}`` without reading anything."""
    return await _connect(
        server, f"/live-transcript/{sid}", key, method, {"since": since}, **kwargs
    )


async def connect_ingest(
    server: ServerProcess, sid: str, key: str | None, *, method: str = "header", **kwargs: Any
) -> ClientConnection:
    """Open the producer WebSocket ``/v1/ingest/{sid}``."""
    return await _connect(server, f"/v1/ingest/{sid}", key, method, {}, **kwargs)


async def recv_json(ws: ClientConnection, within: float = RECV_TIMEOUT) -> dict[str, Any]:
    """Receive one message; it must be a JSON object in a text frame."""
    try:
        raw = await asyncio.wait_for(ws.recv(), within)
    except TimeoutError:
        raise AssertionError(f"no message within {within} s") from None
    assert isinstance(raw, str), f"server sent a binary frame: {raw[:80]!r}"
    msg = json.loads(raw)
    assert isinstance(msg, dict), f"server sent a non-object: {raw[:200]}"
    return msg


async def send_json(ws: ClientConnection, obj: Any) -> None:
    await ws.send(json.dumps(obj))


async def expect_close(ws: ClientConnection, within: float = RECV_TIMEOUT) -> int:
    """Wait for the server's close frame (no data message may come first); return its code."""
    try:
        raw = await asyncio.wait_for(ws.recv(), within)
    except ConnectionClosed as exc:
        assert exc.rcvd is not None, f"connection dropped without a close frame ({exc})"
        return exc.rcvd.code
    except TimeoutError:
        raise AssertionError(f"connection not closed within {within} s") from None
    raise AssertionError(f"expected the connection to close, got a message: {str(raw)[:300]}")


async def collect_until_closed(
    ws: ClientConnection, within: float = RECV_TIMEOUT
) -> tuple[list[dict[str, Any]], int]:
    """Read messages until the server closes; return them and the close code."""
    msgs: list[dict[str, Any]] = []
    while True:
        try:
            raw = await asyncio.wait_for(ws.recv(), within)
        except ConnectionClosed as exc:
            assert exc.rcvd is not None, f"connection dropped without a close frame ({exc})"
            return msgs, exc.rcvd.code
        except TimeoutError:
            raise AssertionError(
                f"no message or close within {within} s after {len(msgs)} messages"
            ) from None
        assert isinstance(raw, str)
        msgs.append(json.loads(raw))


def check_established(msg: dict[str, Any], sid: str) -> None:
    assert msg.get("type") == "connection_established", msg
    assert msg["call_sid"] == sid
    assert msg["message"] == "Connected to live transcript stream"
    assert_timestamp(msg["timestamp"])


def check_status_snapshot(msg: dict[str, Any], sid: str) -> None:
    assert msg.get("type") == "call_status", f"step 2 must be the call_status snapshot: {msg}"
    assert msg["call_sid"] == sid
    assert "seq" not in msg, f"the call_status snapshot must carry no seq: {msg}"
    assert isinstance(msg["metadata"], dict)
    assert_timestamp(msg["timestamp"])


async def open_live(
    server: ServerProcess,
    sid: str,
    key: str,
    *,
    since: int | None = None,
    method: str = "query",
    **kwargs: Any,
) -> tuple[ClientConnection, dict[str, Any]]:
    """Connect and read steps 1 and 2; return the connection and the status snapshot."""
    ws = await connect_live(server, sid, key, method=method, since=since, **kwargs)
    check_established(await recv_json(ws), sid)
    snapshot = await recv_json(ws)
    check_status_snapshot(snapshot, sid)
    return ws, snapshot


async def read_until_seq(
    ws: ClientConnection, seq: int, within: float = RECV_TIMEOUT
) -> list[dict[str, Any]]:
    """Read sequenced events up to and including ``seq``; every message must carry a seq."""
    msgs: list[dict[str, Any]] = []
    while True:
        msg = await recv_json(ws, within)
        assert "seq" in msg, f"expected a sequenced event, got {msg}"
        msgs.append(msg)
        assert msg["seq"] <= seq, f"passed seq {seq} without seeing it: {[m['seq'] for m in msgs]}"
        if msg["seq"] == seq:
            return msgs


async def expect_refusal(
    server: ServerProcess,
    path: str,
    key: str | None,
    *,
    method: str = "query",
    query: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], ClientConnection]:
    """Connect, expect exactly one ``error`` message and then close 1008."""
    ws = await _connect(server, path, key, method, dict(query or {}))
    try:
        msg = await recv_json(ws)
        assert msg.get("type") == "error", f"expected one error message, got {msg}"
        if path.startswith("/live-transcript/"):
            assert_timestamp(msg.get("timestamp"))  # the section 1 error shape
        assert isinstance(msg.get("message"), str) and msg["message"]
        code = await expect_close(ws)
        assert code == 1008, f"refusal closed with {code}, expected 1008 ({msg})"
    finally:
        await ws.close()
    return msg, ws


# --------------------------------------------------------------------------- raw WebSocket

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class RawWebSocket:
    """A minimal client over a non-blocking socket: no automatic pongs, no eager reads."""

    def __init__(self, sock: socket.socket, buffered: bytes, status: int, headers: dict[str, str]):
        self.sock = sock
        self.buf = bytearray(buffered)
        self.status = status
        self.headers = headers
        self.eof = False
        self.reset = False

    @classmethod
    async def connect(
        cls,
        server: ServerProcess,
        path: str,
        headers: Sequence[tuple[str, str]] = (),
        *,
        rcvbuf: int | None = None,
    ) -> RawWebSocket:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", server.port))
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: 127.0.0.1:{server.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in headers),
        ]
        await loop.sock_sendall(sock, ("\r\n".join(lines) + "\r\n\r\n").encode())
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 1024), RECV_TIMEOUT)
            if not chunk:
                raise AssertionError(f"server closed during the handshake: {bytes(buf)!r}")
            buf += chunk
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        parsed = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            parsed[name.strip().lower()] = value.strip()
        return cls(sock, rest, status, parsed)

    async def _fill(self, within: float) -> bool:
        """Read more bytes; False at EOF or reset."""
        loop = asyncio.get_running_loop()
        try:
            chunk = await asyncio.wait_for(loop.sock_recv(self.sock, 262144), within)
        except (ConnectionResetError, BrokenPipeError):
            self.reset = True
            return False
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    async def read_frame(self, within: float = RECV_TIMEOUT) -> tuple[int, bytes] | None:
        """Return (opcode, payload) of the next frame, or None when the connection ended.

        Raises TimeoutError when nothing complete arrives in time.
        """
        deadline = time.monotonic() + within
        while True:
            frame = self._parse()
            if frame is not None:
                return frame
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            if not await self._fill(remaining):
                return None

    def _parse(self) -> tuple[int, bytes] | None:
        buf = self.buf
        if len(buf) < 2:
            return None
        opcode = buf[0] & 0x0F
        masked = buf[1] & 0x80
        length = buf[1] & 0x7F
        pos = 2
        if length == 126:
            if len(buf) < 4:
                return None
            (length,) = struct.unpack_from("!H", buf, 2)
            pos = 4
        elif length == 127:
            if len(buf) < 10:
                return None
            (length,) = struct.unpack_from("!Q", buf, 2)
            pos = 10
        mask = b""
        if masked:
            if len(buf) < pos + 4:
                return None
            mask = bytes(buf[pos : pos + 4])
            pos += 4
        if len(buf) < pos + length:
            return None
        payload = bytes(buf[pos : pos + length])
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        del buf[: pos + length]
        return opcode, payload

    async def send_frame(self, opcode: int, payload: bytes, *, fin: bool = True) -> None:
        """Send one masked frame, as a client must."""
        mask = os.urandom(4)
        head = bytearray([(0x80 if fin else 0) | opcode])
        n = len(payload)
        if n < 126:
            head.append(0x80 | n)
        elif n < 65536:
            head.append(0x80 | 126)
            head += struct.pack("!H", n)
        else:
            head.append(0x80 | 127)
            head += struct.pack("!Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        await asyncio.get_running_loop().sock_sendall(self.sock, bytes(head) + mask + masked)

    def close(self) -> None:
        self.sock.close()
