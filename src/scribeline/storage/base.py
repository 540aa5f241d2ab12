"""The storage interfaces: the event log (system of record) and the catalog.

``EventLog`` is the contract every backend honours and the contract suite in
``tests/contract`` checks:

* ``append`` assigns each event the stream's next seq (1, 2, 3, ...) in the
  same transaction that stores it, and returns only once the events are
  durable (committed). Appends to one stream are serialized; a batch is all
  or nothing. Seqs have no gaps, whatever fails or rolls back: the stream's
  head row is advanced in the transaction that inserts the events.
* **Ordering.** Appends whose calls *start* in order are stored in that
  order, even when the caller does not wait for one before starting the next
  (``asyncio.create_task(storage.append(...))`` one after another, or
  ``asyncio.gather``): ``append`` queues its write before its first
  suspension, and the queue is committed in order. A producer that
  pipelines its events relies on this. The order is that of the calls to
  ``append``: a caller that awaits anything first (a read suspends on
  PostgreSQL, not on SQLite) must keep its own order up to that call.
* An event with ``closes=True`` ends the stream: later appends raise
  ``StreamClosed``.
* ``read`` returns stored events with ``seq > after`` in seq order, at most
  ``limit``. Callers read history in pages (``history.pages``), never a whole
  long stream at once.
* ``head`` is the last assigned seq and the stream's epoch (``Position(0, "")``
  for a stream that has no events yet); ``heads`` is the same for many
  streams in one query (a node re-checks its live streams with it).
  ``latest_of_type`` is each of many streams' newest event of one type up to
  a seq, in one query (the latest line of every call on a page).
* Every stored event carries its stream's epoch (``StoredEvent.epoch``).
* ``segment_heads`` says where each transcript segment stands (its latest
  final and partial seq), a projection kept in the transaction of each
  append, so that a page of history can be filtered
  (``recovery.HistoryFilter``) without reading the rest of the stream.

``Catalog`` holds the organizations, keys, assistants and calls, and the
dashboard's sessions (rows of the keys' table, never listed as keys) and
one-time sign-in codes. Creating a call appends its initial status event in
the same transaction, and the call's ``status`` is a projection of its latest
``call_status`` event.

Every method of every interface raises ``StorageUnavailable`` (retryable)
when the database cannot be reached or drops the connection, never a false
success; a backend reconnects by itself once the database is back.

Nor a false failure where it can be told: a write whose commit's reply was
lost returns its result if it did commit (the PostgreSQL store asks the
server what became of the transaction), so that its caller publishes it and
a producer's retry does not store it twice. ``StorageUnavailable`` from a
write thus means that nothing was stored, but for two cases, in which it may
have committed: the database crashed or failed over with the commit in
flight, or it stayed unreachable for the few seconds spent asking.

Writes waiting for their commit are bounded per backend; past the bound a
write fails at once with ``StorageUnavailable`` (nothing queued) rather than
waiting for room, which keeps the ordering rule above.

The decisions every backend makes alike (seqs, projections, campaign rules) are
pure functions in ``storage.rules``: a backend is the SQL around them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from scribeline.domain import (
    ApiKey,
    Assistant,
    Bot,
    Call,
    CallPage,
    Campaign,
    Contact,
    Counters,
    Organization,
    SignInCode,
    SpeechSettings,
)
from scribeline.events import NewEvent, Position, StoredEvent
from scribeline.recovery import SegmentHead
from scribeline.storage.base_alerts import AlertStore
from scribeline.storage.base_retention import RetentionStore
from scribeline.storage.base_settings import SettingsStore
from scribeline.storage.base_webhooks import WebhookStore

__all__ = [
    "BotStore",
    "CampaignStore",
    "Catalog",
    "EventLog",
    "RetentionStore",
    "SettingsStore",
    "Storage",
    "WebhookStore",
]


class EventLog(ABC):
    """Durable, ordered, per-stream event history."""

    @abstractmethod
    async def append(self, stream: str, events: Sequence[NewEvent]) -> list[StoredEvent]:
        """Store ``events`` at the end of ``stream``; return them with their seqs."""

    @abstractmethod
    async def read(
        self, stream: str, after: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        """Events of ``stream`` with ``seq > after``, oldest first."""

    @abstractmethod
    async def head(self, stream: str) -> Position:
        """The stream's last seq and epoch."""

    async def heads(self, streams: Collection[str]) -> dict[str, Position]:
        """``head`` of each of ``streams`` (every one is a key), in one query.

        Backends override this; the loop here serves test doubles.
        """
        return {stream: await self.head(stream) for stream in streams}

    async def latest_of_type(
        self, bounds: Mapping[str, int], event_type: str
    ) -> dict[str, StoredEvent]:
        """The newest event of ``event_type`` with ``seq <= bounds[stream]`` of each
        stream in ``bounds`` that has one (the others are absent), in one query: an
        index scan back from each bound, so a stream's length does not matter.

        With heads as the bounds (``Catalog.list_calls_at_heads``), a snapshot of
        many calls as of those heads (``GET /v1/calls?include=latest``). Backends
        override this; the loop here serves test doubles.
        """
        found: dict[str, StoredEvent] = {}
        for stream, upto in bounds.items():
            after = 0
            while after < upto:
                page = await self.read(stream, after, min(256, upto - after))
                if not page:
                    break
                after = page[-1].seq
                for event in page:
                    if event.type == event_type and event.seq <= upto:
                        found[stream] = event
        return found

    @abstractmethod
    async def segment_heads(self, stream: str, segments: Collection[str]) -> dict[str, SegmentHead]:
        """The latest final and partial seq of each of the stream's ``segments``
        that has any (segments of transcripts only). An indexed look-up per
        segment: callers ask for one page's segments at a time."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise unless a durable write completes now (readiness)."""

    @abstractmethod
    async def close(self) -> None:
        """Flush pending writes and release resources."""


