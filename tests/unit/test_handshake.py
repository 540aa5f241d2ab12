"""The opening handshake's answer (RFC 6455 section 4.2.2) and its refusals."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from scribeline.errors import InvalidUpgrade
from scribeline.protocols.handshake import accept, accept_key

UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "keep-alive, Upgrade",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


def test_the_accept_key_is_the_rfc_example() -> None:
    """RFC 6455 section 1.3's worked example."""
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_the_answer_is_a_complete_101_with_the_chosen_subprotocol() -> None:
    answer = accept(CIMultiDict(UPGRADE), "burki-token-abc", "Scribeline")
    assert answer == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"Sec-WebSocket-Protocol: burki-token-abc\r\nServer: Scribeline\r\n\r\n"
    )
    assert b"Sec-WebSocket-Protocol" not in accept(CIMultiDict(UPGRADE), None, "Scribeline")


def test_header_names_and_tokens_are_case_insensitive() -> None:
    headers = CIMultiDict(
        {k.lower(): v.upper() if k != "Sec-WebSocket-Key" else v for k, v in UPGRADE.items()}
    )
    assert accept(headers, None, "S").startswith(b"HTTP/1.1 101 ")


def test_a_subprotocol_that_is_not_a_token_is_not_echoed() -> None:
    """Whatever the client offered, nothing but token characters reaches the answer."""
    answer = accept(CIMultiDict(UPGRADE), "burki-token-a b\r\nX-Evil: 1", "S")
    assert b"Sec-WebSocket-Protocol" not in answer and b"X-Evil" not in answer


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Upgrade", "h2c"),
        ("Upgrade", "websocket, h2c"),
        ("Connection", "keep-alive"),
        ("Sec-WebSocket-Version", "8"),
        ("Sec-WebSocket-Key", "c2hvcnQ="),  # 5 bytes, not 16
        ("Sec-WebSocket-Key", "not base64!!"),
        ("Sec-WebSocket-Key", ""),
    ],
)
def test_an_invalid_upgrade_is_refused_with_400(header: str, value: str) -> None:
    headers = CIMultiDict(UPGRADE)
    headers[header] = value
    with pytest.raises(InvalidUpgrade) as raised:
        accept(headers, None, "S")
    assert raised.value.http_status == 400
