"""The ``scribeline`` command: run the server, administer organizations and keys,
and follow calls.

Administrative commands open the data directory's database directly, so they
work with or without a running server. ``tail`` and ``calls list`` with a key
talk to a server instead and need only the base install: server-only modules
are imported inside the commands that use them, never at module level.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from scribeline.cli_remote import (
    DEFAULT_SERVER,
    bad_server,
    calls_over_rest,
    cmd_tail,
    credential,
    print_call,
    server_url,
)
from scribeline.cli_remote import fail as _fail
from scribeline.events import format_ms

if TYPE_CHECKING:
    from scribeline.config import Settings

__all__ = ["main"]

T = TypeVar("T")


def _settings(args: argparse.Namespace) -> Settings:
    from scribeline.config import Settings

    overrides: dict[str, Any] = {}
    for name in ("host", "port", "data_dir"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return Settings(**overrides)


def _with_storage(args: argparse.Namespace, action: Callable[[Any], Awaitable[T]]) -> T:
    from scribeline.storage import open_storage

    settings = _settings(args)

    async def run() -> T:
        storage = await open_storage(settings.database_url, settings.data_dir)
        try:
            return await action(storage)
        finally:
            await storage.close()

    return asyncio.run(run())


def cmd_serve(args: argparse.Namespace) -> int:
    from scribeline import server
    from scribeline.tokens import TokenSecretError

    settings = _settings(args)
    try:
        if args.demo:
            from scribeline.demo.runner import start_demo

            return server.run(settings, start_demo)
        return server.run(settings)
    except TokenSecretError as exc:
        return _fail(str(exc))


def cmd_orgs_create(args: argparse.Namespace) -> int:
    from scribeline.errors import Conflict

    try:
        org = _with_storage(args, lambda s: s.create_org(args.name))
    except Conflict as exc:
        return _fail(exc.message)
    print(f"Created organization {org.name} (id {org.id})")
    return 0


async def _org_id(storage: Any, name: str) -> int:
    from scribeline.errors import NotFound

    org = await storage.get_org(name)
    if org is None:
        raise NotFound(f"No organization named {name!r}")
    return int(org.id)


def cmd_keys_create(args: argparse.Namespace) -> int:
    from scribeline.auth import new_api_key, parse_scopes
    from scribeline.errors import NotFound

    try:
        scopes = parse_scopes(args.scopes)
    except ValueError as exc:
        return _fail(str(exc))
    key, prefix, digest = new_api_key()

    async def create(storage: Any) -> Any:
        return await storage.add_api_key(
            await _org_id(storage, args.org), prefix, digest, scopes, args.name
        )

    try:
        record = _with_storage(args, create)
    except NotFound as exc:
        return _fail(exc.message)
    print(
        f"Created key {record.prefix}… (id {record.id}) for {args.org}, scopes "
        f"{','.join(sorted(scopes))}. It is shown once; store it now:"
    )
    print(key)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from scribeline.errors import NotFound

    async def run(storage: Any) -> Any:
        return await storage.list_api_keys(await _org_id(storage, args.org))

    try:
        keys = _with_storage(args, run)
    except NotFound as exc:
        return _fail(exc.message)
    for k in keys:
        state = f"revoked {format_ms(k.revoked_at)}" if k.revoked_at else "active"
        print(f"{k.id}\t{k.prefix}…\t{','.join(sorted(k.scopes))}\t{state}\t{k.name}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    async def run(storage: Any) -> Any:
        org_id = await _org_id(storage, args.org) if args.org else None
        return await storage.revoke_api_key(org_id, args.key.removesuffix("…"))

    key = _with_storage(args, run)
    if key is None:
        return _fail(f"no key {args.key!r}")
    print(f"Revoked key {key.prefix}… (id {key.id})")
    return 0


def cmd_calls_list(args: argparse.Namespace) -> int:
    if args.limit < 1:
        return _fail("--limit must be at least 1")
    # A key lists its organization's calls over REST; --data-dir or --org (without
    # --key) asks for the data directory even when a key is in the environment.
    if args.key or (args.data_dir is None and args.org is None):
        key, token = credential(args)
        if key or token:
            if args.org:
                return _fail("--org reads the data directory; a key lists its own organization")
            if problem := bad_server(server_url(args)):
                return _fail(problem)
            return calls_over_rest(args, key, token)

    async def run(storage: Any) -> Any:
        org_id = await _org_id(storage, args.org) if args.org else None
        status = "in-progress" if args.active else None
        return await storage.list_calls(org_id, status, args.limit, None)

    page = _with_storage(args, run)
    for call in page.calls:
        print_call(
            call.call_sid, call.status, format_ms(call.started_at), call.customer_phone_number
        )
    return 0


def cmd_bots_list(args: argparse.Namespace) -> int:
    from scribeline.errors import NotFound

    async def run(storage: Any) -> Any:
        return await storage.list_bots(await _org_id(storage, args.org), None, args.limit)

    try:
        bots = _with_storage(args, run)
    except NotFound as exc:
        return _fail(exc.message)
    for bot in bots:
        print(f"{bot.public_id}\t{bot.status}\t{format_ms(bot.created_at)}\t{bot.bot_name}")
    return 0


def _producer_url(args: argparse.Namespace) -> str:
    """The bot's producer URL, with a token minted from the data directory's secret."""
    import time

    from scribeline.errors import BotEnded
    from scribeline.tokens import load_or_create_secret, mint_capability

    settings = _settings(args)

    async def find(storage: Any) -> Any:
        return await storage.get_bot(None, args.bot_id)

    bot = _with_storage(args, find)
    if bot is None:
        raise LookupError(f"no bot {args.bot_id!r} in {settings.data_dir}")
    if bot.ended:
        raise BotEnded(f"bot {bot.public_id} has already {bot.status}")
    token = mint_capability(
        load_or_create_secret(settings),
        org_id=bot.org_id,
        key_id=bot.key_id,
        bot_id=bot.public_id,
        role="producer",
        ttl_seconds=int(settings.bot_token_ttl),
        now=time.time(),
    )
    server = args.server.rstrip("/").replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    return f"{server}/v1/bots/{bot.public_id}/producer?token={token}"


def cmd_bots_simulate(args: argparse.Namespace) -> int:
    import logging
    import signal

    from websockets.exceptions import ConnectionClosed, InvalidStatus

    from scribeline.demo.bot import run_bot
    from scribeline.errors import BotEnded

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if not args.speed > 0:
        return _fail("--speed must be positive")
    try:
        url = args.producer_url or _producer_url(args)
    except (LookupError, BotEnded) as exc:
        return _fail(str(exc))

    async def run() -> str:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await run_bot(url, bot_name=args.name, speed=args.speed, loop=args.loop, stop=stop)

    try:
        reason = asyncio.run(run())
    except (OSError, ConnectionClosed, InvalidStatus) as exc:
        return _fail(f"the bot lost its connection: {exc}")
    print(f"The simulated bot left the meeting ({reason.replace('_', ' ')}).")
    return 0


def _parser() -> argparse.ArgumentParser:
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument("--data-dir", type=Path, help="data directory (default ./data)")
    net = argparse.ArgumentParser(add_help=False)
    net.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    net.add_argument("--port", type=int, help="port (default 8000; 0 picks a free one)")
    remote = argparse.ArgumentParser(add_help=False)
    remote.add_argument(
        "--server", help=f"the server (default $SCRIBELINE_URL, else {DEFAULT_SERVER})"
    )
    remote.add_argument(
        "--key",
        help="API key (default $SCRIBELINE_API_KEY; $SCRIBELINE_TOKEN for an access token)."
        " Prefer the environment: a command line is visible to other users",
    )

    parser = argparse.ArgumentParser(
        prog="scribeline",
        description="Run the Scribeline server, administer organizations, keys and calls,"
        " and follow live transcripts. Admin commands work with or without a running server.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", parents=[net, data], help="run the server")
    serve.add_argument("--demo", action="store_true", help="also run simulated calls")
    serve.set_defaults(func=cmd_serve)
    demo = sub.add_parser("demo", parents=[net, data], help="serve with simulated live calls")
    demo.set_defaults(func=cmd_serve, demo=True)

    orgs = sub.add_parser("orgs", help="organizations").add_subparsers(dest="action", required=True)
    create_org = orgs.add_parser("create", parents=[data])
    create_org.add_argument("name")
    create_org.set_defaults(func=cmd_orgs_create)

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

    calls = sub.add_parser("calls", help="calls").add_subparsers(dest="action", required=True)
    list_calls = calls.add_parser(
        "list",
        parents=[data, remote],
        help="list calls, newest first",
        description="List calls, newest first: SID, status, start, customer number. With a"
        " key (--key or $SCRIBELINE_API_KEY) it asks the server for the key's organization's"
        " calls; without one it reads the data directory.",
    )
    list_calls.add_argument("--active", action="store_true", help="only calls in progress")
    list_calls.add_argument("--org", help="only this organization's calls (data directory)")
    list_calls.add_argument("--limit", type=int, default=50)
    list_calls.set_defaults(func=cmd_calls_list)

    tail = sub.add_parser(
        "tail",
        parents=[remote],
        help="follow a call's live transcript",
        description="Print a call's live transcript until the call ends: finals with their"
        " speakers and status changes; on a terminal also the partials, rewritten in place."
        " Reconnects on its own. Exits 0 when the call ends, 2 when the server refuses the"
        " stream (or stays unreachable for about a minute), 130 on Ctrl-C.",
    )
    tail.add_argument("call_sid")
    tail.add_argument("--since", type=int, help="start after this seq (default: the beginning)")
    tail.add_argument("--finals-only", action="store_true", help="leave out partials")
    tail.add_argument(
        "--json", action="store_true", help="one JSON object per event (its wire message) a line"
    )
    tail.set_defaults(func=cmd_tail)

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
    simulate.add_argument("bot_id")
    simulate.add_argument(
        "--server", default="http://127.0.0.1:8000", help="the server (default %(default)s)"
    )
    simulate.add_argument("--producer-url", help="the bot's producer_url (skips the data dir)")
    simulate.add_argument("--name", default="Scribeline Notetaker", help="the bot's chat name")
    simulate.add_argument("--speed", type=float, default=1.0, help="play faster (2 = twice)")
    simulate.add_argument("--loop", action="store_true", help="repeat until stopped")
    simulate.set_defaults(func=cmd_bots_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    result: int = args.func(args)
    return result
