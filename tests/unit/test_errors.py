"""Errors reach the wire through one mapping, with the exact bytes clients rely on."""

from __future__ import annotations

import pytest
from aiohttp import web
from pydantic import BaseModel, ValidationError

from scribeline.api.responses import error_response, to_error
from scribeline.errors import (
    CloseCode,
    Conflict,
    InternalError,
    NotFound,
    RequestTimeout,
    SlowConsumer,
    close_for,
    error_message,
    malformed_request,
    rest_error,
)


class _Body(BaseModel):
    n: int


def _validation_error() -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        _Body.model_validate({"n": "x"})
    return caught.value


@pytest.mark.parametrize(
    ("exc", "status", "body"),
    [
        (
            NotFound("Call CA1 not found"),
            404,
            b'{"error":"not_found","message":"Call CA1 not found"}',
        ),
        (
            RuntimeError("secret"),
            500,
            b'{"error":"internal_error","message":"Internal server error"}',
        ),
        (web.HTTPNotFound(), 404, b'{"error":"not_found","message":"Not Found"}'),
        (
            web.HTTPMethodNotAllowed("POST", ["GET"]),
            405,
            b'{"error":"method_not_allowed","message":"Method Not Allowed"}',
        ),
        (
            web.HTTPMisdirectedRequest(),
            421,
            b'{"error":"http_error","message":"Misdirected Request"}',
        ),
        (
            web.HTTPRequestEntityTooLarge(10, 11),
            413,
            b'{"error":"payload_too_large","message":"Maximum request body size 10 exceeded."}',
        ),
    ],
)
def test_rest_errors_have_their_status_and_body(exc: Exception, status: int, body: bytes) -> None:
    """Refusals, aiohttp's HTTP errors and unexpected exceptions map to one status and
    one JSON body each; an internal error never shows its text."""
    assert rest_error(to_error(exc)) == (status, body)


def test_a_body_that_fails_validation_lists_each_problem() -> None:
    """A pydantic failure is a 422 invalid_request whose details name the field,
    without echoing the input."""
    status, body = rest_error(to_error(_validation_error()))
    assert status == 422
    assert body.startswith(b'{"error":"invalid_request","message":"Request body is invalid",')
    assert b'"details":[{"loc":["n"],' in body and b'"x"' not in body


def test_only_errors_that_need_it_close_the_http_connection() -> None:
    """A body timeout and a malformed request are answered, then the connection is
    closed; other errors keep it alive."""
    assert not error_response(RequestTimeout("late")).keep_alive
    assert not error_response(malformed_request(400)).keep_alive
    assert error_response(NotFound("x")).keep_alive is None  # aiohttp decides: kept


def test_a_malformed_request_never_repeats_the_request() -> None:
    """The parser's status is kept, the body is fixed text: a request's first bytes can
    hold a credential."""
    assert rest_error(malformed_request(400)) == (
        400,
        b'{"error":"bad_request","message":"Malformed HTTP request"}',
    )
    assert rest_error(malformed_request(500)) == (
        500,
        b'{"error":"internal_error","message":"Internal server error"}',
    )


def test_websocket_closes_carry_the_code_and_the_error_name() -> None:
    """Each error closes with its code and its name as the reason; anything
    unexpected closes with 1011 internal_error."""
    assert close_for(NotFound("x")) == (CloseCode.POLICY_VIOLATION, "not_found")
    assert close_for(SlowConsumer("x")) == (CloseCode.TRY_AGAIN_LATER, "slow_consumer")
    assert close_for(KeyError("secret")) == (CloseCode.INTERNAL_ERROR, "internal_error")


def test_a_producer_error_message_carries_the_ref_last() -> None:
    """A producer's error answer: type first, the error's fields, then the message's ref
    (left out when the message had none)."""
    assert error_message(Conflict("Send start first"), "r1") == (
        b'{"type":"error","error":"conflict","message":"Send start first","ref":"r1"}'
    )
    assert error_message(InternalError()) == (
        b'{"type":"error","error":"internal_error","message":"Internal server error"}'
    )


def test_storage_unavailable_is_a_retryable_503_with_retry_after() -> None:
    """Nothing was stored: the client is told to retry, and when, never a false 201."""
    from scribeline.api.responses import error_response
    from scribeline.errors import StorageUnavailable

    response = error_response(StorageUnavailable())
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    assert response.body is not None
    assert b'"error":"storage_unavailable"' in bytes(response.body)  # type: ignore[arg-type]
    assert b'"retryable":true' in bytes(response.body)  # type: ignore[arg-type]


def test_a_broker_outage_is_a_retryable_503_and_a_1013_close() -> None:
    """A broker that cannot be reached is an outage, not a bug: REST answers 503 with
    Retry-After and ``retryable``, a WebSocket closes with 1013 (come back), never
    500/1011 and never 1000 (which a bot's subscriber reads as the bot's end)."""
    from scribeline.api.responses import error_response
    from scribeline.broker import BrokerUnavailable

    outage = BrokerUnavailable("Redis: Connection refused")
    assert close_for(outage) == (CloseCode.TRY_AGAIN_LATER, "broker_unavailable")
    response = error_response(to_error(outage))
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    assert response.body is not None
    body = bytes(response.body)  # type: ignore[arg-type]
    assert b'"error":"broker_unavailable"' in body and b'"retryable":true' in body
    assert b"refused" not in body  # the cause stays in the logs
