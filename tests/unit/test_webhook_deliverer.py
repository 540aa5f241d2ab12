"""The deliverer's housekeeping, against a storage that only counts."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from scribeline.sealed import SecretBox
from scribeline.storage import Storage
from scribeline.storage.base_webhooks import Claim, Finish
from scribeline.storage.webhook_sql import PURGE_BATCH
from scribeline.webhooks.deliverer import Deliverer, secret_context
from scribeline.webhooks.policy import Policy
from scribeline.webhooks.sender import Result, Sender
from scribeline.webhooks.signing import new_secret

BOX = SecretBox("k" * 32)


class _Purges:
    """A storage with ``left`` finished rows to purge, in batches."""

    def __init__(self, left: int) -> None:
        self.left = left
        self.calls = 0

    async def purge_deliveries(self, before: int) -> int:
        self.calls += 1
        taken = min(self.left, PURGE_BATCH)
        self.left -= taken
        return taken


def _deliverer(storage: Any) -> Deliverer:
    return Deliverer(
        cast(Storage, storage), BOX, Sender(False, 1.0, 1), Policy(),
        lease=5.0, poll=1.0, concurrency=1, keep_days=7.0,
    )  # fmt: skip


async def test_a_purge_deletes_batch_after_batch_until_none_is_left() -> None:
    """More finished rows than one batch: one purge turn deletes them all, so the
    log cannot outgrow the purges of a busy node."""
    storage = _Purges(2 * PURGE_BATCH + 5)
    await _deliverer(storage)._purge()
    assert storage.left == 0
    assert storage.calls == 3


class _Outbox:
    """A storage with one due delivery, counting claims and keeping finishes."""

    def __init__(self) -> None:
        self.claims = 0
        self.finished: list[Finish] = []
        self.claimed = asyncio.Event()
        sealed = BOX.seal(new_secret(), secret_context(1))
        self._due = [
            Claim(7, 1, "https://example.com/", sealed, 1, "call:1", 2, "transcript.final",
                  1, 0, "t", ("transcript", 0, {"content": "hi"}), "CA1")
        ]  # fmt: skip

    def observe_outbox(self, hook: Any) -> None:
        pass

    async def claim_deliveries(
        self, now: int, lease_ms: int, token: str, limit: int
    ) -> list[Claim]:
        self.claims += 1
        due, self._due = self._due, []
        self.claimed.set()
        return due

    async def finish_delivery(self, finish: Finish, disable_after_ms: int) -> bool:
        self.finished.append(finish)
        return False

    async def purge_deliveries(self, before: int) -> int:
        return 0


class _HeldSender(Sender):
    """Holds each attempt until released, then answers 204."""

    def __init__(self) -> None:
        super().__init__(False, 1.0, 1)
        self.sending = asyncio.Event()
        self.release = asyncio.Event()

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Result:
        self.sending.set()
        await self.release.wait()
        return Result(204, None, 1)


async def test_a_stopping_node_claims_nothing_more_and_its_attempt_in_flight_settles() -> None:
    """Shutdown: ``stop`` ends the claims at once (no delivery is taken only to be
    cancelled, its call held for a lease); the attempt in flight goes on, and
    ``close`` records its outcome."""
    storage = _Outbox()
    sender = _HeldSender()
    deliverer = Deliverer(
        cast(Storage, storage), BOX, sender, Policy(),
        lease=5.0, poll=30.0, concurrency=4, keep_days=7.0,
    )  # fmt: skip
    deliverer.start()
    async with asyncio.timeout(5):
        await sender.sending.wait()
    await deliverer.stop()
    claims = storage.claims
    deliverer.wake()  # an append that wrote outbox rows, on a stopping node
    sender.release.set()
    async with asyncio.timeout(5):
        await deliverer.close()
    assert storage.claims == claims, "a stopped deliverer claimed again"
    (finish,) = storage.finished
    assert finish.outbox_id == 7 and finish.delivered


async def test_a_claim_too_late_to_end_within_its_lease_is_not_attempted(
    monkeypatch: Any,
) -> None:
    """The claim's commit waited so long that the attempt could outlast the lease
    (and another node send the event too): nothing is sent, nothing recorded;
    the row goes to whoever claims it after the lease."""
    clock = iter(range(0, 10**9, 3000))  # each reading 3 s after the last
    monkeypatch.setattr("scribeline.webhooks.deliverer.now_ms", lambda: next(clock))
    storage = _Outbox()
    sender = _HeldSender()
    sender.release.set()
    deliverer = Deliverer(
        cast(Storage, storage), BOX, sender, Policy(),
        lease=4.0, poll=30.0, concurrency=1, keep_days=7.0,
    )  # fmt: skip
    (claim,) = await storage.claim_deliveries(0, 4000, "t", 1)
    await deliverer._deliver(claim, claimed_at=next(clock))  # attempt would end at +5 s
    assert not sender.sending.is_set()
    assert storage.finished == []
    await deliverer.close()
