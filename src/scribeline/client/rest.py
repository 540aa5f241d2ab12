"""The REST half of the client: ingest, campaigns, bots and tokens, with typed errors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from scribeline.client.errors import ConnectionFailedError, api_error, redact_url

__all__ = ["Rest"]

JSON = dict[str, Any]


def _omit_none(fields: Mapping[str, Any]) -> JSON:
    return {k: v for k, v in fields.items() if v is not None}


def _sid(call_sid: str) -> str:
    return quote(call_sid, safe="")


class Rest:
    """REST calls on an ``httpx.AsyncClient`` that carries the credential.

    Results are the server's JSON (documented in docs/protocol.md); appends
    return their seqs. A refusal is an :class:`~scribeline.client.errors.ApiError`
    subclass chosen by status; no answer at all is ``ConnectionFailedError``, whose
    message names the server's address.
    """

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    async def request(
        self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None
    ) -> Any:
        """One REST call; the decoded JSON body, or the typed error."""
        try:
            response = await self._http.request(
                method, path, json=json, params=_omit_none(params or {})
            )
        except httpx.HTTPError as exc:
            raise ConnectionFailedError(self._failure(method, path, exc)) from exc
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = None
        if response.is_error:
            raise api_error(response.status_code, body)
        return body

    def _failure(self, method: str, path: str, exc: httpx.HTTPError) -> str:
        """One line naming the server (never a credential) and what went wrong."""
        address = redact_url(str(self._http.base_url)).rstrip("/")
        why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return f"cannot reach {address} ({method} {path}: {why})"
        return f"{method} {address}{path} failed ({why})"

    # -- calls -----------------------------------------------------------------

    async def create_call(
        self,
        call_sid: str,
        *,
        assistant_id: int | None = None,
        to_phone_number: str | None = None,
        customer_phone_number: str | None = None,
        call_type: str | None = None,
        status: str | None = None,
        campaign_contact_id: int | None = None,
    ) -> JSON:
        body = _omit_none(
            {
                "call_sid": call_sid,
                "assistant_id": assistant_id,
                "to_phone_number": to_phone_number,
                "customer_phone_number": customer_phone_number,
                "call_type": call_type,
                "status": status,
                "campaign_contact_id": campaign_contact_id,
            }
        )
        result: JSON = await self.request("POST", "/v1/calls", json=body)
        return result

    async def append_transcript(
        self,
        call_sid: str,
        content: str,
        *,
        speaker: str,
        is_final: bool = True,
        confidence: float | None = None,
        segment_start: float | None = None,
        segment_end: float | None = None,
        segment_id: str | None = None,
    ) -> int:
        """Append one transcript; its seq once it is durably stored."""
        body = _omit_none(
            {
                "content": content,
                "speaker": speaker,
                "is_final": is_final,
                "confidence": confidence,
                "segment_start": segment_start,
                "segment_end": segment_end,
                "segment_id": segment_id,
            }
        )
        result = await self.request("POST", f"/v1/calls/{_sid(call_sid)}/transcripts", json=body)
        return int(result["seq"])

    async def append_transcripts(
        self, call_sid: str, items: Sequence[Mapping[str, Any]]
    ) -> list[int]:
        """Append a batch (all or nothing); their seqs."""
        result = await self.request(
            "POST", f"/v1/calls/{_sid(call_sid)}/transcripts", json=[dict(i) for i in items]
        )
        return [int(s) for s in result["seqs"]]

    async def set_status(
        self, call_sid: str, status: str, metadata: Mapping[str, Any] | None = None
    ) -> int:
        """Set the call's status (a terminal one ends the call); the event's seq."""
        body: JSON = {"status": status, "metadata": dict(metadata or {})}
        result = await self.request("POST", f"/v1/calls/{_sid(call_sid)}/status", json=body)
        return int(result["seq"])

    async def get_call(
        self, call_sid: str, *, limit: int | None = None, cursor: str | None = None
    ) -> JSON:
        """The call and one page of its final transcript (``transcript``, at most
        ``limit`` finals); ``next_cursor`` passed back as ``cursor`` continues it."""
        params = {"limit": limit, "cursor": cursor}
        result: JSON = await self.request("GET", f"/v1/calls/{_sid(call_sid)}", params=params)
        return result

    async def final_transcript(self, call_sid: str, *, page_size: int = 1000) -> list[JSON]:
        """Every final of the call, in seq order, fetched page by page."""
        finals: list[JSON] = []
        cursor: str | None = None
        while True:
            page = await self.get_call(call_sid, limit=page_size, cursor=cursor)
            finals += page["transcript"]
            cursor = page.get("next_cursor")
            if cursor is None:
                return finals

    async def list_calls(
        self, *, status: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> JSON:
        """A page of calls, newest first: ``{"calls": [...], "next_cursor": ...}``."""
        params = {"status": status, "limit": limit, "cursor": cursor}
        result: JSON = await self.request("GET", "/v1/calls", params=params)
        return result

    # -- campaigns -------------------------------------------------------------

    async def create_campaign(self, name: str, *, assistant_id: int | None = None) -> JSON:
        body = _omit_none({"name": name, "assistant_id": assistant_id})
        result: JSON = await self.request("POST", "/v1/campaigns", json=body)
        return result

    async def add_contacts(
        self, campaign_id: int, contacts: Sequence[Mapping[str, Any]]
    ) -> list[JSON]:
        """Add contacts (``{"phone_number", "name"?}`` each); the contacts created."""
        result = await self.request(
            "POST", f"/v1/campaigns/{campaign_id}/contacts", json=[dict(c) for c in contacts]
        )
        contacts_: list[JSON] = result["contacts"]
        return contacts_

    async def start_campaign(self, campaign_id: int) -> JSON:
        result: JSON = await self.request("POST", f"/v1/campaigns/{campaign_id}/start")
        return result

    async def record_outcome(
        self,
        campaign_id: int,
        contact_id: int,
        outcome: str,
        *,
        duration: float | None = None,
        call_sid: str | None = None,
        error: str | None = None,
    ) -> JSON:
        body = _omit_none(
            {"outcome": outcome, "duration": duration, "call_sid": call_sid, "error": error}
        )
        path = f"/v1/campaigns/{campaign_id}/contacts/{contact_id}/outcome"
        result: JSON = await self.request("POST", path, json=body)
        return result

    async def list_campaigns(self) -> list[JSON]:
        """The organization's campaigns, newest first (the server's latest 200)."""
        result = await self.request("GET", "/v1/campaigns")
        campaigns: list[JSON] = result["campaigns"]
        return campaigns

    async def get_campaign(self, campaign_id: int) -> JSON:
        result: JSON = await self.request("GET", f"/v1/campaigns/{campaign_id}")
        return result

    # -- bots and tokens -------------------------------------------------------

    async def create_bot(
        self, meeting_url: str, bot_name: str, transcription_model: str = "realtime"
    ) -> JSON:
        """A meeting bot; realtime ones carry ``websocket_url`` and ``websocket_read_only_url``."""
        body = {
            "meeting_url": meeting_url,
            "bot_name": bot_name,
            "transcription_model": transcription_model,
        }
        result: JSON = await self.request("POST", "/v1/bots", json=body)
        return result

    async def get_bot(self, bot_id: str) -> JSON:
        result: JSON = await self.request("GET", f"/v1/bots/{quote(bot_id, safe='')}")
        return result

    async def list_bots(self, *, status: str | None = None, limit: int | None = None) -> list[JSON]:
        result = await self.request("GET", "/v1/bots", params={"status": status, "limit": limit})
        bots: list[JSON] = result["bots"]
        return bots

    async def stop_bot(self, bot_id: str) -> JSON:
        """Stop a bot; returns it once it has stopped."""
        result: JSON = await self.request("POST", f"/v1/bots/{quote(bot_id, safe='')}/stop")
        return result

    async def create_token(
        self,
        *,
        scopes: Sequence[str] | None = None,
        expires_in: int | None = None,
        call_sid: str | None = None,
        campaign_id: int | None = None,
    ) -> JSON:
        """A short-lived access token (needs an API key, not a token)."""
        body = _omit_none(
            {
                "scopes": list(scopes) if scopes is not None else None,
                "expires_in": expires_in,
                "call_sid": call_sid,
                "campaign_id": campaign_id,
            }
        )
        result: JSON = await self.request("POST", "/v1/tokens", json=body)
        return result
