"""The dashboard's admin commands: ``dashboard`` prints a one-time sign-in link,
``sessions list`` shows an organization's dashboard sessions and ``sessions
revoke`` ends them (docs/operations.md, "Dashboard sessions").

Like the other admin commands they work on the data directory's database (or
``SCRIBELINE_DATABASE_URL``), with or without a running server. Revoking a
session is revoking a row of the keys' table: the running nodes are told with
the same ``KEY_REVOKED`` notice as ``keys revoke`` sends, so every token minted
from the session stops working, and its sockets close, at once.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, TypeAlias

from scribeline.cli_admin import org_id_of, report_empty, tell_nodes_key_revoked
from scribeline.cli_data import location, settings, with_storage
from scribeline.cli_remote import CliError
from scribeline.events import format_ms

if TYPE_CHECKING:
    from scribeline.domain import ApiKey

    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["add_commands", "cmd_dashboard", "cmd_sessions_list", "cmd_sessions_revoke"]


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Print a one-time dashboard sign-in link: stdout only, the link alone on the
    last line (its code is a credential until it is used or expires)."""
    import time

    from scribeline.public_url import http_base, settings_base
    from scribeline.sessions import issue_code

    config = settings(args)
    base = settings_base(config) if args.url is None else http_base(args.url)
    if base is None:
        raise CliError("--url must be the server's http(s):// or ws(s):// address")

    async def run(storage: Any) -> Any:
        org_id = await org_id_of(storage, args.org)
        return await issue_code(
            storage,
            org_id,
            read_only=args.read_only,
            ttl_seconds=config.dashboard_code_ttl,
            now=time.time(),
        )

    issued = with_storage(args, run)
    ttl = config.dashboard_code_ttl
    within = f"{ttl // 60} minutes" if ttl % 60 == 0 else f"{ttl} seconds"
    access = "read-only" if issued.read_only else "full access"
    print(
        f"Dashboard sign-in link for {args.org} ({access}) from the {location(config)}."
        f" It works once, until {format_ms(issued.expires_at)} (in {within}):"
    )
    print(issued.link(base))  # alone on the last line: scripts take it from there
    return 0


def _state(session: ApiKey, now: int) -> str:
    if session.revoked_at is not None:
        return f"revoked {format_ms(session.revoked_at)}"
    return "active" if session.active_at(now) else "expired"


def cmd_sessions_list(args: argparse.Namespace) -> int:
    """One session a line, oldest first: id, created, expires, access, state."""
    from scribeline.events import now_ms

    async def run(storage: Any) -> Any:
        return await storage.list_sessions(await org_id_of(storage, args.org))

    sessions: list[ApiKey] = with_storage(args, run)
    now = now_ms()
    for s in sessions:
        access = "full access" if "write" in s.scopes else "read-only"
        assert s.expires_at is not None
        created, expires = format_ms(s.created_at), format_ms(s.expires_at)
        print(f"{s.id}\t{created}\t{expires}\t{access}\t{_state(s, now)}")
    if not sessions:
        report_empty(f"dashboard sessions of {args.org}", args)
    return 0


def cmd_sessions_revoke(args: argparse.Namespace) -> int:
    """Revoke one session (by id) or every active one of the organization, and tell
    the running nodes, as ``keys revoke`` does."""
    from scribeline.events import now_ms

    session_id = None if args.all else _session_id(args.session)

    async def run(storage: Any) -> tuple[list[ApiKey], bool]:
        org_id = await org_id_of(storage, args.org)
        revoked = await storage.revoke_sessions(org_id, session_id, now_ms())
        if session_id is None or revoked:
            return revoked, True
        return revoked, any(s.id == session_id for s in await storage.list_sessions(org_id))

    revoked, known = with_storage(args, run)
    config = settings(args)
    where = location(config)
    if not known:
        raise CliError(f"no dashboard session {args.session} of {args.org} in the {where}")
    if not revoked:
        what = f"Dashboard session {session_id}" if session_id else "No dashboard session"
        state = "was already revoked" if session_id else "was active"
        print(f"{what} of {args.org} {state} in the {where}")
        return 0
    tell_nodes_key_revoked(config.broker_url, [s.id for s in revoked])
    if session_id is not None:
        print(f"Revoked dashboard session {session_id} of {args.org} in the {where}")
    else:
        ids = ", ".join(str(s.id) for s in revoked)
        count = f"{len(revoked)} dashboard session{'s' if len(revoked) > 1 else ''}"
        print(f"Revoked {count} of {args.org} (id {ids}) in the {where}")
    return 0


def _session_id(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise CliError(f"a session id is a whole number (as `sessions list` shows), not {text!r}")
    return int(text)


def add_commands(
    sub: Subparsers, data: argparse.ArgumentParser, stores: argparse.ArgumentParser
) -> None:
    """``dashboard`` and ``sessions list|revoke`` (``data`` and ``stores``: the shared
    ``--data-dir`` and ``--database-url`` options)."""
    dashboard = sub.add_parser(
        "dashboard",
        parents=[data, stores],
        help="print a one-time sign-in link to the web dashboard",
        description="Print a link that signs a browser in to the organization's dashboard:"
        " it works once, within SCRIBELINE_DASHBOARD_CODE_TTL seconds (10 minutes), and"
        " starts a session of SCRIBELINE_DASHBOARD_SESSION_TTL seconds (8 hours). The link"
        " is a credential until it is used: hand it over as you would a key.",
    )
    dashboard.add_argument("--org", required=True)
    dashboard.add_argument(
        "--read-only", action="store_true", help="a session that can look but change nothing"
    )
    dashboard.add_argument(
        "--url",
        help="the server's address as the browser reaches it (default $SCRIBELINE_PUBLIC_URL,"
        " else http://$SCRIBELINE_HOST:$SCRIBELINE_PORT)",
    )
    dashboard.set_defaults(func=cmd_dashboard)

    sessions = sub.add_parser("sessions", help="dashboard sessions").add_subparsers(
        dest="action", required=True
    )
    listing = sessions.add_parser(
        "list",
        parents=[data, stores],
        help="list an organization's dashboard sessions",
        description="One session a line, oldest first: id, created, expires, full access or"
        " read-only, and active, expired or revoked. Sessions are purged a day after they"
        " expire.",
    )
    listing.add_argument("--org", required=True)
    listing.set_defaults(func=cmd_sessions_list)
    revoke = sessions.add_parser(
        "revoke",
        parents=[data, stores],
        help="end dashboard sessions at once",
        description="Revoke one dashboard session, or every active one of the organization:"
        " their access tokens, captions links and bot URLs stop working and their"
        " WebSockets close, on every node told (the others within"
        " SCRIBELINE_AUTH_CACHE_SECONDS).",
    )
    revoke.add_argument("--org", required=True)
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("session", nargs="?", help="the session's id (as `sessions list` shows)")
    which.add_argument("--all", action="store_true", help="every active session of the org")
    revoke.set_defaults(func=cmd_sessions_revoke)
