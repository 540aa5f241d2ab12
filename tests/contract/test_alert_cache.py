"""Alert rules cached per node (alerts/service.py): a rule made, changed or
deleted through one node applies on the others at once, not when their cache
(a minute here) expires. Runs on every cluster backend (in-process, Redis)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from scribeline.alerts.service import AlertService
from scribeline.events import EventType, NewEvent, StoredEvent
from scribeline.ingest.models import CreateCall
from scribeline.ingest.publish import Publisher
from tests.contract.cluster_backends import *  # noqa: F403 - the fixtures
from tests.contract.test_cluster_services import Deployment, ServiceNode, deployment

__all__ = ["deployment"]


def _alerts(d: Deployment, node: ServiceNode) -> AlertService:
    return AlertService(d.storage, Publisher(node.broker), node.signals, cache_seconds=60)


async def _until(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll ``check`` (another node's cache: there is no event to await)."""
    async with asyncio.timeout(5):
        while not await check():  # noqa: ASYNC110 - state of another node, no event
            await asyncio.sleep(0.02)


async def test_rule_changes_reach_every_nodes_cache(deployment: Deployment) -> None:
    a_node, b_node = await deployment.node(), await deployment.node()
    a, b = _alerts(deployment, a_node), _alerts(deployment, b_node)
    org = await deployment.storage.create_org("acme")
    call = await a_node.calls.create(org.id, CreateCall(call_sid="CA1"))
    segments = iter(range(1_000_000))

    async def fires_on_b() -> bool:
        data = {"content": "a refund", "speaker": "user", "is_final": True,
                "segment_id": f"s{next(segments)}"}  # fmt: skip
        stored: list[StoredEvent] = await deployment.storage.append(
            call.stream, [NewEvent(EventType.TRANSCRIPT, data)]
        )
        return bool(await b.evaluate(call, stored))

    assert not await fires_on_b()  # B caches "no rules" for a minute
    rule = await a.create(org.id, "Refund", "keyword", {"keywords": ["refund"]}, None, True)
    await _until(fires_on_b)
    await a.update(org.id, rule.id, {"enabled": False}, {})

    async def silent_on_b() -> bool:
        return not await fires_on_b()

    await _until(silent_on_b)
    await a.update(org.id, rule.id, {"enabled": True}, {})
    await _until(fires_on_b)
    await a.delete(org.id, rule.id)
    await _until(silent_on_b)
