"""Where a webhook may be delivered: public addresses only, unless the operator
allows private ones (``SCRIBELINE_WEBHOOK_ALLOW_PRIVATE``).

Checked twice. When an endpoint is created or changed, its URL is parsed and a
literal address in it judged (:func:`check_url`). At each delivery, host names
resolve through :class:`PublicOnlyResolver`, which drops every address that is
not public: aiohttp connects only to the addresses its resolver returns, so
what is checked is what is connected to (a name that resolves to a public
address when created and to 127.0.0.1 later is refused then). aiohttp does not
resolve a literal address, so the sender checks those before each request
(:func:`check_host`).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

__all__ = ["MAX_URL", "PublicOnlyResolver", "Refused", "check_host", "check_url", "forbidden"]

#: Characters of a webhook URL at most.
MAX_URL = 2048

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


class Refused(ValueError):
    """A URL or an address that webhooks may not be delivered to."""


def _embedded(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries (mapped, 6to4, Teredo, NAT64)."""
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if address in _NAT64 or address in _NAT64_LOCAL:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def forbidden(text: str) -> bool:
    """Whether an address is not public: loopback, private, link-local, shared
    (100.64/10), multicast, reserved, unspecified, documentation, or an IPv6 address
    that embeds such an IPv4 one. Anything that does not parse is forbidden."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return True
    if address.is_multicast or not address.is_global:
        return True
    if isinstance(address, ipaddress.IPv6Address):
        return any(_forbidden_v4(inner) for inner in _embedded(address))
    return False


def _forbidden_v4(address: ipaddress.IPv4Address) -> bool:
    return address.is_multicast or not address.is_global


def _literal(host: str) -> str | None:
    """``host`` as an address if it is one (brackets stripped), else None."""
    bare = host.strip("[]")
    try:
        ipaddress.ip_address(bare.split("%", 1)[0])
    except ValueError:
        return None
    return bare


def check_host(host: str, allow_private: bool) -> None:
    """Refuse a literal address that is not public (a name is left to the resolver)."""
    if allow_private:
        return
    literal = _literal(host)
    if literal is not None and forbidden(literal):
        raise Refused("the URL's address is not public")
    name = host.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        raise Refused("the URL's host is local")


def check_url(url: str, allow_private: bool) -> str:
    """``url`` if webhooks may be sent to it, else ``Refused`` with the reason:
    ``https`` (``http`` too when private addresses are allowed: a test or a
    private network), a host, no user name or password, no fragment."""
    if len(url) > MAX_URL:
        raise Refused(f"the URL is longer than {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise Refused("the URL does not parse") from None
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes:
        raise Refused(f"the URL's scheme must be {' or '.join(schemes)}")
    if not parts.hostname:
        raise Refused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise Refused("the URL may not carry a user name or password")
    if parts.fragment:
        raise Refused("the URL may not have a fragment")
    if port == 0:
        raise Refused("the URL's port must be from 1 to 65535")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise Refused("the URL may not contain spaces or control characters")
    check_host(parts.hostname, allow_private)
    return url


class PublicOnlyResolver(AbstractResolver):
    """Resolves with the system resolver, keeping public addresses only (all
    of them when ``allow_private``); a name left with none fails to connect."""

    def __init__(self, allow_private: bool) -> None:
        self._inner = ThreadedResolver()
        self._allow = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        infos = await self._inner.resolve(host, port, family)
        kept = [info for info in infos if self._allow or not forbidden(info["host"])]
        if not kept:
            raise OSError(f"{host} has no public address")
        return kept

    async def close(self) -> None:
        await self._inner.close()
