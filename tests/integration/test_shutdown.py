"""Graceful shutdown: SIGTERM closes every stream with 1001 and the process exits 0."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from .helpers import (
    Api,
    ServerProcess,
    connect_ingest,
    expect_close,
    open_live,
    read_until_seq,
    recv_json,
    send_json,
    transcript,
)


async def test_sigterm_closes_streams_with_1001_and_exits_0(tmp_path: Path) -> None:
    """On SIGTERM every connected subscriber and producer gets close 1001 and the server exits 0."""
    server = ServerProcess(data_dir=tmp_path / "data")
    server.start()
    try:
        tenant = server.create_tenant("shutdown")
        async with aiohttp.ClientSession() as session:
            sid = (await Api(session, server, tenant.rw).create_call())["call_sid"]
        subscribers = [(await open_live(server, sid, tenant.read))[0] for _ in range(3)]
        for ws in subscribers:
            await read_until_seq(ws, 1)
        producer = await connect_ingest(server, sid, tenant.write)
        await send_json(producer, transcript("before shutdown"))
        assert (await recv_json(producer))["seq"] == 2
        for ws in subscribers:
            await read_until_seq(ws, 2)

        server.terminate()
        codes = await asyncio.gather(*(expect_close(ws, 15) for ws in subscribers))
        assert codes == [1001, 1001, 1001]
        assert await expect_close(producer, 15) == 1001
        assert await asyncio.to_thread(server.wait, 20) == 0
    finally:
        server.kill()
