"""The Scribeline client SDK: live streams that resume on their own, and the REST API.

Needs only the base install (no server dependencies)::

    from scribeline.client import AsyncClient, TranscriptEvent, StatusEvent

    async with AsyncClient("http://127.0.0.1:8000", api_key=key) as client:
        async with client.live_transcript("CA123", finals_only=True) as stream:
            async for event in stream:
                if isinstance(event, TranscriptEvent):
                    print(event.speaker, event.content)
"""

from scribeline.client.backoff import Backoff
from scribeline.client.client import AsyncClient, BotStream
from scribeline.client.errors import (
    ApiError,
    AuthenticationError,
    ConflictError,
    ConnectionFailedError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ReconnectFailed,
    ScribelineClientError,
    ServerError,
    StreamRefused,
)
from scribeline.client.events import (
    AlertEvent,
    BotEvent,
    CampaignCompleted,
    CampaignProgress,
    ContactCompleted,
    ErrorEvent,
    StatusEvent,
    TranscriptEvent,
)
from scribeline.client.stream import KeepAlive, RetryNotice, Stream
from scribeline.client.sync import Client
from scribeline.client.transcript import Segment, TranscriptView

__all__ = [
    "AlertEvent",
    "ApiError",
    "AsyncClient",
    "AuthenticationError",
    "Backoff",
    "BotEvent",
    "BotStream",
    "CampaignCompleted",
    "CampaignProgress",
    "Client",
    "ConflictError",
    "ConnectionFailedError",
    "ContactCompleted",
    "ErrorEvent",
    "InvalidRequestError",
    "KeepAlive",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ReconnectFailed",
    "RetryNotice",
    "ScribelineClientError",
    "Segment",
    "ServerError",
    "StatusEvent",
    "Stream",
    "StreamRefused",
    "TranscriptEvent",
    "TranscriptView",
]
