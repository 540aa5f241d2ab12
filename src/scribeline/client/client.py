"""``AsyncClient``: the streams (reconnecting, resuming) and the REST calls."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from types import TracebackType

import httpx

from scribeline.client.backoff import DEFAULT_BACKOFF, Backoff
from scribeline.client.events import BotEvent
from scribeline.client.rest import Rest
from scribeline.client.sessions import (
    BotSession,
    CallEvent,
    CampaignEvent,
    CampaignSession,
    EventsSession,
    LiveTranscriptSession,
    OrgEvent,
)
from scribeline.client.stream import DEFAULT_KEEPALIVE, KeepAlive, RetryHook, Stream

__all__ = ["AsyncClient", "BotStream"]

#: A meeting bot's server pings every 60 s: give it time before calling it a stall.
BOT_STALL_TIMEOUT = 150.0


class BotStream(Stream[BotEvent]):
    """A meeting bot's stream; on a read-write URL it also sends actions."""

    async def send_chat(self, content: str) -> None:
        """Ask the bot to post ``content`` in the meeting chat (read-write URL only;
        the bot's ``chat-message`` event shows it was done)."""
        await self.send({"action": "chat-message", "data": {"content": content}})

    async def stop_bot(self) -> None:
        """Ask the bot to leave the meeting (read-write URL only)."""
        await self.send({"action": "stop"})


class AsyncClient(Rest):
    """A Scribeline client for one server and one credential.

    ``api_key`` or ``token`` (an access token) authenticates every call; it is
    sent as a header, never in a URL. Streams reconnect on their own with
    ``backoff`` and keep alive with ``keepalive``; ``on_retry`` hears of each
    reconnection attempt (see :class:`Stream`). A server that cannot be reached
    is named at once: a REST call raises ``ConnectionFailedError``, a stream
    logs a warning and keeps trying. ``ssl_context`` verifies an ``https://``
    server, for REST and streams alike (None: the system's CAs), e.g. a private
    CA's: ``ssl.create_default_context(cafile="ca.pem")``.

    Use it as an async context manager (or call :meth:`aclose`)::

        async with AsyncClient("http://127.0.0.1:8000", api_key=key) as client:
            async with client.live_transcript("CA123") as stream:
                async for event in stream:
                    print(event)
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        token: str | None = None,
        timeout: float = 10.0,
        backoff: Backoff = DEFAULT_BACKOFF,
        keepalive: KeepAlive = DEFAULT_KEEPALIVE,
        on_retry: RetryHook | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if api_key is not None and token is not None:
            raise ValueError("give api_key or token, not both")
        self.base_url = base_url.rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        credential = api_key or token
        self._headers = {"Authorization": f"Bearer {credential}"} if credential else {}
        self._backoff = backoff
        self._keepalive = keepalive
        self._timeout = timeout
        self._on_retry = on_retry
        self._ssl = ssl_context
        super().__init__(
            httpx.AsyncClient(
                base_url=self.base_url,
                headers=self._headers,
                timeout=timeout,
                verify=ssl_context if ssl_context is not None else True,
            )
        )

    @property
    def ws_base(self) -> str:
        return "ws" + self.base_url[4:]

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connection pool (streams are closed by their own exit)."""
        await self._http.aclose()

    def live_transcript(
        self,
        call_sid: str,
        since: int | None = None,
        *,
        finals_only: bool = False,
        backoff: Backoff | None = None,
        keepalive: KeepAlive | None = None,
    ) -> Stream[CallEvent]:
        """A call's transcript and status events, each stored event once and in seq
        order across reconnections, from after ``since`` (None: from the start).

        With ``finals_only`` interim results are left out. The stream ends when
        the call does (its terminal status, then close 1000); a refusal raises
        ``StreamRefused``.
        """
        return Stream(
            LiveTranscriptSession(self.ws_base, call_sid, since, finals_only),
            headers=self._headers,
            backoff=backoff or self._backoff,
            keepalive=keepalive or self._keepalive,
            open_timeout=self._timeout,
            on_retry=self._on_retry,
            ssl_context=self._ssl,
        )

    def campaign_progress(self, campaign_id: int) -> Stream[CampaignEvent]:
        """A campaign's progress, contact results and completion (live only)."""
        return Stream(
            CampaignSession(self.ws_base, campaign_id),
            headers=self._headers,
            backoff=self._backoff,
            keepalive=self._keepalive,
            open_timeout=self._timeout,
            on_retry=self._on_retry,
            ssl_context=self._ssl,
        )

    def events(
        self, topics: Sequence[str] = ("transcription", "call_status"), filter: str = "*"
    ) -> Stream[OrgEvent]:
        """The organization's events of ``topics`` matching ``filter`` (``*``, a call
        SID, a bot id or ``assistant:<id>``); live only."""
        return Stream(
            EventsSession(self.ws_base, topics, filter),
            headers=self._headers,
            backoff=self._backoff,
            keepalive=self._keepalive,
            open_timeout=self._timeout,
            on_retry=self._on_retry,
            ssl_context=self._ssl,
        )

    def bot_stream(self, url: str, *, keepalive: KeepAlive | None = None) -> BotStream:
        """A meeting bot's events from its ``websocket_url`` or read-only URL (the URL
        carries its own token; the client's credential is not sent). Live only."""
        if not url.startswith(("ws://", "wss://")):
            raise ValueError("a bot stream URL starts with ws:// or wss://")
        keep = keepalive or KeepAlive(
            self._keepalive.ping_interval, max(self._keepalive.stall_timeout, BOT_STALL_TIMEOUT)
        )
        return BotStream(
            BotSession(url),
            backoff=self._backoff,
            keepalive=keep,
            open_timeout=self._timeout,
            on_retry=self._on_retry,
            ssl_context=self._ssl,
        )
