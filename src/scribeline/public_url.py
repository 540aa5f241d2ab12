"""The server's public address (``SCRIBELINE_PUBLIC_URL``) in each form it is handed
out in: the ``http(s)`` base of links and of the dashboard's own origin, the
``ws(s)`` base of WebSocket URLs (bot URLs), the ``ws(s)`` origin a page's
sockets connect to, and the origin an ``Origin`` header is compared with.

The setting may be written in either form, ``https://scribe.example.com`` or
``wss://scribe.example.com``: they name the same server, and each conversion
keeps the security of the scheme (``https`` ↔ ``wss``, ``http`` ↔ ``ws``).
Pure functions, no I/O; a value that is no such URL gives None.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from scribeline.config import Settings

__all__ = ["http_base", "origin_of", "settings_base", "ws_base", "ws_origin"]

_HTTP = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
_WS = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _base(url: str, schemes: dict[str, str]) -> str | None:
    scheme, sep, rest = url.strip().partition("://")
    mapped = schemes.get(scheme.lower())
    if not sep or mapped is None or not rest.strip("/"):
        return None
    return f"{mapped}://{rest}".rstrip("/")


def http_base(url: str) -> str | None:
    """``url`` as an ``http(s)://`` base without a trailing slash (``ws(s)://``
    maps to ``http(s)://``); None for an empty or other URL."""
    return _base(url, _HTTP)


def ws_base(url: str) -> str | None:
    """``url`` as a ``ws(s)://`` base without a trailing slash (``http(s)://``
    maps to ``ws(s)://``); None for an empty or other URL."""
    return _base(url, _WS)


def _origin(url: str, schemes: dict[str, str]) -> str | None:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = schemes.get(parts.scheme.lower()), parts.hostname
    if scheme is None or not host or parts.username or parts.password:
        return None
    if ":" in host:
        host = f"[{host}]"
    shown = "" if port is None or port == _DEFAULT_PORTS[scheme] else f":{port}"
    return f"{scheme}://{host}{shown}"


def origin_of(url: str) -> str | None:
    """The web origin (``scheme://host[:port]``, lower case, default port left
    out) of an ``http(s)`` URL or ``Origin`` header; None for anything else
    (``null``, another scheme, a malformed value)."""
    return _origin(url, {"http": "http", "https": "https"})


def ws_origin(url: str) -> str | None:
    """The ``ws(s)://host[:port]`` origin of an ``http(s)`` or ``ws(s)`` URL (what
    a content security policy names); None for anything else."""
    return _origin(url, _WS)


def settings_base(settings: Settings) -> str:
    """The server's base URL as the settings say: ``SCRIBELINE_PUBLIC_URL`` (as
    ``http(s)``), else ``http://host:port`` (a wildcard address as loopback)."""
    public = http_base(settings.public_url)
    if public is not None:
        return public
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(
        settings.host, settings.host
    )
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"
