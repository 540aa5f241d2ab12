"""OpenAPI 3.1: how an operation is described, and the document built from a table
of them (the table is ``api/openapi_routes.py``). Pure: no web framework.

Schemas come from the pydantic models themselves: request bodies from the
models the handlers validate with, response bodies from
``api/openapi_schemas.py``, each through ``model_json_schema`` (JSON Schema
2020-12, which OpenAPI 3.1 uses as it is). Every error answer shares one
body, :class:`~scribeline.api.openapi_schemas.ErrorBody`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from scribeline.api.openapi_schemas import ErrorBody

__all__ = [
    "ERRORS",
    "Batch",
    "Operation",
    "Param",
    "Reply",
    "Schema",
    "build",
]

Json = dict[str, Any]

REF = "#/components/schemas/{model}"


@dataclass(frozen=True, slots=True)
class Batch:
    """A body that is one ``model`` object or an array of 1 to ``max_items`` of them."""

    model: type[BaseModel]
    max_items: int


#: A body's schema: a model, one of several models, a batch of one, or a JSON
#: schema as it is.
Schema = type[BaseModel] | tuple[type[BaseModel], ...] | Batch | Json


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    where: Literal["path", "query", "header"]
    schema: Json
    description: str = ""
    required: bool = False


@dataclass(frozen=True, slots=True)
class Reply:
    """A success answer: media type -> schema (None: any content of that type)."""

    description: str
    content: Mapping[str, Schema | None] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Operation:
    """One route of the application (``path`` in aiohttp's canonical form, which is
    OpenAPI's) and what it takes and answers. ``errors`` are statuses of
    :data:`ERRORS`; ``security`` names schemes of the document (none: open)."""

    method: str
    path: str
    id: str
    summary: str
    tag: str
    replies: Mapping[int, Reply]
    errors: tuple[int, ...] = ()
    params: tuple[Param, ...] = ()
    body: Schema | None = None
    body_required: bool = True
    security: tuple[str, ...] = ("bearer",)
    description: str = ""


#: Every error status an operation may list, with what it means. The body is always
#: ``ErrorBody``; its ``error`` field is the code.
ERRORS: dict[int, str] = {
    400: "`invalid_json`: the body is not JSON; `invalid_upgrade`: not a WebSocket upgrade",
    401: "`authentication_failed`: no credential, or an unknown, revoked, expired or forged one",
    403: "`forbidden`: the credential lacks the scope, is restricted to another call or"
    " campaign, or (dashboard) the request is cross-origin",
    404: "`not_found`: no such resource in the credential's organization",
    408: "`request_timeout`: the body did not arrive in time (the connection is closed)",
    409: "`conflict`, `call_ended`, `bot_ended`, `transcription_disabled`: the"
    " resource's state does not allow it",
    413: "`payload_too_large`: the body is over the server's limit",
    422: "`invalid_request`: a field or parameter is missing, of the wrong type or out"
    " of range (`details` lists each problem), a credential in the query string, or"
    " (dashboard) a body that is not `application/json`",
    503: "`storage_unavailable`, `broker_unavailable`, `transcription_unavailable`,"
    " `speech_not_configured`, `unavailable` (shutting down): nothing was done;"
    " `retryable` and `Retry-After` say when retrying helps",
}

#: Errors that carry a ``Retry-After`` header when retrying helps.
_RETRY_AFTER = frozenset({503})

SECURITY_SCHEMES: Json = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`scl_…`) or an access token from `POST /v1/tokens`",
    },
    "queryToken": {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "WebSocket endpoints only (also the `burki-token-<token>` subprotocol)",
    },
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": "scribeline_session",
        "description": "The dashboard's session cookie (`POST /dashboard/api/session`)",
    },
}


class _Components:
    """The document's ``components.schemas``: each model once, under its name."""

    def __init__(self) -> None:
        self.schemas: dict[str, Json] = {}

    def add(self, name: str, schema: Json) -> None:
        known = self.schemas.setdefault(name, schema)
        if known != schema:
            raise ValueError(f"two different schemas are named {name!r}")

    def ref(self, model: type[BaseModel]) -> Json:
        schema = model.model_json_schema(ref_template=REF, mode="validation")
        for name, definition in schema.pop("$defs", {}).items():
            self.add(name, definition)
        name = schema.get("title", model.__name__)
        self.add(name, schema)
        return {"$ref": REF.format(model=name)}

    def schema(self, schema: Schema) -> Json:
        if isinstance(schema, Batch):
            one = self.ref(schema.model)
            many = {"type": "array", "items": one, "minItems": 1, "maxItems": schema.max_items}
            return {"oneOf": [one, many]}
        if isinstance(schema, tuple):
            return {"oneOf": [self.ref(model) for model in schema]}
        if isinstance(schema, dict):
            return schema
        return self.ref(schema)


def _content(components: _Components, content: Mapping[str, Schema | None]) -> Json:
    return {
        media: {} if schema is None else {"schema": components.schema(schema)}
        for media, schema in content.items()
    }


def _operation(components: _Components, op: Operation) -> Json:
    out: Json = {"operationId": op.id, "summary": op.summary, "tags": [op.tag]}
    if op.description:
        out["description"] = op.description
    if op.params:
        out["parameters"] = [
            {
                "name": p.name,
                "in": p.where,
                "required": p.required or p.where == "path",
                "schema": p.schema,
                **({"description": p.description} if p.description else {}),
            }
            for p in op.params
        ]
    if op.body is not None:
        out["requestBody"] = {
            "required": op.body_required,
            "content": _content(components, {"application/json": op.body}),
        }
    out["security"] = [{name: []} for name in op.security]
    responses: Json = {}
    for status, reply in sorted(op.replies.items()):
        responses[str(status)] = {"description": reply.description}
        if reply.content:
            responses[str(status)]["content"] = _content(components, reply.content)
        if reply.headers:
            responses[str(status)]["headers"] = {
                name: {"description": text, "schema": {"type": "string"}}
                for name, text in reply.headers.items()
            }
    for status in op.errors:
        if status not in ERRORS:
            raise ValueError(f"{op.id}: {status} is not an error of ERRORS")
        responses[str(status)] = {"$ref": f"#/components/responses/E{status}"}
    out["responses"] = responses
    return out


def _error_responses(components: _Components) -> Json:
    body = {"application/json": {"schema": components.ref(ErrorBody)}}
    responses: Json = {}
    for status, text in ERRORS.items():
        response: Json = {"description": text, "content": body}
        if status in _RETRY_AFTER:
            response["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before retrying (when it helps)",
                    "schema": {"type": "string"},
                }
            }
        responses[f"E{status}"] = response
    return responses


def build(operations: Iterable[Operation], info: Json, tags: Iterable[Json] = ()) -> Json:
    """The OpenAPI 3.1 document of ``operations``."""
    components = _Components()
    paths: dict[str, Json] = {}
    for op in operations:
        item = paths.setdefault(op.path, {})
        method = op.method.lower()
        if method in item:
            raise ValueError(f"{op.method} {op.path} is described twice")
        item[method] = _operation(components, op)
    responses = _error_responses(components)
    return {
        "openapi": "3.1.0",
        "info": info,
        "tags": list(tags),
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.schemas.items())),
            "responses": responses,
            "securitySchemes": SECURITY_SCHEMES,
        },
    }
