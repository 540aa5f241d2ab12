"""``/v1/alert-rules``: the organization's alert rules (``admin`` to change them,
``read`` to look). What a rule does is in ``alerts/rules.py``; docs/protocol.md
("Alerts") is the contract."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field

from scribeline.alerts.rules import (
    KIND_FIELDS,
    MAX_KEYWORD_CHARS,
    MAX_KEYWORDS,
    MAX_PATTERN_CHARS,
    MAX_WINDOW,
    AlertRule,
)
from scribeline.api.params import path_id
from scribeline.api.rest import authorize_org, json_response, read_json
from scribeline.errors import InvalidRequest
from scribeline.events import format_ms
from scribeline.ingest.models import NO_NUL, STRICT

__all__ = ["NewAlertRule", "UpdateAlertRule", "routes", "rule_json"]

routes = web.RouteTableDef()

Name = Annotated[str, Field(min_length=1, max_length=100, pattern=NO_NUL)]
Keyword = Annotated[str, Field(min_length=1, max_length=MAX_KEYWORD_CHARS, pattern=NO_NUL)]
Speaker = Literal["user", "assistant"]


class _Settings(BaseModel):
    """The kinds' own fields: ``keywords`` (keyword); ``pattern`` and
    ``case_sensitive`` (regex); ``threshold`` and ``window`` (sentiment)."""

    model_config = STRICT

    keywords: list[Keyword] | None = Field(
        None, min_length=1, max_length=MAX_KEYWORDS, description="Words or phrases (keyword)"
    )
    pattern: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_PATTERN_CHARS,
        pattern=NO_NUL,
        description="An RE2 regular expression (regex)",
    )
    case_sensitive: bool | None = Field(None, description="regex; default false")
    threshold: float | None = Field(
        None,
        ge=-1,
        le=1,
        description="Mean VADER compound score at or below which it fires"
        " (sentiment; default -0.5)",
    )
    window: int | None = Field(
        None,
        ge=1,
        le=MAX_WINDOW,
        description="The speaker's last finals averaged (sentiment; default 3)",
    )

    def settings(self) -> dict[str, Any]:
        return {name: getattr(self, name) for names in KIND_FIELDS.values() for name in names}


class NewAlertRule(_Settings):
    name: Name
    kind: Literal["keyword", "regex", "sentiment"]
    speaker: Speaker | None = Field(None, description="Only this speaker's finals (null: any)")
    enabled: bool = True


class UpdateAlertRule(_Settings):
    """Absent fields stay; the kind cannot change. ``speaker`` null: any speaker."""

    name: Name | None = None
    speaker: Speaker | None = None
    enabled: bool | None = None

    def changes(self) -> dict[str, Any]:
        given = self.model_fields_set
        for name in ("name", "enabled"):
            if name in given and getattr(self, name) is None:
                raise InvalidRequest(f"{name} cannot be null")
        return {n: getattr(self, n) for n in ("name", "speaker", "enabled") if n in given}


def rule_json(rule: AlertRule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "name": rule.name,
        "kind": rule.kind,
        **rule.config,
        "speaker": rule.speaker,
        "enabled": rule.enabled,
        "created_at": format_ms(rule.created_at),
        "updated_at": format_ms(rule.updated_at),
    }


@routes.post("/v1/alert-rules")
async def create_alert_rule(request: web.Request) -> web.Response:
    services, principal = await authorize_org(request, "admin")
    body = NewAlertRule.model_validate(await read_json(request))
    rule = await services.alerts.create(
        principal.org_id, body.name, body.kind, body.settings(), body.speaker, body.enabled
    )
    return json_response(rule_json(rule), status=201)


@routes.get("/v1/alert-rules")
async def list_alert_rules(request: web.Request) -> web.Response:
    services, principal = await authorize_org(request, "read")
    rules = await services.alerts.list_rules(principal.org_id)
    return json_response({"alert_rules": [rule_json(r) for r in rules]})


@routes.get("/v1/alert-rules/{rule_id}")
async def get_alert_rule(request: web.Request) -> web.Response:
    services, principal = await authorize_org(request, "read")
    rule_id = path_id(request, "rule_id", "Alert rule")
    return json_response(rule_json(await services.alerts.get(principal.org_id, rule_id)))


@routes.patch("/v1/alert-rules/{rule_id}")
async def update_alert_rule(request: web.Request) -> web.Response:
    services, principal = await authorize_org(request, "admin")
    rule_id = path_id(request, "rule_id", "Alert rule")
    body = UpdateAlertRule.model_validate(await read_json(request))
    rule = await services.alerts.update(principal.org_id, rule_id, body.changes(), body.settings())
    return json_response(rule_json(rule))


@routes.delete("/v1/alert-rules/{rule_id}")
async def delete_alert_rule(request: web.Request) -> web.Response:
    services, principal = await authorize_org(request, "admin")
    rule_id = path_id(request, "rule_id", "Alert rule")
    await services.alerts.delete(principal.org_id, rule_id)
    return web.Response(status=204)
