"""Log configuration, with every record scrubbed of credentials.

No code path logs a token on purpose (the access log prints paths without
their query). This filter is the guarantee for everything else: text from
a library, a request echoed in an exception message, a traceback. API keys,
dashboard sign-in codes and session secrets, JWTs, ``token=`` and ``key=``
parameters, ``Bearer`` and ``Token`` values, a media stream's path token,
Twilio signatures, ``burki-token-`` subprotocols and the ``user:password`` of
a URL (``postgresql://``, ``redis://``) are replaced wherever they appear in
a record's message, exception or stack.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback

__all__ = ["SERVER_FORMAT", "RedactSecrets", "configure", "redact"]

_SECRETS = re.compile(
    r"sc[lds]_[A-Za-z0-9_\-]{4,}"  # an API key, a dashboard session or sign-in code
    r"|eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*"  # a JWT
    r"|(?<=token=)[^&\s'\"\\]+|(?<=key=)[^&\s'\"\\]+"  # query parameters
    r"|(?<=Bearer )\S+|(?<=bearer )\S+|(?<=Token )\S+"  # Authorization values (Deepgram: Token)
    r"|(?<=/v1/media-stream/)[^/\s?'\"<]+"  # a media stream's path token
    r"|(?<=X-Twilio-Signature: )\S+"  # a Twilio signature (replayable for its URL)
    r"|(?<=burki-token-)[^,\s'\"\\]+"  # the subprotocol
    r"|(?<=://)[^/\s@'\"]*:[^/\s@'\"]+(?=@)",  # user:password@ in a database or Redis URL
)

REDACTED = "[redacted]"


def redact(text: str) -> str:
    """``text`` with every credential-shaped substring replaced."""
    return _SECRETS.sub(REDACTED, text)


class RedactSecrets(logging.Filter):
    """Rewrites a record's message, exception text and stack before it is formatted."""

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
        return True


#: The server's log line.
SERVER_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str, fmt: str = SERVER_FORMAT) -> None:
    """Log to stderr at ``level``, through the credential filter."""
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format=fmt)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # faster-whisper logs a line per decode at INFO and the words it heard at
    # DEBUG: transcript text never goes to the server's log.
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)
