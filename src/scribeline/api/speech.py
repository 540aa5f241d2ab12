"""``GET``/``PATCH /v1/speech``: the organization's live-audio settings (admin).

Secrets go in and never come out: a response says only whether each is set.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from scribeline.api.rest import authorize_org, json_response, read_json
from scribeline.domain import SpeechSettings
from scribeline.events import format_ms
from scribeline.ingest.models import STRICT, SpeechEngineName
from scribeline.speech.settings import SpeechUpdate

__all__ = ["routes"]

routes = web.RouteTableDef()


class UpdateSpeech(BaseModel):
    """A change of the settings; absent fields stay; an empty secret removes it."""

    model_config = STRICT

    engine: SpeechEngineName | None = None
    twilio_auth_token: str | None = Field(None, max_length=256)
    deepgram_api_key: str | None = Field(None, max_length=256)
    require_twilio_signature: bool | None = None


def speech_json(settings: SpeechSettings) -> dict[str, Any]:
    return {
        "engine": settings.engine,
        "twilio_auth_token_set": settings.twilio_auth_token is not None,
        "deepgram_api_key_set": settings.deepgram_api_key is not None,
        "require_twilio_signature": settings.require_twilio_signature,
        "updated_at": format_ms(settings.updated_at) if settings.updated_at else None,
    }


@routes.get("/v1/speech")
async def get_speech(request: web.Request) -> web.Response:
    services, principal = await authorize_org(request, "admin")
    return json_response(speech_json(await services.speech.get(principal.org_id)))


@routes.patch("/v1/speech")
async def update_speech(request: web.Request) -> web.Response:
    services, principal = await authorize_org(request, "admin")
    body = UpdateSpeech.model_validate(await read_json(request))
    stored = await services.speech.update(
        principal.org_id,
        SpeechUpdate(
            engine=body.engine,
            twilio_auth_token=body.twilio_auth_token,
            deepgram_api_key=body.deepgram_api_key,
            require_twilio_signature=body.require_twilio_signature,
        ),
    )
    return json_response(speech_json(stored))
