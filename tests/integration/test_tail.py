"""``scribeline tail`` and ``scribeline calls list --key``, run as subprocesses against a
real server while the test drives the call over REST."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import re
import signal
import socket
import struct
import sys
import termios
from collections.abc import AsyncIterator
from typing import Any

import pytest

from .helpers import Api, ServerProcess, Tenant, new_sid, transcript

#: Every wait for the subprocess (a line, its exit) gives up after this long.
WAIT = 30.0

#: Variables that would change how rich decides on colour and width.
DISPLAY_VARS = ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS", "LINES")

SGR_COLOUR = re.compile(rb"\x1b\[[0-9;]*(?:3[0-7]|9[0-7]|38;5;\d+)[0-9;]*m")
#: Terminal control sequences (colours, cursor moves, line erases).
CONTROL = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")

# The call every live test plays once tail is following it (created "ringing", then
# "in-progress"): partials replaced by finals, and a partial that never settles.
TURNS = [
    transcript("Hi, I", speaker="user", is_final=False, segment_id="s1"),
    transcript("Hi, I need help", speaker="user", is_final=False, segment_id="s1"),
    transcript("Hi, I need help with my order.", speaker="user", segment_id="s1"),
    transcript("Of course", speaker="assistant", is_final=False, segment_id="s2"),
    transcript("Of course, what is the order number?", speaker="assistant", segment_id="s2"),
    transcript("It is one two", speaker="user", is_final=False, segment_id="s3"),
]
PIPED_OUTPUT = [
    "— status: ringing",
    "— status: in-progress",
    "user: Hi, I need help with my order.",
    "assistant: Of course, what is the order number?",
    "— status: completed",
]

# A client-only install: these server dependencies cannot be imported.
BLOCKER = """
import importlib.abc, sys
BLOCKED = {"aiohttp", "sqlalchemy", "alembic", "uvloop", "jwt", "pydantic_settings"}
assert not BLOCKED & set(sys.modules), BLOCKED & set(sys.modules)
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not installed (client-only install)")
        return None
sys.meta_path.insert(0, Blocker())
"""


def default_sigint() -> None:
    """In the child before it runs: SIGINT at its default disposition, whatever this
    process inherited (a suite launched with SIGINT ignored, as a shell does for a
    background job, would otherwise hand that on, and Python then leaves Ctrl-C
    ignored instead of raising KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def cli_env(**extra: str) -> dict[str, str]:
    """The test's environment without Scribeline settings or display overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRIBELINE_")}
    for name in DISPLAY_VARS:
        env.pop(name, None)
    env.update(extra)
    return env


class Tail:
    """A ``scribeline tail`` subprocess whose stdout, a pipe, is read line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    async def next_line(self) -> str | None:
        """The next stdout line (None at EOF)."""
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), WAIT)
        if not raw:
            return None
        line = raw.decode().rstrip("\n")
        self.lines.append(line)
        return line

    async def expect(self, pattern: str) -> str:
        """Read lines until one matches ``pattern``; return it."""
        while (line := await self.next_line()) is not None:
            if re.search(pattern, line):
                return line
        raise AssertionError(f"stdout ended without {pattern!r}: {self.lines}")

    async def finish(self) -> tuple[int, str]:
        """Read stdout to its end and wait for the exit: (exit code, stderr)."""
        while await self.next_line() is not None:
            pass
        assert self.proc.stderr is not None
        stderr = await asyncio.wait_for(self.proc.stderr.read(), WAIT)
        return await asyncio.wait_for(self.proc.wait(), WAIT), stderr.decode()


@contextlib.asynccontextmanager
async def tail(
    server: ServerProcess, key: str, *args: str, url: str | None = None
) -> AsyncIterator[Tail]:
    """Run ``scribeline tail ARGS`` (against ``url``, default the server) with the key in
    ``$SCRIBELINE_API_KEY``; killed if the test leaves it running."""
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "scribeline", "tail", *args, "--server", url or server.base_url),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(SCRIBELINE_API_KEY=key),
        preexec_fn=default_sigint,  # one system call in the child: safe after fork
    )
    try:
        yield Tail(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``python ARGS`` to its end: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env or cli_env(),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), WAIT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


class Proxy:
    """A TCP relay to the server whose connections the test can cut, to make tail
    reconnect."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.listener: asyncio.Server | None = None
        self.links: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        assert self.listener is not None
        return f"http://127.0.0.1:{self.listener.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> Proxy:
        self.listener = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.listener is not None
        self.listener.close()
        self.cut()
        await self.listener.wait_closed()

    def cut(self) -> None:
        """Drop every open connection on both sides, without a close frame."""
        for writer in self.links:
            writer.transport.abort()
        self.links.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.links += [writer, up_writer]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


async def play_turns(api: Api, sid: str) -> None:
    """The conversation, then the call's end."""
    for body in TURNS:
        await api.post_transcript(sid, body)
    await api.post_status(sid, "completed")


