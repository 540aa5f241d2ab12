"""Dashboard sessions, the pure parts: the server's public URL in each of its forms
(links, origins, WebSocket bases), links that carry secrets in the fragment, and
the log filter. The service itself runs on every backend in
tests/contract/test_session_service.py."""

from __future__ import annotations

from scribeline.config import Settings
from scribeline.logs import REDACTED, redact
from scribeline.public_url import http_base, origin_of, settings_base, ws_base, ws_origin
from scribeline.sessions import captions_link, sign_in_link


def test_public_urls_become_http_bases() -> None:
    """ws(s) maps to http(s), a trailing slash goes; anything else is not a base."""
    assert http_base("wss://scribe.example.com/") == "https://scribe.example.com"
    assert http_base("ws://10.0.0.5:8000") == "http://10.0.0.5:8000"
    assert http_base("HTTPS://scribe.example.com/sub/") == "https://scribe.example.com/sub"
    for bad in ("", "scribe.example.com", "ftp://x", "https://", "javascript:alert(1)"):
        assert http_base(bad) is None, bad


def test_public_urls_become_websocket_bases_and_origins() -> None:
    """http(s) maps to ws(s) and back, keeping the scheme's security (an https public
    URL never gives ws:// URLs); an origin drops the path and a default port."""
    assert ws_base("https://scribe.example.com/") == "wss://scribe.example.com"
    assert ws_base("http://10.0.0.5:8000/sub/") == "ws://10.0.0.5:8000/sub"
    assert ws_base("wss://scribe.example.com") == "wss://scribe.example.com"
    assert ws_origin("https://Scribe.example.com:8443/x/") == "wss://scribe.example.com:8443"
    assert ws_origin("wss://scribe.example.com:443") == "wss://scribe.example.com"
    assert ws_origin("http://[::1]:8000") == "ws://[::1]:8000"
    for bad in ("", "scribe.example.com", "ftp://x", "https://", "https://u:p@h"):
        assert ws_origin(bad) is None, bad
    assert ws_base("ftp://x") is None and ws_base("wss://") is None


def test_the_settings_base_prefers_the_public_url() -> None:
    """Without a public URL the base is the listening address, a wildcard one as loopback."""
    assert settings_base(Settings(public_url="wss://s.example.com")) == "https://s.example.com"
    assert settings_base(Settings(host="0.0.0.0", port=9000)) == "http://127.0.0.1:9000"
    assert settings_base(Settings(host="::1", port=80)) == "http://[::1]:80"


def test_origins_compare_by_scheme_host_and_effective_port() -> None:
    """Case and a default port do not matter; scheme, host and other ports do; an
    opaque or malformed origin has none."""
    assert origin_of("HTTP://Example.COM:80") == "http://example.com"
    assert origin_of("https://example.com:443/dashboard/") == "https://example.com"
    assert origin_of("http://127.0.0.1:8123") == "http://127.0.0.1:8123"
    assert origin_of("http://[::1]:8000") == "http://[::1]:8000"
    assert origin_of("https://example.com") != origin_of("http://example.com")
    for bad in ("null", "", "file:///etc", "http://u:p@example.com", "http://x:99999"):
        assert origin_of(bad) is None, bad


def test_links_carry_their_secrets_in_the_fragment() -> None:
    """Nothing after # is sent to a server, a proxy or a Referer."""
    assert sign_in_link("http://h:1", "scd_x") == "http://h:1/dashboard/#code=scd_x"
    link = captions_link("https://h", "CA1", "a.b.c")
    assert link == "https://h/dashboard/captions.html#call=CA1&token=a.b.c"


def test_codes_and_session_secrets_are_redacted_from_logs() -> None:
    """The log filter scrubs sign-in codes and session secrets like API keys."""
    line = "seen scd_AbC-123_xyz and scs_Zz9-_abc in a message"
    assert redact(line) == f"seen {REDACTED} and {REDACTED} in a message"
