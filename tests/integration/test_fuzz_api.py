"""Property-based fuzzing of the REST API with schemathesis, against a real server.

Every HTTP operation of ``/openapi.json`` gets a bounded number of generated
requests, valid and invalid (schemathesis's positive and negative modes),
sent with an admin API key of the server's organization; half of them aim at
resources that exist (a call, an assistant, a campaign and its contact, a
bot), so that bodies get past the look-up. Each answer must be no 5xx, have a
documented status and content type, and a body that matches its schema. And
nothing is partially written: a request answered with a 4xx leaves the store
as it was (the SQLite file, read through a read-only connection before and
after the request).

WebSocket routes are left out (they are not HTTP APIs; test_openapi.py checks
their documented refusal of a plain GET). Runs are derandomized, with no
example database, so a failure reproduces on every run.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
import schemathesis
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from pydantic import BaseModel, TypeAdapter, ValidationError
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from scribeline.api.openapi import Batch
from scribeline.api.openapi_routes import OPERATIONS, document

from .helpers import ServerProcess, new_sid, running_server

# Hypothesis's caches (constants, Unicode tables) go to a temporary directory, not the
# repository; there is no example database at all (below).
_HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="hypothesis-")
set_hypothesis_home_dir(_HYPOTHESIS_HOME)
atexit.register(shutil.rmtree, _HYPOTHESIS_HOME, True)

#: Generated requests per operation (valid and invalid ones together); a deeper run:
#: ``FUZZ_EXAMPLES=500 pytest tests/integration/test_fuzz_api.py``.
MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))

CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": 14,
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
    }
)

#: What the fuzzed server serves: its settings are the defaults, which serve /metrics.
DOCUMENT = orjson.loads(document(metrics=True))

schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG).exclude(
    # WebSockets: not HTTP APIs (test_openapi.py checks their refusal of a plain GET).
    tag="websockets"
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


class Store:
    """A read-only view of the server's SQLite file, to tell whether a request wrote.

    The fuzzing run's store is small: every row of every table is compared,
    except for two things a timer writes after the change that caused them
    (``ingest/campaigns.py``): campaign progress events and the head of a
    campaign's stream, and what the webhook deliverer writes as it sends.
    Events are compared by count and sizes (transcripts can be large).
    """

    _SPECIAL = {
        "events": "SELECT count(*), total(seq), total(length(data)) FROM events"
        " WHERE type != 'progress'",
        "streams": "SELECT stream, epoch, closed,"
        " CASE WHEN stream LIKE 'campaign:%' THEN NULL ELSE head END FROM streams ORDER BY 1",
        # The webhook deliverer's writes (attempts, a row's state, an endpoint's
        # failures) come from its own loop; what a request writes is compared.
        "webhook_outbox": "SELECT id, endpoint_id, stream, seq, event_type, created_at"
        " FROM webhook_outbox ORDER BY 1",
        "webhook_attempts": "SELECT 0",
        "webhook_endpoints": "SELECT id, org_id, url, events, enabled, created_at"
        " FROM webhook_endpoints ORDER BY 1",
    }

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        tables = [
            name
            for (name,) in self._conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        assert {"calls", "events", "streams", "campaign_contacts", "bots"} <= set(tables)
        self._queries = {
            name: self._SPECIAL.get(name, f'SELECT * FROM "{name}" ORDER BY 1') for name in tables
        }

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        with contextlib.closing(self._conn.cursor()) as cursor:
            cursor.execute("BEGIN")  # one moment for every table
            try:
                return {
                    name: cursor.execute(query).fetchall() for name, query in self._queries.items()
                }
            finally:
                cursor.execute("COMMIT")

    def close(self) -> None:
        self._conn.close()


@dataclass(frozen=True)
class Fuzzed:
    """The server under test, its admin key, what exists in it and its store."""

    server: ServerProcess
    key: str
    existing: dict[str, str]
    store: Store
    session: requests.Session


def _seed(server: ServerProcess, key: str, session: requests.Session) -> dict[str, str]:
    """A call, a campaign with a contact, a bot, an alert rule and a webhook, by
    the path parameters that name them."""

    def post(path: str, body: Any) -> Any:
        response = session.post(f"{server.base_url}{path}", json=body, timeout=10)
        assert response.status_code == 201, response.text
        return response.json()

    sid = new_sid()
    call = post("/v1/calls", {"call_sid": sid})
    doomed = post("/v1/calls", {"call_sid": new_sid()})
    campaign = post("/v1/campaigns", {"name": "fuzz"})
    contacts = post(
        f"/v1/campaigns/{campaign['id']}/contacts",
        [{"phone_number": "+14155550100"}, {"phone_number": "+14155550101"}],
    )
    bot = post(
        "/v1/bots",
        {
            "meeting_url": "https://meet.example.com/fuzz",
            "bot_name": "Fuzz",
            "transcription_model": "realtime",
        },
    )
    rule = post("/v1/alert-rules", {"name": "fuzz", "kind": "keyword", "keywords": ["fuzz"]})
    hook = post("/v1/webhooks", {"url": "https://hooks.example.com/fuzz", "events": ["alert"]})
    return {
        "webhook_id": str(hook["id"]),
        "rule_id": str(rule["id"]),
        "call_sid": sid,
        "doomed_call_sid": doomed["call_sid"],
        "assistant_id": str(call["assistant_id"]),
        "campaign_id": str(campaign["id"]),
        "contact_id": str(contacts["contacts"][0]["id"]),
        "bot_id": bot["id"],
    }


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    data = tmp_path_factory.mktemp("fuzz") / "data"
    with running_server(data) as server:
        server.cli("orgs", "create", "fuzz")
        key = server.create_key("fuzz", "admin")
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {key}"
            existing = _seed(server, key, session)
            served = session.get(f"{server.base_url}/openapi.json", timeout=10).json()
            assert served == DOCUMENT, "the fuzzed document is not the one served"
            store = Store(data / "scribeline.db")
            try:
                yield Fuzzed(server, key, existing, store, session)
            finally:
                store.close()


@schema.parametrize()
@schema.given(aim=st.booleans())
def test_api_conforms_and_errors_write_nothing(case: Any, aim: bool, fuzzed: Fuzzed) -> None:
    """No generated request gets a 5xx or an undocumented answer, and none answered
    with a 4xx changes the store."""
    if aim and case.path_parameters:
        existing = dict(fuzzed.existing)
        if case.method == "DELETE" and case.path == "/v1/calls/{call_sid}":
            # A call of its own: deleting the shared one would leave the tests
            # below without it.
            existing["call_sid"] = existing["doomed_call_sid"]
        for name in case.path_parameters:
            if name in existing:
                case.path_parameters[name] = existing[name]
    if aim and "Origin" in (case.headers or {}):
        # The dashboard's endpoints want the server's own origin; any other is refused
        # (403) before anything else is looked at.
        case.headers["Origin"] = fuzzed.server.base_url
    before = fuzzed.store.snapshot()
    response = case.call(
        base_url=fuzzed.server.base_url,
        session=fuzzed.session,
        timeout=30,
        allow_redirects=False,
    )
    after = fuzzed.store.snapshot()
    case.validate_response(response, checks=CHECKS)
    if 400 <= response.status_code < 500:
        assert before == after, (
            f"{case.method} {case.formatted_path} answered {response.status_code}"
            f" {response.text[:300]} but wrote to the store"
        )


def _path(op: Any, fuzzed: Fuzzed) -> str:
    """``op``'s path naming resources that exist (``_seed`` makes one of each)."""
    unseeded = set(re.findall(r"{(\w+)}", op.path)) - set(fuzzed.existing)
    assert not unseeded, f"{op.id}: _seed makes no {', '.join(sorted(unseeded))}"
    return op.path.format(**fuzzed.existing)