class Catalog(ABC):
    """Organizations, API keys, assistants and calls."""

    @abstractmethod
    async def create_org(self, name: str) -> Organization:
        """Create an organization with an owner user and a default assistant."""

    @abstractmethod
    async def get_org(self, name: str) -> Organization | None: ...

    @abstractmethod
    async def list_orgs(self) -> list[Organization]:
        """Every organization, oldest first (for operators)."""

    @abstractmethod
    async def add_api_key(
        self, org_id: int, prefix: str, key_hash: bytes, scopes: frozenset[str], name: str
    ) -> ApiKey:
        """Store a new key (hash only) for the organization's owner."""

    @abstractmethod
    async def find_api_key(self, key_hash: bytes) -> ApiKey | None:
        """The key with this hash, revoked or not."""

    @abstractmethod
    async def get_api_key(self, key_id: int) -> ApiKey | None:
        """The key with this id, revoked or not."""

    @abstractmethod
    async def inactive_keys(self, key_ids: Collection[int], now_ms: int) -> set[int]:
        """Those of ``key_ids`` (keys or sessions) not active at ``now_ms``: revoked,
        expired or absent. One query per 500 ids (``rules.KEY_BATCH``): the
        registry's periodic re-check of every open connection's key."""

    @abstractmethod
    async def list_api_keys(self, org_id: int) -> list[ApiKey]:
        """The organization's API keys (never its dashboard sessions), oldest first."""

    @abstractmethod
    async def revoke_api_key(self, org_id: int | None, id_or_prefix: str) -> ApiKey | None:
        """Revoke a key by id or prefix (within one organization if given); None if absent."""

    @abstractmethod
    async def get_org_by_id(self, org_id: int) -> Organization | None: ...

    @abstractmethod
    async def add_sign_in_code(
        self, org_id: int, code_hash: bytes, scopes: frozenset[str], expires_at: int
    ) -> SignInCode:
        """Store a one-time dashboard sign-in code (its hash only) valid until
        ``expires_at`` (epoch ms), and purge the codes that have expired."""

    @abstractmethod
    async def redeem_sign_in_code(
        self, code_hash: bytes, now: int, prefix: str, key_hash: bytes, expires_at: int
    ) -> ApiKey | None:
        """Consume the code and store the session it starts, in one transaction;
        None (and nothing changed) if the code is unknown, used or expired at
        ``now`` (epoch ms). The session is an ``api_keys`` row of kind
        ``session`` (hash only) with the code's organization and scopes, ending
        at ``expires_at`` (epoch ms); ``revoke_api_key`` ends it too.

        The code goes by one ``DELETE ... RETURNING`` (the expiry in its
        condition), so that of any number of callers, on any number of nodes,
        exactly one gets it; a failure after it (``Conflict`` for a hash already
        stored) rolls it back, leaving the code unused. Sessions that expired
        more than ``rules.SESSION_RETENTION_MS`` before ``now`` and that no bot
        names are purged in the same transaction."""

    @abstractmethod
    async def list_sessions(self, org_id: int) -> list[ApiKey]:
        """The organization's dashboard sessions, revoked and expired ones too, oldest
        first (purged ones are gone)."""

    @abstractmethod
    async def revoke_sessions(self, org_id: int, session_id: int | None, now: int) -> list[ApiKey]:
        """Revoke, at ``now`` (epoch ms), the organization's session ``session_id``
        (whatever its expiry), or every one of its sessions still active at
        ``now`` (None); the sessions this revoked (none for one already revoked,
        another organization's, or a key), in id order."""

    @abstractmethod
    async def get_assistant(self, org_id: int, assistant_id: int | None) -> Assistant | None:
        """The given assistant of the organization, or its default one."""

    @abstractmethod
    async def create_assistant(
        self, org_id: int, name: str, transcription_enabled: bool, speech_engine: str = "default"
    ) -> Assistant: ...

    @abstractmethod
    async def list_assistants(self, org_id: int) -> list[Assistant]: ...

    @abstractmethod
    async def update_assistant(
        self,
        org_id: int,
        assistant_id: int,
        transcription_enabled: bool | None = None,
        speech_engine: str | None = None,
    ) -> Assistant | None:
        """Change what is given (None: unchanged); None if there is no such assistant."""

    @abstractmethod
    async def get_speech_settings(self, org_id: int) -> SpeechSettings | None:
        """The organization's live-audio settings; None if it never set them."""

    @abstractmethod
    async def update_speech_settings(
        self, org_id: int, changes: Mapping[str, Any]
    ) -> SpeechSettings:
        """Set the fields in ``changes`` (names of ``SPEECH_FIELDS``; others keep
        their value, or their default in a new row) in one statement, so that
        concurrent changes of different fields all stay; returns the row."""

    @abstractmethod
    async def speech_settings_with_twilio_token(self) -> list[SpeechSettings]:
        """Every organization's settings that hold a Twilio auth token (to find whose
        signature a media stream carries)."""

    @abstractmethod
    async def create_call(self, call: Call, initial: NewEvent) -> tuple[Call, list[StoredEvent]]:
        """Insert a call (``call.id`` is ignored) and append its first event.

        A call linked to a campaign contact moves that contact, which must be
        pending in a running campaign of the organization, to in progress and
        appends its ``contact_update`` to the campaign's stream, in the same
        transaction. Returns the call and its events: the call's first event,
        then any campaign events.
        """

    @abstractmethod
    async def set_call_status(self, call: Call, event: NewEvent) -> list[StoredEvent]:
        """Append a status event; a terminal one also completes a linked campaign
        contact that is still in progress (completed: success; else failed) in
        the same transaction. Returns the call's event, then any campaign events."""

    @abstractmethod
    async def get_call(self, org_id: int, call_sid: str) -> Call | None: ...

    @abstractmethod
    async def list_calls(
        self,
        org_id: int | None,
        status: str | Collection[str] | None,
        limit: int,
        cursor: str | None,
    ) -> CallPage:
        """Calls newest first (all organizations' if ``org_id`` is None, for operators),
        of one status or any of several if given; ``cursor`` continues a previous page."""

    @abstractmethod
    async def list_calls_at_heads(
        self, org_id: int, status: str | Collection[str] | None, limit: int, cursor: str | None
    ) -> tuple[CallPage, dict[str, int]]:
        """``list_calls`` and the head seq of each listed call's stream, read as of
        one moment (one statement): each call's status is its stream's at that
        seq, a snapshot that live events after the head continue."""


