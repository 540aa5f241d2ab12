"""The commands that talk to a running server (``tail``, ``calls list`` and
``campaigns list`` with a key), and the one-line errors every command prints.

They need only the base install: nothing here imports a server-only module.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = [
    "DEFAULT_SERVER",
    "CliError",
    "bad_server",
    "calls_over_rest",
    "campaigns_over_rest",
    "cmd_tail",
    "credential",
    "fail",
    "print_call",
    "print_campaign",
    "server_url",
    "wants_server",
]

DEFAULT_SERVER = "http://127.0.0.1:8000"
#: The largest page ``GET /v1/calls`` serves.
REST_PAGE = 200


T = TypeVar("T")


class CliError(Exception):
    """What the user must fix, said in one line: ``main`` prints it as
    ``scribeline: <message>`` and exits 2, without a traceback."""


def fail(message: str) -> int:
    """Print a one-line error; the command's exit status."""
    print(f"scribeline: {message}", file=sys.stderr)
    return 2


def server_url(args: argparse.Namespace) -> str:
    """``--server``, else ``$SCRIBELINE_URL``, else the local default."""
    return str(args.server or os.environ.get("SCRIBELINE_URL") or DEFAULT_SERVER)


def bad_server(url: str) -> str | None:
    if url.startswith(("http://", "https://")):
        return None
    return f"the server must be an http:// or https:// URL, not {url!r}"


def credential(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """``(api_key, token)``: ``--key``, else ``$SCRIBELINE_API_KEY``, else an access
    token from ``$SCRIBELINE_TOKEN``; ``(None, None)`` without any."""
    key = args.key or os.environ.get("SCRIBELINE_API_KEY")
    if key:
        return key, None
    return None, os.environ.get("SCRIBELINE_TOKEN") or None


def wants_server(args: argparse.Namespace) -> tuple[str | None, str | None] | None:
    """The credential to list with over REST, or None to read the data directory:
    a key (``--key`` or the environment) asks the server, unless ``--data-dir`` or
    ``--org`` (without ``--key``) asks for the data directory. Raises ``CliError``
    for ``--org`` with a key, or a server that is not an http(s) URL."""
    if not (args.key or (args.data_dir is None and args.org is None)):
        return None
    key, token = credential(args)
    if not (key or token):
        return None
    if args.org:
        raise CliError("--org reads the data directory; a key lists its own organization")
    if problem := bad_server(server_url(args)):
        raise CliError(problem)
    return key, token


def print_call(sid: str, status: str, started_at: str, customer: str | None) -> None:
    print(f"{sid}\t{status}\t{started_at}\t{customer or ''}")


def print_campaign(campaign_id: int, status: str, done: int, total: int, name: str) -> None:
    print(f"{campaign_id}\t{status}\t{done}/{total} done\t{name}")


def _ask_server(request: Coroutine[Any, Any, T]) -> T:
    """Run one REST exchange; a refusal or an unreachable server is a ``CliError``."""
    from scribeline.client import ApiError, ConnectionFailedError

    try:
        return asyncio.run(request)
    except ApiError as exc:
        raise CliError(f"the server refused: {exc.status} {exc.code}: {exc.message}") from None
    except ConnectionFailedError as exc:
        raise CliError(str(exc)) from None


def calls_over_rest(args: argparse.Namespace, key: str | None, token: str | None) -> int:
    from scribeline.client import AsyncClient

    status = "in-progress" if args.active else None

    async def run() -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = []
        cursor = None
        async with AsyncClient(server_url(args), api_key=key, token=token) as client:
            while len(calls) < args.limit:
                limit = min(args.limit - len(calls), REST_PAGE)
                page = await client.list_calls(status=status, limit=limit, cursor=cursor)
                calls += page["calls"]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
        return calls

    calls = _ask_server(run())
    for call in calls:
        print_call(
            call["call_sid"], call["status"], call["started_at"], call["customer_phone_number"]
        )
    if not calls:
        _nothing("calls in progress" if args.active else "calls", args)
    return 0


def campaigns_over_rest(args: argparse.Namespace, key: str | None, token: str | None) -> int:
    """``campaigns list`` with a key: the organization's latest campaigns (the
    server lists 200 at most), ``--active`` keeping the running ones."""
    from scribeline.client import AsyncClient

    async def run() -> list[dict[str, Any]]:
        async with AsyncClient(server_url(args), api_key=key, token=token) as client:
            return await client.list_campaigns()

    campaigns = _ask_server(run())
    if args.active:
        campaigns = [c for c in campaigns if c["status"] == "running"]
    for campaign in campaigns[: args.limit]:
        progress = campaign["progress"]
        print_campaign(
            campaign["id"],
            campaign["status"],
            progress["completed_contacts"],
            progress["total_contacts"],
            campaign["name"],
        )
    if not campaigns:
        _nothing("running campaigns" if args.active else "campaigns", args)
    return 0


def _nothing(what: str, args: argparse.Namespace) -> None:
    """An empty list is not an error, but say where it came from (on stderr)."""
    print(f"scribeline: no {what} at {server_url(args)}", file=sys.stderr)


def cmd_tail(args: argparse.Namespace) -> int:
    from scribeline.client import ReconnectFailed, StreamRefused
    from scribeline.tail import TailOptions, run

    key, token = credential(args)
    if not (key or token):
        return fail("tail needs a key: --key, or $SCRIBELINE_API_KEY (or $SCRIBELINE_TOKEN)")
    if args.since is not None and args.since < 0:
        return fail("--since must be a seq (0 or more)")
    if problem := bad_server(server_url(args)):
        return fail(problem)
    options = TailOptions(
        call_sid=args.call_sid,
        server=server_url(args),
        api_key=key,
        token=token,
        since=args.since,
        finals_only=args.finals_only,
        json=args.json,
    )
    try:
        return run(options)
    except StreamRefused as exc:
        return fail(f"tail refused: {exc.code}: {exc.message}")
    except ReconnectFailed as exc:
        return fail(f"tail failed: {exc}")
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`scribeline tail ... | head`): exit quietly, and keep
        # Python from complaining when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
