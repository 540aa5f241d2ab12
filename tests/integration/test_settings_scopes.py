"""Every route of the organization's settings (organization, assistants' redaction,
alert rules, webhooks, call deletion and exports) against the scopes
docs/protocol.md states: ``admin`` to change, ``read`` to look. A key without
``admin`` is refused (403) on every change and the change is not made; a
``read`` key succeeds on every look-up."""

from __future__ import annotations

import aiohttp
import pytest

from .helpers import Api, ServerProcess, Tenant, new_sid, transcript


@pytest.fixture(scope="module")
def scoped(server: ServerProcess) -> tuple[Tenant, str]:
    """An organization of its own (its settings are changed here) and its admin key."""
    tenant = server.create_tenant("scopes")
    return tenant, server.create_key(tenant.org, "admin")


async def test_changes_need_admin_and_look_ups_need_read(
    http: aiohttp.ClientSession, server: ServerProcess, scoped: tuple[Tenant, str]
) -> None:
    tenant, admin_key = scoped
    admin = Api(http, server, admin_key)
    rule = await admin.request(
        "POST", "/v1/alert-rules", json_body={"name": "r", "kind": "keyword", "keywords": ["x"]}
    )
    assert rule.status == 201, rule.text
    hook = await admin.request(
        "POST",
        "/v1/webhooks",
        json_body={"url": "https://hooks.example.com/in", "events": ["alert"]},
    )
    assert hook.status == 201, hook.text
    assistants = await admin.request("GET", "/v1/assistants")
    assistant = assistants.body["assistants"][0]["id"]
    sid = new_sid()
    await admin.create_call(sid)
    await admin.post_transcript(sid, transcript("hello"))
    await admin.post_status(sid, "completed")
    rule_path, hook_path = f"/v1/alert-rules/{rule.body['id']}", f"/v1/webhooks/{hook.body['id']}"

    changes: list[tuple[str, str, object]] = [
        ("PATCH", "/v1/organization", {"redaction": ["card"]}),
        ("PATCH", "/v1/organization", {"retention_days": 1}),
        ("PATCH", f"/v1/assistants/{assistant}", {"redaction": []}),
        ("PATCH", f"/v1/assistants/{assistant}", {"transcription_enabled": False, "redaction": []}),
        ("POST", "/v1/alert-rules", {"name": "n", "kind": "keyword", "keywords": ["y"]}),
        ("PATCH", rule_path, {"name": "changed"}),
        ("DELETE", rule_path, None),
        ("POST", "/v1/webhooks", {"url": "https://hooks.example.com/2", "events": ["alert"]}),
        ("PATCH", hook_path, {"enabled": False}),
        ("DELETE", hook_path, None),
        ("POST", f"{hook_path}/replay", {}),
        ("DELETE", f"/v1/calls/{sid}", None),
    ]
    for key in (tenant.rw, tenant.read, tenant.write):
        for method, path, body in changes:
            if body is None:
                resp = await admin.request(method, path, key=key)
            else:
                resp = await admin.request(method, path, key=key, json_body=body)
            assert resp.status == 403, (method, path, resp.status, resp.text)

    looks = [
        "/v1/organization",
        "/v1/assistants",
        "/v1/alert-rules",
        rule_path,
        "/v1/webhooks",
        hook_path,
        f"{hook_path}/deliveries",
        f"/v1/calls/{sid}",
        f"/v1/calls/{sid}/transcript?format=vtt",
    ]
    for path in looks:
        resp = await admin.request("GET", path, key=tenant.read)
        assert resp.status == 200, (path, resp.status, resp.text)

    # Nothing the refused requests asked for happened.
    org = await admin.request("GET", "/v1/organization")
    assert (org.body["redaction"], org.body["retention_days"]) == ([], None)
    listed = (await admin.request("GET", "/v1/assistants")).body["assistants"]
    first = next(a for a in listed if a["id"] == assistant)
    assert (first["redaction"], first["transcription_enabled"]) == (None, True)
    rules = (await admin.request("GET", "/v1/alert-rules")).body["alert_rules"]
    assert [r["name"] for r in rules] == ["r"]
    hooks = (await admin.request("GET", "/v1/webhooks")).body["webhooks"]
    assert [(h["url"], h["enabled"]) for h in hooks] == [("https://hooks.example.com/in", True)]
