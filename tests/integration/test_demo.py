"""The demo (`make run`) and `scribeline bots simulate`, run as a user runs them."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection

from .bot_helpers import create_bot, open_url
from .helpers import (
    Api,
    ServerProcess,
    collect_until_closed,
    recv_json,
    send_json,
)

URL = r"(ws://[^' ]+)"
#: The simulated meeting speaks a sentence every few seconds at normal speed.
MEETING_EVENT_WITHIN = 30.0
#: The recorded call's first sentence ends 4.7 s in; its final follows within seconds.
AUDIO_FINAL_WITHIN = 30.0


async def _ready(ws: ClientConnection) -> None:
    """The server answers a ping only once the subscriber is attached to the live stream."""
    pong = await ws.ping()
    await asyncio.wait_for(pong, 10)


async def _next_of(ws: ClientConnection, kind: str, within: float) -> dict[str, Any]:
    """The next message of type ``kind`` (pings and other events skipped)."""
    async with asyncio.timeout(within):
        while True:
            msg = await recv_json(ws, within)
            if msg.get("type") == kind:
                return msg


async def _run(command: str) -> str:
    """Run a printed shell command; its stdout (it must succeed)."""
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def _sign_in(server: ServerProcess, link: str) -> int:
    """POST a dashboard link's code as the page does; the answer's status."""
    base, _, code = link.partition("/dashboard/#code=")
    assert base == server.base_url, link
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{base}/dashboard/api/session", json={"code": code}, headers={"Origin": base}
        ) as resp,
    ):
        return resp.status


async def test_make_run_shows_live_calls_and_a_meeting_that_answers_actions(
    tmp_path: Path,
) -> None:
    """`scribeline demo` prints a dashboard sign-in link that works once and a command
    for another, and working commands: a live call streams transcripts, a
    recorded phone call's audio becomes text, the meeting streams bot events, echoes
    a chat action, the running campaign and the organizations can be found (the
    banner's campaign ends), and it stops cleanly."""
    server = ServerProcess(data_dir=tmp_path / "data", command="demo")
    server.start()
    try:
        link = server.expect_line(r"Dashboard: +(http://\S+/dashboard/#code=scd_\S+)$").group(1)
        another = server.expect_line(r"another one: (\S.* dashboard --org demo .+)\)$").group(1)
        call_url = server.expect_line(rf"a live call:.*{URL}").group(1)
        tail_command = server.expect_line(r"the same, readable: (.+)$").group(1)
        server.expect_line(r"a phone call's audio, transcribed here")
        audio_command = server.expect_line(r"^\s+(\S.* tail CA\w+ .+)$").group(1)
        server.expect_line(r"the meeting, read-only:")
        read_only_url = server.expect_line(URL).group(1)
        server.expect_line(r"the meeting, read-write")
        read_write_url = server.expect_line(URL).group(1)
        server.expect_line(r"find the running one")
        campaigns_command = server.expect_line(r"^\s+(\S.* campaigns list --active .+)$").group(1)
        orgs_command = server.expect_line(r"Organizations in this data directory: (.+)$").group(1)
        assert "/live-transcript/" in call_url and "/v1/bots/" in read_only_url

        # The banner's link signs in once, and its command prints a link that does too.
        assert await _sign_in(server, link) == 201
        assert await _sign_in(server, link) == 401
        assert await _sign_in(server, (await _run(another)).strip().splitlines()[-1]) == 201

        running = await _run(campaigns_command)
        assert re.search(r"^\d+\trunning\t\d+/\d+ done\tRenewal reminders \d+$", running, re.M)
        assert re.search(r"^\d+\tdemo\t", await _run(orgs_command), re.M)

        async with await open_url(call_url) as call:
            assert (await recv_json(call))["type"] == "connection_established"
            await _next_of(call, "transcript", MEETING_EVENT_WITHIN)

        # The printed `scribeline tail` command, piped: a line of the call in plain text.
        tail = await asyncio.create_subprocess_exec(
            "bash", "-c", tail_command, stdout=asyncio.subprocess.PIPE
        )
        try:
            assert tail.stdout is not None
            line = await asyncio.wait_for(tail.stdout.readline(), MEETING_EVENT_WITHIN)
            assert b": " in line and b"\x1b[" not in line, line
        finally:
            tail.kill()
            await tail.wait()

        # The recorded phone call, transcribed by the local engine: its first final.
        audio = await asyncio.create_subprocess_exec(
            "bash", "-c", audio_command, stdout=asyncio.subprocess.PIPE
        )
        try:
            assert audio.stdout is not None
            async with asyncio.timeout(AUDIO_FINAL_WITHIN):
                line = await audio.stdout.readline()  # the call's status first
                while line.startswith("\u2014 status".encode()):
                    line = await audio.stdout.readline()
            assert line.startswith(b"assistant: ") and b"calling" in line.lower(), line
        finally:
            audio.kill()
            await audio.wait()

        watcher = await open_url(read_only_url)
        async with watcher, await open_url(read_write_url) as speaker:
            await _ready(watcher)
            spoken = await _next_of(watcher, "ts", MEETING_EVENT_WITHIN)
            assert spoken["data"]["transcript"] and spoken["data"]["end"] >= spoken["data"]["start"]
            await send_json(
                speaker, {"action": "chat-message", "data": {"content": "Hello from the demo test"}}
            )
            echo = await _next_of(watcher, "chat-message", 10)
            assert echo["data"]["content"] == "Hello from the demo test"

            server.terminate()  # the demo's bot leaves the meeting before the server stops
            msgs, code = await collect_until_closed(watcher)
            assert code == 1000
            assert [m["type"] for m in msgs if m["type"] == "stop"] == ["stop"]
            assert msgs[-1] == {"type": "stop", "data": {"reason": "meeting_ended"}}
        assert server.wait() == 0
    finally:
        server.kill()


async def test_bots_simulate_plays_a_meeting_and_obeys_actions(
    server: ServerProcess, api_a: Api
) -> None:
    """`scribeline bots simulate BOT_ID` joins, tracks three participants, speaks with
    speaker names resolved after a few sentences, echoes chat and leaves on stop; opening
    the data directory prints no migration noise."""
    bot = await create_bot(api_a)
    watcher = await open_url(bot["websocket_read_only_url"])
    async with watcher, await open_url(bot["websocket_url"]) as speaker:
        await _ready(watcher)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "scribeline",
            "bots",
            "simulate",
            bot["id"],
            "--server",
            server.base_url,
            "--data-dir",
            str(server.data_dir),
            "--speed",
            "20",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert (await recv_json(watcher)) == {"type": "start", "data": {}}
            tracked = [await recv_json(watcher) for _ in range(3)]
            assert {m["type"] for m in tracked} == {"participant-tracked"}
            assert len({m["data"]["participantId"] for m in tracked}) == 3
            names: list[str | None] = []
            while len(names) < 8:
                msg = await recv_json(watcher)
                assert msg["type"] in {"started-speaking", "ts", "stopped-speaking"}, msg
                if msg["type"] == "ts":
                    names.append(msg["data"]["speaker_name"])
            assert names[0] is None and names[-1] is not None, names

            await send_json(speaker, {"action": "chat-message", "data": {"content": "Welcome!"}})
            echo = await _next_of(watcher, "chat-message", 10)
            assert echo["data"] == {
                "username": "Scribeline Notetaker",
                "content": "Welcome!",
                "user_avatar": None,
            }
            await send_json(speaker, {"action": "stop"})
            msgs, code = await collect_until_closed(watcher)
            assert code == 1000 and msgs[-1]["type"] == "stop", msgs
            out, err = await asyncio.wait_for(proc.communicate(), 30)
            assert proc.returncode == 0, err.decode()
            assert b"left the meeting" in out
            assert b"alembic" not in err and b"Context impl" not in err, err.decode()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    resp = await api_a.request("GET", f"/v1/bots/{bot['id']}")
    assert (resp.body["status"], resp.body["stop_reason"]) == ("finished", "manually_stopped")


@pytest.mark.parametrize("bot_id", ["00000000-0000-4000-8000-000000000000"])
def test_bots_simulate_refuses_an_unknown_bot(server: ServerProcess, bot_id: str) -> None:
    """Simulating a bot that does not exist fails with a one-line error, not a traceback."""
    with pytest.raises(RuntimeError, match=f"no bot '{bot_id}'"):
        server.cli("bots", "simulate", bot_id, "--server", server.base_url)
