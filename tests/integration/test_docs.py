"""Every code block of README.md and docs/*.md runs as written against a server started
the way ``make run`` starts it.

- A block's tag says what it is. ``sh``, ``python`` and ``js`` blocks are run; ``json``
  blocks must parse (the whole block, or one JSON value per line where a doc shows
  messages line by line); ``xml`` blocks (TwiML) must be well-formed; ``text``
  blocks (synopses, diagrams) are not run. Any other tag, or none, fails.
- Each document gets its own server, started as ``make run`` does (``python -m
  scribeline demo --host 127.0.0.1 --data-dir ./data``, the data directory given as an
  absolute path and ``--port 0`` for a free port) for a temporary working directory that
  has a ``.venv`` link to this virtualenv. Its blocks run there, in document order, once
  the demo has printed its banner; nothing touches the repository's own ``./data``.
- The one rewriting: ``127.0.0.1:8000`` and ``localhost:8000`` in a block become the
  test server's address, and ``SCRIBELINE_URL`` is set to it for the commands that use
  the default address without writing it (``scribeline tail``, ``calls list``). Nothing
  else in a block is changed; ``PYTHONUNBUFFERED=1`` makes output arrive line by line,
  as on a terminal.
- The ``sh`` blocks of a document share one shell's state (variables, functions,
  working directory), as one terminal would: it is saved after each block and restored
  before the next. ``python`` blocks run with ``.venv/bin/python`` and ``js`` blocks
  with ``node`` as ES modules (``ws`` comes from a cache outside the repository,
  installed from npm when missing), both from that shell, so they see what it exported.
  Every block's stdin is open and silent: a terminal nobody types in.
- A block passes when it exits 0 within ``BLOCK_TIMEOUT`` (``sh`` blocks stop at their
  first failing command: ``set -e -o pipefail``) without printing an API error body
  (``curl`` exits 0 on an HTTP error) or a Python traceback. A block that says "until
  Ctrl-C" follows a live stream by design: it must print ``FOLLOW_LINES`` lines, then
  stop on SIGINT, as on Ctrl-C. Whatever a block left running is killed after it.
- README's ``make run`` / ``make test`` block is the one not run (this file starts that
  server itself, and ``make test`` runs this file): ``make -n`` checks its targets.
- ``js`` blocks skip when node or npm is missing, unless ``CI`` is set: then they fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from xml.etree import ElementTree

import pytest

from .helpers import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))

RUN_TAGS = frozenset({"sh", "python", "js"})
TAGS = RUN_TAGS | {"json", "text", "xml"}
FENCE = re.compile(r"^```(?P<tag>[^`\n]*)\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
ADDRESS = re.compile(r"\b(?:127\.0\.0\.1|localhost):8000\b")
#: What a block that follows a live stream forever says.
FOLLOWS = "until Ctrl-C"
API_ERROR = re.compile(r'\{"error":\s*"')
TRACEBACK = "Traceback (most recent call last)"

BLOCK_TIMEOUT = 60.0
FOLLOW_LINES = 3
STOP_TIMEOUT = 10.0
BANNER_TIMEOUT = 30.0
WS_VERSION = "8.23.0"
NPM_TIMEOUT = 120.0

# Runs one block in the document's shell state. A Python or JS block runs from the shell
# (it sees what the shell exported); a shell block is sourced and the state saved again.
RUNNER = r"""
__docs_state=$1 __docs_kind=$2 __docs_block=$3 __docs_python=$4
source "$__docs_state"
case $__docs_kind in
  python) exec "$__docs_python" "$__docs_block" ;;
  js) exec node "$__docs_block" ;;
esac
__docs_save() {
  set +e
  {
    printf 'cd %q\n' "$PWD"
    for __docs_name in $(compgen -v); do
      case $__docs_name in
        BASH*|EUID|PPID|UID|SHELLOPTS|SHLVL|FUNCNAME|GROUPS|RANDOM|SRANDOM|SECONDS|LINENO) ;;
        EPOCH*|PIPESTATUS|DIRSTACK|HISTCMD|OPTIND|OPTARG|PWD|OLDPWD|_|__docs_*) ;;
        *)
          __docs_decl=$(declare -p "$__docs_name" 2>/dev/null) || continue
          __docs_attrs=${__docs_decl#declare -}
          [[ ${__docs_attrs%% *} == *r* ]] || printf '%s\n' "$__docs_decl"
          ;;
      esac
    done
    for __docs_name in $(compgen -A function); do
      [[ $__docs_name == __docs_* ]] || declare -f "$__docs_name"
    done
  } > "$__docs_state.new" && mv "$__docs_state.new" "$__docs_state"
}
trap __docs_save EXIT
set --
set -e -o pipefail
source "$__docs_block"
"""


@dataclass(frozen=True)
class Block:
    """A fenced block: the document (relative to the repository), its opening line."""

    doc: str
    line: int
    tag: str
    body: str

    @property
    def id(self) -> str:
        return f"{self.doc}:L{self.line}-{self.tag or 'untagged'}"

    @property
    def follows(self) -> bool:
        return FOLLOWS in self.body

    @property
    def is_make(self) -> bool:
        """README's `make run` / `make test` block."""
        lines = [ln for ln in self.body.splitlines() if ln.strip()]
        return bool(lines) and all(ln.startswith("make ") for ln in lines)


