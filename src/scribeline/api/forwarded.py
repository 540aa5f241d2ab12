"""The client's address, scheme and host as a trusted reverse proxy saw them.

Behind a proxy every connection comes from the proxy, and the request's own
scheme is the proxy's ``http``. The proxy says what it saw in
``X-Forwarded-For``, ``X-Forwarded-Proto`` and ``X-Forwarded-Host``; anyone
can write those headers, so they are read only when the TCP peer is in
``SCRIBELINE_TRUSTED_PROXIES`` (addresses or CIDR networks) and ignored
otherwise. An empty list, the default, trusts no one.

- **Address.** ``X-Forwarded-For`` is read from the right: each proxy appends
  the address it was connected from, so the right-most address that is not a
  trusted proxy is the client. Entries to the left of it were written by the
  client and are never used. If every address is a trusted proxy, the
  left-most is the client. An entry that is no IP address ends the walk: the
  last address reached (a trusted proxy) is then the client.
- **Scheme.** The right-most value of ``X-Forwarded-Proto`` (the nearest
  proxy's), if it is ``http`` or ``https``.
- **Host.** The right-most value of ``X-Forwarded-Host``, if it is a host name
  or an IP address literal with an optional port.

A value that does not qualify is ignored (the request keeps what the
connection says); the request is never refused for it. The middleware clones
the request with what it found, so ``request.remote``, ``request.scheme``,
``request.secure`` and ``request.host`` agree for every handler (bot URLs,
the dashboard's socket origin and ``Origin`` check, media-stream signatures).
The access log is written with aiohttp's original request, so it reads the
address with :func:`client_address`.

``aiohttp-remotes`` was not used: its strict middleware refuses (400) every
request that did not come through the exact chain of proxies, health checks
included, and its filtered one trusts the headers from any peer.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware
from multidict import MultiMapping

__all__ = [
    "CLIENT",
    "Forwarded",
    "Network",
    "client_address",
    "forwarded_middleware",
    "is_trusted",
    "resolve",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: The client's address once the middleware has resolved it, on aiohttp's
#: original request as well (which the access logger gets).
CLIENT: Final = web.RequestKey("scribeline.client", str)

#: A host name or an IP literal, with an optional port (what a ``Host`` header holds).
_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::(\d{1,5}))?"
)
_SCHEMES = frozenset({"http", "https"})
#: Entries of ``X-Forwarded-For`` read at most (a chain of proxies is short).
MAX_HOPS = 32


@dataclass(frozen=True, slots=True)
class Forwarded:
    """What a trusted proxy said: each field None when it said nothing usable."""

    remote: str | None = None
    scheme: str | None = None
    host: str | None = None


def _address(text: str) -> Address | None:
    """An ``X-Forwarded-For`` entry as an address: ``203.0.113.7``, ``2001:db8::1``,
    ``203.0.113.7:4711`` or ``[2001:db8::1]:4711``; None for anything else."""
    entry = text.strip()
    if entry.startswith("["):
        entry = entry[1:].partition("]")[0]
    elif entry.count(":") == 1:
        entry = entry.partition(":")[0]
    try:
        address = ipaddress.ip_address(entry)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, trusted: Iterable[Network]) -> bool:
    return any(address in network for network in trusted)


def _values(headers: MultiMapping[str], name: str) -> list[str]:
    """A list header's elements, every occurrence of it in order (RFC 9110 5.3)."""
    return [part.strip() for line in headers.getall(name, []) for part in line.split(",")]


def _client(peer: Address, entries: list[str], trusted: tuple[Network, ...]) -> Address:
    client = peer
    for entry in reversed(entries[-MAX_HOPS:]):
        address = _address(entry)
        if address is None:
            break
        client = address
        if not _trusted(address, trusted):
            break
    return client


def _host(value: str) -> str | None:
    match = _HOST.fullmatch(value)
    if match is None or (match.group(1) is not None and int(match.group(1)) > 65535):
        return None
    return value


def is_trusted(peer: str | None, trusted: tuple[Network, ...]) -> bool:
    """Whether the TCP peer ``peer`` (``request.remote`` as aiohttp has it) is a
    trusted proxy."""
    address = _address(peer) if peer else None
    return address is not None and _trusted(address, trusted)


def resolve(
    peer: str | None, headers: MultiMapping[str], trusted: tuple[Network, ...]
) -> Forwarded | None:
    """What the proxy at ``peer`` says about the request, or None when ``peer`` is
    not a trusted proxy (then the headers mean nothing). Pure."""
    peer_address = _address(peer) if peer else None
    if peer_address is None or not _trusted(peer_address, trusted):
        return None
    entries = _values(headers, hdrs.X_FORWARDED_FOR)
    remote = str(_client(peer_address, entries, trusted)) if entries else None
    protos = _values(headers, hdrs.X_FORWARDED_PROTO)
    scheme = protos[-1].lower() if protos and protos[-1].lower() in _SCHEMES else None
    hosts = _values(headers, hdrs.X_FORWARDED_HOST)
    host = _host(hosts[-1]) if hosts else None
    return Forwarded(remote, scheme, host)


def client_address(request: web.BaseRequest) -> str | None:
    """The client's address: a trusted proxy's word for it, else the peer's."""
    return request.get(CLIENT) or request.remote


def forwarded_middleware(trusted: tuple[Network, ...]) -> Middleware:
    """The middleware that applies :func:`resolve` to every request (before the
    error middleware, so that it and every handler see the result)."""

    @web.middleware
    async def forwarded(request: web.Request, handler: Handler) -> web.StreamResponse:
        found = resolve(request.remote, request.headers, trusted)
        if found is None or found == Forwarded():
            return await handler(request)
        remote = found.remote or request.remote or ""
        request[CLIENT] = remote  # on the original too, for the access log
        clone = request.clone(
            remote=remote, scheme=found.scheme or request.scheme, host=found.host or request.host
        )
        return await handler(clone)

    return forwarded
