"""API keys: format, hashing, scopes, and where a request's token is found."""

from __future__ import annotations

import re

import pytest
from aiohttp.test_utils import make_mocked_request

from scribeline.auth import Principal, hash_key, new_api_key, parse_scopes, websocket_credentials
from scribeline.errors import Forbidden


def test_keys_are_random_prefixed_and_subprotocol_safe() -> None:
    """A key is scl_ + 43 URL-safe characters: valid in a Sec-WebSocket-Protocol token."""
    keys = {new_api_key()[0] for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert re.fullmatch(r"scl_[A-Za-z0-9_-]{43}", key)


def test_only_the_hash_and_prefix_are_derived_for_storage() -> None:
    """The stored hash is SHA-256 of the key, and the prefix is not the key."""
    key, prefix, digest = new_api_key()
    assert digest == hash_key(key) and len(digest) == 32
    assert key.startswith(prefix) and len(prefix) < len(key) // 2


def test_scopes_parse_and_reject_unknown_ones() -> None:
    """Scopes are a comma list of read, write, admin."""
    assert parse_scopes("read, write") == {"read", "write"}
    with pytest.raises(ValueError):
        parse_scopes("read,delete")
    with pytest.raises(ValueError):
        parse_scopes("")


def test_admin_implies_every_scope_and_others_are_checked() -> None:
    """require() passes for the scope or admin, and raises Forbidden otherwise."""
    Principal(1, frozenset({"admin"}), 1).require("write")
    Principal(1, frozenset({"read"}), 1).require("read")
    with pytest.raises(Forbidden):
        Principal(1, frozenset({"read"}), 1).require("write")


def test_token_from_query_header_or_subprotocol() -> None:
    """Each of the three documented ways yields the token; the subprotocol is kept to echo."""
    q = websocket_credentials(make_mocked_request("GET", "/live-transcript/CA1?token=scl_a"))
    assert q.token == "scl_a" and q.subprotocol is None
    h = websocket_credentials(
        make_mocked_request("GET", "/x", headers={"Authorization": "Bearer scl_b"})
    )
    assert h.token == "scl_b"
    s = websocket_credentials(
        make_mocked_request(
            "GET", "/x", headers={"Sec-WebSocket-Protocol": "chat, burki-token-scl_c"}
        )
    )
    assert s.token == "scl_c" and s.subprotocol == "burki-token-scl_c"
    none = websocket_credentials(make_mocked_request("GET", "/x"))
    assert none.token is None
