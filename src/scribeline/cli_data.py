"""Settings and the data directory, as the ``scribeline`` commands use them.

Admin commands open the data directory's database directly. One run from the
wrong folder used to create a new, empty database there and mint a key the
running server had never heard of; so a data directory that does not exist, or
holds no database, is refused with one line naming it, unless the command was
asked to create one (``orgs create --init``). Commands that change something
name the directory they changed.

Server-only modules (pydantic-settings, the storage) are imported inside the
functions: importing this module needs only the base install.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from scribeline.cli_remote import CliError

if TYPE_CHECKING:
    from scribeline.config import Settings
    from scribeline.storage import Storage

__all__ = ["database_file", "location", "settings", "with_storage"]

T = TypeVar("T")

#: Flags that override a setting, by setting name.
_FLAGS = ("host", "port", "data_dir", "database_url", "broker_url")


def settings(args: argparse.Namespace) -> Settings:
    """The settings: ``SCRIBELINE_*`` variables, overridden by the command's flags.

    A bad value is a ``CliError`` naming the variable (or flag) and the problem,
    never the value (it may be a secret).
    """
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from scribeline.config import Settings

    overrides: dict[str, Any] = {}
    for name in _FLAGS:
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            source = (
                f"--{field.replace('_', '-')}"
                if field in overrides
                else f"SCRIBELINE_{field.upper()}"
            )
            problems.append(f"{source}: {error['msg']}")
        raise CliError("bad setting " + "; ".join(problems)) from None
    except SettingsError as exc:
        raise CliError(f"bad setting: {exc}") from None


def database_file(config: Settings) -> Path | None:
    """The SQLite file the settings point at (None for another kind of database)."""
    url = config.database_url
    if url in ("", "sqlite:", "sqlite://"):
        return config.sqlite_path()
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///"))
    return None


def location(config: Settings) -> str:
    """Where admin commands read and write, for a message: ``data directory /abs``."""
    if config.database_url.startswith("sqlite:///"):
        return f"database {Path(config.database_url.removeprefix('sqlite:///')).resolve()}"
    if config.database_url in ("", "sqlite:", "sqlite://"):
        return f"data directory {config.data_dir.resolve()}"
    return f"database {_without_credentials(config.database_url)}"


def _without_credentials(url: str) -> str:
    """``scheme://host:port/name`` of a URL, with no user, password or query."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _check(config: Settings) -> None:
    """Refuse a data directory that does not exist or holds no database."""
    db = database_file(config)
    if db is None or db.is_file():
        return
    folder = db.parent.resolve()
    if not folder.is_dir():
        problem = f"no data directory {folder}"
    else:
        problem = f"no Scribeline database in {folder}"
    raise CliError(
        f"{problem}: run this where the server runs, or give --data-dir (or"
        " $SCRIBELINE_DATA_DIR); to start a new one: scribeline orgs create NAME --init"
    )


def with_storage(
    args: argparse.Namespace,
    action: Callable[[Storage], Awaitable[T]],
    *,
    create: bool = False,
) -> T:
    """Run ``action`` on the data directory's storage; a missing data directory or
    database is a ``CliError`` unless ``create``."""
    from scribeline.storage import open_storage

    config = settings(args)
    if not create:
        _check(config)

    async def run() -> T:
        storage = await open_storage(config.database_url, config.data_dir)
        try:
            return await action(storage)
        finally:
            await storage.close()

    return asyncio.run(run())
