"""Server frames, packed by hand, are byte for byte what a WebSocket library makes."""

from __future__ import annotations

import pytest
from websockets.frames import Close, Frame, Opcode

from scribeline.protocols.frames import PING_FRAME, close_frame, pong_frame, text_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65_535, 65_536, 200_000])
def test_text_frames_match_the_reference_encoding(size: int) -> None:
    payload = b"x" * size
    assert text_frame(payload) == Frame(Opcode.TEXT, payload).serialize(mask=False)


def test_control_frames_match_the_reference_encoding() -> None:
    assert Frame(Opcode.PING, b"").serialize(mask=False) == PING_FRAME
    assert pong_frame(b"abc") == Frame(Opcode.PONG, b"abc").serialize(mask=False)
    expected = Frame(Opcode.CLOSE, Close(1008, "authentication_failed").serialize())
    assert close_frame(1008, "authentication_failed") == expected.serialize(mask=False)


def test_a_long_close_reason_is_cut_on_a_character_boundary() -> None:
    frame = close_frame(1000, "é" * 100)  # 200 bytes of reason
    assert len(frame) == 2 + 2 + 122  # 61 whole characters: 122 bytes, not 123
    assert frame[4:].decode() == "é" * 61
