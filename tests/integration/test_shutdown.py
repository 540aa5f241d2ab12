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


async def test_restart_keeps_history_and_resume_continues_the_seq(tmp_path: Path) -> None:
    """After a SIGTERM and a restart on the same data directory, history, keys and seqs survive,
    and a client resuming with since gets exactly what came after."""
    first = ServerProcess(data_dir=tmp_path / "data")
    first.start()
    try:
        tenant = first.create_tenant("durable")
        async with aiohttp.ClientSession() as session:
            api = Api(session, first, tenant.rw)
            sid = (await api.create_call())["call_sid"]
            seqs = await api.post_transcripts(sid, [transcript(f"before {i}") for i in range(3)])
        ws, _ = await open_live(first, sid, tenant.read)
        seen = await read_until_seq(ws, seqs[-1])
        first.terminate()
        assert await expect_close(ws, 15) == 1001
        assert await asyncio.to_thread(first.wait, 20) == 0
    finally:
        first.kill()

    second = ServerProcess(data_dir=tmp_path / "data")
    second.start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, second, tenant.rw)
            assert await api.post_transcript(sid, transcript("after restart")) == seqs[-1] + 1
            call = await api.get_call(sid)
            assert [t["content"] for t in call["transcript"]] == [
                "before 0",
                "before 1",
                "before 2",
                "after restart",
            ]
        ws, _ = await open_live(second, sid, tenant.read, since=seen[-1]["seq"])
        async with ws:
            msgs = await read_until_seq(ws, seqs[-1] + 1)
        assert [m["seq"] for m in msgs] == [seqs[-1] + 1]
        assert msgs[0]["data"]["content"] == "after restart"
    finally:
        second.stop()
        second.kill()
