"""Assistant routes: create, list, switch transcription on or off, choose the
speech engine, override the organization's PII redaction."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from scribeline.api.params import path_id
from scribeline.api.rest import authorize_org, json_response, read_json
from scribeline.domain import Assistant
from scribeline.ingest.models import CreateAssistant, UpdateAssistant

__all__ = ["routes"]

routes = web.RouteTableDef()


def assistant_json(assistant: Assistant, redaction: tuple[str, ...] | None) -> dict[str, Any]:
    """An assistant as the API shows it; ``redaction`` its override (None: inherits)."""
    return {
        "id": assistant.id,
        "name": assistant.name,
        "is_default": assistant.is_default,
        "transcription_enabled": assistant.transcription_enabled,
        "speech_engine": assistant.speech_engine,
        "redaction": None if redaction is None else list(redaction),
    }


@routes.post("/v1/assistants")
async def create_assistant(request: web.Request) -> web.Response:
    services, principal = await authorize_org(request, "write")
    body = CreateAssistant.model_validate(await read_json(request))
    assistant = await services.assistants.create(
        principal.org_id, body.name, body.transcription_enabled, body.speech_engine
    )
    return json_response(assistant_json(assistant, None), status=201)


@routes.get("/v1/assistants")
async def list_assistants(request: web.Request) -> web.Response:
    services, principal = await authorize_org(request, "read")
    assistants = await services.assistants.list_assistants(principal.org_id)
    overrides = await services.organization.assistant_redactions(principal.org_id)
    listed = [assistant_json(a, overrides.get(a.id)) for a in assistants]
    return json_response({"assistants": listed})


@routes.patch("/v1/assistants/{assistant_id}")
async def update_assistant(request: web.Request) -> web.Response:
    services, principal = await authorize_org(request, "write")
    assistant_id = path_id(request, "assistant_id", "Assistant")
    body = UpdateAssistant.model_validate(await read_json(request))
    if "redaction" in body.model_fields_set:  # a privacy setting: checked before any change
        principal.require("admin")
    assistant = await services.assistants.update(
        principal.org_id, assistant_id, body.transcription_enabled, body.speech_engine
    )
    await services.calls.forget_assistant(assistant.id)
    if "redaction" in body.model_fields_set:
        await services.organization.set_assistant_redaction(
            principal.org_id, assistant.id, body.redaction
        )
    overrides = await services.organization.assistant_redactions(principal.org_id)
    return json_response(assistant_json(assistant, overrides.get(assistant.id)))
