"""The organization settings service: PII redaction and retention, and what a
call of an assistant redacts.

What a call redacts is read on every transcript append, so it is cached per
node briefly; a change tells every node to drop the organization's entries
(``SETTINGS_CHANGED``), and an entry a lost notice left behind expires.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from scribeline.cluster import Signals
from scribeline.domain import OrgSettings
from scribeline.errors import NotFound
from scribeline.storage import Storage
from scribeline.ttl_cache import TtlCache

__all__ = ["SETTINGS_CHANGED", "OrganizationService"]

#: The cluster notice that an organization's settings (or one of its assistants'
#: redaction override) changed.
SETTINGS_CHANGED = "org.settings.changed"

#: No assistant has this id (ids start at 1): the organization's own setting.
_NO_ASSISTANT = 0


class OrganizationService:
    """Reads and changes organizations' settings; resolves redaction per call."""

    def __init__(self, storage: Storage, signals: Signals, cache_seconds: float = 1.0) -> None:
        self._storage = storage
        self._signals = signals
        # (org id, assistant id) -> (org id, kinds redacted)
        self._redaction: TtlCache[tuple[int, int], tuple[int, frozenset[str]]] = TtlCache(
            cache_seconds, 10_000
        )
        signals.on(SETTINGS_CHANGED, self._forget)

    def _forget(self, notice: dict[str, Any]) -> None:
        org_id = notice["org_id"]
        self._redaction.drop_where(lambda entry: entry[0] == org_id)

    async def _changed(self, org_id: int) -> None:
        await self._signals.broadcast(SETTINGS_CHANGED, {"org_id": org_id})

    async def get(self, org_id: int) -> OrgSettings:
        settings = await self._storage.get_org_settings(org_id)
        if settings is None:
            raise NotFound(f"Organization {org_id} not found")
        return settings

    async def update(self, org_id: int, changes: dict[str, Any]) -> OrgSettings:
        """Set the fields in ``changes`` (``redaction``: a list of kinds, empty for
        off; ``retention_days``: days or None) and tell every node."""
        settings = await self._storage.update_org_settings(org_id, changes)
        if settings is None:
            raise NotFound(f"Organization {org_id} not found")
        await self._changed(org_id)
        return settings

    async def set_assistant_redaction(
        self, org_id: int, assistant_id: int, kinds: Sequence[str] | None
    ) -> None:
        """An assistant's override (None: inherit; empty: off); ``NotFound``
        outside the organization."""
        if not await self._storage.set_assistant_redaction(org_id, assistant_id, kinds):
            raise NotFound(f"Assistant {assistant_id} not found")
        await self._changed(org_id)

    async def assistant_redactions(self, org_id: int) -> dict[int, tuple[str, ...] | None]:
        return await self._storage.assistant_redactions(org_id)

    async def org_redaction(self, org_id: int) -> frozenset[str]:
        """The kinds the organization redacts where no assistant is involved
        (meeting bots)."""
        return await self.redaction_for(org_id, _NO_ASSISTANT)

    async def redaction_for(self, org_id: int, assistant_id: int) -> frozenset[str]:
        """The kinds a call of the assistant redacts: its override, else the
        organization's, else none (cached briefly)."""
        key = (org_id, assistant_id)
        now = time.monotonic()
        cached = self._redaction.get(key, now)
        if cached is not None:
            return cached[1]
        kinds = frozenset(await self._storage.redaction_of(org_id, assistant_id))
        self._redaction.put(key, (org_id, kinds), now)
        return kinds
