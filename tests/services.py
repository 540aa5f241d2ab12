"""Real PostgreSQL, Redis and nginx servers for the tests, started from Debian's binaries.

Each instance lives in its own temporary directory and listens on a free
loopback port, so tests can stop, kill and restart it (fault injection)
without touching any system-wide service. PostgreSQL refuses to run as root,
so as root it runs as the ``postgres`` user (``runuser``) in a directory that
user owns. ``scripts/ensure-services`` (run by ``make test``) installs the
packages when they are missing.

:func:`require` decides what a missing binary means: a skip on a developer's
machine, a failure under ``CI=true`` (where these tests must run).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

__all__ = [
    "Nginx",
    "Postgres",
    "Redis",
    "free_port",
    "nginx_bin",
    "postgres_bin",
    "redis_bin",
    "require",
    "running_postgres",
    "running_redis",
]

START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version_key)
    return Path(found[-1]).parent if found else None


def redis_bin() -> Path | None:
    path = shutil.which("redis-server")
    return Path(path) if path else None


def nginx_bin() -> Path | None:
    path = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    return Path(path) if path else None


def _version_key(path: str) -> int:
    part = Path(path).parent.parent.name
    return int(part) if part.isdigit() else 0


def require(what: str, present: bool) -> None:
    """Skip (or, under CI, fail) when a service's binary is absent."""
    if present:
        return
    message = f"{what} is not installed (make test installs it: scripts/ensure-services)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def _wait_port(port: int, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)  # polling a port another process opens: no event to await


