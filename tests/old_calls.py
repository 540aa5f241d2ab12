"""Calls and meeting bots that ended long ago, made through the store (nothing in
the API can backdate one), and an organization's retention set through the store:
what the retention tests on every level share."""

from __future__ import annotations

from scribeline.auth import new_api_key
from scribeline.broker import open_broker
from scribeline.cluster import Signals, open_cluster
from scribeline.domain import Bot, Call
from scribeline.events import BotEventType, EventType, NewEvent
from scribeline.ingest.calls import CallService
from scribeline.ingest.campaigns import CampaignService
from scribeline.ingest.models import CreateCall
from scribeline.ingest.publish import Publisher
from scribeline.storage import Storage

__all__ = ["EVENTS_PER_CALL", "call_service", "ended_bot", "ended_call", "set_retention"]

#: Events of an ``ended_call``: its opening status, two finals and its end.
EVENTS_PER_CALL = 4


async def set_retention(storage: Storage, org_id: int, days: int | None) -> None:
    """The organization's ``retention_days`` (None: keep forever)."""
    assert await storage.update_org_settings(org_id, {"retention_days": days}) is not None


def call_service(storage: Storage) -> CallService:
    """A call service of a node of its own (its own memory cluster and broker)."""
    signals = Signals(open_cluster("memory://"))
    publisher = Publisher(open_broker("memory://"))
    campaigns = CampaignService(storage, publisher, 1.0, signals.cluster)
    return CallService(storage, publisher, campaigns, signals)


async def ended_call(storage: Storage, org_id: int, sid: str, ended_at: int) -> Call:
    """A call that started an hour before ``ended_at`` (epoch ms) and ended then,
    with two finals (one of segment ``s1``)."""
    call = await call_service(storage).create(
        org_id, CreateCall(call_sid=sid), started_at=ended_at - 3_600_000
    )
    final = {"speaker": "user", "is_final": True}
    await storage.append(
        call.stream,
        [
            NewEvent(EventType.TRANSCRIPT, {**final, "content": "hi", "segment_id": "s1"}),
            NewEvent(EventType.TRANSCRIPT, {**final, "content": "yo"}, ts=ended_at - 500),
        ],
    )
    status = {"status": "completed", "metadata": {}}
    await storage.set_call_status(
        call, NewEvent(EventType.CALL_STATUS, status, closes=True, ts=ended_at)
    )
    return call


async def ended_bot(storage: Storage, org_id: int, ended_at: int) -> Bot:
    """A meeting bot that started a second before ``ended_at`` and stopped then."""
    _, prefix, digest = new_api_key()
    key = await storage.add_api_key(org_id, prefix, digest, frozenset({"write"}), "k")
    bot = await storage.create_bot(org_id, key.id, "https://meet.example.com/x", "B", "m")
    await storage.append(
        bot.stream,
        [
            NewEvent(BotEventType.START, {}, ts=ended_at - 1000),
            NewEvent(BotEventType.STOP, {"reason": "done"}, closes=True, ts=ended_at),
        ],
    )
    return bot
