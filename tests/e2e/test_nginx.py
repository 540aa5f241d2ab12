"""Scribeline behind Debian's nginx, configured with the file docs/deployment.md gives.

The configuration is read from the document ("Several machines behind nginx"), and
only its addresses, ports and paths are changed: nginx listens on a free loopback
port with a certificate from a throwaway CA, in front of one real server started
with ``SCRIBELINE_TRUSTED_PROXIES=127.0.0.1``. Everything then goes through
``https://`` and ``wss://`` with a client that trusts that CA: the REST API, the
live transcript stream, the event stream, and a restart of nginx that the Python
client survives by resuming with ``since``.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import trustme
from websockets.asyncio.client import connect

from scribeline.client import ApiError, AsyncClient, Backoff, StatusEvent, TranscriptEvent
from scribeline.client.sessions import CallEvent
from tests.integration.helpers import ServerProcess, new_sid
from tests.services import Nginx, free_port, nginx_bin, require

DEPLOYMENT = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"
SECTION = "## Several machines behind nginx"
WITHIN = 10.0


def documented_config() -> tuple[str, str]:
    """The section's configuration file and its lines for nginx.conf's main context."""
    text = DEPLOYMENT.read_text("utf-8")
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```text\n(.*?)^```", section, re.S | re.M)
    conf = [b for b in blocks if b.startswith("# /etc/nginx/conf.d/scribeline.conf")]
    main = [b for b in blocks if b.lstrip().startswith("worker_shutdown_timeout")]
    assert len(conf) == 1 and len(main) == 1, "the nginx blocks of deployment.md moved"
    return conf[0], main[0]


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"deployment.md's nginx file no longer has {old!r} once"
    return text.replace(old, new)


def on_loopback(conf: str, port: int, node: int, files: Path) -> str:
    """The documented file with this machine's addresses, ports and paths."""
    conf = replace_once(conf, "listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
    conf = replace_once(conf, "/etc/ssl/certs/scribe.example.com.pem", str(files / "cert.pem"))
    conf = replace_once(conf, "/etc/ssl/private/scribe.example.com.key", str(files / "key.pem"))
    conf = replace_once(conf, "/var/log/nginx/scribeline.log", str(files / "access.log"))
    upstreams = re.findall(r"^ *server 10\.0\.0\.\d+:8000 .*\n", conf, re.M)
    assert upstreams, "deployment.md's upstream block has no node"
    conf = conf.replace(
        upstreams[0], re.sub(r"10\.0\.0\.\d+:8000", f"127.0.0.1:{node}", upstreams[0])
    )
    for line in upstreams[1:]:  # one node here
        conf = conf.replace(line, "")
    return conf


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The server nginx proxies to; it trusts X-Forwarded-* from loopback only."""
    require("nginx", nginx_bin() is not None)
    env = {"SCRIBELINE_TRUSTED_PROXIES": "127.0.0.1", "SCRIBELINE_ACCESS_LOG": "true"}
    server = ServerProcess(data_dir=tmp_path_factory.mktemp("node") / "data", env_overrides=env)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def key(node: ServerProcess) -> str:
    node.cli("orgs", "create", "proxied")
    return node.create_key("proxied", "read,write")


@pytest.fixture(scope="module")
def proxy(node: ServerProcess, ca: trustme.CA) -> Iterator[Nginx]:
    """nginx with the documented configuration in front of ``node``."""
    port = free_port()
    root = Path(tempfile.mkdtemp(prefix="scribeline-nginx-"))
    cert = ca.issue_cert("localhost", "127.0.0.1")
    (root / "cert.pem").write_bytes(b"".join(pem.bytes() for pem in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(root / "key.pem"))
    conf, main = documented_config()
    nginx = Nginx(port, on_loopback(conf, port, node.port, root), main, root=root)
    try:
        nginx.check()
        yield nginx.start()
    finally:
        nginx.destroy()


@pytest.fixture(scope="module")
def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
async def client(proxy: Nginx, key: str, trusting: ssl.SSLContext) -> AsyncIterator[AsyncClient]:
    """The Python client through nginx, quick to retry."""
    quick = Backoff(initial=0.05, maximum=0.5)
    async with AsyncClient(
        f"https://localhost:{proxy.port}", api_key=key, ssl_context=trusting, backoff=quick
    ) as sdk:
        yield sdk


async def test_rest_over_https(
    client: AsyncClient, proxy: Nginx, node: ServerProcess, trusting: ssl.SSLContext
) -> None:
    """Create a call, post transcripts and read them back through nginx; a body over
    the node's limit gets the node's JSON 413; bot URLs carry nginx's scheme and host;
    the node's metrics are not served through nginx."""
    sid = new_sid()
    await client.create_call(sid)
    seqs = [await client.append_transcript(sid, f"line {n}", speaker="assistant") for n in range(3)]
    finals = await client.final_transcript(sid)
    assert [(f["seq"], f["content"]) for f in finals] == [
        (seq, f"line {n}") for n, seq in enumerate(seqs)
    ]

    big = {"content": "x" * (1536 * 1024), "speaker": "assistant", "is_final": True}
    with pytest.raises(ApiError) as refused:  # JSON from the node, not nginx's HTML page
        await client.request("POST", f"/v1/calls/{sid}/transcripts", json=big)
    assert (refused.value.status, refused.value.code) == (413, "payload_too_large")

    bot = await client.create_bot("https://meet.example.com/abc-defg-hij", "Notetaker")
    assert bot["websocket_url"].startswith(f"wss://localhost:{proxy.port}/v1/bots/"), bot

    async with httpx.AsyncClient(verify=trusting) as plain:
        assert (await plain.get(f"{node.base_url}/metrics")).status_code == 200
        assert (await plain.get(f"https://localhost:{proxy.port}/metrics")).status_code == 404


async def test_live_and_event_streams_over_wss(
    client: AsyncClient, proxy: Nginx, key: str, trusting: ssl.SSLContext
) -> None:
    """The live transcript and the event stream open through nginx over TLS 1.3 (the
    event stream with its token in the query string) and deliver what is posted;
    nginx's access log holds neither the token nor any query string."""
    sid = new_sid()
    await client.create_call(sid)
    base = f"wss://localhost:{proxy.port}"
    events_url = f"{base}/v1/events?token={key}"
    async with connect(events_url, ssl=trusting, open_timeout=WITHIN) as events:
        assert json.loads(await events.recv())["type"] == "connection_established"
        assert events.transport.get_extra_info("ssl_object").version() == "TLSv1.3"
        await events.send(
            json.dumps({"action": "subscribe", "topic": "transcription", "filter": sid})
        )
        assert json.loads(await events.recv())["type"] == "subscribed"
        headers = {"Authorization": f"Bearer {key}"}
        live_url = f"{base}/live-transcript/{sid}"
        async with connect(live_url, ssl=trusting, additional_headers=headers) as live:
            assert json.loads(await live.recv())["type"] == "connection_established"
            assert json.loads(await live.recv())["type"] == "call_status"
            seq = await client.append_transcript(sid, "through the proxy", speaker="assistant")
            for ws in (live, events):
                message = json.loads(await asyncio.wait_for(ws.recv(), WITHIN))
                while message["seq"] < seq:  # the call's initial status, on the live stream
                    message = json.loads(await asyncio.wait_for(ws.recv(), WITHIN))
                assert (message["seq"], message["data"]["content"]) == (seq, "through the proxy")

    log = proxy.root / "access.log"
    assert '"GET /v1/events" 101' in log.read_text(), "nginx logged no event-stream request"
    assert key not in log.read_text() and "?" not in log.read_text()


async def test_the_client_resumes_across_a_proxy_restart(
    client: AsyncClient, proxy: Nginx, node: ServerProcess, key: str
) -> None:
    """The Python client follows a call through nginx; nginx stops (its connections
    cut), events are posted to the node directly meanwhile, nginx starts again on the
    same port: the client reconnects and resumes, and gets every event exactly once,
    in order, up to the call's end."""
    sid = new_sid()
    await client.create_call(sid)
    received: list[CallEvent] = []
    arrived = asyncio.Event()
    stream = client.live_transcript(sid)

    async def follow() -> None:
        async with stream:
            async for event in stream:
                received.append(event)
                arrived.set()

    def seqs() -> list[int]:
        return [e.seq for e in received if isinstance(e, TranscriptEvent | StatusEvent) and e.seq]

    async def until(done: Callable[[], bool]) -> None:
        async with asyncio.timeout(WITHIN):
            while not done():
                arrived.clear()
                if not done():
                    await arrived.wait()

    follower = asyncio.create_task(follow())
    try:
        before = [
            await client.append_transcript(sid, f"before {n}", speaker="assistant")
            for n in range(3)
        ]
        await until(lambda: before[-1] in seqs())

        await asyncio.to_thread(proxy.stop)  # a fast shutdown: its connections are cut
        async with httpx.AsyncClient(
            base_url=node.base_url, headers={"Authorization": f"Bearer {key}"}
        ) as direct:
            for n in range(3):
                body = {"content": f"while down {n}", "speaker": "assistant", "is_final": True}
                answer = await direct.post(f"/v1/calls/{sid}/transcripts", json=body)
                assert answer.status_code == 201, answer.text
        await asyncio.to_thread(proxy.start)  # the same port

        after = [
            await client.append_transcript(sid, f"after {n}", speaker="assistant") for n in range(3)
        ]
        last = await client.set_status(sid, "completed")  # the stream ends with it
        await asyncio.wait_for(follower, WITHIN)
    finally:
        follower.cancel()
    assert after[-1] < last
    assert seqs() == list(range(1, last + 1)), "not every event exactly once, in order"
    contents = [e.content for e in received if isinstance(e, TranscriptEvent)]
    assert [c for c in contents if c.startswith("while down")] == [
        f"while down {n}" for n in range(3)
    ]
    assert stream.reconnects >= 1, "the client never lost its connection"