class Postgres:
    """A PostgreSQL cluster in a temporary directory on a loopback port.

    ``url(db)`` gives a ``postgresql://`` URL; ``create_database`` makes a fresh
    empty database (cheap: tests get one each). ``stop(mode)`` and ``start()``
    inject faults (``immediate`` is a crash).
    """

    def __init__(self, root: Path | None = None) -> None:
        bindir = postgres_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed")
        self.bindir = bindir
        self.root = root or Path(tempfile.mkdtemp(prefix="scribeline-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "run"
        self.port = free_port()
        self._as_root = os.geteuid() == 0

    # -- lifecycle -----------------------------------------------------------

    def init(self) -> Postgres:
        self.root.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(exist_ok=True)
        if self._as_root:
            # The temporary root itself may be 0700 root: let postgres through.
            os.chmod(self.root, 0o755)
            shutil.chown(self.sockets, "postgres", "postgres")
            self.data.mkdir(exist_ok=True)
            shutil.chown(self.data, "postgres", "postgres")
        self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        )
        return self

    def start(self) -> Postgres:
        options = " ".join(
            [
                f"-p {self.port}",
                f"-k {self.sockets}",
                "-c listen_addresses=127.0.0.1",
                "-c max_connections=300",
                "-c shared_buffers=64MB",
                # Durable like production (acknowledged means committed), but the
                # tests share 2 cores: no full-page writes to flush between checkpoints.
                "-c fsync=on",
                "-c synchronous_commit=on",
                "-c full_page_writes=off",
            ]
        )
        self._run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                str(self.sockets / "postgres.log"),
                "-w",
                "-t",
                str(int(START_TIMEOUT)),
                "start",
            ]
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (clean), ``immediate`` (a crash)."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def restart(self, mode: str = "immediate") -> None:
        self.stop(mode)
        self.start()

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    # -- use -----------------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; its URL."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run one statement with psql; its unaligned output."""
        result = self._run(
            [
                str(self.bindir / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
            as_postgres=False,
        )
        return result.stdout.strip()

    def _run(
        self, argv: Sequence[str], *, as_postgres: bool = True
    ) -> subprocess.CompletedProcess[str]:
        if as_postgres and self._as_root:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(
            argv, check=True, capture_output=True, text=True, timeout=START_TIMEOUT + 10
        )


class Redis:
    """A ``redis-server`` on a loopback port with no persistence.

    ``stop()`` shuts it down (``SHUTDOWN NOSAVE``: everything is lost, as in a
    crash of a cache); ``start()`` brings it back on the same port.
    """

    def __init__(self, root: Path | None = None) -> None:
        binary = redis_bin()
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.binary = binary
        self.root = root or Path(tempfile.mkdtemp(prefix="scribeline-redis-"))
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Redis:
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.root / "redis.log", "ab")  # noqa: SIM115 - owned by the process
        self._process = subprocess.Popen(
            [
                str(self.binary),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.root),
                "--daemonize",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        _wait_port(self.port)
        return self

    def stop(self) -> None:
        process = self._process
        if process is None:
            return
        process.kill()
        process.wait(timeout=10)
        self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def command(self, *args: str) -> str:
        """Run one command with redis-cli; its output."""
        cli = self.binary.parent / "redis-cli"
        result = subprocess.run(
            [str(cli), "-p", str(self.port), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return result.stdout.strip()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class Nginx:
    """An nginx master process in the foreground with everything of its own in a
    temporary directory: prefix, configuration, pid file, error log, temp paths.

    ``main`` goes in the main context, ``http`` in the ``http`` block (its
    ``listen`` must name ``port`` on loopback). ``stop()`` is a fast shutdown
    (SIGTERM: open connections are cut); ``start()`` brings it back on the same port.
    """

    def __init__(self, port: int, http: str, main: str = "", root: Path | None = None) -> None:
        binary = nginx_bin()
        if binary is None:
            raise RuntimeError("nginx is not installed")
        self.binary = binary
        self.port = port
        self.root = root or Path(tempfile.mkdtemp(prefix="scribeline-nginx-"))
        self.conf = self.root / "nginx.conf"
        self.error_log = self.root / "error.log"
        self._process: subprocess.Popen[bytes] | None = None
        temp = self.root / "temp"
        paths = "\n".join(
            f"    {kind}_temp_path {temp / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        self.conf.write_text(
            f"daemon off;\nworker_processes 1;\npid {self.root / 'nginx.pid'};\n"
            f"error_log {self.error_log} info;\n{main}\n"
            "events { worker_connections 1024; }\n"
            f"http {{\n    access_log off;\n{paths}\n{http}\n}}\n"
        )
        # As root, workers run as nobody: they need to reach the temp paths.
        self.root.chmod(0o755)
        temp.mkdir(exist_ok=True)

    def _argv(self, *extra: str) -> list[str]:
        return [
            str(self.binary),
            "-p",
            str(self.root),
            "-c",
            str(self.conf),
            "-e",
            str(self.error_log),
            *extra,
        ]

    def check(self) -> None:
        """``nginx -t``: raise with nginx's words when the configuration is refused."""
        result = subprocess.run(self._argv("-t"), capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise RuntimeError(f"nginx -t refused the configuration:\n{result.stderr}")

    def start(self) -> Nginx:
        process = self._process = subprocess.Popen(self._argv(), stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    log = self.error_log.read_text("utf-8", "replace")[-4000:]
                    raise RuntimeError(f"nginx did not start:\n{log}") from None
                time.sleep(0.02)  # polling a port another process opens: no event to await

    def stop(self) -> None:
        process = self._process
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def running_postgres() -> Iterator[Postgres]:
    """A PostgreSQL cluster of one's own for the block (skipped, or failed under CI,
    when PostgreSQL is not installed); removed afterwards."""
    require("PostgreSQL", postgres_bin() is not None)
    server = Postgres().init().start()
    try:
        yield server
    finally:
        server.destroy()


@contextlib.contextmanager
def running_redis() -> Iterator[Redis]:
    """A Redis of one's own for the block (skipped, or failed under CI, when
    redis-server is not installed); removed afterwards."""
    require("Redis", redis_bin() is not None)
    server = Redis().start()
    try:
        yield server
    finally:
        server.destroy()
