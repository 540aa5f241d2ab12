"""The exception tree and the one place that maps errors to the wire.

Every refusal the server makes is one of these exceptions. ``http_status`` and
``close_code`` say how it goes out over REST and over a WebSocket, and the
functions at the end render them (``rest_error``, ``close_for``,
``error_message``); nothing else in the code base chooses a status, a close
code or an error body. Errors of the layers below (a request body that fails
validation, aiohttp's own HTTP errors) are turned into these first:
``invalid_body``, ``http_error``, ``malformed_request``; a broker outage
(``BrokerUnavailable``) becomes the retryable ``BrokerUnreachable``.
Anything else is an ``InternalError``: logged by whoever reports it, shown
only as a generic message. (Pure: no web framework is imported here.)
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import orjson

from scribeline.broker.base import BrokerUnavailable

__all__ = [
    "AuthenticationFailed",
    "BotEnded",
    "BrokerUnreachable",
    "CallEnded",
    "CloseCode",
    "Conflict",
    "ConnectionLimit",
    "Forbidden",
    "HttpError",
    "InternalError",
    "InvalidCallSid",
    "InvalidJson",
    "InvalidMessage",
    "InvalidRequest",
    "InvalidUpgrade",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "Replaced",
    "RequestTimeout",
    "ScribelineError",
    "SlowConsumer",
    "SpeechNotConfigured",
    "StorageUnavailable",
    "StreamClosed",
    "TranscriptionDisabled",
    "TranscriptionUnavailable",
    "close_code_for",
    "close_for",
    "error_for",
    "error_message",
    "http_error",
    "invalid_body",
    "malformed_request",
    "rest_error",
]


class CloseCode(IntEnum):
    """WebSocket close codes used by the server (RFC 6455 section 7.4)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013


class ScribelineError(Exception):
    """Base of every error the server reports to a client.

    ``code`` is the machine-readable ``error`` field on the wire; the message
    is safe to show to the client (it never carries internal details).
    """

    code: str = "internal_error"
    http_status: int = 500
    #: Seconds a client should wait before retrying (REST ``Retry-After``), if any.
    retry_after: int | None = None
    close_code: CloseCode = CloseCode.INTERNAL_ERROR
    #: Whether a WebSocket stays open after the error message is sent.
    keeps_connection: bool = False
    #: Whether the HTTP connection is closed after the answer (not kept alive).
    closes_http: bool = False

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of this error (REST) or its fields (WebSocket)."""
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        body.update(self.details)
        return body


class AuthenticationFailed(ScribelineError):
    code = "authentication_failed"
    http_status = 401
    close_code = CloseCode.POLICY_VIOLATION

    def __init__(self, message: str = "Authentication failed") -> None:
        super().__init__(message)


class Forbidden(ScribelineError):
    code = "forbidden"
    http_status = 403
    close_code = CloseCode.POLICY_VIOLATION


class NotFound(ScribelineError):
    code = "not_found"
    http_status = 404
    close_code = CloseCode.POLICY_VIOLATION


class InvalidCallSid(ScribelineError):
    code = "invalid_call_sid"
    http_status = 422
    close_code = CloseCode.POLICY_VIOLATION

    def __init__(self, message: str = "Invalid call SID") -> None:
        super().__init__(message)


class ConnectionLimit(ScribelineError):
    """Too many concurrent connections to one stream."""

    code = "rate_limited"
    http_status = 429
    close_code = CloseCode.POLICY_VIOLATION


class RateLimited(ScribelineError):
    """A client sent messages faster than allowed."""

    code = "rate_limited"
    http_status = 429
    close_code = CloseCode.POLICY_VIOLATION


class InvalidMessage(ScribelineError):
    """A client message that cannot be understood; the connection stays open."""

    code = "invalid_message"
    http_status = 400
    close_code = CloseCode.POLICY_VIOLATION
    keeps_connection = True


class InvalidUpgrade(ScribelineError):
    """A request to a WebSocket endpoint that is not a valid WebSocket upgrade."""

    code = "invalid_upgrade"
    http_status = 400
    close_code = CloseCode.PROTOCOL_ERROR


class InvalidRequest(ScribelineError):
    code = "invalid_request"
    http_status = 422
    close_code = CloseCode.POLICY_VIOLATION
    keeps_connection = True


class RequestTimeout(ScribelineError):
    """The client did not send its request body in time."""

    code = "request_timeout"
    http_status = 408
    close_code = CloseCode.POLICY_VIOLATION
    closes_http = True  # the rest of the body may never come


class PayloadTooLarge(ScribelineError):
    code = "payload_too_large"
    http_status = 413
    close_code = CloseCode.MESSAGE_TOO_BIG


class Conflict(ScribelineError):
    code = "conflict"
    http_status = 409
    close_code = CloseCode.POLICY_VIOLATION
    keeps_connection = True


class StreamClosed(ScribelineError):
    """Storage refused an append because the stream has ended."""

    code = "stream_closed"
    http_status = 409
    close_code = CloseCode.NORMAL
    keeps_connection = True


class CallEnded(StreamClosed):
    code = "call_ended"


class BotEnded(StreamClosed):
    code = "bot_ended"


class Replaced(ScribelineError):
    """A newer connection took this one's place (a bot's producer)."""

    code = "replaced"
    http_status = 409
    close_code = CloseCode.POLICY_VIOLATION


class TranscriptionDisabled(ScribelineError):
    """The call's assistant has transcription switched off."""

    code = "transcription_disabled"
    http_status = 409
    close_code = CloseCode.POLICY_VIOLATION
    keeps_connection = True


