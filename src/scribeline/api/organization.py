"""``GET``/``PATCH /v1/organization``: the organization's settings (PII
redaction at ingest, retention). Reading needs ``read``; changing, ``admin``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from scribeline.api.rest import authorize_org, json_response, read_json
from scribeline.domain import OrgSettings
from scribeline.ingest.models import UpdateOrganization

__all__ = ["organization_json", "routes"]

routes = web.RouteTableDef()


def organization_json(settings: OrgSettings) -> dict[str, Any]:
    return {
        "id": settings.org_id,
        "name": settings.name,
        "redaction": list(settings.redaction),
        "retention_days": settings.retention_days,
    }


@routes.get("/v1/organization")
async def get_organization(request: web.Request) -> web.Response:
    services, principal = await authorize_org(request, "read")
    return json_response(organization_json(await services.organization.get(principal.org_id)))


@routes.patch("/v1/organization")
async def update_organization(request: web.Request) -> web.Response:
    services, principal = await authorize_org(request, "admin")
    body = UpdateOrganization.model_validate(await read_json(request))
    stored = await services.organization.update(principal.org_id, body.changes())
    return json_response(organization_json(stored))
