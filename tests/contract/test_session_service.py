"""The session service on every storage backend, with a clock the test moves:
codes start one session, its tokens' lifetimes, captions tokens, sign-out, a new
sign-in replacing the browser's previous session, and the session secret being
no bearer credential."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from scribeline import tokens
from scribeline.auth import Authenticator
from scribeline.cluster import Signals, open_cluster
from scribeline.domain import Call
from scribeline.errors import AuthenticationFailed, NotFound
from scribeline.events import NewEvent
from scribeline.sessions import ACCESS_TTL, SessionService
from scribeline.storage import Storage

SECRET = "s" * 48
SESSION_TTL = 1200
CAPTIONS_TTL = 900


@dataclass
class Clock:
    now: float

    def __call__(self) -> float:
        return self.now


@dataclass
class Stack:
    storage: Storage
    auth: Authenticator
    service: SessionService
    clock: Clock
    org_id: int


@pytest.fixture
async def stack(storage: Storage) -> AsyncIterator[Stack]:
    signals = Signals(open_cluster("memory://"))
    await signals.cluster.start(signals.deliver)
    auth = Authenticator(storage, SECRET, signals=signals)
    clock = Clock(time.time())
    service = SessionService(
        storage,
        auth,
        signals,
        code_ttl=60,
        session_ttl=SESSION_TTL,
        captions_ttl=CAPTIONS_TTL,
        clock=clock,
    )
    org = await storage.create_org("acme")
    try:
        yield Stack(storage, auth, service, clock, org.id)
    finally:
        await signals.cluster.close()


async def _call(stack: Stack, sid: str) -> None:
    assistant = await stack.storage.get_assistant(stack.org_id, None)
    assert assistant is not None
    draft = Call(0, stack.org_id, assistant.id, sid, "in-progress", None, None, "inbound", 1, None)
    await stack.storage.create_call(draft, NewEvent("call_status", {"status": "in-progress"}))


async def test_a_code_starts_one_session_whose_tokens_end_with_it(stack: Stack) -> None:
    """Sign-in works once per code; access tokens live 600 s, then only what is left
    of the session; past its end nothing is minted."""
    issued = await stack.service.issue_code(stack.org_id, read_only=True)
    session = await stack.service.sign_in(issued.code)
    with pytest.raises(AuthenticationFailed):
        await stack.service.sign_in(issued.code)
    assert session.read_only and session.organization.name == "acme"
    assert session.access_expires_at - session.issued_at == ACCESS_TTL
    claims = tokens.verify(SECRET, session.access_token, now=stack.clock.now)
    assert claims.key_id == session.key.id and claims.scopes == {"read"}
    assert session.secret is not None and session.secret.startswith("scs_")

    stack.clock.now += SESSION_TTL - 30
    late = await stack.service.refresh(session.secret)
    assert late.access_expires_at * 1000 <= session.expires_at_ms
    assert late.access_expires_at - late.issued_at <= 30
    stack.clock.now += 30
    with pytest.raises(AuthenticationFailed):
        await stack.service.refresh(session.secret)


async def test_an_expired_code_starts_nothing(stack: Stack) -> None:
    """A code used after its TTL is refused like an unknown one."""
    issued = await stack.service.issue_code(stack.org_id)
    stack.clock.now += 61
    with pytest.raises(AuthenticationFailed):
        await stack.service.sign_in(issued.code)


async def test_captions_tokens_read_one_call_of_the_organization_until_the_session_ends(
    stack: Stack,
) -> None:
    """A captions token is read-only, names its call, lives CAPTIONS_TTL but never past
    the session; a call the organization does not have is NotFound."""
    await _call(stack, "CA1")
    session = await stack.service.sign_in((await stack.service.issue_code(stack.org_id)).code)
    minted = await stack.service.captions(session.secret, "CA1")
    claims = tokens.verify(SECRET, minted.token, now=stack.clock.now)
    assert claims.scopes == {"read"} and claims.call_sid == "CA1"
    assert minted.expires_at == int(stack.clock.now) + CAPTIONS_TTL
    with pytest.raises(NotFound):
        await stack.service.captions(session.secret, "CA2")
    stack.clock.now += SESSION_TTL - 100
    late = await stack.service.captions(session.secret, "CA1")
    assert late.expires_at * 1000 <= session.expires_at_ms


async def test_sign_out_ends_the_session_and_its_tokens_at_once(stack: Stack) -> None:
    """After sign-out the secret refreshes nothing and an access token the
    authenticator had just accepted (and cached) is refused on its next use."""
    session = await stack.service.sign_in((await stack.service.issue_code(stack.org_id)).code)
    principal = await stack.auth.authenticate(session.access_token)
    assert principal.key_id == session.key.id
    await stack.service.sign_out(session.secret)
    with pytest.raises(AuthenticationFailed):
        await stack.auth.authenticate(session.access_token)
    with pytest.raises(AuthenticationFailed):
        await stack.service.refresh(session.secret)
    await stack.service.sign_out(session.secret)  # again, or with nothing: no error
    await stack.service.sign_out(None)


async def test_a_session_secret_is_no_bearer_credential(stack: Stack) -> None:
    """The authenticator refuses a session's secret wherever a token is accepted."""
    session = await stack.service.sign_in((await stack.service.issue_code(stack.org_id)).code)
    with pytest.raises(AuthenticationFailed):
        await stack.auth.authenticate(session.secret)


async def test_signing_in_again_ends_the_session_the_browser_held(stack: Stack) -> None:
    """A sign-in that carries the browser's previous session secret revokes that
    session once the new one exists: its refresh fails and a token the authenticator
    had just accepted (and cached) is refused at once. A refused code ends nothing."""
    old = await stack.service.sign_in((await stack.service.issue_code(stack.org_id)).code)
    assert (await stack.auth.authenticate(old.access_token)).key_id == old.key.id
    with pytest.raises(AuthenticationFailed):
        await stack.service.sign_in("scd_" + "A" * 43, replacing=old.secret)
    assert (await stack.service.refresh(old.secret)).key.id == old.key.id

    code = (await stack.service.issue_code(stack.org_id)).code
    new = await stack.service.sign_in(code, replacing=old.secret)
    assert new.key.id != old.key.id
    with pytest.raises(AuthenticationFailed):
        await stack.auth.authenticate(old.access_token)
    with pytest.raises(AuthenticationFailed):
        await stack.service.refresh(old.secret)
    assert (await stack.auth.authenticate(new.access_token)).key_id == new.key.id
    assert (await stack.service.refresh(new.secret)).key.id == new.key.id
