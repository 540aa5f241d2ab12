"""The ``scribeline`` command: run the server, administer organizations and keys,
and follow calls.

Administrative commands (:mod:`scribeline.cli_admin`, and the dashboard's in
:mod:`scribeline.cli_sessions`) open the data directory's database directly,
so they work with or without a running server. ``tail``,
and ``calls list`` and ``campaigns list`` with a key, talk to a server instead
and need only the base install: server-only modules are imported inside the
commands that use them, never at module level.

Whatever a user must fix is one line on stderr (``scribeline: ...``), exit 2,
no traceback: a bad setting, a missing data directory, a busy port, an SQLite
too old for the store, a command that needs the server's dependencies on a
client-only install.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import functools
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from scribeline.cli_admin import (
    cmd_bots_list,
    cmd_bots_simulate,
    cmd_calls_list,
    cmd_campaigns_list,
    cmd_keys_create,
    cmd_keys_list,
    cmd_keys_revoke,
    cmd_orgs_create,
    cmd_orgs_list,
)
from scribeline.cli_data import location, settings
from scribeline.cli_remote import DEFAULT_SERVER, CliError, cmd_tail
from scribeline.cli_remote import fail as _fail
from scribeline.cli_sessions import add_commands as add_session_commands
from scribeline.errors import StorageUnavailable
from scribeline.storage.sqlite_db import SqliteTooOld, check_version

__all__ = ["main"]

#: Top-level modules of the ``server`` extra: a command that imports one of them on
#: a client-only install says how to install it.
SERVER_MODULES = frozenset(
    {"aiohttp", "uvloop", "pydantic_settings", "sqlalchemy", "alembic", "jwt"}
)
#: The extra that provides each optional top-level module.
EXTRA_MODULES = {
    **dict.fromkeys(SERVER_MODULES, "server"),
    "asyncpg": "postgres",
    "psycopg": "postgres",
    "redis": "redis",
}

#: What binding a listening socket fails with when the address is the problem.
_BIND_ERRORS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES})


def _serve_error(exc: OSError, host: str, port: int) -> str | None:
    """One line for an ``OSError`` out of the server's start, or None for one that
    is a bug (and keeps its traceback)."""
    from scribeline.api.metrics import MetricsListenError  # only ever raised when serving

    if isinstance(exc, MetricsListenError):
        return exc.strerror
    if isinstance(exc, socket.gaierror):
        return f"cannot listen on {host}:{port}: unknown host ({exc.strerror})"
    if exc.errno in _BIND_ERRORS and exc.filename is None:
        problem = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            problem = "the port is in use (is a server already running?)"
        return (
            f"cannot listen on {host}:{port}: {problem}; choose another with --port"
            " or SCRIBELINE_PORT (--host or SCRIBELINE_HOST for the address)"
        )
    if exc.filename is not None:
        return f"cannot use {exc.filename}: {exc.strerror or exc}"
    return None


def cmd_serve(args: argparse.Namespace) -> int:
    from scribeline import deployment, server
    from scribeline.tokens import TokenSecretError

    config = settings(args)
    workers = getattr(args, "workers", 1)
    try:
        deployment.check(config, workers)
    except deployment.DeploymentError as exc:
        return _fail(str(exc))
    if not deployment.shared_store(config):
        check_version()  # SQLite's, before the server writes anything to the data directory
    if workers > 1:
        return _serve_workers(config, workers, args.demo)
    hook = None
    if args.demo:
        from scribeline.demo.runner import start_demo

        hook = functools.partial(start_demo, data_dir=config.data_dir.resolve())
    try:
        return server.run(config, hook)
    except TokenSecretError as exc:
        return _fail(str(exc))
    except OSError as exc:
        message = _serve_error(exc, config.host, config.port)
        if message is None:
            raise
        return _fail(message)


def _serve_workers(config: Settings, workers: int, demo: bool) -> int:
    from scribeline import logs
    from scribeline import workers as pool

    if demo:
        return _fail("the demo runs in one process: drop --workers (or --demo)")
    logs.configure(config.log_level, log_format=config.log_format)
    try:
        asyncio.run(_migrate(config))  # once, before any worker starts
        return pool.run_workers(config, workers)
    except OSError as exc:
        message = _serve_error(exc, config.host, config.port)
        if message is None:
            raise
        return _fail(message)


async def _migrate(config: Settings) -> None:
    """Open the store, which applies pending migrations (under a lock on PostgreSQL)."""
    from scribeline.storage import open_storage

    storage = await open_storage(config.database_url, config.data_dir)
    await storage.close()


def cmd_migrate(args: argparse.Namespace) -> int:
    """Bring the configured store's schema to the newest version."""
    from scribeline import logs

    config = settings(args)
    logs.configure(config.log_level, log_format=config.log_format)
    asyncio.run(_migrate(config))
    print(f"The {location(config)} is at the newest schema.")
    return 0