class CampaignStore(ABC):
    """Campaigns and contacts. Counters are computed by storage, in the same
    transaction as the change they follow, never by counting events."""

    @abstractmethod
    async def create_campaign(self, org_id: int, assistant_id: int, name: str) -> Campaign: ...

    @abstractmethod
    async def get_campaign(self, org_id: int, campaign_id: int) -> Campaign | None: ...

    @abstractmethod
    async def list_campaigns(self, org_id: int, limit: int) -> list[Campaign]: ...

    @abstractmethod
    async def add_contacts(
        self, campaign_id: int, contacts: list[tuple[str, str | None]]
    ) -> list[Contact]:
        """Add pending contacts (phone number, name) unless the campaign has completed."""

    @abstractmethod
    async def list_contacts(
        self, campaign_id: int, after: int = 0, limit: int | None = None
    ) -> list[Contact]:
        """The campaign's contacts with ids above ``after``, in id order."""

    @abstractmethod
    async def start_campaign(self, campaign_id: int) -> Campaign:
        """draft -> running (a campaign needs at least one contact)."""

    @abstractmethod
    async def record_outcome(
        self,
        campaign_id: int,
        contact_id: int,
        outcome: str,
        duration: float | None,
        call_sid: str | None,
        error: str | None,
    ) -> tuple[Contact, list[StoredEvent]]:
        """Complete a pending or in-progress contact of a running campaign.

        Appends ``contact_update`` and ``contact_completed`` (with the counters
        after it) and, when no contact is left pending or in progress, a last
        ``progress`` and ``campaign_completed``, which ends the campaign's stream.
        """

    async def counters(self, campaign_id: int) -> Counters:
        """One campaign's counters (zero for a campaign with no contacts)."""
        return (await self.counters_of_campaigns([campaign_id]))[campaign_id]

    @abstractmethod
    async def counters_of_campaigns(self, campaign_ids: Collection[int]) -> dict[int, Counters]:
        """The counters of each of ``campaign_ids`` (a campaign list's progress),
        in one query: a campaign with no contacts has zero counters."""

    @abstractmethod
    async def campaign_snapshot(self, campaign_id: int) -> tuple[Position, Counters]:
        """The campaign stream's head and the counters, as of one moment."""

    @abstractmethod
    async def append_progress(self, campaign_id: int) -> StoredEvent | None:
        """Append a ``progress`` event with the current counters (None once ended)."""


