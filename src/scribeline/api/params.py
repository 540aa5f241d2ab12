"""Numbers in paths and query strings, parsed strictly and range-checked.

A malformed or out-of-range value is the client's error (4xx, or
``invalid_request``/``not_found`` and close 1008 on a WebSocket), never an
internal one.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from scribeline.errors import InvalidRequest, NotFound
from scribeline.numbers import MAX_INT64, parse_int

__all__ = ["path_id", "query_int"]


def query_int(
    source: web.BaseRequest | Mapping[str, str],
    name: str,
    default: int | None,
    lo: int = 0,
    hi: int = MAX_INT64,
) -> int | None:
    """The query parameter ``name`` of a request or of its query (``default`` when
    absent or empty)."""
    query = source.query if isinstance(source, web.BaseRequest) else source
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    value = parse_int(raw, lo, hi)
    if value is None:
        raise InvalidRequest(f"{name} must be an integer from {lo} to {hi}")
    return value


def path_id(request: web.Request, name: str, what: str) -> int:
    """The path segment ``name`` as a positive id; one that cannot exist is not found."""
    raw = request.match_info[name]
    value = parse_int(raw, 1)
    if value is None:
        raise NotFound(f"{what} {raw[:64]} not found")
    return value
