"""The ``scribeline`` command as a user meets it: the data directory the admin commands
use, ``orgs list`` and ``campaigns list``, one-line errors for what the user must fix
(a bad setting, a busy port, a client-only install), and ``make run``'s settings."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from scribeline.storage import migrate

from .helpers import KEY_RE, Api, ServerProcess, Tenant

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60.0

# A client-only install: the server's dependencies are missing, as pip leaves them.
CLIENT_ONLY = """
import importlib.abc, sys
MISSING = {"aiohttp", "sqlalchemy", "alembic", "uvloop", "jwt", "pydantic_settings"}
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in MISSING:
            raise ModuleNotFoundError(f"No module named {top!r}", name=top)
        return None
sys.meta_path.insert(0, Missing())
"""


def env(**extra: str) -> dict[str, str]:
    """This environment without Scribeline settings or make variables, plus ``extra``."""
    cleaned = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SCRIBELINE_") and k not in ("HOST", "PORT", "DATA", "MAKEFLAGS")
    }
    return {**cleaned, **extra}


def scribeline(
    *args: str, cwd: Path | None = None, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m scribeline ARGS`` run to its end."""
    return subprocess.run(
        [sys.executable, "-m", "scribeline", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env(**(extra_env or {})),
        check=False,
    )


def scribeline_after(
    prelude: str, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``scribeline ARGS`` run to its end in a Python that first runs ``prelude`` (to
    stand for another install: no server extra, an old SQLite)."""
    script = f"{prelude}\nfrom scribeline.cli import main\nraise SystemExit(main(sys.argv[1:]))\n"
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env(),
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single ``scribeline: ...`` line of a command that failed with exit 2."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("scribeline: "), result.stderr
    return lines[0]


# --------------------------------------------------------------------------- data directory

ADMIN_COMMANDS = [
    ("orgs", "create", "acme"),
    ("orgs", "list"),
    ("keys", "create", "--org", "acme"),
    ("keys", "list", "--org", "acme"),
    ("keys", "revoke", "1"),
    ("calls", "list"),
    ("campaigns", "list", "--active"),
    ("bots", "list", "--org", "acme"),
    ("bots", "simulate", "00000000-0000-4000-8000-000000000000"),
    ("dashboard", "--org", "acme"),
    ("sessions", "list", "--org", "acme"),
    ("sessions", "revoke", "--all", "--org", "acme"),
]


@pytest.mark.parametrize("command", ADMIN_COMMANDS, ids=" ".join)
@pytest.mark.parametrize("folder", ["missing", "empty"])
def test_admin_commands_refuse_a_data_directory_without_a_database(
    tmp_path: Path, command: tuple[str, ...], folder: str
) -> None:
    """Run from a folder without the server's data (./data missing, or there but empty),
    an admin command creates nothing and says in one line which absolute path it looked
    at and how to fix it."""
    if folder == "empty":
        (tmp_path / "data").mkdir()
    error = one_line_error(scribeline(*command, cwd=tmp_path))
    assert str(tmp_path / "data") in error
    assert "--data-dir" in error and "--init" in error
    assert not (tmp_path / "data" / "scribeline.db").exists()
    assert (tmp_path / "data").exists() == (folder == "empty")


def test_init_creates_a_data_directory_and_confirmations_name_it(tmp_path: Path) -> None:
    """orgs create --init creates the data directory and says so; then each command
    that changes something names the absolute data directory, the new key stays alone on
    the last line, and an empty listing says on stderr which directory it read."""
    data = tmp_path / "new" / "data"
    created = scribeline("orgs", "create", "acme", "--init", "--data-dir", str(data))
    assert (created.returncode, created.stderr) == (0, ""), created.stderr
    assert created.stdout.splitlines() == [
        f"Created a new database in the data directory {data}",
        f"Created organization acme (id 1) in the data directory {data}",
    ]
    again = scribeline("orgs", "create", "globex", "--init", cwd=data.parent)
    assert again.stdout == f"Created organization globex (id 2) in the data directory {data}\n"

    key = scribeline("keys", "create", "--org", "acme", "--data-dir", str(data))
    assert key.returncode == 0, key.stderr
    *notes, last = key.stdout.splitlines()
    assert KEY_RE.match(last) and f"in the data directory {data}," in notes[0]

    empty = scribeline("calls", "list", "--data-dir", str(data))
    assert (empty.returncode, empty.stdout) == (0, "")
    assert empty.stderr == f"scribeline: no calls in the data directory {data}\n"
    missing = scribeline("keys", "create", "--org", "initech", "--data-dir", str(data))
    assert one_line_error(missing) == "scribeline: no organization named 'initech'"


async def test_orgs_list_and_campaigns_list(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """orgs list shows the data directory's organizations; campaigns list shows the
    campaigns, from the data directory or over REST with a key, and --active only the
    running ones."""
    created = await api_a.request("POST", "/v1/campaigns", json_body={"name": "Spring renewals"})
    campaign = created.body["id"]
    contacts = await api_a.request(
        "POST", f"/v1/campaigns/{campaign}/contacts", json_body=[{"phone_number": "+15550100"}]
    )
    contact = contacts.body["contacts"][0]["id"]
    started = await api_a.request("POST", f"/v1/campaigns/{campaign}/start")
    assert started.status == 200, started.text
    row = f"{campaign}\trunning\t0/1 done\tSpring renewals"

    orgs = scribeline("orgs", "list", "--data-dir", str(server.data_dir))
    assert orgs.returncode == 0, orgs.stderr
    assert re.search(rf"^\d+\t{tenant_a.org}\t\S+Z$", orgs.stdout, re.M), orgs.stdout

    by_key = ("--server", server.base_url, "--key", tenant_a.read)
    local = ("--data-dir", str(server.data_dir))
    for where in (by_key, local, (*local, "--org", tenant_a.org)):
        for flags in ((), ("--active",)):
            listed = scribeline("campaigns", "list", *flags, *where)
            assert (listed.returncode, listed.stderr) == (0, ""), listed.stderr
            assert row in listed.stdout.splitlines(), (where, flags, listed.stdout)

    outcome = await api_a.request(
        "POST",
        f"/v1/campaigns/{campaign}/contacts/{contact}/outcome",
        json_body={"outcome": "skipped"},
    )
    assert outcome.status == 200, outcome.text
    done = f"{campaign}\tcompleted\t1/1 done\tSpring renewals"
    for where in (by_key, local):
        assert done in scribeline("campaigns", "list", *where).stdout.splitlines()
        active = scribeline("campaigns", "list", "--active", *where)
        assert active.returncode == 0 and f"{campaign}\t" not in active.stdout, active.stdout


# --------------------------------------------------------------------------- one-line errors


@pytest.mark.parametrize(
    ("variable", "value", "command"),
    [
        ("SCRIBELINE_PORT", "abc", ("serve",)),
        ("SCRIBELINE_PORT", "abc", ("demo",)),
        ("SCRIBELINE_MAX_CONNECTIONS_PER_CALL", "0", ("orgs", "list")),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable(
    tmp_path: Path, variable: str, value: str, command: tuple[str, ...]
) -> None:
    """A setting that does not validate stops any command with one line naming the
    variable and the problem, not a traceback."""
    result = scribeline(*command, cwd=tmp_path, extra_env={variable: value})
    error = one_line_error(result)
    assert error.startswith(f"scribeline: bad setting {variable}: "), error
    assert "valid integer" in error or "greater than or equal to 1" in error


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    """serve on a port another process holds exits 2 with one line naming the address
    and how to choose another port, and no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = scribeline("serve", "--port", str(port), "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("scribeline: ")]
    assert errors == [
        f"scribeline: cannot listen on 127.0.0.1:{port}: the port is in use (is a server"
        " already running?); choose another with --port or SCRIBELINE_PORT (--host or"
        " SCRIBELINE_HOST for the address)"
    ], result.stderr


@pytest.mark.parametrize("command", [("serve",), ("demo",), ("orgs", "list")], ids=" ".join)
def test_server_commands_on_a_client_only_install_say_what_to_install(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    """Without the server's dependencies, serve, demo and the admin commands say in one
    line to install the server extra instead of a traceback."""
    error = one_line_error(scribeline_after(CLIENT_ONLY, *command, cwd=tmp_path))
    assert error.endswith("pip install 'scribeline[server]'"), error
    assert f"`scribeline {command[0]}`" in error


# This Python's SQLite as a release from before DELETE ... RETURNING (3.35).
OLD_SQLITE = """
import sqlite3, sys
sqlite3.sqlite_version_info = (3, 31, 1)
"""


@pytest.mark.parametrize(
    "command", [("serve", "--port", "0"), ("orgs", "create", "acme", "--init")], ids=" ".join
)
def test_an_sqlite_too_old_for_the_store_is_one_line(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    """On an SQLite older than 3.35 the server and the admin commands refuse to open
    the store, in one line naming the version found and the one needed, before they
    create or touch any database file."""
    data = tmp_path / "data"
    error = one_line_error(scribeline_after(OLD_SQLITE, *command, "--data-dir", str(data)))
    assert error.startswith("scribeline: SQLite 3.31.1 is too old"), error
    assert "3.35.0 or later" in error and "SCRIBELINE_DATABASE_URL" in error
    assert not (data / "scribeline.db").exists()


def test_bots_simulate_names_the_server_it_cannot_reach(tmp_path: Path) -> None:
    """bots simulate against a server that is not there fails at once with one line
    naming the producer address, without the URL's token."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"ws://127.0.0.1:{port}/v1/bots/b1/producer"
    for bot_id in (["b1"], []):  # the id is not needed with the bot's producer URL
        error = one_line_error(
            scribeline("bots", "simulate", *bot_id, "--producer-url", f"{url}?token=SECRET-TOKEN")
        )
        assert error.startswith(f"scribeline: the bot's connection to {url} failed: "), error
        assert "SECRET-TOKEN" not in error
    error = one_line_error(scribeline("bots", "simulate"))
    assert error == "scribeline: name the bot (BOT_ID) or give its --producer-url", error


# --------------------------------------------------------------------------- make run


def make_run(*args: str, **variables: str) -> str:
    """The command ``make run`` would run (a dry run that leaves the install alone)."""
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", "-o", ".venv/.installed-stamp", "run", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env(**variables),
        check=True,
    )
    (line,) = [line for line in result.stdout.splitlines() if " demo " in line]
    return line


def test_make_run_takes_its_settings_from_make_or_the_environment() -> None:
    """make run passes SCRIBELINE_PORT, _HOST and _DATA_DIR on, or PORT=, HOST=, DATA=
    (which win); without either it serves on 127.0.0.1:8000 from ./data."""
    assert make_run().endswith("demo --host 127.0.0.1 --port 8000 --data-dir ./data")
    scribeline_vars = {
        "SCRIBELINE_PORT": "9000",
        "SCRIBELINE_HOST": "0.0.0.0",
        "SCRIBELINE_DATA_DIR": "/srv/data",
    }
    assert make_run(**scribeline_vars).endswith(
        "demo --host 0.0.0.0 --port 9000 --data-dir /srv/data"
    )
    assert make_run("PORT=9001", "DATA=/tmp/d").endswith("--port 9001 --data-dir /tmp/d")
    assert make_run("PORT=9001", SCRIBELINE_PORT="9000").endswith("--port 9001 --data-dir ./data")


# --------------------------------------------------------------------------- migrations


MIGRATE = """
import logging, sys
logging.basicConfig(level=logging.INFO)  # as `scribeline bots simulate` sets it up
from scribeline.storage.migrate import upgrade
upgrade(sys.argv[1])
logging.getLogger("scribeline").info("migrated")
"""


def test_migrations_log_nothing_below_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Under logging configured at INFO, importing alembic and migrating a new database
    log nothing (the caller's own INFO lines still show); a level set on alembic's logger
    is respected."""
    result = subprocess.run(
        [sys.executable, "-c", MIGRATE, f"sqlite:///{tmp_path / 'a.db'}"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env(),
        check=True,
    )
    assert result.stderr == "INFO:scribeline:migrated\n"

    caplog.set_level(logging.INFO)
    logging.getLogger("alembic").setLevel(logging.INFO)
    try:
        migrate.upgrade(f"sqlite:///{tmp_path / 'b.db'}")
    finally:
        logging.getLogger("alembic").setLevel(logging.NOTSET)
    assert any(r.name.startswith("alembic") for r in caplog.records), "asked for, shown"