def _problems(validate: Any, body: Any) -> list[dict[str, Any]]:
    """The ``details`` of a 422 for ``body``, as ``api/responses.py`` renders them."""
    with pytest.raises(ValidationError) as caught:
        validate(body)
    errors = caught.value.errors(include_url=False, include_context=False, include_input=False)
    return [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]


_BODIES = [op for op in OPERATIONS if op.body is not None]


@pytest.mark.parametrize("op", _BODIES, ids=[op.id for op in _BODIES])
def test_declared_body_is_the_model_the_handler_validates(op: Any, fuzzed: Fuzzed) -> None:
    """Each operation's documented request body is the model its handler validates
    with: a body with every declared field of the wrong type gets, in ``details``,
    exactly the problems the declared model finds in it (a batch too, as a list)."""
    model = op.body.model if isinstance(op.body, Batch) else op.body
    assert isinstance(model, type) and issubclass(model, BaseModel), op.id
    wrong = {field.alias or name: [[]] for name, field in model.model_fields.items()}
    bodies: list[tuple[Any, Any]] = [(wrong, model.model_validate)]
    if isinstance(op.body, Batch):
        bodies.append(([wrong], TypeAdapter(list[model]).validate_python))  # type: ignore[valid-type]
    path = _path(op, fuzzed)
    headers = {"Origin": fuzzed.server.base_url}  # the dashboard's endpoints want it
    for body, validate in bodies:
        response = fuzzed.session.request(
            op.method, f"{fuzzed.server.base_url}{path}", json=body, headers=headers, timeout=10
        )
        assert response.status_code == 422, (op.id, response.text)
        assert response.json()["details"] == _problems(validate, body), op.id


def _query_cases(schema: dict[str, Any]) -> list[tuple[str, bool]]:
    """(value, whether the document allows it) at the edges of a query parameter's schema."""
    if schema["type"] == "integer":
        lo, hi = schema["minimum"], schema["maximum"]
        return [(str(lo), True), (str(lo - 1), False), (str(hi), True), (str(hi + 1), False)]
    if "enum" in schema:
        return [*((v, True) for v in schema["enum"]), ("x-unknown", False)]
    if "pattern" in schema:
        return [("!", False)]
    return [("x", True)]  # any string


_QUERIES = [
    op for op in OPERATIONS if op.tag != "websockets" and any(p.where == "query" for p in op.params)
]


@pytest.mark.parametrize("op", _QUERIES, ids=[op.id for op in _QUERIES])
def test_query_parameters_have_the_documented_ranges(op: Any, fuzzed: Fuzzed) -> None:
    """A query parameter's documented edges are the handler's: its minimum, maximum
    and enum values are taken, one past them is 422, and a parameter documented as
    any string takes any string."""
    url = fuzzed.server.base_url + _path(op, fuzzed)
    for param in (p for p in op.params if p.where == "query"):
        for value, allowed in _query_cases(param.schema):
            response = fuzzed.session.get(url, params={param.name: value}, timeout=10)
            assert (response.status_code != 422) == allowed, (op.id, param.name, value)
            assert response.status_code < 500
