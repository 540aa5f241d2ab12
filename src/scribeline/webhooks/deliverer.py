"""The deliverer: one per node, sending what the outbox holds.

Every node runs one; none leads. Each loop claims due rows
(``WebhookStore.claim_deliveries``: a lease and a fencing token, one attempt
in flight per row across nodes, the oldest open row of each endpoint and call
only), sends each in a task of its own, and records the attempt, which settles
the row (delivered, retried after a backoff, or given up) unless its lease
was lost. An append on this node that wrote outbox rows wakes it at once;
otherwise it looks every ``poll`` seconds, and after each finished attempt
(the next event of that call is then claimable).

A node that dies mid-attempt leaves its rows ``sending``; another node (or
this one, restarted) claims them once their lease has expired and sends them
again with the same ``webhook-id``. Delivery is at least once: receivers
drop ids they have seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time

from scribeline.events import now_ms
from scribeline.log_context import detached
from scribeline.sealed import SecretBox, SecretUnreadable
from scribeline.storage import Storage
from scribeline.storage.base_webhooks import Claim, Finish
from scribeline.storage.webhook_sql import PURGE_BATCH
from scribeline.webhooks import signing
from scribeline.webhooks.policy import Policy
from scribeline.webhooks.sender import Result, Sender
from scribeline.webhooks.types import body_of, message_id

__all__ = ["Deliverer", "secret_context"]

log = logging.getLogger(__name__)

#: Seconds between two purges of old deliveries.
PURGE_EVERY = 600.0
#: Batches (``PURGE_BATCH`` rows each) one purge deletes at most.
MAX_PURGE_BATCHES = 100
#: Seconds ``close`` lets attempts in flight finish.
CLOSE_GRACE = 2.0


def secret_context(org_id: int) -> str:
    """What an endpoint's sealed secret is bound to (``sealed``)."""
    return f"org:{org_id}:webhook_secret"


class Deliverer:
    """Claims and sends webhook deliveries (see the module)."""

    def __init__(
        self,
        storage: Storage,
        box: SecretBox,
        sender: Sender,
        policy: Policy,
        *,
        lease: float,
        poll: float,
        concurrency: int,
        keep_days: float,
    ) -> None:
        self._storage = storage
        self._box = box
        self._sender = sender
        self._policy = policy
        self._lease_ms = round(lease * 1000)
        self._poll = poll
        self._concurrency = concurrency
        self._keep_ms = round(keep_days * 86_400_000)
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._purged_at = float("-inf")
        #: Attempts made by this node, and those that delivered (metrics, tests).
        self.attempts = 0
        self.delivered = 0

    def start(self) -> None:
        self._storage.observe_outbox(self.wake)
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name="webhook-deliverer", context=detached()
        )

    def wake(self) -> None:
        """Look at the outbox now (rows were written, or a replay queued)."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop claiming (the node is stopping); attempts in flight go on until
        :meth:`close`. Called first, so that a node shutting down takes no new
        deliveries only to cancel them and hold their calls for a lease."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        """Stop claiming; let attempts in flight finish briefly, then cancel them
        (their rows are sent again after their lease)."""
        await self.stop()
        if self._inflight:
            _, pending = await asyncio.wait(self._inflight, timeout=CLOSE_GRACE)
            for left in pending:
                left.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._sender.close()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            free = self._concurrency - len(self._inflight)
            if free > 0:
                claimed_at = now_ms()
                claims = await self._claim(claimed_at, free)
                for claim in claims:
                    task = asyncio.get_running_loop().create_task(self._deliver(claim, claimed_at))
                    self._inflight.add(task)
                    task.add_done_callback(self._inflight.discard)
                if len(claims) == free:
                    continue  # there may be more, and room frees as attempts end
            await self._purge()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll):
                    await self._wake.wait()

    async def _claim(self, now: int, free: int) -> list[Claim]:
        try:
            return await self._storage.claim_deliveries(
                now, self._lease_ms, secrets.token_hex(8), free
            )
        except Exception as exc:  # storage down: the next look tries again
            log.warning("webhooks: claiming deliveries failed: %s", type(exc).__name__)
            return []

    async def _deliver(self, claim: Claim, claimed_at: int) -> None:
        at = now_ms()
        if at + self._sender.longest * 1000 > claimed_at + self._lease_ms:
            # The claim took so long to commit that the attempt could outlast its
            # lease, and another node could send the event at the same time: leave
            # it to whichever node claims it once the lease has run out.
            log.warning("webhooks: a claim came too late to attempt within its lease")
            self.wake()
            return
        try:
            result = await self._attempt(claim)
            done = at + result.duration_ms
            retry_at = None
            if not result.ok and not self._policy.gives_up(claim.created_at, done):
                retry_at = done + self._policy.delay(claim.attempts)
            finish = Finish(
                claim.id, claim.endpoint_id, claim.token, at, result.duration_ms,
                result.status, result.error, result.ok, retry_at,
            )  # fmt: skip
            self.attempts += 1
            self.delivered += result.ok
            if await self._storage.finish_delivery(finish, self._policy.disable_after_ms):
                log.warning(
                    "webhooks: endpoint %d of organization %d disabled: its deliveries"
                    " failed for longer than %d s",
                    claim.endpoint_id,
                    claim.org_id,
                    self._policy.disable_after_ms // 1000,
                )
        except Exception as exc:  # the row is sent again after its lease
            log.warning("webhooks: recording a delivery failed: %s", type(exc).__name__)
        finally:
            self.wake()  # the call's next event may be claimable now

    async def _attempt(self, claim: Claim) -> Result:
        if claim.stored is None:
            return Result(None, "the event is no longer stored", 0)
        try:
            secret = self._box.open(claim.secret_sealed, secret_context(claim.org_id))
        except SecretUnreadable:
            return Result(None, "the signing secret cannot be opened (new token secret?)", 0)
        stored_type, ts, data = claim.stored
        body = body_of(
            claim.event_type, claim.stream, claim.seq, ts, stored_type, data, claim.subject
        )
        msg_id = message_id(claim.endpoint_id, claim.stream, claim.seq)
        headers = signing.headers(secret, msg_id, int(time.time()), body)
        return await self._sender.post(claim.url, body, headers)

    async def _purge(self) -> None:
        now = time.monotonic()
        if now - self._purged_at < PURGE_EVERY:
            return
        self._purged_at = now
        try:
            # Batch after batch (each a short write): a node that finishes more
            # than a batch of deliveries between two purges must not fall behind.
            for _ in range(MAX_PURGE_BATCHES):
                if await self._storage.purge_deliveries(now_ms() - self._keep_ms) < PURGE_BATCH:
                    break
        except Exception as exc:
            log.warning("webhooks: purging old deliveries failed: %s", type(exc).__name__)