def _blocks() -> list[Block]:
    found = []
    for path in DOCS:
        text = path.read_text("utf-8")
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            doc = str(path.relative_to(ROOT))
            found.append(Block(doc, line, match.group("tag").strip(), match.group("body")))
    return found


BLOCKS = _blocks()
RUNNABLE = [b for b in BLOCKS if b.tag in RUN_TAGS and not b.is_make]


def _ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def _node_modules() -> Path | None:
    """``node_modules`` holding the pinned ``ws``, in a cache outside the repository
    (installed from npm when missing); None when node or npm is not installed."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return None
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    cache = base / "scribeline-docs-test" / f"ws-{WS_VERSION}"
    if (cache / "node_modules" / "ws" / "package.json").is_file():
        return cache / "node_modules"
    cache.parent.mkdir(parents=True, exist_ok=True)
    # Installed aside and renamed into place, so a half-done install is never used.
    partial = Path(tempfile.mkdtemp(prefix=".ws-", dir=cache.parent))
    result = subprocess.run(
        ["npm", "install", "--prefix", str(partial), "--no-audit", "--no-fund", f"ws@{WS_VERSION}"],
        capture_output=True,
        text=True,
        timeout=NPM_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise RuntimeError(f"npm install ws@{WS_VERSION} failed:\n{result.stderr[-2000:]}")
    try:
        partial.rename(cache)
    except OSError:  # another run installed it meanwhile
        shutil.rmtree(partial, ignore_errors=True)
    return cache / "node_modules"


@dataclass
class Drain:
    """A process's stdout lines and stderr, read by threads so that it never blocks."""

    proc: subprocess.Popen[bytes]
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        assert self.proc.stdout is not None and self.proc.stderr is not None
        for stream, sink, feed in (
            (self.proc.stdout, self.out, True),
            (self.proc.stderr, self.err, False),
        ):
            thread = threading.Thread(target=self._pump, args=(stream, sink, feed), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _pump(self, stream: IO[bytes], sink: list[str], feed: bool) -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace")
            sink.append(line)
            if feed:
                self.lines.put(line)
        if feed:
            self.lines.put(None)

    def finish(self) -> None:
        """Kill whatever is left of the process group, then wait for the last output."""
        _kill_group(self.proc)
        for thread in self._threads:
            thread.join(STOP_TIMEOUT)

    def report(self) -> str:
        return (
            f"exit status: {self.proc.returncode}\n"
            f"--- stdout (last lines)\n{''.join(self.out)[-3000:]}\n"
            f"--- stderr (last lines)\n{''.join(self.err)[-3000:]}"
        )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


class DocSession:
    """One document's demo server, working directory and shell state."""

    def __init__(self, doc: str, workdir: Path) -> None:
        self.doc = doc
        self.workdir = workdir
        self.scratch = workdir / ".docs-test"
        self.server = ServerProcess(data_dir=workdir / "data", command="demo")
        self.outcomes: dict[Block, str | None] = {}
        self._started = False
        self._node: Path | None = None

    def _start(self) -> None:
        self._started = True
        (self.workdir / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
        self.scratch.mkdir()
        (self.scratch / "state.sh").write_text("")
        (self.scratch / "run.sh").write_text(RUNNER)
        self.server.start()
        self.server.expect_line(r"Read-only demo key: ", BANNER_TIMEOUT)

    def stop(self) -> None:
        if self._started:
            self.server.stop()

    def outcome(self, block: Block) -> str | None:
        """Run ``block`` (after the document's earlier blocks, if they have not run);
        what went wrong, or None. Raises ``Skipped`` for a JS block without node."""
        for earlier in RUNNABLE:
            if earlier == block:
                break
            if earlier.doc == self.doc and earlier not in self.outcomes:
                with contextlib.suppress(pytest.skip.Exception):  # a JS block without node
                    self.outcome(earlier)
            if self.outcomes.get(earlier):
                return f"not run: the earlier block {earlier.id} failed"
        if block not in self.outcomes:
            if block.tag == "js":
                self._need_node()
            if not self._started:
                self._start()
            self.outcomes[block] = self._run(block)
        return self.outcomes[block]

    def _need_node(self) -> None:
        if self._node is None:
            node = _node_modules()
            if node is None:
                if _ci():
                    pytest.fail("node and npm are needed to run the JavaScript blocks under CI")
                pytest.skip("node or npm is not installed (and CI is not set)")
            self._node = node
            (self.workdir / "node_modules").symlink_to(node, target_is_directory=True)

    def _run(self, block: Block) -> str | None:
        suffix = {"sh": "sh", "python": "py", "js": "mjs"}[block.tag]
        # A JS module under the working directory finds ./node_modules, as after `npm install`.
        path = self.scratch / f"L{block.line}.{suffix}"
        body = ADDRESS.sub(f"127.0.0.1:{self.server.port}", block.body)
        path.write_text(body)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCRIBELINE_")}
        env |= {"SCRIBELINE_URL": self.server.base_url, "PYTHONUNBUFFERED": "1"}
        python = self.workdir / ".venv" / "bin" / "python"
        silent, keyboard = os.pipe()  # stdin: open, and nobody types
        runner, state = self.scratch / "run.sh", self.scratch / "state.sh"
        proc = subprocess.Popen(
            ["bash", str(runner), str(state), block.tag, str(path), str(python)],
            cwd=self.workdir,
            env=env,
            stdin=silent,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        os.close(silent)
        drain = Drain(proc)
        try:
            failure = self._follow(proc, drain) if block.follows else self._complete(proc, drain)
        finally:
            drain.finish()
            os.close(keyboard)
        return None if failure is None else f"{block.id}: {failure}\n{body}\n{drain.report()}"

    @staticmethod
    def _complete(proc: subprocess.Popen[bytes], drain: Drain) -> str | None:
        try:
            proc.wait(BLOCK_TIMEOUT)
        except subprocess.TimeoutExpired:
            return f"still running after {BLOCK_TIMEOUT:.0f} s"
        drain.finish()
        output = "".join(drain.out + drain.err)
        if proc.returncode != 0:
            return f"exited {proc.returncode}"
        if API_ERROR.search(output):
            return "printed an API error"
        if TRACEBACK in output:
            return "printed a Python traceback"
        return None

    @staticmethod
    def _follow(proc: subprocess.Popen[bytes], drain: Drain) -> str | None:
        deadline = time.monotonic() + BLOCK_TIMEOUT
        seen = 0
        while seen < FOLLOW_LINES:
            try:
                line = drain.lines.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                return f"printed {seen} lines in {BLOCK_TIMEOUT:.0f} s, not {FOLLOW_LINES}"
            if line is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(STOP_TIMEOUT)
                return f"ended by itself (exit {proc.returncode}) after {seen} lines"
            seen += 1
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            return f"did not stop within {STOP_TIMEOUT:.0f} s of Ctrl-C (SIGINT)"
        return None


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, DocSession]]:
    """A session per document, started when its first block runs."""
    started: dict[str, DocSession] = {}
    yield started
    for session in started.values():
        session.stop()


def test_every_block_is_tagged() -> None:
    """Every fenced block says what it is: a command or program to run (sh, python, js),
    or data and synopses that are not run (json, xml, text)."""
    bad = [f"{b.id} ({b.tag!r})" for b in BLOCKS if b.tag not in TAGS]
    assert not bad, f"blocks without one of the tags {sorted(TAGS)}: {bad}"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.tag == "json"], ids=lambda b: b.id)
