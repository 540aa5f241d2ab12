"""The alert service: organizations' rules, and finals checked against them.

``evaluate`` runs after a batch of transcripts is stored and published
(``CallService``): captions never wait for it. It checks the batch's finals
(their stored, hence redacted, text) against the organization's enabled
rules, records the firings and appends their ``alert`` events in one
transaction (``AlertStore.append_alerts``: at most once per rule and segment,
whichever node evaluates), then publishes them. A failure here is logged and
counted, never the append's failure: the transcripts are stored. Alerts of a
final whose call ended before they were recorded are not recorded.

Rules are cached per organization for ``cache_seconds``; a change of a rule
is announced (``ALERT_RULES_CHANGED``) so that every node drops its copy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from scribeline.alerts import sentiment
from scribeline.alerts.drafts import AlertDraft, draft
from scribeline.alerts.rules import (
    MAX_RULES,
    AlertRule,
    CompiledRule,
    Final,
    RuleKind,
    check_cost,
    compile_rule,
    config_of,
    final_of,
    matches,
)
from scribeline.cluster import Signals
from scribeline.domain import Call
from scribeline.errors import InvalidRequest, NotFound, StreamClosed
from scribeline.events import EventType, StoredEvent, now_ms
from scribeline.ingest.calls import call_meta
from scribeline.ingest.publish import Publisher
from scribeline.storage import Storage
from scribeline.ttl_cache import TtlCache

__all__ = ["ALERT_RULES_CHANGED", "AlertService", "RuleSet"]

log = logging.getLogger(__name__)

#: The cluster notice that an organization's alert rules changed.
ALERT_RULES_CHANGED = "alert_rules.changed"


@dataclass(frozen=True, slots=True)
class RuleSet:
    """An organization's enabled rules, compiled."""

    matchers: list[CompiledRule] = field(default_factory=list)
    sentiments: list[CompiledRule] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.matchers and not self.sentiments


def rule_set(rules: Sequence[AlertRule]) -> RuleSet:
    """The enabled ``rules``, compiled (one that no longer compiles is skipped)."""
    compiled = RuleSet()
    for rule in rules:
        if not rule.enabled:
            continue
        try:
            ready = compile_rule(rule)
        except InvalidRequest:
            log.warning("alert rule %d does not compile; skipped", rule.id)
            continue
        group = compiled.sentiments if rule.kind == RuleKind.SENTIMENT else compiled.matchers
        group.append(ready)
    return compiled


