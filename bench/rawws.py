"""A minimal WebSocket client on a bare asyncio protocol: the cheapest load generator.

It does the HTTP/1.1 upgrade itself, parses server frames straight out of
``data_received`` (no task wake-up per message, no message queue) and hands each
text payload to a callback with the time it arrived. It answers pings, takes part
in the closing handshake and masks what it sends (RFC 6455 section 5.3). It is a
benchmark tool, not a general client: no extensions, no fragmented sends, and
fragmented receives are joined only for text.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
from collections.abc import Callable
from typing import cast

from websockets.frames import Frame, Opcode

__all__ = ["HandshakeError", "OnText", "RawWebSocket", "connect"]

#: Called with each text payload and the wall-clock time (ns) its bytes arrived.
OnText = Callable[[bytes, int], None]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEAD = 16 * 1024


class HandshakeError(Exception):
    """The server answered the upgrade with something other than 101."""


def _masked(opcode: Opcode, payload: bytes) -> bytes:
    return Frame(opcode, payload).serialize(mask=True)


class RawWebSocket(asyncio.Protocol):
    """One client connection. ``opened`` resolves on 101, ``closed`` with the close code."""

    def __init__(self, host: str, port: int, path: str, on_text: OnText) -> None:
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[int | None] = loop.create_future()
        self.close_code: int | None = None
        self.transport: asyncio.Transport | None = None
        self._request_head = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        )
        self._key = base64.b64encode(os.urandom(16))
        self._on_text = on_text
        self._buf = b""
        self._upgraded = False
        self._close_sent = False
        self._fragments: list[bytes] = []
        self._writable = asyncio.Event()
        self._writable.set()

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but quack like one.
        self.transport = cast(asyncio.Transport, transport)
        head = f"{self._request_head}Sec-WebSocket-Key: {self._key.decode()}\r\n\r\n"
        self.transport.write(head.encode())

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        if self._buf:
            data = self._buf + data
            self._buf = b""
        if not self._upgraded:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                if len(data) > _MAX_HEAD:
                    self._fail(HandshakeError("response head too long"))
                else:
                    self._buf = data
                return
            if not self._check_head(data[:end]):
                return
            data = data[end + 4 :]
        self._frames(data, now)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionResetError("closed during handshake"))
        if not self.closed.done():
            self.closed.set_result(self.close_code)
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # -- frames ----------------------------------------------------------------------

    def _check_head(self, head: bytes) -> bool:
        lines = head.split(b"\r\n")
        status = lines[0].split(b" ", 2)
        if len(status) < 2 or status[1] != b"101":
            self._fail(HandshakeError(lines[0].decode(errors="replace")))
            return False
        accept = base64.b64encode(hashlib.sha1(self._key + _GUID).digest())
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if headers.get(b"sec-websocket-accept") != accept:
            self._fail(HandshakeError("bad Sec-WebSocket-Accept"))
            return False
        self._upgraded = True
        self.opened.set_result(None)
        return True

    def _frames(self, data: bytes, now: int) -> None:
        pos = 0
        size = len(data)
        while size - pos >= 2:
            length = data[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(data[start : start + 2], "big")
                start += 2
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(data[start : start + 8], "big")
                start += 8
            end = start + length
            if end > size:
                break
            first = data[pos]
            pos = end
            opcode = first & 0x0F
            if opcode == 1 and first & 0x80:
                self._on_text(data[start:end], now)
            else:
                self._control(opcode, bool(first & 0x80), data[start:end], now)
        if pos < size:
            self._buf = data[pos:]

    def _control(self, opcode: int, fin: bool, payload: bytes, now: int) -> None:
        if opcode == 1 or (opcode == 0 and self._fragments):
            self._fragments.append(payload)
            if fin:
                whole = b"".join(self._fragments)
                self._fragments.clear()
                self._on_text(whole, now)
        elif opcode == 9:  # ping
            self._write(_masked(Opcode.PONG, payload))
        elif opcode == 8:  # close
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            if not self._close_sent:
                self._close_sent = True
                self._write(_masked(Opcode.CLOSE, payload[:2]))
            # The server closes TCP first (RFC 6455 7.1.1); do not wait long for it.
            if self.transport is not None:
                asyncio.get_running_loop().call_later(2.0, self.abort)

    def _write(self, frame: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame)

    def _fail(self, exc: Exception) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
        self.abort()

    # -- API -------------------------------------------------------------------------

    def send_text(self, payload: bytes) -> None:
        """Queue one masked text frame (check :meth:`drain` for backpressure)."""
        self._write(_masked(Opcode.TEXT, payload))

    async def drain(self) -> None:
        """Wait while the transport's write buffer is above its high-water mark."""
        await self._writable.wait()

    async def close(self, code: int = 1000) -> int | None:
        """The closing handshake; returns the server's close code (bound it with a timeout)."""
        if not self._close_sent and not self.closed.done():
            self._close_sent = True
            self._write(_masked(Opcode.CLOSE, code.to_bytes(2, "big")))
        try:
            return await asyncio.shield(self.closed)
        except asyncio.CancelledError:
            self.abort()
            raise

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def connect(host: str, port: int, path: str, on_text: OnText) -> RawWebSocket:
    """Open a connection and complete the upgrade (bound it with a timeout)."""
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(
        lambda: RawWebSocket(host, port, path, on_text), host, port
    )
    try:
        await proto.opened
    except BaseException:
        proto.abort()
        raise
    return proto