class TranscriptionUnavailable(ScribelineError):
    """No speech engine can take a media stream now (the local engine is at its
    limit and no Deepgram key takes the overflow, or Deepgram cannot be reached):
    the call goes on untranscribed, and a new stream may be tried later."""

    code = "transcription_unavailable"
    http_status = 503
    close_code = CloseCode.TRY_AGAIN_LATER
    retry_after = 5


class SpeechNotConfigured(ScribelineError):
    """The chosen speech engine cannot run: the ``speech`` extra is not installed,
    or Deepgram is chosen without a (valid) key. Retrying will not help."""

    code = "speech_not_configured"
    http_status = 503
    close_code = CloseCode.INTERNAL_ERROR


class SlowConsumer(ScribelineError):
    code = "slow_consumer"
    http_status = 503
    close_code = CloseCode.TRY_AGAIN_LATER


class StorageUnavailable(ScribelineError):
    """The system of record cannot be reached, refused the write or is overloaded:
    nothing is acknowledged and the client should retry (a producer WebSocket
    stays open and gets this in the append's ack). Nothing was stored, except
    when PostgreSQL crashed or became unreachable with the write's COMMIT in
    flight, where the outcome cannot be known (storage/base.py)."""

    code = "storage_unavailable"
    http_status = 503
    close_code = CloseCode.TRY_AGAIN_LATER
    keeps_connection = True
    retry_after = 1

    def __init__(self, message: str = "Storage is unavailable; retry shortly") -> None:
        super().__init__(message, retryable=True)


class BrokerUnreachable(ScribelineError):
    """The broker that carries messages between servers cannot be reached (a Redis
    outage): what needed it did not happen, and the client should retry (a
    subscriber reconnects, a REST call is repeated)."""

    code = "broker_unavailable"
    http_status = 503
    close_code = CloseCode.TRY_AGAIN_LATER
    retry_after = 1

    def __init__(
        self, message: str = "Messaging between servers is unavailable; retry shortly"
    ) -> None:
        super().__init__(message, retryable=True)


class InvalidJson(ScribelineError):
    code = "invalid_json"
    http_status = 400
    close_code = CloseCode.POLICY_VIOLATION
    keeps_connection = True


class InternalError(ScribelineError):
    """An unexpected failure (a bug, a dependency's exception): clients see only
    this generic message; the original is logged where it is reported."""

    def __init__(self, message: str = "Internal server error") -> None:
        super().__init__(message)


class HttpError(ScribelineError):
    """A refusal of the HTTP layer under the routes, with the status it chose
    (no such route, method not allowed, a request that could not be parsed)."""

    code = "http_error"
    close_code = CloseCode.POLICY_VIOLATION

    def __init__(
        self, status: int, message: str, code: str | None = None, *, closes_http: bool = False
    ) -> None:
        super().__init__(message)
        self.http_status = status
        self.closes_http = closes_http
        if code is not None:
            self.code = code


#: Codes of the HTTP layer's statuses that have a name of their own.
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


# -- errors of the layers below, as ScribelineErrors ----------------------------


def error_for(exc: BaseException) -> ScribelineError:
    """The error a client is told about: ``exc`` itself, a retryable error for an
    outage of a layer below (the broker), or an ``InternalError``."""
    if isinstance(exc, ScribelineError):
        return exc
    if isinstance(exc, BrokerUnavailable):
        return BrokerUnreachable()
    return InternalError()


def invalid_body(details: list[dict[str, Any]]) -> InvalidRequest:
    """A request body that failed validation (``details``: one entry per problem)."""
    return InvalidRequest("Request body is invalid", details=details)


def http_error(status: int, reason: str, text: str | None = None) -> ScribelineError:
    """An HTTP error (400 and above) raised by the web framework: its status and
    reason; a body over the size limit (413) says so in its own words."""
    if status == PayloadTooLarge.http_status:
        return PayloadTooLarge(text or "Body too large")
    return HttpError(status, reason, _HTTP_CODES.get(status))


def malformed_request(status: int) -> ScribelineError:
    """A request the HTTP parser gave up on with ``status``; nothing of the request
    is repeated (its first bytes can hold a credential)."""
    if status >= 500:
        return HttpError(status, InternalError().message, InternalError.code, closes_http=True)
    return HttpError(status, "Malformed HTTP request", "bad_request", closes_http=True)


# -- rendering -----------------------------------------------------------------


def rest_error(error: ScribelineError) -> tuple[int, bytes]:
    """A REST answer: the status and the JSON body (``error``, ``message``, details)."""
    return error.http_status, orjson.dumps(error.to_dict())


def close_code_for(exc: BaseException) -> CloseCode:
    """The close code for any exception; unknown errors are internal (1011)."""
    return error_for(exc).close_code


#: The most a close frame's reason may hold (RFC 6455 section 5.5: 125 bytes of payload).
MAX_CLOSE_REASON = 123


def close_for(exc: BaseException, *, explain: bool = False) -> tuple[CloseCode, str]:
    """How a WebSocket closes on ``exc``: its close code and, as the reason, its
    code (``not_found``...), for clients that only see the close. With ``explain``
    (endpoints that send no messages at all, such as the media stream) the reason
    is ``code: message``, cut to what a close frame holds."""
    error = error_for(exc)
    if not explain:
        return error.close_code, error.code
    reason = f"{error.code}: {error.message}".encode()
    if len(reason) > MAX_CLOSE_REASON:
        reason = reason[: MAX_CLOSE_REASON - 3].decode("utf-8", "ignore").encode() + b"..."
    return error.close_code, reason.decode()


def error_message(error: ScribelineError, ref: Any = None) -> bytes:
    """A producer WebSocket's answer to a message it refuses (calls and meeting
    bots): ``{"type": "error", "error", "message", ...}`` with the message's ``ref``."""
    body: dict[str, Any] = {"type": "error", **error.to_dict()}
    if ref is not None:
        body["ref"] = ref
    return orjson.dumps(body)
