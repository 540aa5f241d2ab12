"""Spotting unmasked client frames in a byte stream, however it is cut up."""

from __future__ import annotations

import os
import random

import pytest
from websockets.frames import Frame, Opcode

from scribeline.protocols.mask import MaskCheck

_RNG = random.Random(7)
_SIZES = [0, 1, 5, 125, 126, 127, 1000, 65535, 65536, 70000]
_SIZES += [_RNG.randrange(0, 300) for _ in range(100)]
MASKED = b"".join(Frame(Opcode.TEXT, os.urandom(n)).serialize(mask=True) for n in _SIZES)
UNMASKED = Frame(Opcode.TEXT, b'{"type":"ping"}').serialize(mask=False)


def _feed(data: bytes, chunk: int) -> list[bool]:
    check = MaskCheck()
    return [check.feed(data[i : i + chunk]) for i in range(0, len(data), chunk)]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 13, 100, 4096, len(MASKED)])
def test_masked_frames_pass_in_any_cut(chunk: int) -> None:
    """Masked frames of every length class pass, whatever the read sizes."""
    assert all(_feed(MASKED, chunk))


@pytest.mark.parametrize("chunk", [1, 2, 3, 100, 1 << 20])
def test_an_unmasked_frame_is_found_after_masked_ones(chunk: int) -> None:
    """An unmasked frame is reported in the read that reaches its second byte."""
    results = _feed(MASKED + UNMASKED + MASKED, chunk)
    first_bad = results.index(False)
    assert (first_bad + 1) * chunk >= len(MASKED) + 2
    assert all(results[:first_bad])
