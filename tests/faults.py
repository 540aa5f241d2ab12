"""A TCP proxy for fault injection between a client and a real server.

``TcpProxy`` listens on a free loopback port and forwards every connection to
an upstream port. A test can then break the path the way networks break:

* ``blackhole()``: keep every socket open but silently discard what arrives in
  either direction (a half-open path: a dead NAT entry, a failover that left a
  client attached to nothing). New connections are accepted and blackholed too.
* ``close_all()``: close every current connection (a proxy restart).
* ``refuse()``: close new connections as soon as they are accepted.
* ``sever()``: like ``blackhole()``, but for good: every current connection, and
  every one accepted before ``resume()``, never forwards a byte again (a dead
  NAT entry: only a new connection after the path heals gets through).
* ``resume()``: forward again (connections that were blackholed stay useless:
  what was discarded is gone; clients are expected to reconnect).
* ``cut_at(marker, deliver=...)``: a one-shot cut at the next client-to-server
  chunk that holds ``marker`` (a COMMIT, say): the client's socket is reset at
  once, so no reply reaches it, and the chunk reaches the server or not.

It runs on the test's event loop; ``await proxy.start()`` / ``await proxy.stop()``.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["TcpProxy"]


class TcpProxy:
    """Forwards loopback connections to ``upstream_port``, with faults on demand."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._forwarding = True
        self._refusing = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._severing = False
        self._dead: set[asyncio.StreamWriter] = set()
        self._pumps: set[asyncio.Task[None]] = set()
        self._cut: tuple[bytes, bool, bool] | None = None
        self.cuts = 0

    def url(self, scheme: str = "redis", path: str = "/0") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def blackhole(self) -> None:
        self._forwarding = False

    def refuse(self) -> None:
        self._refusing = True

    def sever(self) -> None:
        self._severing = True
        self._dead.update(self._writers)

    def cut_at(self, marker: bytes, *, deliver: bool, hold_upstream: bool = False) -> None:
        """Arm a one-shot cut at the next client-to-server chunk holding ``marker``.

        The client's socket is reset before anything more reaches it (a lost
        reply); the chunk is forwarded to the server if ``deliver``. The
        server's socket is then closed, or with ``hold_upstream`` kept open and
        silent until ``stop()`` (a client that vanished without a FIN).
        """
        self._cut = (marker, deliver, hold_upstream)

    def resume(self) -> None:
        self._forwarding = True
        self._refusing = False
        self._severing = False

    async def close_all(self) -> None:
        writers, self._writers = self._writers, set()
        for writer in writers:
            writer.close()
        for writer in writers:
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self.close_all()
        for pump in list(self._pumps):
            pump.cancel()
        for pump in list(self._pumps):
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._refusing:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        if self._severing:
            self._dead.add(writer)
        loop = asyncio.get_running_loop()
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            pump = loop.create_task(self._pump(source, sink, (writer, up_writer)))
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        try:
            while data := await source.read(65536):
                if self._cut is not None and sink is pair[1] and self._cut[0] in data:
                    await self._cut_here(data, sink, pair[0])
                    return
                if self._forwarding and pair[0] not in self._dead:
                    sink.write(data)
                    await sink.drain()
        except OSError:
            pass
        finally:
            # One side ended: end both, as a proxy does.
            self._dead.discard(pair[0])
            for writer in pair:
                self._writers.discard(writer)
                writer.close()

    async def _cut_here(
        self, data: bytes, upstream: asyncio.StreamWriter, client: asyncio.StreamWriter
    ) -> None:
        assert self._cut is not None
        _, deliver, hold = self._cut
        self._cut = None
        self.cuts += 1
        client.transport.abort()  # first: the reply must find no way back
        if deliver:
            upstream.write(data)
            with contextlib.suppress(OSError):
                await upstream.drain()
        if hold:
            await asyncio.Event().wait()  # until stop() cancels this pump
