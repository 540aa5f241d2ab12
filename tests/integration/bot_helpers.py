"""Helpers for the meeting-bot tests: create a bot, open its URLs, drive its producer."""

from __future__ import annotations

from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from .helpers import RECV_TIMEOUT, Api, recv_json, send_json

MEETING_URL = "https://meet.example.com/abc-defg-hij"


async def create_bot(
    api: Api, *, model: str = "realtime", name: str = "Notetaker", key: Any = None
) -> dict[str, Any]:
    """``POST /v1/bots`` with the API's key (or ``key``); the 201 body."""
    kwargs: dict[str, Any] = {} if key is None else {"key": key}
    resp = await api.request(
        "POST",
        "/v1/bots",
        json_body={"meeting_url": MEETING_URL, "bot_name": name, "transcription_model": model},
        **kwargs,
    )
    assert resp.status == 201, f"creating a bot: {resp.status} {resp.text}"
    body: dict[str, Any] = resp.body
    return body


async def open_url(url: str, **kwargs: Any) -> ClientConnection:
    """Open a WebSocket URL exactly as the API handed it out."""
    kwargs.setdefault("ping_interval", None)
    kwargs.setdefault("open_timeout", RECV_TIMEOUT)
    kwargs.setdefault("close_timeout", 5)
    return await connect(url, **kwargs)


async def produce(ws: ClientConnection, kind: str, data: dict[str, Any] | None = None) -> int:
    """Send one event as the bot and return its seq from the ack (skipping actions)."""
    await send_json(ws, {"type": kind, "data": data or {}})
    while True:
        msg = await recv_json(ws)
        if "action" in msg:
            continue
        assert msg.get("type") == "ack", f"expected an ack for {kind}, got {msg}"
        seq: int = msg["seq"]
        return seq


def ts(
    text: str, start: float, end: float, speaker: int = 0, name: str | None = None
) -> dict[str, Any]:
    return {
        "transcript": text,
        "start": start,
        "end": end,
        "speaker": speaker,
        "speaker_name": name,
    }


def participant(pid: str, name: str | None = None) -> dict[str, Any]:
    return {"participantId": pid, "participantName": name}