def test_json_block_parses(block: Block) -> None:
    """A JSON block is one JSON value, or one JSON value per line."""
    try:
        json.loads(block.body)
    except ValueError:
        for n, line in enumerate(block.body.splitlines(), start=block.line + 1):
            if line.strip():
                try:
                    json.loads(line)
                except ValueError as exc:
                    pytest.fail(f"{block.doc}:{n} is not JSON ({exc}): {line}", pytrace=False)


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.tag == "xml"], ids=lambda b: b.id)
def test_xml_block_parses(block: Block) -> None:
    """An XML block (TwiML) is a well-formed document."""
    try:
        ElementTree.fromstring(block.body)
    except ElementTree.ParseError as exc:
        pytest.fail(f"{block.doc}:{block.line} is not well-formed XML ({exc})", pytrace=False)


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.is_make], ids=lambda b: b.id)
def test_make_block_names_real_targets(block: Block) -> None:
    """The `make run` / `make test` block is not run here (this file starts that server,
    and `make test` runs this file); `make -n` proves each of its commands exists."""
    for line in block.body.splitlines():
        command = line.partition("#")[0].split()
        if command:
            result = subprocess.run(
                [*command[:1], "-n", *command[1:]],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert result.returncode == 0, f"{line!r}: {result.stderr}"


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: b.id)
def test_block_runs_as_written(
    block: Block, sessions: dict[str, DocSession], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The block, pasted as it is after the document's earlier blocks, runs against a
    `make run` server and ends (or, following a live stream, prints and stops on Ctrl-C)."""
    session = sessions.get(block.doc)
    if session is None:
        workdir = tmp_path_factory.mktemp(re.sub(r"\W", "_", block.doc))
        session = sessions[block.doc] = DocSession(block.doc, workdir)
    failure = session.outcome(block)
    if failure is not None:
        pytest.fail(failure, pytrace=False)
