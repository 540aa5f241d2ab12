"""A stand-in for the asyncio transport under a Connection, with a scripted client.

It records every frame the server writes (``frames``, ``texts``,
``close_frames``), and its client answers the server's close frame with its
own (``answers_close``), as a well-behaved peer does. As a real transport,
it holds what the client sends while reading is paused, and closing it
reports the connection lost on the next turn (``lingers``: only once the
test says, as when output is still queued for a client that does not read).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from scribeline.connection import Connection
from scribeline.registry import Registry


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True) -> bytes:
    """A frame as a client sends it (masked unless told otherwise)."""
    first = (0x80 if fin else 0) | opcode
    length = len(payload)
    if length < 126:
        head = bytes((first, (0x80 if masked else 0) | length))
    elif length < 1 << 16:
        head = bytes((first, (0x80 if masked else 0) | 126)) + length.to_bytes(2, "big")
    else:
        head = bytes((first, (0x80 if masked else 0) | 127)) + length.to_bytes(8, "big")
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each unmasked frame in ``data``."""
    out, pos = [], 0
    while pos < len(data):
        opcode, length, pos = data[pos] & 0x0F, data[pos + 1] & 0x7F, pos + 2
        if length == 126:
            length, pos = int.from_bytes(data[pos : pos + 2], "big"), pos + 2
        elif length == 127:
            length, pos = int.from_bytes(data[pos : pos + 8], "big"), pos + 8
        out.append((opcode, data[pos : pos + length]))
        pos += length
    return out


class FakeSocket:
    """The transport: records writes; ``buffered`` is what it reports as queued."""

    def __init__(self, *, answers_close: bool = True, lingers: bool = False) -> None:
        self.held: list[bytes] = []
        self.lingers = lingers
        self.closing = asyncio.Event()  # set when the server closes the transport
        self.written: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.reading = True
        self.buffered = 0
        self.answers_close = answers_close
        self.protocol: Connection | None = None

    # -- the asyncio transport's interface used by Connection -------------------

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.written.append(data)
        if self.answers_close and data[:1] == b"\x88" and self.protocol is not None:
            code = server_frames(data)[0][1][:2]
            asyncio.get_running_loop().call_soon(self.feed, client_frame(0x8, code))

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.closing.set()
            if not self.lingers:
                asyncio.get_running_loop().call_soon(self._lost)

    def abort(self) -> None:
        self.aborted = True
        self.lingers = False
        self.closed = False
        self.close()

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True
        held, self.held = self.held, []
        for data in held:
            asyncio.get_running_loop().call_soon(self.feed, data)

    def get_extra_info(self, name: str) -> Any:
        return None

    # -- the client ------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Bytes from the client (held while reading is paused)."""
        if not self.reading:
            self.held.append(data)
        elif self.protocol is not None and not self.closed:
            self.protocol.data_received(data)

    def _lost(self) -> None:
        if self.protocol is not None:
            self.protocol.connection_lost(None)

    # -- what the server wrote -------------------------------------------------

    @property
    def frames(self) -> list[tuple[int, bytes]]:
        return server_frames(b"".join(self.written))

    @property
    def texts(self) -> list[bytes]:
        return [payload for opcode, payload in self.frames if opcode == 0x1]

    @property
    def close_frames(self) -> list[tuple[int, bytes]]:
        return [(int.from_bytes(p[:2], "big"), p[2:]) for opcode, p in self.frames if opcode == 0x8]


def connection(
    registry: Registry | None = None, socket: FakeSocket | None = None, **options: Any
) -> tuple[Connection, FakeSocket]:
    """A Connection attached to a FakeSocket (limits as in tests: 1 MiB out, 100 msg/s)."""
    socket = socket or FakeSocket()
    options.setdefault("limit", 1 << 20)
    options.setdefault("messages_per_second", 100)
    options.setdefault("max_message", 1 << 16)
    options.setdefault("close_timeout", 1)
    registry = registry if registry is not None else Registry(20, 20)
    conn = Connection(socket, registry, **options)  # type: ignore[arg-type]
    conn.attach()
    conn.uncork()
    return conn, socket