def _parents() -> tuple[argparse.ArgumentParser, ...]:
    """The shared options: ``(data, net, remote, stores)``."""
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument(
        "--data-dir",
        type=Path,
        help="data directory (default $SCRIBELINE_DATA_DIR, else ./data: under the folder"
        " you run this in)",
    )
    net = argparse.ArgumentParser(add_help=False)
    net.add_argument(
        "--host", help="address to listen on (default $SCRIBELINE_HOST, else 127.0.0.1)"
    )
    net.add_argument(
        "--port", type=int, help="port (default $SCRIBELINE_PORT, else 8000; 0 picks a free one)"
    )
    remote = argparse.ArgumentParser(add_help=False)
    remote.add_argument(
        "--server", help=f"the server (default $SCRIBELINE_URL, else {DEFAULT_SERVER})"
    )
    remote.add_argument(
        "--key",
        help="API key (default $SCRIBELINE_API_KEY; $SCRIBELINE_TOKEN for an access token)."
        " Prefer the environment: a command line is visible to other users",
    )
    stores = argparse.ArgumentParser(add_help=False)
    stores.add_argument(
        "--database-url",
        help="store (default $SCRIBELINE_DATABASE_URL, else SQLite in the data directory);"
        " postgresql://user@host/db is shared by several nodes",
    )
    return data, net, remote, stores


if TYPE_CHECKING:
    from scribeline.config import Settings

    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def _add_server(
    sub: Subparsers,
    data: argparse.ArgumentParser,
    net: argparse.ArgumentParser,
    stores: argparse.ArgumentParser,
) -> None:
    serve = sub.add_parser("serve", parents=[net, data, stores], help="run the server")
    serve.add_argument("--demo", action="store_true", help="also run simulated calls")
    serve.add_argument(
        "--broker-url",
        help="broker (default $SCRIBELINE_BROKER_URL, else memory://); redis://host:port/0"
        " connects several nodes",
    )
    serve.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="server processes sharing the port (needs PostgreSQL and Redis); default 1",
    )
    serve.set_defaults(func=cmd_serve)
    migrate = sub.add_parser(
        "migrate",
        parents=[data, stores],
        help="bring the store's schema to the newest version (servers also do it at start)",
    )
    migrate.set_defaults(func=cmd_migrate)
    demo = sub.add_parser("demo", parents=[net, data], help="serve with simulated live calls")
    demo.set_defaults(func=cmd_serve, demo=True)


def _positive(text: str) -> int:
    value = int(text) if text.isascii() and text.isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError("must be a whole number of at least 1")
    return value


def _add_orgs_and_keys(sub: Subparsers, data: argparse.ArgumentParser) -> None:
    orgs = sub.add_parser("orgs", help="organizations").add_subparsers(dest="action", required=True)
    create_org = orgs.add_parser("create", parents=[data], help="create an organization")
    create_org.add_argument("name")
    create_org.add_argument(
        "--init",
        action="store_true",
        help="create the data directory and its database if there is none (without it,"
        " a missing one is refused)",
    )
    create_org.set_defaults(func=cmd_orgs_create)
    list_orgs = orgs.add_parser("list", parents=[data], help="list organizations: id, name")
    list_orgs.set_defaults(func=cmd_orgs_list)

    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="action", required=True)
    create_key = keys.add_parser("create", parents=[data])
    create_key.add_argument("--org", required=True)
    create_key.add_argument("--scopes", default="read,write", help="comma list: read,write,admin")
    create_key.add_argument("--name", default="", help="a label for the key")
    create_key.set_defaults(func=cmd_keys_create)
    list_keys = keys.add_parser("list", parents=[data])
    list_keys.add_argument("--org", required=True)
    list_keys.set_defaults(func=cmd_keys_list)
    revoke = keys.add_parser("revoke", parents=[data])
    revoke.add_argument("key", help="the key's id or prefix (as `keys list` shows)")
    revoke.add_argument("--org", help="only within this organization")
    revoke.set_defaults(func=cmd_keys_revoke)


_BY_KEY = (
    " With a key (--key or $SCRIBELINE_API_KEY) it asks the server for the key's"
    " organization's; without one, or with --data-dir or --org, it reads the data directory."
)


