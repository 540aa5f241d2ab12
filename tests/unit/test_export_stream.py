"""The export handler over a real socket when the store fails after the first
page: the download is cut short (an incomplete chunked body), never a complete
file nor a second response written inside the body. The store's failure is a
small stand-in for the call service; every other part is the real application."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from scribeline.api.app import create_app
from scribeline.api.exports import PAGE
from scribeline.auth import Principal
from scribeline.config import Settings
from scribeline.domain import Call
from scribeline.errors import StorageUnavailable
from scribeline.events import EventType, StoredEvent
from scribeline.history import FinalsPage

CALL = Call(1, 1, 1, "CA1", "in-progress", None, None, None, 1_700_000_000_000, None)


class _Auth:
    async def authenticate(self, token: str) -> Principal:
        return Principal(1, frozenset({"read"}), 1)


class _Registry:
    async def close_all(self, *args: object) -> None:
        return None


class _FailingCalls:
    """The first page reads; the next fails as an unreachable store does."""

    async def get(self, org_id: int, call_sid: str) -> Call:
        return CALL

    async def transcript(self, call: Call, after: int, limit: int, max_bytes: int) -> FinalsPage:
        if after:
            raise StorageUnavailable()
        data = {"content": "hello", "speaker": "user", "is_final": True}
        events = [
            StoredEvent(call.stream, seq, EventType.TRANSCRIPT, CALL.started_at, data, False, "e")
            for seq in range(1, PAGE + 1)
        ]
        return FinalsPage(events, PAGE)


@pytest.mark.parametrize("fmt", ["vtt", "json"])
async def test_a_store_failure_mid_export_cuts_the_download_short(fmt: str) -> None:
    services = SimpleNamespace(
        settings=Settings(), auth=_Auth(), calls=_FailingCalls(), registry=_Registry()
    )
    server = TestServer(create_app(cast(Any, services)))
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            url = server.make_url(f"/v1/calls/CA1/transcript?format={fmt}")
            async with session.get(url, headers={"Authorization": "Bearer k"}) as resp:
                assert resp.status == 200
                with pytest.raises(aiohttp.ClientPayloadError):
                    await resp.read()
    finally:
        await server.close()
