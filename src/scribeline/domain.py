"""Records of the domain: organizations, API keys, assistants and calls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ApiKey", "Assistant", "Call", "CallPage", "Organization"]


@dataclass(frozen=True, slots=True)
class Organization:
    id: int
    name: str
    created_at: int


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored API key. The secret itself is never stored, only its hash."""

    id: int
    org_id: int
    user_id: int
    prefix: str
    scopes: frozenset[str]
    name: str
    created_at: int
    revoked_at: int | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class Assistant:
    id: int
    org_id: int
    name: str
    is_default: bool


@dataclass(frozen=True, slots=True)
class Call:
    id: int
    org_id: int
    assistant_id: int
    call_sid: str
    status: str
    to_phone_number: str | None
    customer_phone_number: str | None
    call_type: str | None
    started_at: int
    ended_at: int | None

    @property
    def stream(self) -> str:
        return f"call:{self.id}"

    def metadata(self) -> dict[str, Any]:
        """The call's metadata as the live-transcript protocol shows it."""
        from scribeline.events import format_ms

        return {
            "assistant_id": self.assistant_id,
            "started_at": format_ms(self.started_at),
            "to_phone_number": self.to_phone_number,
            "customer_phone_number": self.customer_phone_number,
            "call_type": self.call_type,
        }


@dataclass(frozen=True, slots=True)
class CallPage:
    calls: list[Call]
    next_cursor: str | None
