"""The log formats: JSON objects with their fields and ids, text lines with the ids,
and the scrubbing applied to every part of a record in both."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from pydantic import BaseModel, ValidationError

from scribeline.api.app import AccessLogger
from scribeline.log_context import CONNECTION_ID, REQUEST_ID
from scribeline.logs import REDACTED, LogFormat, handler, redact

from ..integration.helpers import TIMESTAMP_RE

KEY = "scl_live_0123456789abcdef"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"


class Captured:
    def __init__(self, log_format: LogFormat) -> None:
        self.stream = io.StringIO()
        self.logger = logging.getLogger(f"scribeline.test.{log_format}")
        self.handler = handler(self.stream, log_format)

    def lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines()]


@contextlib.contextmanager
def _capturing(log_format: LogFormat) -> Iterator[Captured]:
    out = Captured(log_format)
    out.logger.addHandler(out.handler)
    out.logger.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        out.logger.removeHandler(out.handler)


@pytest.fixture(params=["json", "text"])
def captured(request: pytest.FixtureRequest) -> Iterator[Captured]:
    with _capturing(request.param) as out:
        yield out


@pytest.fixture
def as_json() -> Iterator[Captured]:
    with _capturing("json") as out:
        yield out


@pytest.fixture
def as_text() -> Iterator[Captured]:
    with _capturing("text") as out:
        yield out


def test_a_json_line_has_its_fields_and_the_request_id(as_json: Captured) -> None:
    """timestamp (ISO 8601 UTC, ms), level, logger, message, the context's request_id,
    and a call's extra fields; an absent id is no field at all."""
    token = REQUEST_ID.set("0123456789abcdef")
    try:
        as_json.logger.info("hello %s", "world", extra={"status": 201, "path": "/v1/calls"})
    finally:
        REQUEST_ID.reset(token)
    as_json.logger.warning("later")
    first, second = as_json.records()
    assert TIMESTAMP_RE.match(first["timestamp"]), first
    assert first["level"] == "INFO" and first["logger"] == as_json.logger.name
    assert first["message"] == "hello world" and first["request_id"] == "0123456789abcdef"
    assert first["status"] == 201 and first["path"] == "/v1/calls"
    assert "request_id" not in second and "connection_id" not in second
    assert "exception" not in second


def test_an_explicit_connection_id_wins_over_the_context(as_json: Captured) -> None:
    """A line logged for another connection (a fan-out) names that one."""
    token = CONNECTION_ID.set("aaaaaaaaaaaaaaaa")
    try:
        as_json.logger.info("slow", extra={"connection_id": "bbbbbbbbbbbbbbbb"})
    finally:
        CONNECTION_ID.reset(token)
    (record,) = as_json.records()
    assert record["connection_id"] == "bbbbbbbbbbbbbbbb"


def test_the_text_line_is_unchanged_but_for_the_ids(as_text: Captured) -> None:
    captured = as_text
    token = CONNECTION_ID.set("cccccccccccccccc")
    try:
        captured.logger.info("closing slow consumer")
    finally:
        CONNECTION_ID.reset(token)
    captured.logger.info("plain")
    first, second = captured.lines()
    assert first.endswith(
        f" INFO {captured.logger.name}: closing slow consumer connection_id=cccccccccccccccc"
    )
    assert second.endswith(f" INFO {captured.logger.name}: plain")


def test_credentials_are_scrubbed_everywhere_in_a_record(captured: Captured) -> None:
    """Message, arguments, exception text and extra fields (nested too), in both formats."""
    try:
        raise RuntimeError(f"upstream said Bearer {JWT} for key={KEY}")
    except RuntimeError:
        captured.logger.exception(
            "failed for %s",
            KEY,
            extra={"url": f"/v1/calls?token={JWT}", "nested": {"auth": [f"Token {KEY}"]}},
        )
    text = captured.stream.getvalue()
    assert KEY not in text and JWT not in text
    assert REDACTED in text
    if "json" in captured.logger.name:
        (record,) = captured.records()
        assert "RuntimeError" in record["exception"] and REDACTED in record["exception"]
        assert record["nested"] == {"auth": [f"Token {REDACTED}"]}


class _Segment(BaseModel):
    content: str


def test_quoted_input_is_scrubbed_from_errors(captured: Captured) -> None:
    """Validation and database errors quote the data they refused, which can be
    transcript text: pydantic's input, SQL parameters, PostgreSQL's failing row."""
    words = "the customer said their card number"
    with pytest.raises(ValidationError) as refused:
        _Segment.model_validate({"content": [words]})
    database = (
        f"(sqlite3.IntegrityError) NOT NULL constraint failed\n"
        f"[SQL: INSERT INTO segments VALUES (?, ?)]\n[parameters: ('{words}', 3)]\n"
        f'DETAIL:  Failing row contains (7, "{words}", null).'
    )
    for exc in (refused.value, RuntimeError(database)):
        try:
            raise exc
        except Exception:
            captured.logger.exception("internal error")
    text = captured.stream.getvalue()
    assert words not in text
    assert "ValidationError" in text and "INSERT INTO segments" in text


@pytest.mark.parametrize(
    "text",
    [
        "1 validation error for X [type=list_type, input_value=['secret words'], input_type=list]",
        "[parameters: ('secret words', 1)]",
        "DETAIL:  Failing row contains (1, secret words).",
    ],
)
def test_redact_removes_quoted_data(text: str) -> None:
    assert "secret words" not in redact(text)


def test_an_encoded_newline_in_a_path_forges_no_access_line(captured: Captured) -> None:
    """``%0A`` in a path decodes to a newline: the access line stays one line, with the
    control characters encoded again."""
    forged = "/v1/calls/CA1%0A2026-01-31 12:00:00,000 INFO scribeline.server: stopped%0D%00"
    request = make_mocked_request("GET", forged)
    AccessLogger(captured.logger, "").log(request, web.Response(status=404), 0.001)
    (line,) = captured.lines()
    assert "/v1/calls/CA1%0A2026-01-31 12:00:00,000 INFO scribeline.server: stopped%0D%00" in line
