"""``scribeline serve --workers N``: N processes on one port, sharing PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import psutil
import pytest

from tests.integration.helpers import Api, ServerProcess, new_sid, open_live
from tests.services import Postgres, Redis, running_redis

READY = re.compile(r"^Scribeline listening on http://127\.0\.0\.1:(\d+)$")


@pytest.fixture
def workers_redis() -> Iterator[Redis]:
    with running_redis() as server:
        yield server


def _env(postgres: Postgres, redis: Redis) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRIBELINE_")}
    env.update(
        SCRIBELINE_DATABASE_URL=postgres.create_database(),
        SCRIBELINE_BROKER_URL=redis.url,
        SCRIBELINE_TOKEN_SECRET=secrets.token_urlsafe(32),
        PYTHONUNBUFFERED="1",
    )
    return env


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "scribeline", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )


def _children(pid: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(pid).children() if p.is_running()]


def _serving(child: psutil.Process, port: int) -> int:
    """How many connections on ``port`` the worker holds."""
    return sum(
        1
        for c in child.net_connections("tcp")
        if c.laddr and c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


async def test_workers_share_the_port_restart_a_dead_one_and_stop_together(
    tmp_path: Path, postgres: Postgres, workers_redis: Redis
) -> None:
    """Two workers: connections land on both; a worker killed with -9 is started
    again and serves; SIGTERM to the parent stops everything with status 0."""
    env = _env(postgres, workers_redis)
    data = tmp_path / "data"
    parent = _start(["--workers", "2", "--port", "0", "--data-dir", str(data)], env)
    try:
        assert parent.stdout is not None
        port = 0
        deadline = time.monotonic() + 60
        while not port and time.monotonic() < deadline:
            line = parent.stdout.readline()
            assert line, "the parent exited before it was ready"
            match = READY.match(line.strip())
            port = int(match.group(1)) if match else 0
        assert port, "no ready line"
        workers = _children(parent.pid)
        assert len(workers) == 2

        node = ServerProcess(data_dir=data, env_overrides=env, port=port)
        node.proc = parent  # type: ignore[assignment]
        tenant = node.create_tenant("workers")
        sids = [new_sid() for _ in range(3)]  # at most 10 connections per call
        sid = sids[0]
        async with aiohttp.ClientSession() as http:
            for each in sids:
                await Api(http, node, tenant.rw).create_call(each)
        # The kernel spreads connections by a hash of their addresses: with 30, the
        # chance that one worker gets them all is 2 in a billion.
        sockets = [(await open_live(node, each, tenant.read))[0] for each in sids * 10]
        held = {w.pid: _serving(w, port) for w in workers}
        assert all(held.values()), f"one worker took every connection: {held}"
        for ws in sockets:
            await ws.close()

        victim = workers[0]
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)

        async def replaced() -> None:
            while True:
                pids = [p.pid for p in _children(parent.pid)]
                if len(pids) == 2 and victim.pid not in pids:
                    return
                await asyncio.sleep(0.1)  # polling another process's children

        await asyncio.wait_for(replaced(), 30)
        ws, _ = await open_live(node, sid, tenant.read)  # the service still answers
        await ws.close()
    finally:
        parent.send_signal(signal.SIGTERM)
        try:
            code = parent.wait(30)
        except subprocess.TimeoutExpired:
            parent.kill()
            raise
    assert code == 0
    assert not any(p.is_running() for p in workers[1:]), "a worker outlived the parent"


def test_workers_without_shared_backends_are_refused(tmp_path: Path) -> None:
    """--workers on the embedded store is one line and exit status 2."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRIBELINE_")}
    result = subprocess.run(
        [sys.executable, "-m", "scribeline", "serve", "--workers", "2", "--data-dir", "d"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "--workers 2" in result.stderr and "SCRIBELINE_DATABASE_URL" in result.stderr