class AlertService:
    """Alert rules (REST) and their evaluation (after each stored batch)."""

    def __init__(
        self,
        storage: Storage,
        publisher: Publisher,
        signals: Signals,
        cache_seconds: float = 1.0,
        max_rules: int = MAX_RULES,
    ) -> None:
        self._storage = storage
        self._publisher = publisher
        self._signals = signals
        self._max_rules = max_rules
        self._rules: TtlCache[int, RuleSet] = TtlCache(cache_seconds, 10_000)
        signals.on(ALERT_RULES_CHANGED, self._drop)
        #: Finals evaluated, alerts stored, and evaluations that failed (metrics, tests).
        self.evaluated = 0
        self.fired = 0
        self.failures = 0

    # -- rules ---------------------------------------------------------------

    async def create(
        self,
        org_id: int,
        name: str,
        kind: str,
        settings: Mapping[str, Any],
        speaker: str | None,
        enabled: bool,
    ) -> AlertRule:
        """A new rule; ``settings`` are its kind's fields (``KIND_FIELDS``)."""
        now = now_ms()
        rule = AlertRule(
            0, org_id, name, kind, config_of(kind, settings), speaker, enabled, now, now
        )
        check_cost(compile_rule(rule))  # refused here (422), never when a final is checked
        created = await self._storage.create_alert_rule(rule, self._max_rules)
        await self._changed(org_id)
        return created

    async def list_rules(self, org_id: int) -> list[AlertRule]:
        return await self._storage.list_alert_rules(org_id)

    async def get(self, org_id: int, rule_id: int) -> AlertRule:
        rule = await self._storage.get_alert_rule(org_id, rule_id)
        if rule is None:
            raise NotFound(f"Alert rule {rule_id} not found")
        return rule

    async def update(
        self, org_id: int, rule_id: int, changes: Mapping[str, Any], settings: Mapping[str, Any]
    ) -> AlertRule:
        """Change ``name``, ``speaker`` or ``enabled`` (``changes``: only those
        given; a ``speaker`` of None means any speaker) and the kind's settings
        (merged over the stored ones)."""
        rule = await self.get(org_id, rule_id)
        config = rule.config
        if any(v is not None for v in settings.values()):
            config = config_of(rule.kind, {**rule.config, **_given(settings)})
        changed = replace(rule, config=config, updated_at=now_ms(), **changes)
        check_cost(compile_rule(changed))
        if not await self._storage.update_alert_rule(changed):
            raise NotFound(f"Alert rule {rule_id} not found")
        await self._changed(org_id)
        return changed

    async def delete(self, org_id: int, rule_id: int) -> None:
        if not await self._storage.delete_alert_rule(org_id, rule_id):
            raise NotFound(f"Alert rule {rule_id} not found")
        await self._changed(org_id)

    async def _changed(self, org_id: int) -> None:
        """Every node drops its copy of the organization's rules (this one before
        this returns; the others when the notice arrives, or their copy expires)."""
        self._rules.drop(org_id)
        await self._signals.broadcast(ALERT_RULES_CHANGED, {"org_id": org_id})

    def _drop(self, notice: dict[str, Any]) -> None:
        self._rules.drop(notice["org_id"])

    async def rules_of(self, org_id: int) -> RuleSet:
        """The organization's enabled rules, compiled, from the cache."""
        now = time.monotonic()
        cached = self._rules.get(org_id, now)
        if cached is not None:
            return cached
        compiled = rule_set(await self._storage.list_alert_rules(org_id))
        if compiled.sentiments:
            await asyncio.to_thread(sentiment.analyzer)  # its lexicon, read once, off the loop
        self._rules.put(org_id, compiled, now)
        return compiled

    # -- evaluation ----------------------------------------------------------

    async def evaluate(self, call: Call, stored: Sequence[StoredEvent]) -> list[StoredEvent]:
        """Check the finals of a stored batch and store and publish the alerts
        they set off (see the module). Never raises but a cancellation."""
        finals = [
            final
            for event in stored
            if event.type == EventType.TRANSCRIPT
            and (final := final_of(event.seq, event.data)) is not None
        ]
        if not finals:
            return []
        try:
            rules = await self.rules_of(call.org_id)
            if rules.empty:
                return []
            self.evaluated += len(finals)
            drafts = await self._drafts(call, rules, finals)
            if not drafts:
                return []
            alerts = await self._storage.append_alerts(call.stream, drafts)
        except StreamClosed:
            log.info("alerts of call %d not recorded: the call has ended", call.id)
            return []
        except Exception:
            self.failures += 1
            log.warning("alerts of call %d not evaluated", call.id, exc_info=True)
            return []
        self.fired += len(alerts)
        await self._publisher.publish(call.org_id, alerts, call_meta(call))
        return alerts

    async def _drafts(self, call: Call, rules: RuleSet, finals: list[Final]) -> list[AlertDraft]:
        ts = now_ms()
        found = [
            (final, rule, match)
            for final in finals
            for rule, match in matches(rules.matchers, final)
        ]
        if rules.sentiments:
            history = await self._history(call.stream, finals)
            for rule in rules.sentiments:
                found += [
                    (final, rule, match)
                    for final, match in sentiment.crossings(rule, history, finals)
                ]
        found.sort(key=lambda item: (item[0].seq, item[1].rule.id))
        return [draft(rule.rule, final, match, ts) for final, rule, match in found]

    async def _history(self, stream: str, finals: list[Final]) -> list[Final]:
        """The finals stored up to the batch's last, from ``LOOKBACK`` events
        before its first: one bounded, indexed read."""
        after = max(0, finals[0].seq - 1 - sentiment.LOOKBACK)
        events = await self._storage.read(stream, after, finals[-1].seq - after)
        return [
            final
            for event in events
            if event.type == EventType.TRANSCRIPT
            and (final := final_of(event.seq, event.data)) is not None
        ]


def _given(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if v is not None}
