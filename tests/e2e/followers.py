"""Clients that keep going through faults, and the ground truth to check them against.

A :class:`Follower` subscribes to one call's live transcript and, whenever its
connection ends before the call does, resumes on the next node with
``since`` = the last seq it saw: what a client of a cluster behind a load
balancer does. It records every event it is sent, duplicates included, so a
test can assert exactly-once delivery in order.

A :class:`Writer` posts transcripts through the nodes in turn and records
what was acknowledged; refused or failed appends are retried on another node
(and counted), never assumed stored.

:func:`stored_seqs` reads the call's stream from PostgreSQL itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.e2e.cluster import Cluster
from tests.integration.helpers import connect_ingest, connect_live, recv_json, send_json, transcript
from tests.services import Postgres

__all__ = [
    "Follower",
    "PipelinedWriter",
    "Writer",
    "acked_at_least",
    "assert_exactly_once",
    "stored_seqs",
]

RETRY_PAUSE = 0.05


@dataclass
class Follower:
    """Follows ``sid`` on ``cluster`` from ``start`` until it has seen ``until``
    (set once the writer is done) or the call ends."""

    cluster: Cluster
    sid: str
    key: str
    start: int = 0
    received: list[int] = field(default_factory=list)
    connections: int = 0
    until: int | None = None
    _progress: asyncio.Event = field(default_factory=asyncio.Event)
    _joined: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def begin(self) -> Follower:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    @property
    def last(self) -> int:
        return max(self.received, default=0)

    async def joined(self, within: float = 10.0) -> None:
        """Wait until the first connection has been established (the server has
        subscribed it before saying so)."""
        await asyncio.wait_for(self._joined.wait(), within)

    async def seen(self, count: int, within: float = 30.0) -> None:
        """Wait until at least ``count`` events have arrived."""

        async def wait() -> None:
            while len(self.received) < count:
                self._progress.clear()
                await self._progress.wait()

        await asyncio.wait_for(wait(), within)

    async def finish(self, until: int, within: float = 60.0) -> list[int]:
        """Wait until ``until`` has arrived; stop; the seqs received."""
        self.until = until
        self._progress.set()
        assert self._task is not None
        try:
            await asyncio.wait_for(asyncio.shield(self._task), within)
        except TimeoutError:
            self._task.cancel()
            raise AssertionError(
                f"follower stopped at seq {self.last} of {until} after"
                f" {self.connections} connections"
            ) from None
        return self.received

    def _done(self) -> bool:
        return self.until is not None and self.last >= self.until

    async def _run(self) -> None:
        node = self.start
        while not self._done():
            server = self.cluster.nodes[node % len(self.cluster.nodes)]
            node += 1
            if server.proc is None or server.proc.poll() is not None:
                continue  # a killed node: the next one
            since = self.last if self.received else None
            try:
                ws = await connect_live(server, self.sid, self.key, since=since)
            except (OSError, InvalidHandshake, AssertionError, TimeoutError):
                await asyncio.sleep(RETRY_PAUSE)  # a node starting or refusing: next one
                continue
            self.connections += 1
            try:
                await self._read(ws)
            except (ConnectionClosed, OSError, TimeoutError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    await ws.close()

    async def _read(self, ws: ClientConnection) -> None:
        while not self._done():
            try:
                raw = await asyncio.wait_for(ws.recv(), 1.0)
            except TimeoutError:
                continue
            msg = json.loads(raw)
            self._joined.set()
            if "seq" in msg:
                self.received.append(msg["seq"])
                self._progress.set()


@dataclass
class Writer:
    """Posts transcripts of ``sid`` through the nodes in turn (REST)."""

    cluster: Cluster
    http: aiohttp.ClientSession
    sid: str
    key: str
    acked: list[int] = field(default_factory=list)
    refused: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    progress: asyncio.Event = field(default_factory=asyncio.Event)

    async def write(self, count: int, *, pause: float = 0.0) -> None:
        node = 0
        for i in range(count):
            while True:
                server = self.cluster.nodes[node % len(self.cluster.nodes)]
                node += 1
                if server.proc is None or server.proc.poll() is not None:
                    continue
                status, seq = await self._post(server.base_url, transcript(f"w{i}"))
                self.statuses[status] = self.statuses.get(status, 0) + 1
                if seq is not None:
                    self.acked.append(seq)
                    self.progress.set()
                    break
                self.refused += 1
                await asyncio.sleep(RETRY_PAUSE)
            if pause:
                await asyncio.sleep(pause)  # pacing the writer, not waiting for a condition

    async def _post(self, base: str, body: dict[str, Any]) -> tuple[int, int | None]:
        try:
            async with self.http.post(
                f"{base}/v1/calls/{self.sid}/transcripts",
                json=body,
                headers={"Authorization": f"Bearer {self.key}"},
                timeout=aiohttp.ClientTimeout(total=10),
            ) as resp:
                payload = await resp.json(content_type=None)
                if resp.status == 201:
                    return resp.status, int(payload["seq"])
                return resp.status, None
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return 0, None


async def acked_at_least(writer: Writer | PipelinedWriter, count: int, within: float = 30) -> None:
    """Wait until ``writer`` has had ``count`` appends acknowledged."""

    async def wait() -> None:
        while len(writer.acked) < count:
            writer.progress.clear()
            await writer.progress.wait()

    await asyncio.wait_for(wait(), within)


def _live(cluster: Cluster, node: int) -> bool:
    proc = cluster.nodes[node % len(cluster.nodes)].proc
    return proc is not None and proc.poll() is None


@dataclass
class PipelinedWriter:
    """Sends transcripts of ``sid`` on a producer WebSocket, ``window`` at a time
    without waiting for acks; when the connection fails it moves to the next
    node and sends again whatever was not acknowledged (an append that was
    stored but whose ack was lost is then stored twice, under two seqs: the
    guarantee is about seqs, and the test checks those)."""

    cluster: Cluster
    sid: str
    key: str
    start: int = 0
    window: int = 20
    acked: list[int] = field(default_factory=list)
    reconnects: int = 0
    refused: int = 0
    progress: asyncio.Event = field(default_factory=asyncio.Event)

    async def write(self, count: int) -> None:
        todo = list(range(count))
        node = self.start
        while todo:
            if not _live(self.cluster, node):
                node += 1
                continue
            server = self.cluster.nodes[node % len(self.cluster.nodes)]
            try:
                ws = await connect_ingest(server, self.sid, self.key)
            except (OSError, InvalidHandshake, AssertionError, TimeoutError):
                node += 1
                await asyncio.sleep(RETRY_PAUSE)  # a node refusing or starting: the next one
                continue
            try:
                while todo:
                    todo = await self._window(ws, todo)
            except (ConnectionClosed, OSError, TimeoutError):
                self.reconnects += 1
                node += 1
            finally:
                with contextlib.suppress(Exception):
                    await ws.close()

    async def _window(self, ws: ClientConnection, todo: list[int]) -> list[int]:
        """Send the next window; the messages still to send afterwards."""
        batch, rest = todo[: self.window], todo[self.window :]
        for i in batch:
            await send_json(ws, {**transcript(f"p{i}"), "ref": i})
        failed: list[int] = []
        pending = list(batch)
        try:
            while pending:
                ack = await recv_json(ws, 15)
                pending.remove(ack["ref"])
                if ack.get("type") == "ack":
                    self.acked.append(ack["seq"])
                    self.progress.set()
                else:
                    self.refused += 1
                    failed.append(ack["ref"])
        except BaseException:
            # What was not acknowledged goes again, first, on the next connection.
            todo[:] = failed + pending + rest
            raise
        if failed:
            await asyncio.sleep(RETRY_PAUSE)  # storage said "retry shortly"
        return failed + rest


def stored_seqs(postgres: Postgres, database: str, sid: str) -> list[int]:
    """The seqs of the call's stream as PostgreSQL holds them, in order."""
    out = postgres.psql(
        "SELECT e.seq FROM events e JOIN calls c ON e.stream = 'call:' || c.id"
        f" WHERE c.call_sid = '{sid}' ORDER BY e.seq",
        database,
    )
    return [int(line) for line in out.split()]


def assert_exactly_once(received: list[int], stored: list[int], since: int = 0) -> None:
    """``received`` is the stored stream after ``since``: no gap, no duplicate, in order."""
    expected = [s for s in stored if s > since]
    duplicates = len(received) - len(set(received))
    assert duplicates == 0, f"{duplicates} duplicates"
    assert received == sorted(received), "reordered"
    missing = sorted(set(expected) - set(received))
    assert not missing, f"{len(missing)} stored events never arrived: {missing[:20]}"
    assert received == expected
