"""The meeting-bot realtime stream (PROTOCOL.md section 4). Pure.

Subscribers get ``{"type": .., "data": {..}}`` text frames; read-write
subscribers may send actions, which go to the bot's producer unchanged in
meaning. An action that is malformed is simply not performed: this format
has no way to refuse one (its ``error`` type means the bot failed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from scribeline.events import StoredEvent

__all__ = [
    "MAX_CHAT_CHARS",
    "PING",
    "STOP_ACTION",
    "ChatAction",
    "StopAction",
    "decode_action",
    "encode_action",
    "encode_event",
    "encode_org_event",
    "encode_terminal",
]

#: The longest chat message a subscriber may ask the bot to post.
MAX_CHAT_CHARS = 2000

#: The application-level keep-alive every subscriber gets (once a minute by default).
PING: bytes = orjson.dumps({"type": "ping", "data": {}})


@dataclass(frozen=True, slots=True)
class ChatAction:
    """``{"action":"chat-message","data":{"content":..}}``: post in the meeting chat."""

    content: str


@dataclass(frozen=True, slots=True)
class StopAction:
    """``{"action":"stop"}``: end the bot."""


STOP_ACTION = StopAction()


def decode_action(data: str | bytes) -> ChatAction | StopAction | None:
    """The action a client frame asks for, or None if it asks for nothing valid."""
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(message, dict):
        return None
    action = message.get("action")
    if action == "stop":
        return STOP_ACTION
    if action == "chat-message":
        payload = message.get("data")
        content = payload.get("content") if isinstance(payload, dict) else None
        if isinstance(content, str) and content.strip() and len(content) <= MAX_CHAT_CHARS:
            return ChatAction(content)
    return None


def encode_action(action: ChatAction | StopAction) -> bytes:
    """The action as the bot's producer receives it."""
    if isinstance(action, ChatAction):
        return orjson.dumps({"action": "chat-message", "data": {"content": action.content}})
    return orjson.dumps({"action": "stop"})


def encode_event(event: StoredEvent) -> bytes:
    """A stored bot event as subscribers see it."""
    return orjson.dumps({"type": event.type, "data": event.data})


def encode_terminal(event: StoredEvent) -> bytes | None:
    """Only the event that ends the bot (what its producer is told of its own stream)."""
    return encode_event(event) if event.closes else None


def encode_org_event(bot_id: str, event: StoredEvent) -> bytes:
    """A bot event in the organization event stream (topic ``meeting``)."""
    body: dict[str, Any] = {
        "type": event.type,
        "bot_id": bot_id,
        "seq": event.seq,
        "data": event.data,
    }
    return orjson.dumps(body)
