"""Reading a client's WebSocket frames (RFC 6455 section 5). Pure: bytes in, messages out.

:class:`FrameReader` is fed the bytes a client sends after the upgrade, in
order, and returns the complete messages they finish: text (decoded),
binary, ping, pong and close. Fragmented messages are reassembled; control
frames may come between their fragments. Anything the RFC says must fail
the connection raises :class:`FrameError` with the close code to send:

* 1002: reserved bits or opcodes, an unmasked frame (section 5.1), a
  fragmented or oversized control frame, a continuation with nothing to
  continue or a new message inside a fragmented one, a bad close payload;
* 1007: a text message or close reason that is not UTF-8;
* 1009: a message larger than ``max_message`` bytes, refused from its
  header before its payload is buffered.

Compression is never negotiated, so RSV1 is as reserved as RSV2 and RSV3.
An idle reader holds no buffer: a read that ends on a frame boundary (the
usual case) leaves nothing behind.
"""

from __future__ import annotations

from typing import Final

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - the C extension ships with websockets' wheels
    from websockets.utils import apply_mask

__all__ = [
    "BINARY",
    "CLOSE",
    "MAX_FRAGMENTS",
    "PING",
    "PONG",
    "TEXT",
    "FrameError",
    "FrameReader",
    "Message",
    "close_payload",
]

CONTINUATION: Final = 0x0
TEXT: Final = 0x1
BINARY: Final = 0x2
CLOSE: Final = 0x8
PING: Final = 0x9
PONG: Final = 0xA

_DATA = frozenset((TEXT, BINARY))
_CONTROL = frozenset((CLOSE, PING, PONG))

#: A complete message: (opcode, payload). Text is decoded; a close is (code, reason).
Message = tuple[int, "str | bytes | tuple[int, str]"]

#: The largest payload of a control frame (section 5.5).
_MAX_CONTROL = 125
#: The most frames one message may be split into (empty fragments cost memory too).
MAX_FRAGMENTS: Final = 1024


class FrameError(Exception):
    """The client broke the protocol: close with ``code`` (and ``reason``)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _valid_close_code(code: int) -> bool:
    """Codes a peer may send in a close frame (section 7.4, and the IANA registry)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def close_payload(payload: bytes) -> tuple[int, str]:
    """A received close frame's (code, reason); 1005 (no status) when it has none."""
    if not payload:
        return 1005, ""
    if len(payload) == 1:
        raise FrameError(1002, "close frame payload of one byte")
    code = int.from_bytes(payload[:2], "big")
    if not _valid_close_code(code):
        raise FrameError(1002, f"invalid close code {code}")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        raise FrameError(1007, "close reason is not UTF-8") from None
    return code, reason


class FrameReader:
    """Incremental parser of one client's frames."""

    __slots__ = ("_buf", "_fragments", "_fragments_size", "_max", "_need", "_opcode")

    def __init__(self, max_message: int) -> None:
        self._max = max_message
        #: The start of a frame that a read cut off, grown by the next reads until
        #: ``_need`` bytes are there.
        self._buf: bytearray | None = None
        self._need = 0
        self._opcode = 0  # the opcode of the fragmented message in progress, if any
        self._fragments: list[bytes] | None = None
        self._fragments_size = 0

    def feed(self, data: bytes) -> list[Message]:
        """The messages ``data`` completes (maybe none); raises :class:`FrameError`."""
        buf = self._buf
        if buf is not None:
            buf += data  # amortized: a frame trickling in is copied about once
            if len(buf) < self._need:
                return []
            data = bytes(buf)
            self._buf = None
        out: list[Message] = []
        need = 0
        pos, end = 0, len(data)
        while end - pos >= 2:
            first, second = data[pos], data[pos + 1]
            length = second & 0x7F
            head = pos + 2
            if length == 126:
                if end - head < 2:
                    need = 4
                    break
                length = int.from_bytes(data[head : head + 2], "big")
                head += 2
            elif length == 127:
                if end - head < 8:
                    need = 10
                    break
                length = int.from_bytes(data[head : head + 8], "big")
                head += 8
            self._check_header(first, second, length)
            start = head + 4
            stop = start + length
            if stop > end:
                need = stop - pos
                break
            payload = apply_mask(data[start:stop], data[head:start])
            pos = stop
            message = self._frame(first & 0x0F, bool(first & 0x80), payload)
            if message is not None:
                out.append(message)
        if pos < end:
            rest = data[pos:]
            self._buf = bytearray(rest)
            self._need = need or 2
        return out

    def _check_header(self, first: int, second: int, length: int) -> None:
        if first & 0x70:
            raise FrameError(1002, "reserved bits set")
        if not second & 0x80:
            raise FrameError(1002, "unmasked frame")
        opcode = first & 0x0F
        if opcode in _CONTROL:
            if not first & 0x80:
                raise FrameError(1002, "fragmented control frame")
            if length > _MAX_CONTROL:
                raise FrameError(1002, "control frame too long")
        elif opcode in _DATA:
            if self._fragments is not None:
                raise FrameError(1002, "a new message inside a fragmented one")
            if length > self._max:
                raise FrameError(1009, "message too big")
        elif opcode == CONTINUATION:
            if self._fragments is None:
                raise FrameError(1002, "continuation with nothing to continue")
            if self._fragments_size + length > self._max or len(self._fragments) >= MAX_FRAGMENTS:
                raise FrameError(1009, "message too big")
        else:
            raise FrameError(1002, f"reserved opcode {opcode}")

    def _frame(self, opcode: int, fin: bool, payload: bytes) -> Message | None:
        if opcode in _CONTROL:
            if opcode == CLOSE:
                return CLOSE, close_payload(payload)
            return opcode, payload
        if opcode != CONTINUATION:
            if fin:
                return _message(opcode, payload)
            self._opcode = opcode
            self._fragments = [payload]
            self._fragments_size = len(payload)
            return None
        fragments = self._fragments
        assert fragments is not None  # checked with the header
        fragments.append(payload)
        self._fragments_size += len(payload)
        if not fin:
            return None
        self._fragments, self._fragments_size = None, 0
        return _message(self._opcode, b"".join(fragments))


def _message(opcode: int, payload: bytes) -> Message:
    if opcode == TEXT:
        try:
            return TEXT, payload.decode()
        except UnicodeDecodeError:
            raise FrameError(1007, "text message is not UTF-8") from None
    return BINARY, payload
