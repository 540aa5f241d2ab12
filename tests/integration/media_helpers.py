"""Helpers for media-stream tests: a server with live audio, streams, transcripts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from scribeline.demo.phone import PlayResult, play_call
from scribeline.demo.recording import Recording, load_call

from .helpers import Api, ServerProcess

#: A small engine pool: 2 decode workers, 4 local tracks (two two-track calls).
MEDIA_ENV = {
    "SCRIBELINE_SPEECH_WORKERS": "2",
    "SCRIBELINE_SPEECH_MAX_LOCAL_TRACKS": "4",
    "SCRIBELINE_MEDIA_START_TIMEOUT": "2",
    "SCRIBELINE_MEDIA_END_GRACE": "1",
}

RECORDING: Recording = load_call()


def media_url(server: ServerProcess, token: str | None = None) -> str:
    return f"{server.ws_base}/v1/media-stream" + (f"/{token}" if token else "")


async def play(
    server: ServerProcess, call_sid: str, token: str | None = None, **kwargs: Any
) -> PlayResult:
    """Play the recorded call into the server's media stream."""
    kwargs.setdefault("speed", 0)
    return await play_call(media_url(server, token), RECORDING, call_sid=call_sid, **kwargs)


async def wait_for_status(api: Api, sid: str, status: str, within: float = 60.0) -> dict[str, Any]:
    """The call once it has ``status`` (polled: the REST API has no push)."""
    deadline = time.monotonic() + within
    while True:
        resp = await api.request("GET", f"/v1/calls/{sid}")
        if resp.status == 200 and resp.body["status"] == status:
            assert isinstance(resp.body, dict)
            return resp.body
        assert time.monotonic() < deadline, f"call {sid} not {status} in {within} s: {resp.text}"
        await asyncio.sleep(0.2)  # polling interval of a REST-only condition
