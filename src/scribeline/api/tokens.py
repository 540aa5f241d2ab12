"""``POST /v1/tokens``: mint an access token with an API key (PROTOCOL.md section 5)."""

from __future__ import annotations

import time
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from scribeline.api.rest import json_response, read_json
from scribeline.api.state import SERVICES
from scribeline.auth import is_api_key, rest_credentials
from scribeline.errors import Forbidden
from scribeline.events import format_ms
from scribeline.ingest.models import CALL_SID_PATTERN, STRICT, Id

__all__ = ["TokenRequest", "routes"]

routes = web.RouteTableDef()

#: No token lives longer than a day, whatever ``SCRIBELINE_TOKEN_MAX_TTL`` says.
CEILING_TTL = 86_400

Scope = Literal["read", "write", "admin"]


def _read_only() -> list[Scope]:
    return ["read"]


class TokenRequest(BaseModel):
    """The body of ``POST /v1/tokens``; every field is optional.

    Validate with ``context={"max_ttl": seconds}`` to bound ``expires_in``.
    """

    model_config = STRICT

    scopes: list[Scope] = Field(default_factory=_read_only, min_length=1)
    expires_in: int | None = Field(None, ge=1)
    call_sid: str | None = Field(None, pattern=CALL_SID_PATTERN)
    campaign_id: Id | None = None

    @field_validator("expires_in")
    @classmethod
    def _at_most_max(cls, value: int | None, info: ValidationInfo) -> int | None:
        limit = (info.context or {}).get("max_ttl")
        if value is not None and limit is not None and value > limit:
            raise ValueError(f"expires_in is at most {limit} seconds")
        return value

    @model_validator(mode="after")
    def _one_restriction(self) -> TokenRequest:
        if self.call_sid is not None and self.campaign_id is not None:
            raise ValueError("a token is restricted to a call_sid or a campaign_id, not both")
        return self


@routes.post("/v1/tokens")
async def create_token(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    settings = services.settings
    token = rest_credentials(request).token
    principal = await services.auth.authenticate(token)
    if token is None or not is_api_key(token):
        raise Forbidden("Access tokens are minted with an API key, not with an access token")
    max_ttl = max(1, int(min(settings.token_max_ttl, CEILING_TTL)))
    body = TokenRequest.model_validate(
        await read_json(request, empty={}), context={"max_ttl": max_ttl}
    )
    scopes = frozenset(body.scopes)
    if body.expires_in is not None:
        ttl = body.expires_in
    else:
        ttl = max(1, int(min(settings.token_default_ttl, max_ttl)))
    now = int(time.time())
    minted = services.auth.mint(
        principal,
        scopes=scopes,
        ttl_seconds=ttl,
        now=now,
        call_sid=body.call_sid,
        campaign_id=body.campaign_id,
    )
    response = json_response(
        {
            "token": minted,
            "token_type": "Bearer",
            "expires_at": format_ms((now + ttl) * 1000),
            "expires_in": ttl,
            "scopes": sorted(scopes),
            "call_sid": body.call_sid,
            "campaign_id": body.campaign_id,
        },
        status=201,
    )
    response.headers["Cache-Control"] = "no-store"
    return response
