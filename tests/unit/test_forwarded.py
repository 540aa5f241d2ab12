"""X-Forwarded-* headers are believed from trusted proxies only, and only what is valid."""

from __future__ import annotations

from ipaddress import ip_network

import pytest
from multidict import CIMultiDict
from pydantic import ValidationError

from scribeline.api.forwarded import Forwarded, Network, is_trusted, resolve
from scribeline.config import Settings

PROXY = "10.0.0.5"
TRUSTED: tuple[Network, ...] = (ip_network("10.0.0.0/24"), ip_network("::1"))


def headers(*pairs: tuple[str, str]) -> CIMultiDict[str]:
    return CIMultiDict(pairs)


def test_headers_from_an_untrusted_peer_mean_nothing() -> None:
    sent = headers(
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "evil.example"),
    )
    assert resolve("198.51.100.1", sent, TRUSTED) is None
    assert resolve(PROXY, sent, ()) is None  # the default trusts no one
    assert resolve(None, sent, TRUSTED) is None  # no peer address (a UNIX socket)


def test_a_trusted_proxy_gives_the_client_scheme_and_host() -> None:
    sent = headers(
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "scribe.example.com:8443"),
    )
    assert resolve(PROXY, sent, TRUSTED) == Forwarded(
        "203.0.113.7", "https", "scribe.example.com:8443"
    )


def test_a_trusted_proxy_without_headers_changes_nothing() -> None:
    assert resolve(PROXY, headers(), TRUSTED) == Forwarded()


@pytest.mark.parametrize(
    ("forwarded_for", "client"),
    [
        # nginx appends the address it saw: what a client wrote on the left is ignored.
        ("1.2.3.4, 203.0.113.7", "203.0.113.7"),
        # Through two trusted proxies: the right-most untrusted address.
        ("203.0.113.7, 10.0.0.9", "203.0.113.7"),
        ("6.6.6.6, 203.0.113.7, 10.0.0.9, 10.0.0.8", "203.0.113.7"),
        # Every address a trusted proxy: the left-most.
        ("10.0.0.9, 10.0.0.8", "10.0.0.9"),
        # Ports and brackets, IPv6, IPv4-mapped IPv6.
        ("203.0.113.7:4711", "203.0.113.7"),
        ("[2001:db8::7]:4711", "2001:db8::7"),
        ("2001:db8::7", "2001:db8::7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        # Garbage ends the walk at the last trusted hop.
        ("203.0.113.7, unknown", PROXY),
        ("unknown, 10.0.0.9", "10.0.0.9"),
        ("203.0.113.7, 10.0.0.9, <script>", PROXY),
        ("", PROXY),
    ],
)
def test_the_client_is_the_right_most_untrusted_address(forwarded_for: str, client: str) -> None:
    found = resolve(PROXY, headers(("X-Forwarded-For", forwarded_for)), TRUSTED)
    assert found is not None and found.remote == client


def test_a_peer_is_trusted_when_it_is_in_a_listed_network() -> None:
    assert is_trusted("10.0.0.200", TRUSTED) and is_trusted("::ffff:10.0.0.1", TRUSTED)
    assert not is_trusted("10.0.1.1", TRUSTED) and not is_trusted("127.0.0.1", TRUSTED)
    assert not is_trusted(None, TRUSTED) and not is_trusted("10.0.0.5", ())


def test_repeated_forwarded_for_lines_are_one_list() -> None:
    sent = headers(("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "203.0.113.7, 10.0.0.9"))
    found = resolve(PROXY, sent, TRUSTED)
    assert found is not None and found.remote == "203.0.113.7"


def test_an_ipv6_or_ipv4_mapped_proxy_is_recognised() -> None:
    sent = headers(("X-Forwarded-For", "203.0.113.7"))
    assert resolve("::1", sent, TRUSTED) == Forwarded("203.0.113.7")
    assert resolve("::ffff:10.0.0.5", sent, TRUSTED) == Forwarded("203.0.113.7")


@pytest.mark.parametrize(
    ("proto", "scheme"),
    [
        ("https", "https"),
        ("HTTP", "http"),
        ("http, https", "https"),  # the nearest proxy's word
        ("https, http", "http"),
        ("wss", None),
        ("javascript", None),
        ("", None),
    ],
)
def test_only_http_or_https_is_taken_as_the_scheme(proto: str, scheme: str | None) -> None:
    found = resolve(PROXY, headers(("X-Forwarded-Proto", proto)), TRUSTED)
    assert found is not None and found.scheme == scheme


@pytest.mark.parametrize(
    ("value", "host"),
    [
        ("scribe.example.com", "scribe.example.com"),
        ("scribe.example.com:443", "scribe.example.com:443"),
        ("127.0.0.1:8443", "127.0.0.1:8443"),
        ("[2001:db8::1]:8443", "[2001:db8::1]:8443"),
        ("evil.example, scribe.example.com", "scribe.example.com"),
        ("scribe.example.com/path", None),
        ("user@scribe.example.com", None),
        ("scribe.example.com:99999", None),
        ("a b", None),
        ("-bad.example", None),
        ("x" * 300, None),
        ("", None),
    ],
)
def test_only_a_valid_host_is_taken(value: str, host: str | None) -> None:
    found = resolve(PROXY, headers(("X-Forwarded-Host", value)), TRUSTED)
    assert found is not None and found.host == host


def test_the_setting_is_a_comma_separated_list_of_addresses_and_networks() -> None:
    settings = Settings(trusted_proxies=" 127.0.0.1, 10.0.0.0/8,,::1 ")  # type: ignore[arg-type]
    assert settings.trusted_proxies == (
        ip_network("127.0.0.1/32"),
        ip_network("10.0.0.0/8"),
        ip_network("::1/128"),
    )
    assert Settings().trusted_proxies == ()
    for bad in ("nginx", "10.0.0.1/8", "10.0.0.0/33"):
        with pytest.raises(ValidationError):
            Settings(trusted_proxies=bad)  # type: ignore[arg-type]