def _add_listings(
    sub: Subparsers, data: argparse.ArgumentParser, remote: argparse.ArgumentParser
) -> None:
    calls = sub.add_parser("calls", help="calls").add_subparsers(dest="action", required=True)
    list_calls = calls.add_parser(
        "list",
        parents=[data, remote],
        help="list calls, newest first",
        description="List calls, newest first: SID, status, start, customer number." + _BY_KEY,
    )
    list_calls.add_argument(
        "--active", action="store_true", help="only calls in progress (answered, not ended)"
    )
    list_calls.add_argument("--org", help="only this organization's calls (data directory)")
    list_calls.add_argument("--limit", type=int, default=50)
    list_calls.set_defaults(func=cmd_calls_list)

    campaigns = sub.add_parser("campaigns", help="campaigns").add_subparsers(
        dest="action", required=True
    )
    list_campaigns = campaigns.add_parser(
        "list",
        parents=[data, remote],
        help="list campaigns, newest first",
        description="List campaigns, newest first: id, status, contacts done, name. Watch"
        " one at /ws/campaigns/<id>/progress." + _BY_KEY,
    )
    list_campaigns.add_argument("--active", action="store_true", help="only running campaigns")
    list_campaigns.add_argument("--org", help="only this organization's (data directory)")
    list_campaigns.add_argument("--limit", type=int, default=50)
    list_campaigns.set_defaults(func=cmd_campaigns_list)


def _add_tail(sub: Subparsers, remote: argparse.ArgumentParser) -> None:
    tail = sub.add_parser(
        "tail",
        parents=[remote],
        help="follow a call's live transcript",
        description="Print a call's live transcript until the call ends: finals with their"
        " speakers and status changes; on a terminal also the partials, rewritten in place."
        " Reconnects on its own, and says at once on stderr when it cannot reach the server."
        " Exits 0 when the call ends, 2 when the server refuses the stream (or stays"
        " unreachable for about a minute), 130 on Ctrl-C.",
    )
    tail.add_argument("call_sid")
    tail.add_argument(
        "--since",
        type=int,
        help="start after this seq (default: the beginning); past the call's last seq the"
        " server replays the call from the beginning",
    )
    tail.add_argument("--finals-only", action="store_true", help="leave out partials")
    tail.add_argument(
        "--json", action="store_true", help="one JSON object per event (its wire message) a line"
    )
    tail.set_defaults(func=cmd_tail)


def _add_bots(sub: Subparsers, data: argparse.ArgumentParser) -> None:
    bots = sub.add_parser("bots", help="meeting bots").add_subparsers(dest="action", required=True)
    list_bots = bots.add_parser("list", parents=[data])
    list_bots.add_argument("--org", required=True)
    list_bots.add_argument("--limit", type=int, default=50)
    list_bots.set_defaults(func=cmd_bots_list)
    simulate = bots.add_parser(
        "simulate",
        parents=[data],
        help="join a bot to a scripted meeting as its producer",
        description="Play a scripted three-person meeting as the bot's producer: it starts,"
        " tracks participants, speaks, echoes chat-message actions into the chat and stops"
        " on a stop action (or Ctrl-C). The producer token is minted from the data"
        " directory's secret unless --producer-url is given.",
    )
    simulate.add_argument("bot_id", nargs="?", help="the bot's id (not needed with --producer-url)")
    simulate.add_argument(
        "--server", help=f"the server (default $SCRIBELINE_URL, else {DEFAULT_SERVER})"
    )
    simulate.add_argument(
        "--producer-url", help="the bot's producer_url (skips the bot id and the data dir)"
    )
    simulate.add_argument("--name", default="Scribeline Notetaker", help="the bot's chat name")
    simulate.add_argument("--speed", type=float, default=1.0, help="play faster (2 = twice)")
    simulate.add_argument("--loop", action="store_true", help="repeat until stopped")
    simulate.set_defaults(func=cmd_bots_simulate)


def _parser() -> argparse.ArgumentParser:
    data, net, remote, stores = _parents()
    parser = argparse.ArgumentParser(
        prog="scribeline",
        description="Run the Scribeline server, administer organizations, keys and calls,"
        " and follow live transcripts. Admin commands work with or without a running server,"
        " on the data directory (--data-dir, $SCRIBELINE_DATA_DIR, else ./data).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_server(sub, data, net, stores)
    _add_orgs_and_keys(sub, data)
    add_session_commands(sub, data, stores)
    _add_listings(sub, data, remote)
    _add_tail(sub, remote)
    _add_bots(sub, data)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``scribeline`` command; its exit status."""
    args = _parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except CliError as exc:
        return _fail(str(exc))
    except StorageUnavailable as exc:  # the database is down or unreachable: one line
        return _fail(exc.message)
    except SqliteTooOld as exc:
        return _fail(str(exc))
    except ImportError as exc:
        missing = (exc.name or "").partition(".")[0]
        extra = EXTRA_MODULES.get(missing)
        if extra is None:
            raise  # a bug, not an install without an extra
        return _fail(
            f"`scribeline {args.command}` needs the {extra} extra ({missing} is not"
            f" installed): pip install 'scribeline[{extra}]'"
        )
    return result
