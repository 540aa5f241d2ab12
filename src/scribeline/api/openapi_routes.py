"""Every route of the application as an OpenAPI operation: the one table that
``GET /openapi.json`` is built from (``api/openapi.py``).

``tests/integration/test_openapi.py`` checks it against the application's
router both ways, so a route added without a row here (or a row left behind)
fails the suite. Limits come from the handler modules' own constants.
HEAD, which aiohttp answers beside every GET, is not listed (RFC 9110 9.3.2:
GET without the body).
"""

from __future__ import annotations

import functools
from typing import Any

import orjson

from scribeline import __version__
from scribeline.api import bots, campaigns, dashboard, rest
from scribeline.api import openapi_schemas as out
from scribeline.api.alert_rules import NewAlertRule, UpdateAlertRule
from scribeline.api.openapi import Batch, Operation, Param, Reply, build
from scribeline.api.sessions import CaptionsRequest, SignIn
from scribeline.api.speech import UpdateSpeech
from scribeline.api.tokens import TokenRequest
from scribeline.api.webhooks import (
    DEFAULT_DELIVERIES,
    MAX_DELIVERIES,
    CreateWebhook,
    ReplayWebhook,
    UpdateWebhook,
)
from scribeline.config import Settings
from scribeline.domain import BotStatus
from scribeline.events import CallStatus
from scribeline.exports import FORMATS
from scribeline.ingest.bot_models import CreateBot
from scribeline.ingest.models import (
    CALL_SID_PATTERN,
    CreateAssistant,
    CreateCall,
    CreateCampaign,
    NewContact,
    Outcome,
    SetStatus,
    Transcript,
    UpdateAssistant,
    UpdateOrganization,
)
from scribeline.numbers import MAX_INT64

__all__ = ["DOCS_ASSETS", "METRICS", "OPERATIONS", "document"]

JSON = "application/json"

#: The interactive docs' files (``api/docs.py`` serves these and nothing else).
DOCS_ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "init.js")

_MAX_BATCH: int = Settings.model_fields["max_batch_items"].default
_STATUSES = "|".join(s.value for s in CallStatus)


def _json(description: str, schema: Any) -> Reply:
    return Reply(description, {JSON: schema})


