"""``Client``: the blocking face of :class:`AsyncClient`, for scripts.

It runs an ``AsyncClient`` on an event loop in a background thread. REST
methods block until they return; streams are plain iterators.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from types import TracebackType
from typing import Any, TypeVar

from scribeline.client.client import AsyncClient
from scribeline.client.events import BotEvent
from scribeline.client.sessions import CallEvent, CampaignEvent, OrgEvent
from scribeline.client.stream import Stream

__all__ = ["Client"]

T = TypeVar("T")


class Client:
    """``Client(base_url, api_key=...)``: every ``AsyncClient`` REST method, blocking,
    and the streams as iterators::

        with Client("http://127.0.0.1:8000", api_key=key) as client:
            for event in client.live_transcript("CA123", finals_only=True):
                print(event)
    """

    def __init__(self, base_url: str, **options: Any) -> None:
        # First, so that bad options raise before a loop and a thread exist to leak.
        self._async = AsyncClient(base_url, **options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="scribeline-client", daemon=True
        )
        self._thread.start()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):  # not a REST method (and no recursion before __init__ ran)
            raise AttributeError(name)
        method = getattr(self._async, name)
        if not inspect.iscoroutinefunction(method):
            raise AttributeError(name)

        def blocking(*args: Any, **kwargs: Any) -> Any:
            return self._run(method(*args, **kwargs))

        return blocking

    def _iterate(self, stream: Stream[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self._run(stream.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            if not self._loop.is_closed():  # else the client was closed first
                self._run(stream.aclose())

    def live_transcript(
        self, call_sid: str, since: int | None = None, *, finals_only: bool = False
    ) -> Iterator[CallEvent]:
        """See :meth:`AsyncClient.live_transcript`."""
        return self._iterate(self._async.live_transcript(call_sid, since, finals_only=finals_only))

    def campaign_progress(self, campaign_id: int) -> Iterator[CampaignEvent]:
        return self._iterate(self._async.campaign_progress(campaign_id))

    def events(
        self, topics: Sequence[str] = ("transcription", "call_status"), filter: str = "*"
    ) -> Iterator[OrgEvent]:
        return self._iterate(self._async.events(topics, filter))

    def bot_stream(self, url: str) -> Iterator[BotEvent]:
        return self._iterate(self._async.bot_stream(url))

    def close(self) -> None:
        """Close the HTTP pool and stop the background loop."""
        if self._loop.is_closed():
            return
        self._run(self._async.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
