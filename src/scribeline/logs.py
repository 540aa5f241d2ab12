"""Log configuration: text or JSON lines on stderr, every record scrubbed.

No code path logs a token or transcript text on purpose (the access log
prints paths without their query). :class:`RedactSecrets` is the guarantee
for everything else: text from a library, a request echoed in an exception
message, a traceback. API keys, dashboard sign-in codes and session secrets,
JWTs, ``token=`` and ``key=`` parameters, ``Bearer`` and ``Token`` values, a
media stream's path token, Twilio signatures, ``burki-token-`` subprotocols
and the ``user:password`` of a URL (``postgresql://``, ``redis://``) are
replaced wherever they appear in a record's message, exception, stack or
extra fields. So is the data that validation and database errors quote (the
input pydantic rejected, SQL parameters, a failing row), which can be
transcript text.

``json`` writes one object per line (python-json-logger's formatter, over
orjson): ``timestamp`` (ISO 8601 UTC), ``level``, ``logger``, ``message``,
the ``request_id`` or ``connection_id`` the line was logged under
(``log_context.py``), ``exception`` when there is one, and the fields a call
adds (the access log's ``method``, ``path``, ``status``...). ``text`` is the
classic line, with those ids appended.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import traceback
from typing import Any, Literal, TextIO

from pythonjsonlogger.orjson import OrjsonFormatter

from scribeline.log_context import ContextIds

__all__ = [
    "SERVER_FORMAT",
    "JsonFormatter",
    "LogFormat",
    "RedactSecrets",
    "TextFormatter",
    "configure",
    "handler",
    "redact",
]

_SECRETS = re.compile(
    r"sc[lds]_[A-Za-z0-9_\-]{4,}"  # an API key, a dashboard session or sign-in code
    r"|eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*"  # a JWT
    r"|(?<=token=)[^&\s'\"\\]+|(?<=key=)[^&\s'\"\\]+"  # query parameters
    r"|(?<=Bearer )\S+|(?<=bearer )\S+|(?<=Token )\S+"  # Authorization values (Deepgram: Token)
    r"|(?<=/v1/media-stream/)[^/\s?'\"<]+"  # a media stream's path token
    r"|(?<=X-Twilio-Signature: )\S+"  # a Twilio signature (replayable for its URL)
    r"|(?<=burki-token-)[^,\s'\"\\]+"  # the subprotocol
    r"|(?<=://)[^/\s@'\"]*:[^/\s@'\"]+(?=@)"  # user:password@ in a database or Redis URL
    # Data quoted by errors, which may be transcript text: pydantic's rejected input,
    # SQLAlchemy's parameters, PostgreSQL's failing row.
    r"|(?<=input_value=).*?(?=, input_type=|\]$)"
    r"|(?<=\[parameters: ).*?(?=\]$)"
    r"|(?<=Failing row contains ).*",
    re.MULTILINE,
)

REDACTED = "[redacted]"

#: The attributes every record has; any other was added by the call (``extra``).
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
}


def redact(text: str) -> str:
    """``text`` with every credential-shaped substring (and quoted input) replaced."""
    return _SECRETS.sub(REDACTED, text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_value(v) for v in value]
    return value


class RedactSecrets(logging.Filter):
    """Rewrites a record's message, exception text, stack and extra fields before
    it is formatted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text = redact(text)
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not isinstance(value, (int, float, type(None))):
                record.__dict__[name] = _redact_value(value)
        return True


#: The server's log line.
SERVER_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

LogFormat = Literal["text", "json"]


class TextFormatter(logging.Formatter):
    """The classic line, then the ``request_id`` or ``connection_id`` it was logged
    under (before any traceback)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        for name in ("request_id", "connection_id"):
            value = getattr(record, name, None)
            if value is not None:
                line += f" {name}={value}"
        return line


class JsonFormatter(OrjsonFormatter):
    """One JSON object per record (see the module's doc), every string scrubbed."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={
                "levelname": "level",
                "name": "logger",
                "exc_info": "exception",
                "stack_info": "stack",
            },
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["timestamp"] = _utc(record.created)
        super().add_fields(log_data, record, message_dict)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        # The filter scrubbed the record; this holds for a handler without it too.
        return {key: _redact_value(value) for key, value in log_data.items()}


def _utc(created: float) -> str:
    """``2026-01-31T12:00:00.123Z``."""
    seconds = int(created)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{int((created - seconds) * 1000):03d}Z"


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure` installs (and replaces when called again)."""


def handler(stream: TextIO, log_format: LogFormat = "text", fmt: str = SERVER_FORMAT) -> _Stderr:
    """A handler writing to ``stream`` in ``log_format``, with the ids and the scrubbing."""
    made = _Stderr(stream)
    made.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter(fmt))
    made.addFilter(ContextIds())
    made.addFilter(RedactSecrets())
    return made


def configure(level: str, fmt: str = SERVER_FORMAT, log_format: LogFormat = "text") -> None:
    """Log to stderr at ``level`` in ``log_format``, through the credential filter.

    ``fmt`` is the text format's line (the JSON format's fields are fixed).
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Stderr)]:
        root.removeHandler(old)  # configured again: the newest settings win
    root.addHandler(handler(sys.stderr, log_format, fmt))
    for each in root.handlers:  # and any other (a test's capture): scrubbed too
        if not any(isinstance(f, RedactSecrets) for f in each.filters):
            each.addFilter(ContextIds())
            each.addFilter(RedactSecrets())
    root.setLevel(level.upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # faster-whisper logs a line per decode at INFO and the words it heard at
    # DEBUG: transcript text never goes to the server's log.
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)