class BotStore(ABC):
    """Meeting bots. A bot's events go through ``EventLog.append`` on ``bot.stream``;
    its status is a projection of them, updated in the same transaction:
    ``start`` → recording, ``stop`` → finished (``data.reason`` is the stop
    reason), ``error`` → failed (``data.message`` is the error)."""

    @abstractmethod
    async def create_bot(
        self,
        org_id: int,
        key_id: int,
        meeting_url: str,
        bot_name: str,
        transcription_model: str,
    ) -> Bot:
        """A new bot, status joining, with a fresh random public id."""

    @abstractmethod
    async def get_bot(self, org_id: int | None, public_id: str) -> Bot | None:
        """The bot with this public id (within one organization if given)."""

    @abstractmethod
    async def list_bots(self, org_id: int, status: str | None, limit: int) -> list[Bot]:
        """The organization's bots, newest first."""


class Storage(
    EventLog,
    Catalog,
    CampaignStore,
    BotStore,
    RetentionStore,
    AlertStore,
    WebhookStore,
    SettingsStore,
    ABC,
):
    """A backend that provides the event log, the catalog, campaigns, bots and
    deletion (``base_retention``)."""

    def observe_outbox(self, hook: Callable[[], None]) -> None:
        """Call ``hook()`` on the event loop after a batch that wrote webhook outbox
        rows (wakes this node's deliverer)."""

    def observe_commits(self, hook: Callable[[int, float], None]) -> None:
        """Call ``hook(writes, seconds)`` on the event loop after every batch its
        writer commits (metrics)."""
