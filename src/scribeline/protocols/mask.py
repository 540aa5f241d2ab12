"""Finding client frames that are not masked, in a WebSocket byte stream. Pure.

RFC 6455 section 5.1: a server MUST close the connection when it receives
an unmasked frame from a client (status 1002). The HTTP layer hands the
bytes a client sends after the upgrade to :class:`MaskCheck` before the
WebSocket reader sees them; it only reads frame headers and skips payloads.
"""

from __future__ import annotations

__all__ = ["MaskCheck"]


class MaskCheck:
    """Feed it the client's bytes in order; it says whether every frame so far is masked.

    The common case, whole frames in one read, is arithmetic per frame; a
    header split across reads is kept and completed by the next one.
    """

    __slots__ = ("_head", "_skip")

    def __init__(self) -> None:
        self._head = b""  # the start of a header that the last read cut off
        self._skip = 0  # payload bytes of the current frame still to pass over

    def feed(self, data: bytes | bytearray | memoryview) -> bool:
        """False as soon as an unmasked frame starts (the connection must fail)."""
        if self._head:
            data = self._head + bytes(data)
            self._head = b""
        end = len(data)
        pos = min(self._skip, end)
        self._skip -= pos
        while pos < end:
            if end - pos < 2:
                self._head = bytes(data[pos:])
                return True
            second = data[pos + 1]
            if not second & 0x80:
                return False
            short = second & 0x7F
            if short == 126:
                header = 8
            elif short == 127:
                header = 14
            else:
                header = 6
            if end - pos < header:
                self._head = bytes(data[pos:])
                return True
            if short == 126:
                length = int.from_bytes(data[pos + 2 : pos + 4], "big")
            elif short == 127:
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
            else:
                length = short
            pos += header + length
        if pos > end:
            self._skip = pos - end  # the rest of this frame's payload comes next
        return True
