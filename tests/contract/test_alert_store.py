"""The alert store (storage/base_alerts.py) on every backend: rules per
organization, and each rule's firing on a segment recorded, and its alert
appended, at most once, however many nodes record it at the same time."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from scribeline.alerts.drafts import AlertDraft
from scribeline.alerts.rules import AlertRule
from scribeline.errors import InvalidRequest, StreamClosed
from scribeline.events import EventType, NewEvent
from scribeline.storage import Storage, open_storage


def _rule(org_id: int, name: str = "refund", **config: object) -> AlertRule:
    return AlertRule(
        0, org_id, name, "keyword", config or {"keywords": ["refund"]}, None, True, 1, 1
    )


def _draft(rule_id: int, segment: str, ts: int = 5) -> AlertDraft:
    return AlertDraft(rule_id, segment, {"rule": {"id": rule_id}, "matched": "x"}, ts)


async def test_rules_belong_to_their_organization(storage: Storage) -> None:
    """Created rules are listed, read, changed and deleted only through their own
    organization, and the organization's cap is enforced."""
    a = await storage.create_org("a")
    b = await storage.create_org("b")
    first = await storage.create_alert_rule(_rule(a.id, "one"), max_rules=2)
    second = await storage.create_alert_rule(_rule(a.id, "two", keywords=["x y"]), max_rules=2)
    assert second.id > first.id and second.config == {"keywords": ["x y"]}
    with pytest.raises(InvalidRequest):
        await storage.create_alert_rule(_rule(a.id, "three"), max_rules=2)
    assert [r.name for r in await storage.list_alert_rules(a.id)] == ["one", "two"]
    assert await storage.list_alert_rules(b.id) == []
    assert await storage.get_alert_rule(b.id, first.id) is None
    assert await storage.get_alert_rule(a.id, first.id) == first
    renamed = replace(first, name="uno", enabled=False, speaker="user", updated_at=2)
    assert await storage.update_alert_rule(renamed)
    assert (await storage.get_alert_rule(a.id, first.id)) == renamed
    assert not await storage.update_alert_rule(replace(renamed, org_id=b.id))
    assert not await storage.delete_alert_rule(b.id, first.id)
    assert await storage.delete_alert_rule(a.id, first.id)
    assert not await storage.delete_alert_rule(a.id, first.id)
    third = await storage.create_alert_rule(_rule(a.id, "three"), max_rules=2)
    assert third.id > second.id  # ids are never handed out again


async def test_a_firing_appends_one_numbered_alert_once(storage: Storage) -> None:
    """A draft appends an ``alert`` event after the stream's events, numbered in the
    call; the same (rule, segment) again, even in the same batch, appends nothing;
    the counts read up to a seq see the alerts up to it."""
    org = await storage.create_org("o")
    rule = await storage.create_alert_rule(_rule(org.id), max_rules=10)
    other = await storage.create_alert_rule(_rule(org.id, "other"), max_rules=10)
    await storage.append("call:1", [NewEvent(EventType.TRANSCRIPT, {"content": "a"})])
    stored = await storage.append_alerts(
        "call:1", [_draft(rule.id, "id:s1"), _draft(rule.id, "id:s1"), _draft(other.id, "id:s1")]
    )
    assert [(e.seq, e.type, e.data["number"]) for e in stored] == [
        (2, EventType.ALERT, 1),
        (3, EventType.ALERT, 2),
    ]
    assert await storage.append_alerts("call:1", [_draft(rule.id, "id:s1")]) == []
    (later,) = await storage.append_alerts("call:1", [_draft(rule.id, "seq:9")])
    assert (later.seq, later.data["number"]) == (4, 3)
    assert await storage.read("call:1", 1) == [*stored, later]
    counts = await storage.alert_counts({"call:1": 3, "call:2": 5})
    assert counts == {"call:1": (2, stored[1])}
    assert (await storage.alert_counts({"call:1": 4}))["call:1"] == (3, later)
    # A rule's deletion keeps its firings: its segments do not fire again.
    await storage.delete_alert_rule(org.id, rule.id)
    assert await storage.append_alerts("call:1", [_draft(rule.id, "id:s1")]) == []


async def test_an_ended_stream_records_nothing(storage: Storage) -> None:
    """An alert for an ended call is refused, and its firing is not recorded."""
    org = await storage.create_org("o")
    rule = await storage.create_alert_rule(_rule(org.id), max_rules=10)
    ended = NewEvent(EventType.CALL_STATUS, {"status": "completed"}, closes=True)
    await storage.append("call:1", [ended])
    with pytest.raises(StreamClosed):
        await storage.append_alerts("call:1", [_draft(rule.id, "id:s1")])
    assert await storage.alert_counts({"call:1": 5}) == {}


async def test_two_nodes_recording_the_same_firings_append_each_once(
    storage: Storage, storage_url: str, tmp_path: Path
) -> None:
    """Two stores on one database (two nodes) record the same firings of three
    rules on twenty segments, each many times at once: every (rule, segment)
    has exactly one alert, and the alerts are numbered 1..60 without repeats."""
    org = await storage.create_org("o")
    rules = [await storage.create_alert_rule(_rule(org.id, f"r{i}"), 10) for i in range(3)]
    await storage.append("call:1", [NewEvent(EventType.TRANSCRIPT, {})])
    other = await open_storage(storage_url, tmp_path)
    try:
        drafts = [_draft(r.id, f"id:s{n}") for n in range(20) for r in rules]
        tasks = [
            store.append_alerts("call:1", drafts[start::7])
            for store in (storage, other)
            for start in range(7)
            for _ in range(3)
        ]
        results = await asyncio.gather(*tasks)
    finally:
        await other.close()
    alerts = [e for batch in results for e in batch]
    keys = [(e.data["rule"]["id"], e.seq) for e in alerts]
    assert len(alerts) == 60 and len(set(keys)) == 60
    assert sorted(e.data["number"] for e in alerts) == list(range(1, 61))
    stored = await storage.read("call:1", 1)
    assert [e.seq for e in stored] == list(range(2, 62))
    assert (await storage.alert_counts({"call:1": 61}))["call:1"][0] == 60
