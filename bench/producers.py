"""Producer WebSocket clients of ``/v1/ingest/{sid}``: pipelined sends, in-order acks.

Each producer is a :class:`bench.rawws.RawWebSocket`; the server acknowledges
every message in order with ``{"type":"ack","seq":N}`` (or an ``error``), so a
FIFO of send times pairs each ack with its message.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence

import orjson

from bench import rawws
from bench.common import transcript
from bench.live import Published

__all__ = ["Producer", "open_producers", "wait_acked"]


class Producer:
    """One producer connection for one call."""

    def __init__(self, sid: str, published: Published) -> None:
        self.sid = sid
        self.ws: rawws.RawWebSocket | None = None
        self._published = published
        self._sent_at: deque[int] = deque()
        self.last_seq = 0

    @property
    def in_flight(self) -> int:
        return len(self._sent_at)

    def send(self, index: int) -> None:
        assert self.ws is not None
        self._sent_at.append(time.perf_counter_ns())
        self._published.sent += 1
        self.ws.send_text(orjson.dumps(transcript(index)))

    @property
    def closed(self) -> bool:
        return self.ws is None or self.ws.closed.done()

    def send_many(self, payloads: Sequence[bytes]) -> None:
        """Several pre-built messages at once (throughput runs)."""
        assert self.ws is not None
        now = time.perf_counter_ns()
        for payload in payloads:
            self._sent_at.append(now)
            self.ws.send_text(payload)
        self._published.sent += len(payloads)

    def on_text(self, payload: bytes, now_ns: int) -> None:
        msg = orjson.loads(payload)
        began = self._sent_at.popleft() if self._sent_at else None
        if msg.get("type") == "ack" and "seq" in msg:
            seq = int(msg["seq"])
            if self.last_seq and seq != self.last_seq + 1:
                self._published.misordered += 1
            self.last_seq = seq
            self._published.stored(self.sid, seq)
            if began is not None:
                self._published.ack_us.append((time.perf_counter_ns() - began) // 1000)
        else:
            self._published.error(f"{msg.get('error')}: {msg.get('message')}")


async def open_producers(
    host: str, port: int, token: str, sids: Sequence[str], published: Published, concurrency: int
) -> list[Producer]:
    gate = asyncio.Semaphore(concurrency)

    async def one(sid: str) -> Producer:
        producer = Producer(sid, published)
        async with gate:
            producer.ws = await rawws.connect(
                host, port, f"/v1/ingest/{sid}?token={token}", producer.on_text
            )
        return producer

    return list(await asyncio.gather(*(one(sid) for sid in sids)))


async def wait_acked(producers: Sequence[Producer], published: Published, seconds: float) -> bool:
    """Wait until every sent message is answered; False if time ran out or all closed."""
    deadline = time.monotonic() + seconds
    while published.acked + sum(published.errors.values()) < published.sent:
        if time.monotonic() > deadline:
            published.error(f"answers still missing after {seconds:.0f} s")
            return False
        if all(p.closed for p in producers):
            published.error("every producer connection closed before all were answered")
            return False
        await asyncio.sleep(0.005)
    return True
