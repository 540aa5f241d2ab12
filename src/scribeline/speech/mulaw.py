"""G.711 mu-law (Twilio's 8 kHz media payload) to linear PCM and back, with numpy.

Decoding is one lookup in a 256-entry table, because the stdlib ``audioop``
module is gone in Python 3.13. :func:`encode` exists for tests and benchmarks
that make mu-law from synthetic PCM; the server only decodes.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["SILENCE", "ULAW_TO_INT16", "encode", "to_float32", "to_int16"]

#: The mu-law byte for a zero sample (what Twilio sends for silence).
SILENCE = 0xFF

_BIAS = 0x84
_CLIP = 32635


def _table() -> NDArray[np.int16]:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(codes & 0x80, -magnitude, magnitude).astype(np.int16)


#: ``ULAW_TO_INT16[byte]`` is the 16-bit linear sample of one mu-law byte.
ULAW_TO_INT16: NDArray[np.int16] = _table()
ULAW_TO_INT16.flags.writeable = False
_TO_FLOAT32: NDArray[np.float32] = (ULAW_TO_INT16 / 32768.0).astype(np.float32)
_TO_FLOAT32.flags.writeable = False


def to_int16(mulaw: bytes) -> NDArray[np.int16]:
    """16-bit linear samples of ``mulaw``, one per byte."""
    return ULAW_TO_INT16[np.frombuffer(mulaw, dtype=np.uint8)]


def to_float32(mulaw: bytes) -> NDArray[np.float32]:
    """Samples of ``mulaw`` in [-1, 1), one per byte."""
    return _TO_FLOAT32[np.frombuffer(mulaw, dtype=np.uint8)]


def encode(pcm: NDArray[np.int16]) -> bytes:
    """Mu-law bytes of 16-bit linear samples (the G.711 encoder, vectorised)."""
    sample = pcm.astype(np.int32)
    sign = np.where(sample < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(sample), _CLIP) + _BIAS
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    exponent = np.clip(exponent, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    codes: NDArray[np.uint8] = (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)
    return codes.tobytes()
