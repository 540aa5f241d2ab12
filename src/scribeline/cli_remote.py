"""The commands that talk to a running server (``tail``, ``calls list`` with a key).

They need only the base install: nothing here imports a server-only module.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

__all__ = [
    "DEFAULT_SERVER",
    "bad_server",
    "calls_over_rest",
    "cmd_tail",
    "credential",
    "fail",
    "print_call",
    "server_url",
]

DEFAULT_SERVER = "http://127.0.0.1:8000"
#: The largest page ``GET /v1/calls`` serves.
REST_PAGE = 200


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


def print_call(sid: str, status: str, started_at: str, customer: str | None) -> None:
    print(f"{sid}\t{status}\t{started_at}\t{customer or ''}")


def calls_over_rest(args: argparse.Namespace, key: str | None, token: str | None) -> int:
    from scribeline.client import ApiError, AsyncClient, ConnectionFailedError

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

    try:
        calls = asyncio.run(run())
    except ApiError as exc:
        return fail(f"the server refused: {exc.status} {exc.code}: {exc.message}")
    except ConnectionFailedError as exc:
        return fail(str(exc))
    for call in calls:
        print_call(
            call["call_sid"], call["status"], call["started_at"], call["customer_phone_number"]
        )
    return 0


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