def json_lines(lines: list[str]) -> list[dict[str, Any]]:
    messages = [json.loads(line) for line in lines]
    assert all(isinstance(m, dict) for m in messages), lines
    return messages


# --------------------------------------------------------------------------- piped


async def test_piped_tail_prints_finals_with_speakers_and_statuses(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """Piped, tail prints exactly the finals in order with speaker labels and the status
    changes, no partial text, and exits 0 once the call completes."""
    sid = (await api_a.create_call(status="ringing"))["call_sid"]
    async with tail(server, tenant_a.read, sid) as t:
        assert await t.next_line() == "— status: ringing"
        await api_a.post_status(sid, "in-progress")
        await t.expect("in-progress")  # history is behind us: what follows is live
        await play_turns(api_a, sid)
        code, stderr = await t.finish()
    assert (code, stderr) == (0, "")
    assert t.lines == PIPED_OUTPUT
    assert "one two" not in "\n".join(t.lines)


async def test_piped_tail_reconnects_quietly(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """When its connection drops mid-call, piped tail resumes where it was: the output is
    the same as without the drop, with no note and nothing on stderr."""
    sid = (await api_a.create_call(status="ringing"))["call_sid"]
    async with Proxy(server.port) as proxy, tail(server, tenant_a.read, sid, url=proxy.url) as t:
        await t.expect("ringing")
        await api_a.post_status(sid, "in-progress")
        await t.expect("in-progress")
        for body in TURNS[:3]:
            await api_a.post_transcript(sid, body)
        await t.expect("with my order")
        proxy.cut()
        for body in TURNS[3:]:
            await api_a.post_transcript(sid, body)
        await api_a.post_status(sid, "completed")
        code, stderr = await t.finish()
    assert (code, stderr) == (0, "")
    assert t.lines == PIPED_OUTPUT


@pytest.mark.parametrize("finals_only", [False, True], ids=["all", "finals-only"])
async def test_json_tail_prints_each_wire_message(
    server: ServerProcess, tenant_a: Tenant, api_a: Api, finals_only: bool
) -> None:
    """With --json every line is an event's wire message, seqs strictly increase, and
    partials are there unless --finals-only; exit 0 when the call completes."""
    sid = (await api_a.create_call(status="ringing"))["call_sid"]
    flags = ["--json", "--finals-only"] if finals_only else ["--json"]
    async with tail(server, tenant_a.read, sid, *flags) as t:
        await t.expect('"ringing"')
        await api_a.post_status(sid, "in-progress")
        await t.expect('"in-progress"')
        await play_turns(api_a, sid)
        code, stderr = await t.finish()
    assert (code, stderr) == (0, "")
    messages = json_lines(t.lines)
    snapshot, events = messages[0], messages[1:]
    assert snapshot["type"] == "call_status" and "seq" not in snapshot, snapshot
    seqs = [m["seq"] for m in events]
    assert seqs == sorted(set(seqs)) and seqs[0] == 1, seqs
    assert all(m["call_sid"] == sid for m in messages)
    statuses = [m["status"] for m in events if m["type"] == "call_status"]
    assert statuses == ["ringing", "in-progress", "completed"]
    contents = [m["data"]["content"] for m in events if m["type"] == "transcript"]
    wanted = [b["content"] for b in TURNS if b["is_final"] or not finals_only]
    assert contents == wanted


async def test_since_starts_after_the_given_seq(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """--since N leaves out seq N and everything before it, then follows the call live."""
    sid = (await api_a.create_call())["call_sid"]
    first = await api_a.post_transcript(sid, transcript("First words.", speaker="user"))
    second = await api_a.post_transcript(sid, transcript("Second words.", speaker="assistant"))
    async with tail(server, tenant_a.read, sid, "--json", "--since", str(first)) as t:
        await t.expect(f'"seq":{second}\\b')
        third = await api_a.post_transcript(sid, transcript("Third words.", speaker="user"))
        end = await api_a.post_status(sid, "completed")
        code, stderr = await t.finish()
    assert (code, stderr) == (0, "")
    messages = json_lines(t.lines)
    assert "seq" not in messages[0]  # the status snapshot
    assert [m["seq"] for m in messages[1:]] == [second, third, end]
    assert "First words." not in "\n".join(t.lines)


async def test_since_beyond_the_call_prints_the_whole_call_once(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """--since past the call's last seq: the server replays the call from the start and
    tail prints every stored event exactly once (not nothing), with a one-line note."""
    sid = (await api_a.create_call())["call_sid"]
    await api_a.post_transcript(sid, transcript("First words.", speaker="user"))
    await api_a.post_transcript(sid, transcript("Second words.", speaker="assistant"))
    await api_a.post_status(sid, "completed")
    async with tail(server, tenant_a.read, sid, "--json", "--since", "999") as t:
        code, stderr = await t.finish()
    assert code == 0, stderr
    messages = json_lines(t.lines)
    assert [m.get("seq") for m in messages] == [None, 1, 2, 3, 4], messages
    assert stderr.count("\n") == 1 and stderr.startswith(f"scribeline: call {sid}: seq 999 ")
    assert "from the start" in stderr

    async with tail(server, tenant_a.read, sid, "--since", "999") as t:
        code, stderr = await t.finish()
    assert code == 0, stderr
    assert t.lines[-4:] == [
        "— status: in-progress",
        "user: First words.",
        "assistant: Second words.",
        "— status: completed",
    ]


# --------------------------------------------------------------------------- terminal


class PtyOutput:
    """The master side of a pseudo-terminal, read as it becomes readable."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.data = bytearray()
        self.eof = False
        self._changed = asyncio.Event()
        asyncio.get_running_loop().add_reader(master, self._read)

    def _read(self) -> None:
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: every slave descriptor is closed (the child exited)
            chunk = b""
        if chunk:
            self.data += chunk
        else:
            self.eof = True
            asyncio.get_running_loop().remove_reader(self.master)
        self._changed.set()

    async def wait_for(self, text: str) -> None:
        """Wait until the output contains ``text``."""
        needle = text.encode()
        async with asyncio.timeout(WAIT):
            while needle not in self.data:
                assert not self.eof, f"the terminal closed without {text!r}: {bytes(self.data)!r}"
                self._changed.clear()
                await self._changed.wait()

    async def wait_eof(self) -> None:
        async with asyncio.timeout(WAIT):
            while not self.eof:
                self._changed.clear()
                await self._changed.wait()


@contextlib.asynccontextmanager
async def pty_tail(
    key: str, *args: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, PtyOutput]]:
    """Run ``scribeline tail ARGS`` with stdout and stderr on a 120x40 pseudo-terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    try:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "scribeline", "tail", *args),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=slave,
            stderr=slave,
            env=cli_env(SCRIBELINE_API_KEY=key, TERM="xterm-256color", COLUMNS="120", LINES="40"),
        )
    finally:
        os.close(slave)
    out = PtyOutput(master)
    try:
        yield proc, out
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if not out.eof:
            asyncio.get_running_loop().remove_reader(master)
        os.close(master)


async def test_terminal_tail_shows_colour_and_partials_in_place(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """On a terminal tail colours its output, shows a partial while it is recognized and
    then its final, notes a reconnection, and exits 0 when the call completes."""
    sid = (await api_a.create_call(status="ringing"))["call_sid"]
    async with (
        Proxy(server.port) as proxy,
        pty_tail(tenant_a.read, sid, "--server", proxy.url) as (proc, out),
    ):
        await out.wait_for("status: ringing")
        await api_a.post_status(sid, "in-progress")
        await out.wait_for("status: in-progress")
        await api_a.post_transcript(sid, TURNS[1])
        await out.wait_for("Hi, I need help")  # the partial, drawn in place
        await api_a.post_transcript(sid, TURNS[2])
        await out.wait_for("with my order.")
        proxy.cut()
        await out.wait_for("reconnecting…")
        await api_a.post_status(sid, "completed")
        await out.wait_eof()
        assert await asyncio.wait_for(proc.wait(), WAIT) == 0
    data = bytes(out.data)
    assert SGR_COLOUR.search(data), f"no colour in {data!r}"
    text = CONTROL.sub(b"", data)
    assert re.search(rb"user: Hi, I need help(?! with)", text), text  # the partial alone
    assert b"user: Hi, I need help with my order.\r\n" in text
    assert text.count(b"with my order.") == 1  # resumed after the drop, not replayed
    assert b"status: completed" in text and b"Traceback" not in text


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("case", ["unknown-call", "bad-key"])
async def test_refused_tail_fails_with_one_line(
    server: ServerProcess, tenant_a: Tenant, api_a: Api, case: str
) -> None:
    """A tail the server refuses (an unknown call, a bad key) exits 2 with a one-line error
    naming the server's code, no traceback and without printing the key."""
    if case == "unknown-call":
        sid, key, code_name = new_sid(), tenant_a.read, "not_found"
    else:
        sid = (await api_a.create_call())["call_sid"]
        key, code_name = "scl_" + "x" * 43, "authentication_failed"
    code, out, err = await run_cli(
        *("-m", "scribeline", "tail", sid, "--key", key, "--server", server.base_url)
    )
    assert code == 2, (code, out, err)
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("scribeline: tail refused: "), err
    assert code_name in err and "Traceback" not in err
    assert key not in err


async def test_ctrl_c_exits_130_without_a_traceback(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """SIGINT (Ctrl-C) while following a live call exits 130 with nothing on stderr."""
    sid = (await api_a.create_call())["call_sid"]
    async with tail(server, tenant_a.read, sid) as t:
        await t.expect("status: in-progress")
        t.proc.send_signal(signal.SIGINT)
        code, stderr = await t.finish()
    assert (code, stderr) == (130, "")


async def test_an_unreachable_server_is_said_at_once_while_tail_retries(
    server: ServerProcess, tenant_a: Tenant
) -> None:
    """With nothing listening, tail says on stderr within seconds which address it cannot
    reach and that it is retrying, once, and keeps running; the key is not printed."""
    port = free_port()
    async with tail(server, tenant_a.read, "CA1", url=f"http://127.0.0.1:{port}") as t:
        assert t.proc.stderr is not None
        line = (await asyncio.wait_for(t.proc.stderr.readline(), 5)).decode()
        assert line.startswith(
            f"scribeline: cannot reach ws://127.0.0.1:{port}/live-transcript/CA1 "
        )
        assert line.endswith("retrying\n") and tenant_a.read not in line
        assert t.proc.returncode is None, "tail keeps trying"
        t.proc.kill()
        assert await t.proc.stderr.read() == b"", "said once, not once per attempt"


@pytest.mark.parametrize("what", ["calls", "campaigns"])
async def test_listing_from_an_unreachable_server_names_it(tenant_a: Tenant, what: str) -> None:
    """calls list and campaigns list with a key fail at once with one line naming the
    server's address."""
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = await run_cli(
        "-m", "scribeline", what, "list", "--server", url, "--key", tenant_a.read
    )
    assert (code, out) == (2, ""), err
    assert err.count("\n") == 1 and err.startswith(f"scribeline: cannot reach {url} "), err
    assert tenant_a.read not in err


# --------------------------------------------------------------------------- calls list


async def test_calls_list_with_a_key_asks_the_server(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """calls list --key lists the organization's calls over REST and --active keeps only
    the calls in progress; without a key it still reads the data directory."""
    active = (await api_a.create_call())["call_sid"]
    ended = (await api_a.create_call())["call_sid"]
    await api_a.post_status(ended, "completed")
    base = ("-m", "scribeline", "calls", "list", "--server", server.base_url)

    code, out, err = await run_cli(*base, "--key", tenant_a.read)
    assert (code, err) == (0, ""), err
    rows = {line.split("\t")[0]: line.split("\t") for line in out.splitlines()}
    assert rows[active][1] == "in-progress" and rows[ended][1] == "completed", out
    assert tenant_a.read not in out

    code, out, err = await run_cli(*base, "--active", env=cli_env(SCRIBELINE_API_KEY=tenant_a.read))
    assert (code, err) == (0, ""), err
    sids = [line.split("\t")[0] for line in out.splitlines()]
    assert active in sids and ended not in sids

    code, out, err = await run_cli(*base, "--active", "--data-dir", str(server.data_dir))
    assert (code, err) == (0, ""), err
    assert active in out and ended not in out


# --------------------------------------------------------------------------- client only


async def test_tail_and_calls_list_need_no_server_dependencies(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """With aiohttp, sqlalchemy, alembic, uvloop, PyJWT and pydantic-settings unimportable,
    tail --help, the client SDK, a real tail and calls list --key work, while the server
    does not import (so the blocker works)."""
    code, out, err = await run_cli(
        "-c",
        BLOCKER
        + """
from scribeline.cli import main
try:
    main(["tail", "--help"])
except SystemExit as exc:
    assert exc.code == 0, exc.code
import scribeline.client
assert not BLOCKED & set(sys.modules), BLOCKED & set(sys.modules)
try:
    import scribeline.server
except ImportError as exc:
    print("server blocked:", exc)
else:
    raise SystemExit("the blocker let the server import")
""",
    )
    assert code == 0, err
    assert "usage: scribeline tail" in out and "server blocked: aiohttp" in out, out

    sid = (await api_a.create_call())["call_sid"]
    await api_a.post_transcript(sid, transcript("Bye now.", speaker="assistant"))
    await api_a.post_status(sid, "completed")
    run_main = BLOCKER + "from scribeline.cli import main\nraise SystemExit(main(sys.argv[1:]))"
    remote = ("--server", server.base_url, "--key", tenant_a.read)
    code, out, err = await run_cli("-c", run_main, "tail", sid, *remote)
    assert (code, err) == (0, ""), err
    assert out.splitlines() == [
        "— status: in-progress",
        "assistant: Bye now.",
        "— status: completed",
    ]
    code, out, err = await run_cli("-c", run_main, "calls", "list", *remote)
    assert (code, err) == (0, ""), err
    assert sid in out
