"""Organization settings and assistants' redaction override.

``SettingsStore`` is the contract both backends honour (``tests/contract``):

* ``get_org_settings`` is None for an organization that does not exist.
* ``update_org_settings`` sets the fields given (``redaction``, a list of
  kinds; ``retention_days``) in one statement, so that concurrent changes of
  other fields stay; None if the organization does not exist.
* ``set_assistant_redaction`` sets an assistant's override (None: inherit the
  organization's; an empty list: off); False if the organization has no such
  assistant.
* ``redaction_of`` is what a call of the assistant redacts: the assistant's
  override if it has one, else the organization's (an empty tuple: off).

Redaction lists are stored as JSON text; an organization's empty list is
stored as NULL (off, as for organizations that never set it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from scribeline.domain import OrgSettings

__all__ = [
    "ORG_FIELDS",
    "SettingsStore",
    "decode_kinds",
    "encode_kinds",
    "org_columns",
    "org_settings",
]

#: The fields of ``OrgSettings`` a change may set.
ORG_FIELDS = ("redaction", "retention_days")


def encode_kinds(kinds: Sequence[str] | None, empty_is_null: bool) -> str | None:
    """A redaction list as a column holds it."""
    if kinds is None or (empty_is_null and not kinds):
        return None
    return orjson.dumps(list(kinds)).decode()


def decode_kinds(value: str | None) -> tuple[str, ...] | None:
    """A redaction column's list (None for NULL)."""
    if value is None:
        return None
    kinds = orjson.loads(value)
    return tuple(str(k) for k in kinds) if isinstance(kinds, list) else ()


def org_columns(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The columns an organization change sets, in a fixed order, with stored
    values; ``ValueError`` for a name that is not a field (names go into SQL,
    values never do)."""
    unknown = set(changes) - set(ORG_FIELDS)
    if unknown:
        raise ValueError(f"not organization settings fields: {sorted(unknown)}")
    columns = {name: changes[name] for name in ORG_FIELDS if name in changes}
    if "redaction" in columns:
        columns["redaction"] = encode_kinds(columns["redaction"], empty_is_null=True)
    return columns


def org_settings(org_id: int, name: str, redaction: str | None, days: int | None) -> OrgSettings:
    return OrgSettings(org_id, name, decode_kinds(redaction) or (), days)


class SettingsStore(ABC):
    """Organization settings and assistants' redaction override."""

    @abstractmethod
    async def get_org_settings(self, org_id: int) -> OrgSettings | None: ...

    @abstractmethod
    async def update_org_settings(
        self, org_id: int, changes: Mapping[str, Any]
    ) -> OrgSettings | None: ...

    @abstractmethod
    async def set_assistant_redaction(
        self, org_id: int, assistant_id: int, kinds: Sequence[str] | None
    ) -> bool: ...

    @abstractmethod
    async def assistant_redactions(self, org_id: int) -> dict[int, tuple[str, ...] | None]:
        """Each of the organization's assistants' override (None: inherits)."""

    @abstractmethod
    async def redaction_of(self, org_id: int, assistant_id: int) -> tuple[str, ...]: ...
