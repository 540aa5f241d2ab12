"""A stream's history, read, filtered and sent in bounded pages.

A long call holds tens of thousands of events. Reading, filtering and
encoding them in one go would hold the event loop for seconds (every other
client waits) and the whole history in memory. Instead a range is read
``PAGE`` events at a time, each page filtered with the heads of its own
segments (``EventLog.segment_heads``, an indexed look-up), yielding to the
loop between pages: a page costs the same however long the call.

The range always ends at a head read after the subscriber attached to the
stream's live events, so it does not chase a moving head: whatever is
appended later reaches the subscriber live.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

import orjson

from scribeline.connection import Connection
from scribeline.events import EventType, StoredEvent
from scribeline.protocols.frames import text_frame
from scribeline.recovery import HistoryFilter, segment_entry
from scribeline.storage import EventLog

__all__ = ["PAGE", "FinalsPage", "finals_page", "pages", "replay"]

#: Events read, filtered and encoded between two yields to the event loop.
PAGE = 256


async def pages(
    storage: EventLog, stream: str, after: int, upto: int
) -> AsyncGenerator[tuple[int, list[StoredEvent]], None]:
    """``(covered, shown)`` for each page of ``(after, upto]``: the last seq the
    page examined and the events of it a replay shows."""
    cursor = after
    while cursor < upto:
        page = await storage.read(stream, after=cursor, limit=min(PAGE, upto - cursor))
        if not page:
            return
        cursor = page[-1].seq
        segments = {entry[1] for entry in map(segment_entry, page) if entry is not None}
        keep = HistoryFilter(await storage.segment_heads(stream, segments))
        yield cursor, [e for e in page if keep.shows(e)]
        if cursor < upto:
            await asyncio.sleep(0)  # a yield, so other clients run between pages


async def replay(
    storage: EventLog,
    conn: Connection,
    stream: str,
    after: int,
    upto: int,
    render: Callable[[StoredEvent], bytes],
) -> tuple[int, bool]:
    """Send the history ``(after, upto]`` to a joining ``conn``, paced by its
    output buffer. Returns the last seq covered (for ``Connection.go_live``)
    and whether the history ended the stream."""
    covered, ended = after, False
    async with contextlib.aclosing(pages(storage, stream, after, upto)) as history:
        async for last, shown in history:
            for event in shown:
                await conn.write_paced(text_frame(render(event)))
                ended = ended or event.closes
            covered = last
            if conn.closing:
                break
    return covered, ended


@dataclass(frozen=True, slots=True)
class FinalsPage:
    """One page of a call's final transcript; ``next_after`` continues it (None: done)."""

    events: list[StoredEvent]
    next_after: int | None


async def finals_page(
    storage: EventLog, stream: str, after: int, upto: int, limit: int, max_bytes: int
) -> FinalsPage:
    """The final transcripts after ``after`` that no later final of their segment
    replaces: at most ``limit`` of them and about ``max_bytes`` of data (at
    least one)."""
    found: list[StoredEvent] = []
    size = 0
    async with contextlib.aclosing(pages(storage, stream, after, upto)) as history:
        async for _, shown in history:
            for event in shown:
                if event.type != EventType.TRANSCRIPT or not event.data.get("is_final"):
                    continue
                found.append(event)
                size += len(orjson.dumps(event.data))
                if len(found) >= limit or size >= max_bytes:
                    # The page may hold more after ``event``: the next one starts there.
                    return FinalsPage(found, event.seq if event.seq < upto else None)
    return FinalsPage(found, None)
