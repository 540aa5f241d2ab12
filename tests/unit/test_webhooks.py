"""Webhooks' pure parts: signatures checked by an independent Standard Webhooks
implementation, backoff and giving up, the SSRF address rules, event types."""

from __future__ import annotations

import random
import socket
from datetime import UTC, datetime

import orjson
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from scribeline.webhooks import signing
from scribeline.webhooks.policy import JITTER, Policy
from scribeline.webhooks.ssrf import PublicOnlyResolver, Refused, check_url, forbidden
from scribeline.webhooks.types import body_of, message_id, webhook_type


def test_signatures_verify_with_the_standard_webhooks_package() -> None:
    """Headers made by ``signing.headers`` verify with ``standardwebhooks``; a
    changed body, id or secret does not."""
    secret = signing.new_secret()
    assert secret.startswith("whsec_")
    body = orjson.dumps({"type": "transcript.final", "data": {"content": "héllo"}})
    now = int(datetime.now(UTC).timestamp())
    headers = signing.headers(secret, "msg_1_call_7_3", now, body)
    assert headers["webhook-signature"].startswith("v1,")
    verified = Webhook(secret).verify(body.decode(), headers)
    assert verified["data"]["content"] == "héllo"
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.decode().replace("h", "H"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.decode(), {**headers, "webhook-id": "msg_other"})
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(body.decode(), headers)
    # And the package's own signature is ours, byte for byte.
    theirs = Webhook(secret).sign("msg_x", datetime.fromtimestamp(now, UTC), body.decode())
    assert theirs == signing.sign(secret, "msg_x", now, body)


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    """Attempt n waits base * 2**(n-1), moved by at most a fifth, never over the cap
    (plus jitter); a delivery gives up once the window has passed."""
    policy = Policy(base_ms=1000, cap_ms=60_000, window_ms=86_400_000, disable_after_ms=10)
    rng = random.Random(7)
    for attempts, nominal in ((1, 1000), (2, 2000), (3, 4000), (6, 32_000), (7, 60_000)):
        for _ in range(50):
            wait = policy.delay(attempts, rng)
            assert nominal * (1 - JITTER) <= wait <= nominal * (1 + JITTER)
    assert policy.delay(1000, rng) <= 60_000 * (1 + JITTER)
    waits = {policy.delay(3, rng) for _ in range(20)}
    assert len(waits) > 10  # jittered, not one value
    assert not policy.gives_up(created_at=0, now=86_399_999)
    assert policy.gives_up(created_at=0, now=86_400_000)
    assert policy.disables(failing_since=0, now=10) and not policy.disables(None, 10)
    assert not policy.disables(failing_since=5, now=10)
    # A day of default retries is about twenty attempts.
    default, elapsed, attempts = Policy(), 0, 0
    while not default.gives_up(0, elapsed):
        attempts += 1
        elapsed += default.delay(attempts, random.Random(attempts))
    assert 15 <= attempts <= 25


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
        "0.0.0.0", "224.0.0.1", "255.255.255.255", "192.0.2.1", "198.18.0.1", "240.0.0.1",
        "::1", "::", "fe80::1", "fe80::1%eth0", "fc00::1", "fd12::1", "ff02::1",
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "2002:7f00:1::", "2002:a00:1::",
        "64:ff9b::a00:1", "64:ff9b::7f00:1", "2001:db8::1", "not an address",
    ],
)  # fmt: skip
def test_non_public_addresses_are_forbidden(address: str) -> None:
    assert forbidden(address)


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "2002:808:808::"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert not forbidden(address)


@pytest.mark.parametrize(
    ("url", "allow"),
    [
        ("http://hooks.example.com/in", False),  # https only unless private is allowed
        ("ftp://hooks.example.com/", True),
        ("https://127.0.0.1/", False),
        ("https://[::ffff:127.0.0.1]:8443/", False),
        ("https://[::1]/", False),
        ("https://169.254.169.254/latest/meta-data", False),
        ("https://localhost/", False),
        ("https://api.localhost./", False),
        ("https://user:pass@hooks.example.com/", True),
        ("https://hooks.example.com/#frag", True),
        ("https:///path", True),
        ("https://hooks.example.com:0/", True),
        ("https://hooks.example.com:99999/", True),
        ("https://hooks.example.com/a b", True),
        ("https://hooks.example.com/" + "a" * 2048, True),
    ],
)
def test_urls_refused_at_creation(url: str, allow: bool) -> None:
    with pytest.raises(Refused):
        check_url(url, allow)


def test_urls_allowed() -> None:
    assert check_url("https://hooks.example.com/in?token=x", False)
    assert check_url("https://93.184.216.34:8443/", False)
    assert check_url("http://127.0.0.1:9000/in", True)


async def test_the_resolver_drops_non_public_addresses() -> None:
    """A name that resolves only to loopback fails to resolve (no connection is
    made); with private addresses allowed it resolves."""
    with pytest.raises(OSError):
        await PublicOnlyResolver(False).resolve("localhost", 80, socket.AF_INET)
    found = await PublicOnlyResolver(True).resolve("localhost", 80, socket.AF_INET)
    assert any(info["host"] == "127.0.0.1" for info in found)


def test_webhook_types_of_stored_events() -> None:
    status = {"status": "queued"}
    assert webhook_type("call:1", 1, "call_status", status, False) == "call.started"
    assert webhook_type("call:1", 4, "call_status", {"status": "ringing"}, False) is None
    assert webhook_type("call:1", 9, "call_status", {"status": "completed"}, True) == "call.ended"
    assert webhook_type("call:1", 2, "transcript", {"is_final": True}, False) == "transcript.final"
    assert webhook_type("call:1", 2, "transcript", {"is_final": False}, False) is None
    assert webhook_type("call:1", 3, "alert", {}, False) == "alert"
    assert webhook_type("campaign:2", 8, "campaign_completed", {}, True) == "campaign.completed"
    assert webhook_type("campaign:2", 7, "progress", {}, False) is None
    assert webhook_type("bot:3", 5, "stop", {}, True) == "bot.stopped"
    assert webhook_type("bot:3", 5, "error", {}, True) == "bot.stopped"
    assert webhook_type("bot:3", 4, "ts", {}, False) is None


def test_bodies_name_their_call_and_keep_the_event() -> None:
    body = orjson.loads(
        body_of("transcript.final", "call:7", 3, 0, "transcript", {"content": "hi"}, "CA1")
    )
    assert body == {
        "type": "transcript.final",
        "timestamp": "1970-01-01T00:00:00.000Z",
        "data": {"content": "hi", "call_sid": "CA1", "seq": 3},
    }
    bot = orjson.loads(body_of("bot.stopped", "bot:2", 9, 0, "stop", {"reason": "x"}, "b-1"))
    assert bot["data"] == {"reason": "x", "bot_id": "b-1", "event": "stop", "seq": 9}
    assert message_id(4, "call:7", 3) == "msg_4_call_7_3"
