"""Settings, read once at start-up from ``SCRIBELINE_*`` variables and flags.

Every limit the server enforces is here, with the default the documented API
implies (PROTOCOL.md section 1, DESIGN.md "Defaults").
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Server configuration. Environment: ``SCRIBELINE_<FIELD>`` (upper case)."""

    model_config = SettingsConfigDict(env_prefix="SCRIBELINE_", frozen=True, extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    data_dir: Path = Path("./data")
    #: Storage URL; empty means SQLite in ``data_dir``.
    database_url: str = ""
    #: Broker URL: ``memory://`` (one process) or ``redis://host:port/db`` (several
    #: nodes; needs a shared store and ``token_secret``).
    broker_url: str = "memory://"
    #: Bind with ``SO_REUSEPORT`` so several processes share the port (``--workers``).
    reuse_port: bool = False
    #: Seconds a Redis pub/sub connection may receive nothing before it is probed
    #: (a half-open connection is then replaced within this plus ``broker_timeout``).
    broker_probe_interval: float = Field(15.0, gt=0)
    #: Seconds any Redis round trip may take (connect, publish, probe).
    broker_timeout: float = Field(3.0, gt=0)
    #: Seconds a gap in a stream may stay open (two nodes can publish seq 7
    #: before 6) before the missing events are read from storage.
    reorder_wait: float = Field(0.05, ge=0)
    #: Seconds between two checks of every live stream's position against
    #: storage (also run after every broker reconnect): finds a lost last event.
    position_check_interval: float = Field(20.0, gt=0)
    #: Seconds a cluster-wide lease lasts (a connection slot, a bot's producer):
    #: with Redis, a crashed node's slots free themselves within this.
    cluster_lease: float = Field(60.0, gt=0)
    #: Seconds between renewals of a node's leases (shorter than the lease).
    cluster_renew_interval: float = Field(20.0, gt=0)

    max_connections_per_call: int = Field(10, ge=1)
    client_messages_per_second: float = Field(100.0, gt=0)
    max_frame_bytes: int = Field(64 * 1024, ge=128)
    ping_interval: float = Field(20.0, gt=0)
    ping_timeout: float = Field(20.0, gt=0)
    #: Outgoing bytes a subscriber may have waiting before it is closed with 1013.
    send_buffer_bytes: int = Field(1024 * 1024, ge=4096)
    #: Kernel send buffer of subscriber sockets (0 keeps the OS default).
    socket_send_buffer_bytes: int = Field(256 * 1024, ge=0)
    #: Seconds a closing connection gets to say goodbye before it is aborted.
    close_timeout: float = Field(5.0, gt=0)
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    max_batch_items: int = Field(1000, ge=1)
    #: Messages per second read from a producer WebSocket; faster producers are slowed down.
    producer_messages_per_second: float = Field(20_000.0, gt=0)
    #: Appends a producer WebSocket may have in flight before it stops reading.
    producer_max_in_flight: int = Field(1024, ge=1)
    #: Seconds to wait for in-flight work when stopping.
    shutdown_timeout: float = Field(10.0, gt=0)
    #: Seconds a client has to send a request's headers: from connecting, or
    #: from the first byte of the next request on a kept-alive connection.
    http_header_timeout: float = Field(10.0, gt=0)
    #: Seconds a kept-alive HTTP connection may stay idle between requests.
    http_keepalive_timeout: float = Field(60.0, gt=0)
    #: Seconds a client has to send a request's body.
    http_body_timeout: float = Field(30.0, gt=0)
    #: Seconds ``/readyz`` waits for a durable storage write and the broker.
    readiness_timeout: float = Field(2.0, gt=0)

    #: HS256 secret for access tokens; empty: generated into the data directory on
    #: first start (every node of a deployment must share one).
    token_secret: str = ""
    token_default_ttl: float = Field(600.0, gt=0)
    token_max_ttl: float = Field(86_400.0, gt=0)
    #: Seconds a revoked API key's tokens (and the key itself) may still work; open
    #: WebSockets' keys are re-checked this often (at least every second).
    auth_cache_seconds: float = Field(5.0, ge=0, le=60)
    #: Dashboard sign-in (docs/protocol.md): seconds a one-time sign-in code is
    #: valid, a session lasts (fixed from sign-in, not sliding), and a captions
    #: link's token lives (never past its session).
    dashboard_code_ttl: int = Field(600, ge=1, le=86_400)
    dashboard_session_ttl: int = Field(28_800, ge=1, le=30 * 86_400)
    captions_ttl: int = Field(14_400, ge=60, le=86_400)

    #: Topic subscriptions one event-stream connection may hold.
    max_subscriptions_per_connection: int = Field(100, ge=1)
    #: Topic subscriptions all event-stream connections of one organization may
    #: hold on one server process.
    max_subscriptions_per_organization: int = Field(10_000, ge=1)
    #: Least seconds between two ``progress`` events of one campaign.
    campaign_progress_interval: float = Field(1.0, ge=0)
    #: Seconds between two retention sweeps of a node (docs/operations.md): each
    #: deletes the calls and bots that outlived their organization's ``retention_days``.
    retention_interval: float = Field(60.0, gt=0)

    #: Meeting bots (PROTOCOL.md section 4): subscriber connections per bot.
    max_connections_per_bot: int = Field(10, ge=1)
    #: Messages per second a bot subscriber may send (actions); faster: close 1008.
    bot_actions_per_second: float = Field(10.0, gt=0)
    #: Largest frame a bot subscriber may send.
    bot_max_action_bytes: int = Field(4096, ge=128)
    #: Seconds between the ``{"type":"ping"}`` events a bot subscriber gets.
    bot_ping_interval: float = Field(60.0, gt=0)
    #: Seconds a bot's capability URLs stay valid after they are handed out.
    bot_token_ttl: float = Field(86_400.0, gt=0)
    #: Seconds a connected bot gets to stop itself after a stop request.
    bot_stop_timeout: float = Field(10.0, gt=0)
    #: Base of the WebSocket URLs handed out (``wss://scribe.example.com``);
    #: empty: built from the request's host.
    public_url: str = ""
    #: Reverse proxies whose ``X-Forwarded-For``, ``-Proto`` and ``-Host`` are
    #: believed (api/forwarded.py): comma-separated addresses or CIDR networks.
    #: Empty: the headers are ignored from everyone.
    trusted_proxies: Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode] = ()

    #: Live audio (docs/audio.md). The engine used when neither the organization
    #: nor the assistant chose one: ``local`` or ``deepgram``.
    speech_engine: Literal["local", "deepgram"] = "local"
    #: A CTranslate2 whisper model directory for the local engine; empty: the
    #: packaged tiny.en model.
    speech_model_dir: Path | None = None
    #: Decode workers of the local engine (one thread each); 0: one per core.
    speech_workers: int = Field(0, ge=0, le=64)
    #: Local tracks transcribed at once on this node; 0: three per decode worker.
    #: Past it a stream goes to Deepgram (with a key) or is refused.
    speech_max_local_tracks: int = Field(0, ge=0)
    #: Milliseconds of non-speech that end an utterance (local engine).
    speech_endpoint_ms: int = Field(500, ge=100, le=5000)
    #: webrtcvad aggressiveness, 0 (least) to 3 (most).
    speech_vad_mode: int = Field(2, ge=0, le=3)
    #: Longest utterance before it is cut into a final (seconds).
    speech_max_utterance: float = Field(15.0, ge=1.0, le=30.0)
    #: Least seconds between two partials of one track (local engine; partials
    #: are decoded only when a worker is idle).
    speech_partial_interval: float = Field(1.5, gt=0)
    #: Seconds a media stream may take to send ``start`` after connecting.
    media_start_timeout: float = Field(5.0, gt=0)
    #: Seconds a stopped media stream's engine gets to deliver its last finals.
    media_finish_timeout: float = Field(15.0, gt=0)
    #: Seconds a call made by media streams stays open after its last stream ends,
    #: for a new stream of it (a stream stopped and started again) to begin.
    media_end_grace: float = Field(3.0, ge=0)
    #: Media-stream sockets one node holds at once (whatever their engine, and
    #: before their start); past it an upgrade is refused with 503.
    media_max_streams: int = Field(1000, ge=1)
    #: How much faster than real time a media stream may send audio (a replay);
    #: a faster sender is read more slowly. Twilio sends at real time.
    media_max_speed: float = Field(20.0, ge=1)
    #: Messages per second read from a media stream (Twilio sends 50 per track);
    #: a faster sender is slowed down.
    media_messages_per_second: float = Field(2000.0, gt=0)
    #: Deepgram's live API and the settings sent to it (docs/audio.md).
    deepgram_url: str = "wss://api.deepgram.com/v1/listen"
    deepgram_model: str = "nova-3"
    deepgram_language: str = "en-US"
    deepgram_endpointing_ms: int = Field(300, ge=10, le=10_000)
    deepgram_utterance_end_ms: int = Field(1000, ge=1000, le=5000)
    #: Webhooks (docs/protocol.md, "Webhooks"). Deliver to loopback, private,
    #: link-local and other non-public addresses too (off: public ones only, SSRF).
    webhook_allow_private: bool = False
    #: Seconds one delivery attempt may take, from connecting to the answer's head.
    webhook_timeout: float = Field(10.0, gt=0, le=300)
    #: Seconds a node's claim of a delivery lasts (longer than an attempt): another
    #: node sends it again once a claim's node died.
    webhook_lease: float = Field(30.0, gt=0)
    #: Seconds before the first retry, doubled at each (with jitter), up to the most.
    webhook_backoff: float = Field(5.0, gt=0)
    webhook_backoff_max: float = Field(7200.0, gt=0)
    #: Seconds a delivery is retried for; then it is given up (dead).
    webhook_retry_window: float = Field(86400.0, gt=0)
    #: Seconds of failures with no success after which a given-up delivery disables
    #: its endpoint.
    webhook_disable_after: float = Field(86400.0, gt=0)
    #: Seconds between two looks at the outbox (an append on this node wakes it at once).
    webhook_poll_interval: float = Field(1.0, gt=0)
    #: Deliveries one node sends at once.
    webhook_concurrency: int = Field(16, ge=1, le=256)
    #: Webhook endpoints an organization may have.
    webhook_max_endpoints: int = Field(20, ge=1, le=1000)
    #: Days delivered and given-up deliveries, and their log, are kept.
    webhook_log_days: float = Field(7.0, gt=0)

    access_log: bool = False
    #: Prometheus metrics (docs/operations.md, "Metrics"); off: no ``/metrics`` (404)
    #: and no histogram is kept.
    metrics_enabled: bool = True
    #: When set, ``/metrics`` wants ``Authorization: Bearer <this token>`` (else 401).
    metrics_token: SecretStr = SecretStr("")
    #: ``host:port`` (``127.0.0.1:9464``) on which ``/metrics`` is served instead of
    #: the public port; empty: the public port.
    metrics_listen: str = ""
    log_level: str = "INFO"
    #: ``text`` lines, or ``json``: one object per line (docs/operations.md, "Logs").
    log_format: Literal["text", "json"] = "text"

    @field_validator("cluster_renew_interval")
    @classmethod
    def _renew_within_lease(cls, value: float, info: ValidationInfo) -> float:
        lease = info.data.get("cluster_lease")
        if lease is not None and value >= lease:
            raise ValueError("must be shorter than SCRIBELINE_CLUSTER_LEASE")
        return value

    @field_validator("webhook_lease")
    @classmethod
    def _lease_outlasts_attempt(cls, value: float, info: ValidationInfo) -> float:
        timeout = info.data.get("webhook_timeout")
        # An attempt takes at most the timeout + 1 s; one more for the claim's commit.
        if timeout is not None and value < timeout + 2:
            raise ValueError("must be at least SCRIBELINE_WEBHOOK_TIMEOUT + 2 seconds")
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):  # "10.0.0.0/8, 127.0.0.1"
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("metrics_listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if value and not (sep and host and port.isdigit() and int(port) <= 65535):
            raise ValueError("must be host:port, such as 127.0.0.1:9464")
        return value

    def sqlite_path(self) -> Path:
        """Where the embedded database lives."""
        return self.data_dir / "scribeline.db"
