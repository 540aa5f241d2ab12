"""The alert store: organizations' alert rules, and alerts recorded once.

Contract (``tests/contract/test_alert_store.py`` runs it on every backend):

* Rules belong to one organization; every method takes the organization and
  finds nothing of another's. ``create_alert_rule`` refuses (``InvalidRequest``)
  a rule past ``max_rules`` for the organization, counted in its transaction.
* ``append_alerts`` appends an ``alert`` event for each draft whose firing
  (rule, stream, segment) was not recorded before, and records those
  firings, in one transaction, through the event log's append (seqs,
  projections, whatever else an append writes). So a rule fires at most once
  per segment, however many nodes evaluate the segment and however often.
  Each event's data gets ``number``: its place among the call's alerts.
  Returns the events appended (none if every firing was recorded already).
  Raises ``StreamClosed`` if the stream has ended (nothing recorded).
* ``alert_counts``: for each of many streams, how many alerts it has up to a
  seq and the newest of them (streams without alerts are left out), in one
  query.
* Deleting a rule keeps its firings, as its alerts stay in their calls; they
  go with their call (``rules.CALL_TABLES``). Rule ids are never reused.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from scribeline.alerts.drafts import AlertDraft
from scribeline.alerts.rules import AlertRule
from scribeline.events import StoredEvent

__all__ = ["RULE_COLUMNS", "AlertStore", "rule_of", "rule_values"]

#: The ``alert_rules`` columns that make an ``AlertRule``, in the order of its fields.
RULE_COLUMNS = "id, org_id, name, kind, config, speaker, enabled, created_at, updated_at"


def rule_of(row: Iterable[Any]) -> AlertRule:
    """The rule of a row read with ``RULE_COLUMNS`` (``config`` as JSON text)."""
    rule_id, org_id, name, kind, config, speaker, enabled, created, updated = row
    return AlertRule(
        rule_id, org_id, name, kind, orjson.loads(config), speaker, bool(enabled), created, updated
    )


def rule_values(rule: AlertRule) -> tuple[Any, ...]:
    """A new rule's values for ``INSERT INTO alert_rules (org_id, name, kind,
    config, speaker, enabled, created_at, updated_at)``."""
    return (
        rule.org_id,
        rule.name,
        rule.kind,
        orjson.dumps(rule.config).decode(),
        rule.speaker,
        rule.enabled,
        rule.created_at,
        rule.updated_at,
    )


class AlertStore(ABC):
    """Alert rules and firings (see the module's contract)."""

    @abstractmethod
    async def create_alert_rule(self, rule: AlertRule, max_rules: int) -> AlertRule:
        """Store ``rule`` (its ``id`` is ignored) and return it with its id."""

    @abstractmethod
    async def list_alert_rules(self, org_id: int) -> list[AlertRule]:
        """The organization's rules, oldest first."""

    @abstractmethod
    async def get_alert_rule(self, org_id: int, rule_id: int) -> AlertRule | None: ...

    @abstractmethod
    async def update_alert_rule(self, rule: AlertRule) -> bool:
        """Write a rule's name, config, speaker, enabled and updated_at; False if
        the organization has no such rule."""

    @abstractmethod
    async def delete_alert_rule(self, org_id: int, rule_id: int) -> bool:
        """Delete a rule and its firings; False if there was no such rule."""

    @abstractmethod
    async def append_alerts(self, stream: str, drafts: Sequence[AlertDraft]) -> list[StoredEvent]:
        """Append the events of the drafts not recorded yet, and record them (above)."""

    @abstractmethod
    async def alert_counts(self, bounds: Mapping[str, int]) -> dict[str, tuple[int, StoredEvent]]:
        """Per stream (with its seq bound), its alerts' count and newest alert."""
