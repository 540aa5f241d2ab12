"""The data directory's files: readable by the server's user only.

The directory holds the database (every transcript) and the token secret,
so it is created 0700 and the files in it 0600. SQLite gives its ``-wal``
and ``-shm`` files the mode of the database file, so creating that file
0600 before SQLite opens it covers them too. Existing files are not
re-moded behind the operator's back; a warning says what to do.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

__all__ = ["private_dir", "private_file"]

log = logging.getLogger(__name__)


def private_dir(path: Path) -> None:
    """Create ``path`` (with its parents) if missing; the directory itself 0700."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    _warn_if_shared(path, "700")


def private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist yet."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    _warn_if_shared(path, "600")


def _warn_if_shared(path: Path, wanted: str) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("%s is accessible to other users (mode %o); chmod %s it", path, mode, wanted)
