"""Debian's Chromium as the browser tests and ``bench/dashboard.py`` launch it.

``scripts/ensure-services`` installs it; Playwright drives it through
``executable_path`` (``playwright install`` cannot download a browser here).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CHROMIUM", "CHROMIUM_ARGS"]

CHROMIUM = Path("/usr/bin/chromium")
#: Root needs --no-sandbox; the rest keep Chromium off the (closed) network and the GPU.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
