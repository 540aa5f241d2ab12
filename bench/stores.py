"""The store a scenario's Scribeline servers run on, for ``run_all --backends``.

``sqlite`` is the embedded default (the data directory's SQLite, the in-process
broker). ``postgres`` is one node on PostgreSQL with the in-process broker
(:mod:`bench.backends`' ``pg_memory``): the store changes, nothing else does.

Scenarios start their servers with :class:`bench.server.Server`, which gives
each server (and the admin commands that make its organization and key) this
process's environment under the scenario's own settings. So :func:`on_store`
points ``SCRIBELINE_DATABASE_URL`` at a fresh database for one scenario run and
every scenario runs there unchanged. A scenario run that starts more than one
Scribeline server in sequence would give them the same database; none of
:data:`ON_POSTGRES` does (``meetings`` runs its live twin on the same server).
The reference server ignores the variables.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Literal

import psutil  # type: ignore[import-untyped]

from bench.backends import Backend, Services

__all__ = ["NOT_ON_POSTGRES", "ON_POSTGRES", "STORES", "Store", "on_store", "postgres_cpu"]

Store = Literal["sqlite", "postgres"]
STORES: tuple[Store, ...] = ("sqlite", "postgres")
_BACKEND: dict[Store, Backend] = {"sqlite": "sqlite", "postgres": "pg_memory"}

#: The scenarios whose figures depend on the store: run on each chosen one.
ON_POSTGRES = frozenset(
    {"fanout", "many_calls", "many_calls_rest", "idle", "connects", "firehose", "meetings"}
)
#: Why the others run once, on their own terms.
NOT_ON_POSTGRES: dict[str, str] = {
    "ingest": "ingest_backends runs it on SQLite and on PostgreSQL + Redis",
    "ingest_backends": "it chooses its stores itself",
    "cluster": "it runs its own PostgreSQL and Redis phases",
    "cluster_throughput": "it runs its own PostgreSQL and Redis phases",
    "dashboard": "it measures the browser's rendering",
    "speech": "no server is measured",
}


@contextlib.contextmanager
def on_store(store: Store, services: Services | None) -> Iterator[dict[str, str]]:
    """Within the block, servers started by ``bench.server.Server`` use ``store`` (a
    fresh database on ``services``' PostgreSQL for ``postgres``); yields the settings."""
    env = services.env(_BACKEND[store]) if services is not None and store != "sqlite" else {}
    if store != "sqlite" and not env:
        raise RuntimeError(f"{store} needs the PostgreSQL of bench.backends.Services")
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def postgres_cpu(services: Services) -> float:
    """PostgreSQL's CPU-seconds so far: the postmaster, its live children, and the
    children it has reaped (a server's backends end with its connections)."""
    pids = services.postgres_pids()
    total = 0.0
    for n, pid in enumerate(pids):
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
        if n == 0:  # the postmaster, first
            total += t.children_user + t.children_system
    return total
