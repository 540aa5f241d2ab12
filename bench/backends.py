"""The shared services a cluster scenario runs on: one PostgreSQL and one Redis.

Both come from ``tests.services`` (Debian's binaries, a temporary directory, a
free loopback port; PostgreSQL with ``fsync=on`` and ``synchronous_commit=on``,
so an acknowledged append is a flushed commit) and are destroyed on exit. Each
phase of a scenario gets a fresh database and an emptied Redis, so phases never
see each other's streams, leases or connection slots.
"""

from __future__ import annotations

import dataclasses
import secrets
from pathlib import Path
from types import TracebackType
from typing import Literal

import psutil  # type: ignore[import-untyped]

from bench.metrics import CpuWindow
from tests.services import Postgres, Redis

__all__ = ["Backend", "ServiceCpu", "Services", "sqlite_env"]

#: Each service's processes and their CPU-seconds so far: name -> pid -> seconds.
ServiceCpu = dict[str, dict[int, float]]

#: What a phase runs on: SQLite + memory broker (the embedded default), PostgreSQL
#: with the in-process broker, or PostgreSQL + Redis (the cluster configuration).
Backend = Literal["sqlite", "pg_memory", "pg_redis"]


def sqlite_env() -> dict[str, str]:
    """The embedded default: the data directory's SQLite and ``memory://``."""
    return {}


class Services:
    """``with Services() as services:`` PostgreSQL and Redis, up until the block ends."""

    def __init__(self) -> None:
        self.postgres: Postgres | None = None
        self.redis: Redis | None = None
        #: One secret for every node of a phase: each verifies the others' tokens.
        self.token_secret = secrets.token_urlsafe(32)

    def __enter__(self) -> Services:
        try:
            self.postgres = Postgres().init().start()
            self.redis = Redis().start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self.redis is not None:
            self.redis.destroy()
            self.redis = None
        if self.postgres is not None:
            self.postgres.destroy()
            self.postgres = None

    def env(self, backend: Backend) -> dict[str, str]:
        """A node's environment for ``backend``: a fresh database, an emptied Redis.

        Call once per phase and give every node of the phase the same result.
        """
        if backend == "sqlite":
            return sqlite_env()
        assert self.postgres is not None and self.redis is not None
        self.redis.command("FLUSHALL")
        env = {
            "SCRIBELINE_DATABASE_URL": self.postgres.create_database(),
            "SCRIBELINE_TOKEN_SECRET": self.token_secret,
        }
        env["SCRIBELINE_BROKER_URL"] = self.redis.url if backend == "pg_redis" else "memory://"
        return env

    def transcript_batches(self, url: str, call_sids: str = "%") -> tuple[int, int]:
        """Transcripts stored in ``url``'s database (of the calls whose sid is ``LIKE
        call_sids``), and the transactions that stored them (distinct ``xmin``): how
        many appends shared a commit (group commit)."""
        assert self.postgres is not None
        pattern = call_sids.replace("'", "")
        out = self.postgres.psql(
            "SELECT count(*), count(DISTINCT xmin::text) FROM events WHERE type = 'transcript'"
            " AND stream IN (SELECT 'call:' || id FROM calls"
            f" WHERE call_sid LIKE '{pattern}')",
            database=url.rsplit("/", 1)[1],
        )
        events, transactions = out.split("|")
        return int(events), int(transactions)

    # -- processes, for CPU accounting ---------------------------------------------

    def postgres_pids(self) -> list[int]:
        """The postmaster and its children now (backends, WAL writer, checkpointer...)."""
        if self.postgres is None:
            return []
        try:
            first = (Path(self.postgres.data) / "postmaster.pid").read_text().split("\n", 1)[0]
            master = psutil.Process(int(first))
            return [master.pid, *(child.pid for child in master.children(recursive=True))]
        except (OSError, ValueError, psutil.Error):
            return []

    def redis_pids(self) -> list[int]:
        if self.redis is None:
            return []
        for line in self.redis.command("INFO", "server").splitlines():
            if line.startswith("process_id:"):
                return [int(line.partition(":")[2])]
        return []

    def cpu(self) -> ServiceCpu:
        """PostgreSQL's and Redis's processes and their CPU time so far."""
        out: ServiceCpu = {}
        for name, pids in (("postgres", self.postgres_pids()), ("redis", self.redis_pids())):
            out[name] = {}
            for pid in pids:
                try:
                    t = psutil.Process(pid).cpu_times()
                except psutil.Error:
                    continue
                out[name][pid] = float(t.user + t.system)
        return out

    def apart(self, window: CpuWindow, before: ServiceCpu) -> tuple[CpuWindow, dict[str, float]]:
        """``window`` with the services' CPU taken out of "other processes" (they are
        ours, not contention), and the cores each service used over it."""
        after = self.cpu()
        used = {
            name: sum(cpu - before.get(name, {}).get(pid, 0.0) for pid, cpu in pids.items())
            for name, pids in after.items()
        }
        ours = {pid for pids in after.values() for pid in pids}
        window = dataclasses.replace(
            window,
            others=max(0.0, window.others - sum(used.values())),
            top_others=tuple(o for o in window.top_others if o[1] not in ours),
        )
        secs = window.seconds or float("nan")
        return window, {name: round(cpu / secs, 3) for name, cpu in used.items()}
