"""What the client raises. Every error the server reports has a typed class;
the server's machine-readable code is kept on ``code``."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "ApiError",
    "AuthenticationError",
    "ConflictError",
    "ConnectionFailedError",
    "InvalidRequestError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ReconnectFailed",
    "ScribelineClientError",
    "ServerError",
    "StreamRefused",
    "api_error",
    "redact_url",
]


class ScribelineClientError(Exception):
    """Base of everything the client raises."""


class ApiError(ScribelineClientError):
    """A REST call the server refused: HTTP ``status``, error ``code`` and ``message``."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}


class InvalidRequestError(ApiError):
    """400, 413 or 422: the request itself is wrong (bad JSON, a field, a size)."""


class AuthenticationError(ApiError):
    """401: the key or token is missing, wrong, expired or revoked."""


class PermissionDeniedError(ApiError):
    """403: the credential lacks a scope or is restricted to something else."""


class NotFoundError(ApiError):
    """404: no such resource in the credential's organization."""


class ConflictError(ApiError):
    """409: the resource's state forbids it (a call that ended, a started bot...)."""


class RateLimitedError(ApiError):
    """429."""


class ServerError(ApiError):
    """5xx."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: InvalidRequestError,
    422: InvalidRequestError,
    429: RateLimitedError,
}


def api_error(status: int, body: Any) -> ApiError:
    """The typed error for an HTTP error response and its (JSON) body."""
    code, message, details = "http_error", f"HTTP {status}", {}
    if isinstance(body, dict):
        code = str(body.get("error", code))
        message = str(body.get("message", message))
        details = {k: v for k, v in body.items() if k not in ("error", "message")}
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    return cls(status, code, message, details)


def redact_url(url: str) -> str:
    """``url`` fit for a log line or an error message: without its query, fragment
    and user info, which may carry credentials (a bot URL's ``?token=``)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparsable URL>"
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class ConnectionFailedError(ScribelineClientError):
    """The server could not be reached (refused, timed out, reset); the message
    names the address that failed."""


class StreamRefused(ScribelineClientError):
    """The server refused or ended a stream for good (close 1008 and the like).

    ``code`` is the server's error code (``not_found``, ``forbidden``,
    ``authentication_failed``, ``rate_limited``...) when it sent one, and
    ``close_code`` the WebSocket close code. Not retried: trying again would
    be refused the same way.
    """

    def __init__(self, code: str, message: str, close_code: int | None) -> None:
        super().__init__(f"{code}: {message}" + (f" (close {close_code})" if close_code else ""))
        self.code = code
        self.message = message
        self.close_code = close_code


class ReconnectFailed(ScribelineClientError):
    """The stream could not be re-established within the backoff's attempts; the
    message names the address that failed and the last reason."""
