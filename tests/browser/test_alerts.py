"""The live calls grid's alerts column in Chromium: a call's alert count and its
newest rule, from the snapshot and then live from the ``alert`` topic."""

from __future__ import annotations

import pytest

from tests.integration.helpers import Api, ServerProcess, new_sid, transcript

from .pages import OpenDashboard, Org, expect

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_alerts_appear_in_the_calls_column(
    open_dashboard: OpenDashboard, org: Org, server: ServerProcess
) -> None:
    """An alert stored before the page opened is counted by the snapshot; one that
    fires while it is open bumps the count and names its rule, live."""
    admin = Api(org.api.session, server, server.create_key(org.name, "admin"))
    for name, words in (("Refund", ["refund"]), ("Cancel", ["cancel my account"])):
        body = {"name": name, "kind": "keyword", "keywords": words}
        created = await admin.request("POST", "/v1/alert-rules", json_body=body)
        assert created.status == 201, created.text
    sid = new_sid()
    await org.api.create_call(sid, status="in-progress")
    await org.api.post_transcript(sid, transcript("I want a refund", speaker="user"))

    dash = await open_dashboard(org)
    cell = dash.row(sid).locator(".alerts")
    await expect(cell).to_have_attribute("data-count", "1")
    await expect(cell.locator(".alert-rule")).to_have_text("Refund")

    await org.api.post_transcript(sid, transcript("Please cancel my account", speaker="user"))
    await expect(cell).to_have_attribute("data-count", "2")
    await expect(cell.locator(".alert-count")).to_have_text("2")
    await expect(cell.locator(".alert-rule")).to_have_text("Cancel")