def _int(lo: int, hi: int = MAX_INT64, default: int | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", "minimum": lo, "maximum": hi}
    if default is not None:
        schema["default"] = default
    return schema


def _id(name: str, what: str) -> Param:
    return Param(name, "path", _int(1), f"The {what}'s id (one that cannot exist is not found)")


_CALL_SID = Param("call_sid", "path", {"type": "string", "pattern": CALL_SID_PATTERN})
_BOT_ID = Param("bot_id", "path", {"type": "string"}, "The bot's id (a UUID)")

#: A request with a JSON body can fail in these ways before it is looked at.
_BODY = (400, 408, 413, 422)
#: Authenticated REST: no or a bad credential, a missing scope, a token in the
#: query (422), storage out of reach (503).
_AUTH = (401, 403, 422, 503)


def _rest(
    method: str,
    path: str,
    handler: str,
    summary: str,
    tag: str,
    replies: dict[int, Reply],
    errors: tuple[int, ...] = (),
    params: tuple[Param, ...] = (),
    body: Any = None,
    description: str = "",
) -> Operation:
    statuses = set(_AUTH) | set(errors) | (set(_BODY) if body is not None else set())
    return Operation(
        method,
        path,
        handler,
        summary,
        tag,
        replies,
        tuple(sorted(statuses)),
        params,
        body,
        description=description,
    )


def _websocket(
    path: str,
    handler: str,
    summary: str,
    params: tuple[Param, ...] = (),
    errors: tuple[int, ...] = (),
) -> Operation:
    token = Param("token", "query", {"type": "string"}, "An API key or a token")
    return Operation(
        "GET",
        path,
        handler,
        summary,
        "websockets",
        {101: Reply("Switching Protocols: the WebSocket is open")},
        tuple(sorted({400, 503, *errors})),
        (*params, token),
        security=("bearer", "queryToken"),
        description=(
            "A WebSocket (docs/protocol.md). Refusals after the upgrade are an `error`"
            " message and a close frame; a request that is not an upgrade is 400"
            " `invalid_upgrade`, and 503 `unavailable` while the server shuts down."
        ),
    )


_PAGE_CURSOR = Param("cursor", "query", _int(0), "`next_cursor` of the previous page")

_CALLS = (
    _rest(
        "POST", "/v1/calls", "create_call", "Create a call", "calls",
        {201: _json("The call", out.CallBody)}, (404, 409), body=CreateCall,
    ),
    _rest(
        "GET", "/v1/calls", "list_calls", "List the organization's calls, newest first", "calls",
        {200: _json("A page of calls", out.CallList)},
        params=(
            Param(
                "status", "query",
                {"type": "string", "pattern": f"^({_STATUSES})(,({_STATUSES}))*$"},
                "One status or a comma list of them",
            ),
            Param("include", "query", {"type": "string", "enum": ["latest"]}),
            Param("limit", "query", _int(1, rest.MAX_PAGE, 50)),
            Param("cursor", "query", _int(1), "`next_cursor` of the previous page"),
        ),
    ),
    _rest(
        "GET", "/v1/calls/{call_sid}", "get_call", "A call and a page of its final transcript",
        "calls", {200: _json("The call", out.CallWithTranscript)}, (404,),
        params=(
            _CALL_SID,
            Param(
                "limit", "query",
                _int(1, rest.MAX_TRANSCRIPT_PAGE, rest.DEFAULT_TRANSCRIPT_PAGE),
            ),
            _PAGE_CURSOR,
        ),
    ),
    _rest(
        "POST", "/v1/calls/{call_sid}/transcripts", "append_transcripts",
        "Append a transcript, or a batch in one transaction", "calls",
        {201: _json("Stored: its seq, or a batch's seqs", (out.SeqBody, out.SeqsBody))},
        (404, 409), (_CALL_SID,), Batch(Transcript, _MAX_BATCH),
    ),
    _rest(
        "POST", "/v1/calls/{call_sid}/status", "set_status", "Change a call's status", "calls",
        {201: _json("Stored", out.SeqBody)}, (404, 409), (_CALL_SID,), SetStatus,
    ),
    _rest(
        "DELETE", "/v1/calls/{call_sid}", "delete_call",
        "Delete a call, its events and everything kept of it", "calls",
        {204: Reply("Deleted")}, (404,), (_CALL_SID,),
        description=(
            "Admin scope, organization-wide credentials only. A call not yet ended is"
            " ended first (`canceled`, metadata `reason: deleted`). Audited in the log"
            " with ids only (docs/protocol.md, Deleting a call)."
        ),
    ),
    _rest(
        "GET", "/v1/calls/{call_sid}/transcript", "export_transcript",
        "The call's final transcript as a file: text, JSON, WebVTT or SRT", "calls",
        {
            200: Reply(
                "The transcript, streamed (an attachment)",
                {
                    "text/plain": None,
                    JSON: out.TranscriptExport,
                    "text/vtt": None,
                    "application/x-subrip": None,
                },
                headers={"Content-Disposition": "`attachment`, named after the call's SID"},
            )
        },
        (404,),
        (
            _CALL_SID,
            Param(
                "format", "query", {"type": "string", "enum": list(FORMATS), "default": "txt"},
                "Plain text, JSON, WebVTT or SRT (docs/protocol.md, Transcript exports)",
            ),
        ),
    ),
)  # fmt: skip

_ASSISTANTS = (
    _rest(
        "POST", "/v1/assistants", "create_assistant", "Create an assistant", "assistants",
        {201: _json("The assistant", out.AssistantBody)}, body=CreateAssistant,
    ),
    _rest(
        "GET", "/v1/assistants", "list_assistants", "List the assistants", "assistants",
        {200: _json("The assistants", out.AssistantList)},
    ),
    _rest(
        "PATCH", "/v1/assistants/{assistant_id}", "update_assistant",
        "Switch transcription, choose the speech engine, override redaction", "assistants",
        {200: _json("The assistant", out.AssistantBody)}, (404,),
        (_id("assistant_id", "assistant"),), UpdateAssistant,
        "Write scope; changing `redaction` needs admin (403 otherwise, nothing changed).",
    ),
)  # fmt: skip

_CAMPAIGN = _id("campaign_id", "campaign")
_CAMPAIGNS = (
    _rest(
        "POST", "/v1/campaigns", "create_campaign", "Create a campaign", "campaigns",
        {201: _json("The campaign", out.CampaignBody)}, body=CreateCampaign,
    ),
    _rest(
        "GET", "/v1/campaigns", "list_campaigns", "The newest campaigns", "campaigns",
        {200: _json("The campaigns", out.CampaignList)},
    ),
    _rest(
        "GET", "/v1/campaigns/{campaign_id}", "get_campaign", "A campaign", "campaigns",
        {200: _json("The campaign", out.CampaignBody)}, (404,), (_CAMPAIGN,),
    ),
    _rest(
        "POST", "/v1/campaigns/{campaign_id}/contacts", "add_contacts",
        "Add a contact or a batch of them", "campaigns",
        {201: _json("The contacts added", out.ContactList)}, (404, 409), (_CAMPAIGN,),
        Batch(NewContact, _MAX_BATCH),
    ),
    _rest(
        "GET", "/v1/campaigns/{campaign_id}/contacts", "list_contacts",
        "A page of the campaign's contacts", "campaigns",
        {200: _json("A page of contacts", out.ContactPage)}, (404,),
        (
            _CAMPAIGN,
            Param(
                "limit", "query",
                _int(1, campaigns.MAX_CONTACT_PAGE, campaigns.DEFAULT_CONTACT_PAGE),
            ),
            _PAGE_CURSOR,
        ),
    ),
    _rest(
        "POST", "/v1/campaigns/{campaign_id}/start", "start_campaign", "Start a campaign",
        "campaigns", {200: _json("The campaign", out.CampaignBody)}, (404, 409), (_CAMPAIGN,),
    ),
    _rest(
        "POST", "/v1/campaigns/{campaign_id}/contacts/{contact_id}/outcome", "record_outcome",
        "Record a contact's outcome", "campaigns", {200: _json("The contact", out.ContactBody)},
        (404, 409), (_CAMPAIGN, _id("contact_id", "contact")), Outcome,
    ),
)  # fmt: skip

_BOT_HEADERS = {"Cache-Control": "`no-store`: the URLs carry capability tokens"}
_BOTS = (
    _rest(
        "POST", "/v1/bots", "create_bot", "Send a bot to a meeting", "bots",
        {201: Reply("The bot", {JSON: out.BotBody}, _BOT_HEADERS)}, body=CreateBot,
    ),
    _rest(
        "GET", "/v1/bots", "list_bots", "The newest bots", "bots",
        {200: _json("The bots (without URLs)", out.BotList)},
        params=(
            Param("status", "query", {"type": "string", "enum": [s.value for s in BotStatus]}),
            Param("limit", "query", _int(1, bots.MAX_LIST, 50)),
        ),
    ),
    _rest(
        "GET", "/v1/bots/{bot_id}", "get_bot", "A bot, with fresh URLs", "bots",
        {200: Reply("The bot", {JSON: out.BotBody}, _BOT_HEADERS)}, (404,), (_BOT_ID,),
    ),
    _rest(
        "GET", "/v1/bots/{bot_id}/events", "bot_events", "A page of the bot's stored events",
        "bots", {200: _json("A page of events", out.BotEventPage)}, (404,),
        (
            _BOT_ID,
            Param("after", "query", _int(0, default=0), "Events with a seq above this"),
            Param("limit", "query", _int(1, bots.MAX_EVENTS, bots.MAX_EVENTS)),
        ),
    ),
    _rest(
        "POST", "/v1/bots/{bot_id}/stop", "stop_bot", "Stop a bot (answers once it stopped)",
        "bots", {200: Reply("The bot", {JSON: out.BotBody}, _BOT_HEADERS)}, (404, 409),
        (_BOT_ID,),
    ),
)  # fmt: skip

_OTHER_REST = (
    _rest(
        "POST", "/v1/tokens", "create_token", "Mint an access token with an API key", "tokens",
        {201: Reply("The token", {JSON: out.TokenBody}, {"Cache-Control": "`no-store`"})},
        body=TokenRequest,
    ),
    _rest(
        "GET", "/v1/speech", "get_speech", "The organization's live-audio settings (admin)",
        "speech", {200: _json("The settings (secrets only as set or not)", out.SpeechBody)},
    ),
    _rest(
        "PATCH", "/v1/speech", "update_speech", "Change the live-audio settings (admin)",
        "speech", {200: _json("The settings", out.SpeechBody)}, body=UpdateSpeech,
    ),
    _rest(
        "GET", "/v1/organization", "get_organization", "The organization's settings",
        "organization", {200: _json("The settings", out.OrganizationBody)},
    ),
    _rest(
        "PATCH", "/v1/organization", "update_organization",
        "Change PII redaction and retention (admin)", "organization",
        {200: _json("The settings", out.OrganizationBody)}, body=UpdateOrganization,
        description="Absent fields stay. `redaction`: the kinds redacted from every"
        " transcript at ingest ([] or null: off). `retention_days`: null keeps calls forever.",
    ),
)  # fmt: skip

_RULE = _id("rule_id", "alert rule")
_ALERT_RULES = (
    _rest(
        "POST", "/v1/alert-rules", "create_alert_rule", "Create an alert rule (admin)",
        "alerts", {201: _json("The rule", out.AlertRuleBody)}, body=NewAlertRule,
        description="A pattern RE2 refuses, settings of another kind, or more than the"
        " organization's 100 rules: 422.",
    ),
    _rest(
        "GET", "/v1/alert-rules", "list_alert_rules", "The organization's alert rules",
        "alerts", {200: _json("The rules, oldest first", out.AlertRuleList)},
    ),
    _rest(
        "GET", "/v1/alert-rules/{rule_id}", "get_alert_rule", "An alert rule", "alerts",
        {200: _json("The rule", out.AlertRuleBody)}, (404,), (_RULE,),
    ),
    _rest(
        "PATCH", "/v1/alert-rules/{rule_id}", "update_alert_rule", "Change an alert rule (admin)",
        "alerts", {200: _json("The rule", out.AlertRuleBody)}, (404,), (_RULE,),
        UpdateAlertRule,
    ),
    _rest(
        "DELETE", "/v1/alert-rules/{rule_id}", "delete_alert_rule",
        "Delete an alert rule (admin); its alerts stay", "alerts",
        {204: Reply("Deleted")}, (404,), (_RULE,),
    ),
)  # fmt: skip

_WEBHOOK = _id("webhook_id", "webhook")
_WEBHOOKS = (
    _rest(
        "POST", "/v1/webhooks", "create_webhook", "Add a webhook endpoint (admin)", "webhooks",
        {201: Reply("The endpoint and its signing secret, shown once",
                    {JSON: out.WebhookCreated}, {"Cache-Control": "`no-store`"})},
        (409,), body=CreateWebhook,
        description="A URL that is not https, or names a non-public address, is 422 (unless"
        " the server allows private addresses). Past the organization's most endpoints: 409.",
    ),
    _rest(
        "GET", "/v1/webhooks", "list_webhooks", "The organization's webhook endpoints",
        "webhooks", {200: _json("The endpoints, oldest first", out.WebhookList)},
    ),
    _rest(
        "GET", "/v1/webhooks/{webhook_id}", "get_webhook", "A webhook endpoint", "webhooks",
        {200: _json("The endpoint", out.WebhookBody)}, (404,), (_WEBHOOK,),
    ),
    _rest(
        "PATCH", "/v1/webhooks/{webhook_id}", "update_webhook",
        "Change a webhook endpoint, enable or disable it (admin)", "webhooks",
        {200: _json("The endpoint", out.WebhookBody)}, (404,), (_WEBHOOK,), UpdateWebhook,
    ),
    _rest(
        "DELETE", "/v1/webhooks/{webhook_id}", "delete_webhook",
        "Delete a webhook endpoint and its deliveries (admin)", "webhooks",
        {204: Reply("Deleted")}, (404,), (_WEBHOOK,),
    ),
    _rest(
        "GET", "/v1/webhooks/{webhook_id}/deliveries", "list_deliveries",
        "The endpoint's delivery log, newest first", "webhooks",
        {200: _json("A page of deliveries with their attempts", out.WebhookDeliveries)}, (404,),
        (
            _WEBHOOK,
            Param("limit", "query", _int(1, MAX_DELIVERIES, DEFAULT_DELIVERIES)),
            Param("cursor", "query", _int(1), "`next_cursor` of the previous page"),
        ),
    ),
    _rest(
        "POST", "/v1/webhooks/{webhook_id}/replay", "replay_webhook",
        "Send delivered or given-up deliveries again (admin)", "webhooks",
        {202: _json("How many were queued", out.WebhookReplayed)}, (404,), (_WEBHOOK,),
        ReplayWebhook,
    ),
)  # fmt: skip

_ORIGIN = Param(
    "Origin", "header", {"type": "string"}, "The server's own origin (else 403)", required=True
)


def _session_op(
    method: str,
    path: str,
    handler: str,
    summary: str,
    replies: dict[int, Reply],
    errors: tuple[int, ...],
    body: Any = None,
) -> Operation:
    # 422: any body that is not JSON, even where none is expected (``sessions._guard``).
    statuses = {403, 422, 503, *errors} | (set(_BODY) if body is not None else set())
    return Operation(
        method,
        path,
        handler,
        summary,
        "dashboard",
        replies,
        tuple(sorted(statuses)),
        (_ORIGIN,),
        body,
        security=("session",),
        description="A dashboard page's call: same-origin only, never cached.",
    )


_SESSION_HEADERS = {"Set-Cookie": "The session cookie (HttpOnly, SameSite=Strict)"}
_DASHBOARD_API = (
    _session_op(
        "POST", "/dashboard/api/session", "sign_in", "Trade a one-time code for a session",
        {201: Reply("The session", {JSON: out.SessionBody}, _SESSION_HEADERS)}, (401,), SignIn,
    ),
    _session_op(
        "POST", "/dashboard/api/token", "refresh", "A fresh access token for the session",
        {200: _json("The session", out.SessionBody)}, (401,),
    ),
    _session_op(
        "DELETE", "/dashboard/api/session", "sign_out", "Sign out (revokes the session)",
        {204: Reply("Signed out; the cookie is cleared", headers=_SESSION_HEADERS)}, (),
    ),
    _session_op(
        "POST", "/dashboard/api/captions", "captions", "A captions link for one call",
        {201: _json("The link and its token", out.CaptionsBody)}, (401, 404), CaptionsRequest,
    ),
)  # fmt: skip

_HTML = "text/html"
_FILE_TYPES = {t.split(";")[0]: None for t in (*dashboard.CONTENT_TYPES.values(),)}
_FILE_TYPES[dashboard.FALLBACK_TYPE] = None


def _open(
    path: str,
    handler: str,
    summary: str,
    tag: str,
    replies: dict[int, Reply],
    errors: tuple[int, ...] = (),
    params: tuple[Param, ...] = (),
) -> Operation:
    return Operation("GET", path, handler, summary, tag, replies, errors, params, security=())


_TO_DASHBOARD = {302: Reply("To `/dashboard/`", headers={"Location": "`/dashboard/`"})}
_PAGES = (
    _open("/healthz", "healthz", "Liveness", "health", {200: _json("Running", out.Health)}),
    _open(
        "/readyz", "readyz", "Readiness: a durable write and the broker", "health",
        {
            200: _json("Ready (or degraded)", out.Readiness),
            503: _json("Unavailable: storage failed its check", out.Readiness),
        },
    ),
    _open("/", "root", "To the dashboard", "dashboard", _TO_DASHBOARD),
    _open("/dashboard", "to_dashboard", "To the dashboard", "dashboard", _TO_DASHBOARD),
    _open(
        "/dashboard/", "index", "The supervisor dashboard", "dashboard",
        {200: Reply("The page", {_HTML: None})},
    ),
    _open(
        "/dashboard/{name}", "dashboard_file", "A file of the dashboard", "dashboard",
        {200: Reply("The file", dict(_FILE_TYPES)), 304: Reply("Not modified")}, (404,),
        (Param("name", "path", {"type": "string"}, "A relative path (it may hold `/`)"),),
    ),
    _open(
        "/openapi.json", "openapi_json", "This document", "docs",
        {200: Reply("OpenAPI 3.1", {JSON: {"type": "object"}})},
    ),
    _open("/docs", "docs_page", "Interactive API docs", "docs", {200: Reply("", {_HTML: None})}),
    _open(
        "/docs/{asset}", "docs_asset", "A file of the interactive docs", "docs",
        {
            200: Reply("The file", {"text/javascript": None, "text/css": None}),
            304: Reply("Not modified"),
        },
        (404,), (Param("asset", "path", {"type": "string", "enum": list(DOCS_ASSETS)}),),
    ),
)  # fmt: skip

_SINCE = Param("since", "query", _int(0), "Resume after this seq")
_WEBSOCKETS = (
    _websocket(
        "/live-transcript/{call_sid}", "live_transcript", "A call's live transcript stream",
        (Param("call_sid", "path", {"type": "string"}), _SINCE,
         Param("epoch", "query", {"type": "string"})),
    ),
    _websocket("/v1/ingest/{call_sid}", "producer", "A call's producer (ingest)",
               (Param("call_sid", "path", {"type": "string"}),)),
    _websocket("/v1/media-stream", "media_stream", "Twilio Media Streams audio", (),
               (401, 403)),
    _websocket(
        "/v1/media-stream/{token}", "media_stream_token", "Twilio Media Streams audio",
        (Param("token", "path", {"type": "string"}, "A write token"),), (401, 403),
    ),
    _websocket("/ws/campaigns/{campaign_id}/progress", "campaign_progress",
               "A campaign's live progress", (Param("campaign_id", "path", {"type": "string"}),)),
    _websocket("/v1/events", "event_stream", "The organization's events (publish/subscribe)"),
    _websocket("/v1/bots/{bot_id}/ws", "bot_subscriber", "A meeting bot's live events",
               (_BOT_ID,)),
    _websocket("/v1/bots/{bot_id}/producer", "bot_producer", "A meeting bot's producer",
               (_BOT_ID,)),
)  # fmt: skip

#: ``GET /metrics``, in the document when it is a route of the application (it may
#: be served on an address of its own instead).
METRICS = Operation(
    "GET",
    "/metrics",
    "metrics",
    "Prometheus metrics",
    "health",
    {200: Reply("The metrics, in Prometheus's text format 0.0.4", {"text/plain": None})},
    (401, 422),
    security=("bearer",),
    description="With a metrics token configured, the request must carry it as"
    " `Authorization: Bearer` (else 401). A token in the query string is 422.",
)

OPERATIONS: tuple[Operation, ...] = (
    *_CALLS,
    *_ASSISTANTS,
    *_CAMPAIGNS,
    *_BOTS,
    *_OTHER_REST,
    *_ALERT_RULES,
    *_WEBHOOKS,
    *_DASHBOARD_API,
    *_PAGES,
    *_WEBSOCKETS,
)

_INFO = {
    "title": "Scribeline",
    "version": __version__,
    "summary": "Live-transcript streaming: REST ingest and look-ups, WebSocket streams",
    "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
}


@functools.cache
def document(metrics: bool = False) -> bytes:
    """``/openapi.json``: the operations, with ``GET /metrics`` when it is a route
    of the application. Built once: it never changes while the server runs."""
    operations = (*OPERATIONS, METRICS) if metrics else OPERATIONS
    return orjson.dumps(build(operations, _INFO))
