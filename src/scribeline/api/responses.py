"""JSON responses: a result, or any exception as its REST error (mapped in ``errors``)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from scribeline.errors import (
    ScribelineError,
    error_for,
    http_error,
    invalid_body,
    rest_error,
)

__all__ = ["error_response", "json_response", "to_error"]


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def to_error(exc: BaseException) -> ScribelineError:
    """The error a REST client is told about for an exception from a handler:
    validation failures and aiohttp's HTTP errors become theirs, anything
    unexpected an ``InternalError``."""
    if isinstance(exc, ValidationError):
        return invalid_body(
            [
                {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
                for e in exc.errors(include_url=False, include_context=False, include_input=False)
            ]
        )
    if isinstance(exc, web.HTTPException):
        return http_error(exc.status, exc.reason, exc.text)
    return error_for(exc)


def error_response(error: ScribelineError) -> web.Response:
    """The REST answer for ``error``: its status and JSON body."""
    status, body = rest_error(error)
    response = web.Response(body=body, status=status, content_type="application/json")
    if error.retry_after is not None:
        response.headers["Retry-After"] = str(error.retry_after)
    if error.closes_http:
        response.force_close()
    return response
