"""Validated shapes of the meeting-bot API: creating a bot, and each event its
producer sends (PROTOCOL.md section 4). Unknown fields are refused and types
are strict, as for every request model (``ingest.models.STRICT``)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AnyUrl, BaseModel, Field, UrlConstraints, model_validator

from scribeline.events import BotEventType
from scribeline.ingest.models import STRICT, Text
from scribeline.protocols.meeting_bot import MAX_CHAT_CHARS

__all__ = ["EVENT_MODELS", "BotEventData", "CreateBot", "event_data"]

MeetingUrl = Annotated[
    AnyUrl, UrlConstraints(max_length=2048, allowed_schemes=["http", "https"], host_required=True)
]


class _Strict(BaseModel):
    model_config = STRICT


class CreateBot(_Strict):
    meeting_url: MeetingUrl
    bot_name: Text = Field(min_length=1, max_length=100)
    transcription_model: Text = Field(min_length=1, max_length=100)


class BotEventData(_Strict):
    """Base of the per-type ``data`` models."""


class _Empty(BotEventData):
    pass


class _Transcript(BotEventData):
    transcript: Text = Field(max_length=10_000)
    start: float = Field(ge=0)
    end: float = Field(ge=0)
    speaker: int | None = Field(None, ge=0)
    speaker_name: Text | None = Field(None, max_length=200)

    @model_validator(mode="after")
    def _ordered(self) -> _Transcript:
        if self.end < self.start:
            raise ValueError("end must not be before start")
        return self


class _Chat(BotEventData):
    username: Text = Field(max_length=200)
    content: Text = Field(min_length=1, max_length=MAX_CHAT_CHARS)
    user_avatar: Text | None = Field(None, max_length=2048)


class _Participant(BotEventData):
    participantId: Text = Field(min_length=1, max_length=100)
    participantName: Text | None = Field(None, max_length=200)


class _Stop(BotEventData):
    reason: Text | None = Field(None, min_length=1, max_length=100)


class _Error(BotEventData):
    message: Text = Field(min_length=1, max_length=2000)


EVENT_MODELS: dict[str, type[BotEventData]] = {
    BotEventType.START: _Empty,
    BotEventType.TS: _Transcript,
    BotEventType.CHAT_MESSAGE: _Chat,
    BotEventType.PARTICIPANT_TRACKED: _Participant,
    BotEventType.STARTED_SPEAKING: _Participant,
    BotEventType.STOPPED_SPEAKING: _Participant,
    BotEventType.STOP: _Stop,
    BotEventType.ERROR: _Error,
}


def event_data(event_type: str, data: Any) -> dict[str, Any]:
    """``data`` validated for ``event_type`` (raises ``pydantic.ValidationError``).

    Optional fields are kept as null, except a stop's reason, which is left
    out when the bot gave none.
    """
    model = EVENT_MODELS[event_type].model_validate({} if data is None else data)
    return model.model_dump(exclude_none=event_type == BotEventType.STOP)
