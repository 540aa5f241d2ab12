"""Every text a client sends refuses NUL, which PostgreSQL's text columns cannot hold.

The models are found, not listed: every request body of ``/openapi.json``,
what the producer WebSockets validate (transcripts, status changes, meeting
bot events) and Twilio's ``start``. A new ``str`` field without ``Text`` (or a
pattern that excludes NUL) fails here, unless it is one of the few below that
never reach a text column.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from scribeline.api.openapi import Batch
from scribeline.api.openapi_routes import OPERATIONS
from scribeline.ingest.bot_models import EVENT_MODELS
from scribeline.ingest.models import SetStatus, Transcript
from scribeline.speech.twilio import Media, Start

#: Strings that never reach a text column: hashed (a sign-in code), sealed into
#: bytes (speech secrets), checked against the SID pattern before any use
#: (Twilio's call SID), decoded as base64, or never stored.
NEVER_STORED = {
    ("SignIn", "code"),
    ("UpdateSpeech", "twilio_auth_token"),
    ("UpdateSpeech", "deepgram_api_key"),
    ("Start", "accountSid"),
    ("Start", "callSid"),
    ("Media", "payload"),
}


def _models() -> set[type[BaseModel]]:
    found: set[type[BaseModel]] = {SetStatus, Transcript, Start, Media, *EVENT_MODELS.values()}
    for op in OPERATIONS:
        body = op.body.model if isinstance(op.body, Batch) else op.body
        if isinstance(body, type) and issubclass(body, BaseModel):
            found.add(body)
    return found


def _strings(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The string alternatives of a property's schema."""
    options = schema.get("anyOf", [schema])
    return [o for o in options if o.get("type") == "string"]


def test_every_client_text_refuses_nul() -> None:
    """Each free-text string field of a request model has a pattern that refuses NUL
    (or a fixed set of values, or is a URL, which refuses it)."""
    checked = 0
    for model in _models():
        schema = model.model_json_schema(mode="validation")
        for name, prop in schema.get("properties", {}).items():
            for string in _strings(prop):
                if (model.__name__, name) in NEVER_STORED or "enum" in string:
                    continue
                if string.get("format") == "uri":
                    assert model.model_fields[name].annotation is not str, (model, name)
                    continue
                pattern = string.get("pattern")
                assert pattern is not None, f"{model.__name__}.{name} may hold NUL"
                assert re.search(pattern, "a\x00b") is None, f"{model.__name__}.{name}"
                checked += 1
    assert checked >= 20


def test_the_exceptions_exist() -> None:
    """Every exception above names a field that exists (none is left behind)."""
    fields = {
        (model.__name__, field.alias or name)
        for model in _models()
        for name, field in model.model_fields.items()
    }
    assert fields >= NEVER_STORED
