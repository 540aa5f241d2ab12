"""The client frame reader: every message whole and in order however the bytes are
cut, and every violation RFC 6455 names failing with its close code."""

from __future__ import annotations

import pytest

from scribeline.protocols.ws_reader import (
    BINARY,
    CLOSE,
    MAX_FRAGMENTS,
    PING,
    PONG,
    TEXT,
    FrameError,
    FrameReader,
)
from tests.unit.fake_socket import client_frame


def _read(data: bytes, max_message: int = 1 << 16) -> list[tuple[int, object]]:
    return FrameReader(max_message).feed(data)


def _error(data: bytes, max_message: int = 1 << 16) -> int:
    with pytest.raises(FrameError) as raised:
        FrameReader(max_message).feed(data)
    return raised.value.code


def test_messages_of_every_size_and_kind_round_trip() -> None:
    """Text (decoded), binary, ping and pong, with 7-bit, 16-bit and 64-bit lengths."""
    big = "é" * 40_000  # 80,000 bytes: a 64-bit length
    data = (
        client_frame(TEXT, b'{"type":"ping"}')
        + client_frame(TEXT, ("x" * 300).encode())
        + client_frame(TEXT, big.encode())
        + client_frame(BINARY, b"\x00\xff")
        + client_frame(PING, b"hi")
        + client_frame(PONG, b"")
    )
    assert _read(data, 1 << 20) == [
        (TEXT, '{"type":"ping"}'),
        (TEXT, "x" * 300),
        (TEXT, big),
        (BINARY, b"\x00\xff"),
        (PING, b"hi"),
        (PONG, b""),
    ]


def test_bytes_cut_anywhere_give_the_same_messages() -> None:
    """Fed one byte at a time, or cut at every position, nothing is lost or doubled."""
    data = client_frame(TEXT, b"a" * 200) + client_frame(PING, b"p") + client_frame(TEXT, b"b")
    expected = _read(data)
    reader = FrameReader(1 << 16)
    one_by_one = [m for i in range(len(data)) for m in reader.feed(data[i : i + 1])]
    assert one_by_one == expected
    for cut in range(len(data)):
        reader = FrameReader(1 << 16)
        assert reader.feed(data[:cut]) + reader.feed(data[cut:]) == expected


def test_fragments_are_reassembled_with_control_frames_between_them() -> None:
    data = (
        client_frame(TEXT, b"hel", fin=False)
        + client_frame(PING, b"1")
        + client_frame(0x0, b"lo ", fin=False)
        + client_frame(0x0, "wörld".encode())
    )
    assert _read(data) == [(PING, b"1"), (TEXT, "hello wörld")]


def test_a_character_split_across_fragments_is_decoded_whole() -> None:
    encoded = "é".encode()
    data = client_frame(TEXT, encoded[:1], fin=False) + client_frame(0x0, encoded[1:])
    assert _read(data) == [(TEXT, "é")]


def test_close_frames_give_their_code_and_reason() -> None:
    assert _read(client_frame(CLOSE, b"")) == [(CLOSE, (1005, ""))]
    assert _read(client_frame(CLOSE, (1000).to_bytes(2, "big") + b"bye")) == [
        (CLOSE, (1000, "bye"))
    ]
    assert _read(client_frame(CLOSE, (4001).to_bytes(2, "big"))) == [(CLOSE, (4001, ""))]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (client_frame(TEXT, b"x", masked=False), 1002),  # section 5.1
        (bytes((0xC1, 0x80)) + b"\0\0\0\0", 1002),  # RSV1 without an extension
        (bytes((0x83, 0x80)) + b"\0\0\0\0", 1002),  # a reserved data opcode
        (bytes((0x8B, 0x80)) + b"\0\0\0\0", 1002),  # a reserved control opcode
        (client_frame(PING, b"x", fin=False), 1002),  # a fragmented control frame
        (client_frame(PING, b"x" * 126), 1002),  # a control frame over 125 bytes
        (client_frame(0x0, b"x"), 1002),  # a continuation of nothing
        (client_frame(TEXT, b"a", fin=False) + client_frame(TEXT, b"b"), 1002),
        (client_frame(CLOSE, b"\x03"), 1002),  # a one-byte close payload
        (client_frame(CLOSE, (999).to_bytes(2, "big")), 1002),
        (client_frame(CLOSE, (1005).to_bytes(2, "big")), 1002),  # never sent on the wire
        (client_frame(CLOSE, (1006).to_bytes(2, "big")), 1002),
        (client_frame(CLOSE, (2000).to_bytes(2, "big")), 1002),
        (client_frame(CLOSE, (1000).to_bytes(2, "big") + b"\xff"), 1007),
        (client_frame(TEXT, b"\xff\xfe"), 1007),  # text that is not UTF-8
        (client_frame(TEXT, "é".encode()[:1]), 1007),  # a character cut off
    ],
)
def test_protocol_violations_fail_with_their_close_code(data: bytes, code: int) -> None:
    assert _error(data) == code


def test_a_message_over_the_limit_is_refused_from_its_header() -> None:
    """1009 before the payload arrives: an oversized frame is never buffered, and
    fragments count toward the limit together."""
    header_only = client_frame(TEXT, b"x" * 2000)[:8]  # 16-bit length + mask, no payload
    assert _error(header_only, max_message=1000) == 1009
    assert _read(client_frame(TEXT, b"x" * 1000), max_message=1000) == [(TEXT, "x" * 1000)]
    fragments = client_frame(TEXT, b"x" * 600, fin=False) + client_frame(0x0, b"x" * 600)
    assert _error(fragments, max_message=1000) == 1009


def test_a_message_in_too_many_fragments_is_refused() -> None:
    """Empty fragments cost nothing against the size limit but are bounded too."""
    data = client_frame(TEXT, b"", fin=False) + client_frame(0x0, b"", fin=False) * MAX_FRAGMENTS
    assert _error(data) == 1009


def test_an_idle_reader_keeps_nothing() -> None:
    """A read that ends on a frame boundary leaves no buffer behind."""
    reader = FrameReader(1 << 16)
    frame = client_frame(TEXT, b"x" * 10)
    assert reader.feed(frame[:5]) == [] and reader._buf is not None and len(reader._buf) == 5
    assert reader.feed(frame[5:]) == [(TEXT, "x" * 10)]
    assert reader._buf is None
