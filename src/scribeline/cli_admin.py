"""The admin commands: organizations, keys, calls, campaigns and bots, read from
and written to the data directory's database (with or without a running server),
and ``bots simulate``, a bot's producer whose token is minted from the data
directory's secret.

``calls list`` and ``campaigns list`` ask the server instead when given a key.
Every command refuses a data directory without a database (see
:mod:`scribeline.cli_data`); those that change something name the directory
they changed, and an empty listing says on stderr which one it read. A new
key is always the last line of stdout, alone.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from scribeline.cli_data import database_file, location, settings, with_storage
from scribeline.cli_remote import (
    CliError,
    calls_over_rest,
    campaigns_over_rest,
    fail,
    print_call,
    print_campaign,
    server_url,
    wants_server,
)
from scribeline.events import format_ms
from scribeline.public_url import ws_base

__all__ = [
    "cmd_bots_list",
    "cmd_bots_simulate",
    "cmd_calls_list",
    "cmd_campaigns_list",
    "cmd_keys_create",
    "cmd_keys_list",
    "cmd_keys_revoke",
    "cmd_orgs_create",
    "cmd_orgs_list",
    "org_id_of",
    "report_empty",
    "tell_nodes_key_revoked",
]

#: Campaigns ``campaigns list --active`` looks through per organization.
ACTIVE_SCAN = 1000


def report_empty(what: str, args: argparse.Namespace) -> None:
    """An empty listing is not an error; say which data directory it read."""
    print(f"scribeline: no {what} in the {location(settings(args))}", file=sys.stderr)


async def org_id_of(storage: Any, name: str) -> int:
    org = await storage.get_org(name)
    if org is None:
        raise CliError(f"no organization named {name!r}")
    return int(org.id)


def cmd_orgs_create(args: argparse.Namespace) -> int:
    from scribeline.errors import Conflict

    db = database_file(settings(args))
    new = args.init and db is not None and not db.is_file()
    try:
        org = with_storage(args, lambda s: s.create_org(args.name), create=args.init)
    except Conflict as exc:
        raise CliError(exc.message) from None
    where = location(settings(args))
    if new:
        print(f"Created a new database in the {where}")
    print(f"Created organization {org.name} (id {org.id}) in the {where}")
    return 0


def cmd_orgs_list(args: argparse.Namespace) -> int:
    orgs = with_storage(args, lambda s: s.list_orgs())
    for org in orgs:
        print(f"{org.id}\t{org.name}\t{format_ms(org.created_at)}")
    if not orgs:
        report_empty("organizations", args)
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    from scribeline.auth import new_api_key, parse_scopes

    try:
        scopes = parse_scopes(args.scopes)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    key, prefix, digest = new_api_key()

    async def create(storage: Any) -> Any:
        return await storage.add_api_key(
            await org_id_of(storage, args.org), prefix, digest, scopes, args.name
        )

    record = with_storage(args, create)
    print(
        f"Created key {record.prefix}… (id {record.id}) for {args.org} in the"
        f" {location(settings(args))}, scopes {','.join(sorted(scopes))}."
        " It is shown once; store it now:"
    )
    print(key)  # alone on the last line: scripts take it from there
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    async def run(storage: Any) -> Any:
        return await storage.list_api_keys(await org_id_of(storage, args.org))

    keys = with_storage(args, run)
    for k in keys:
        state = f"revoked {format_ms(k.revoked_at)}" if k.revoked_at else "active"
        print(f"{k.id}\t{k.prefix}…\t{','.join(sorted(k.scopes))}\t{state}\t{k.name}")
    if not keys:
        report_empty(f"keys of {args.org}", args)
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    async def run(storage: Any) -> Any:
        org_id = await org_id_of(storage, args.org) if args.org else None
        return await storage.revoke_api_key(org_id, args.key.removesuffix("…"))

    key = with_storage(args, run)
    config = settings(args)
    where = location(config)
    if key is None:
        raise CliError(f"no key {args.key!r} in the {where}")
    tell_nodes_key_revoked(config.broker_url, [key.id])
    print(f"Revoked key {key.prefix}… (id {key.id}) in the {where}")
    return 0


def tell_nodes_key_revoked(broker_url: str, key_ids: Sequence[int]) -> None:
    """Running nodes drop the keys (or sessions) from their caches, and close their
    sockets, now rather than when the cache entry expires
    (SCRIBELINE_AUTH_CACHE_SECONDS); best effort."""
    from scribeline.auth import KEY_REVOKED
    from scribeline.cluster import announce

    async def tell() -> None:
        for key_id in key_ids:
            await announce(broker_url, KEY_REVOKED, {"id": key_id})

    try:
        asyncio.run(tell())
    except Exception as exc:  # the revocation is stored: nodes catch up on their own
        print(
            f"(running nodes could not be told at once: {type(exc).__name__}; they stop"
            " accepting it within SCRIBELINE_AUTH_CACHE_SECONDS)"
        )


def cmd_calls_list(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise CliError("--limit must be at least 1")
    remote = wants_server(args)
    if remote is not None:
        return calls_over_rest(args, *remote)

    async def run(storage: Any) -> Any:
        org_id = await org_id_of(storage, args.org) if args.org else None
        status = "in-progress" if args.active else None
        return await storage.list_calls(org_id, status, args.limit, None)

    page = with_storage(args, run)
    for call in page.calls:
        print_call(
            call.call_sid, call.status, format_ms(call.started_at), call.customer_phone_number
        )
    if not page.calls:
        report_empty("calls in progress" if args.active else "calls", args)
    return 0


def cmd_campaigns_list(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise CliError("--limit must be at least 1")
    remote = wants_server(args)
    if remote is not None:
        return campaigns_over_rest(args, *remote)
    scan = max(args.limit, ACTIVE_SCAN) if args.active else args.limit

    async def run(storage: Any) -> list[tuple[Any, Any]]:
        if args.org:
            org_ids = [await org_id_of(storage, args.org)]
        else:
            org_ids = [org.id for org in await storage.list_orgs()]
        campaigns = [c for o in org_ids for c in await storage.list_campaigns(o, scan)]
        if args.active:
            campaigns = [c for c in campaigns if c.status == "running"]
        newest = sorted(campaigns, key=lambda c: c.id, reverse=True)[: args.limit]
        return [(c, await storage.counters(c.id)) for c in newest]

    listed = with_storage(args, run)
    for campaign, counters in listed:
        print_campaign(
            campaign.id, campaign.status, counters.completed, counters.total, campaign.name
        )
    if not listed:
        report_empty("running campaigns" if args.active else "campaigns", args)
    return 0


def cmd_bots_list(args: argparse.Namespace) -> int:
    async def run(storage: Any) -> Any:
        return await storage.list_bots(await org_id_of(storage, args.org), None, args.limit)

    bots = with_storage(args, run)
    for bot in bots:
        print(f"{bot.public_id}\t{bot.status}\t{format_ms(bot.created_at)}\t{bot.bot_name}")
    if not bots:
        report_empty(f"bots of {args.org}", args)
    return 0


def _producer_url(args: argparse.Namespace) -> str:
    """The bot's producer URL, with a token minted from the data directory's secret."""
    import time

    from scribeline.tokens import load_or_create_secret, mint_capability

    config = settings(args)
    bot = with_storage(args, lambda storage: storage.get_bot(None, args.bot_id))
    if bot is None:
        raise CliError(f"no bot {args.bot_id!r} in the {location(config)}")
    if bot.ended:
        raise CliError(f"bot {bot.public_id} has already {bot.status}")
    token = mint_capability(
        load_or_create_secret(config),
        org_id=bot.org_id,
        key_id=bot.key_id,
        bot_id=bot.public_id,
        role="producer",
        ttl_seconds=int(config.bot_token_ttl),
        now=time.time(),
    )
    server = ws_base(server_url(args))
    if server is None:
        raise CliError("--server must be the server's http(s):// address")
    return f"{server}/v1/bots/{bot.public_id}/producer?token={token}"


def cmd_bots_simulate(args: argparse.Namespace) -> int:
    import signal

    from websockets.exceptions import ConnectionClosed, InvalidStatus

    from scribeline import logs
    from scribeline.client.errors import redact_url
    from scribeline.demo.bot import run_bot

    logs.configure("INFO", "%(levelname)s %(message)s")
    if not args.speed > 0:
        raise CliError("--speed must be positive")
    if args.producer_url is None and args.bot_id is None:
        raise CliError("name the bot (BOT_ID) or give its --producer-url")
    url = args.producer_url or _producer_url(args)

    async def run() -> str:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await run_bot(url, bot_name=args.name, speed=args.speed, loop=args.loop, stop=stop)

    try:
        reason = asyncio.run(run())
    except (OSError, ConnectionClosed, InvalidStatus) as exc:
        return fail(f"the bot's connection to {redact_url(url)} failed: {exc}")
    print(f"The simulated bot left the meeting ({reason.replace('_', ' ')}).")
    return 0
