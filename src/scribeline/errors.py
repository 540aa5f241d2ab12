"""The exception tree and the one place that maps errors to the wire.

Every refusal the server makes is one of these exceptions. ``http_status`` and
``close_code`` say how it goes out over REST and over a WebSocket; nothing
else in the code base chooses a status or a close code for an error.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

__all__ = [
    "AuthenticationFailed",
    "BotEnded",
    "CallEnded",
    "CloseCode",
    "Conflict",
    "ConnectionLimit",
    "Forbidden",
    "InvalidCallSid",
    "InvalidJson",
    "InvalidMessage",
    "InvalidRequest",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "Replaced",
    "RequestTimeout",
    "ScribelineError",
    "SlowConsumer",
    "StorageUnavailable",
    "StreamClosed",
    "TranscriptionDisabled",
    "close_code_for",
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
    close_code: CloseCode = CloseCode.INTERNAL_ERROR
    #: Whether a WebSocket stays open after the error message is sent.
    keeps_connection: bool = False

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


class SlowConsumer(ScribelineError):
    code = "slow_consumer"
    http_status = 503
    close_code = CloseCode.TRY_AGAIN_LATER


class StorageUnavailable(ScribelineError):
    """The system of record cannot be reached or refused the write: nothing was
    stored, nothing is acknowledged, and the client should retry (a producer
    WebSocket stays open and gets this in the append's ack)."""

    code = "storage_unavailable"
    http_status = 503
    close_code = CloseCode.TRY_AGAIN_LATER
    keeps_connection = True

    def __init__(self, message: str = "Storage is unavailable; retry shortly") -> None:
        super().__init__(message, retryable=True)


def close_code_for(exc: BaseException) -> CloseCode:
    """The close code for any exception; unknown errors are internal (1011)."""
    if isinstance(exc, ScribelineError):
        return exc.close_code
    return CloseCode.INTERNAL_ERROR


class InvalidJson(ScribelineError):
    code = "invalid_json"
    http_status = 400
    close_code = CloseCode.POLICY_VIOLATION
    keeps_connection = True
