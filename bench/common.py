"""What every scenario shares: the REST helper, CLI options, printing and saving results."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from bench.profile import hottest
from bench.subscribers import CLIENT_KINDS, stamp_content

__all__ = [
    "RESULTS_DIR",
    "Api",
    "Result",
    "base_parser",
    "chosen",
    "emit",
    "exit_status",
    "print_params",
    "transcript",
]

RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: A scenario's outcome: {"scenario", "params", "results", "targets", "warnings", ...}.
Result = dict[str, Any]


def transcript(index: int, speaker: str = "user") -> dict[str, Any]:
    """A final transcript whose content starts with its send time (for latency)."""
    return {"content": stamp_content(index), "speaker": speaker, "is_final": True}


class Api:
    """The REST calls the scenarios need, with one ``aiohttp`` session."""

    def __init__(self, base_url: str, key: str, connections: int = 64) -> None:
        self.base = base_url
        self._headers = {"Authorization": f"Bearer {key}"}
        self._limit = connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Api:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._limit), headers=self._headers
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None
        return self._session

    async def post(self, path: str, body: Any, expect: int = 201) -> Any:
        async with self.session.post(self.base + path, json=body) as resp:
            data = await resp.json(content_type=None)
            if resp.status != expect:
                raise RuntimeError(f"POST {path} -> {resp.status}: {data}")
            return data

    async def create_calls(self, sids: Sequence[str], concurrency: int = 32) -> None:
        gate = asyncio.Semaphore(concurrency)

        async def one(sid: str) -> None:
            async with gate:
                await self.post("/v1/calls", {"call_sid": sid})

        await asyncio.gather(*(one(sid) for sid in sids))

    async def append(self, sid: str, index: int) -> int:
        """One transcript through REST; its seq."""
        body = await self.post(f"/v1/calls/{sid}/transcripts", transcript(index))
        return int(body["seq"])


def source_state() -> str:
    """The commit under test and whether src/ had uncommitted changes (others edit it)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "src"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head}{' + uncommitted src changes' if dirty else ''}"


def base_parser(description: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--json", type=Path, help="also write the result as JSON here")
    parser.add_argument("--keep-data", action="store_true", help="keep the server's data dir")
    return parser


def add_client_options(parser: argparse.ArgumentParser, procs: int) -> None:
    parser.add_argument(
        "--client", choices=CLIENT_KINDS, default="raw", help="subscriber client implementation"
    )
    parser.add_argument("--procs", type=int, default=procs, help="client worker processes")


_source_at_start: list[str] = []


def print_params(name: str, params: dict[str, Any]) -> None:
    _source_at_start[:] = [source_state()]  # the server imports src/ as it is now
    print(f"== {name} ==", flush=True)
    print("parameters: " + ", ".join(f"{k}={v}" for k, v in params.items()), flush=True)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:,.3f}".rstrip("0").rstrip(".")
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    if isinstance(value, list) and len(value) > 8:
        return f"[{len(value)} items]"
    return str(value)


def emit(result: Result, json_path: Path | None) -> Result:
    """Print a scenario's results (and warnings), optionally save them as JSON."""
    result.setdefault(
        "host",
        {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "source": _source_at_start[0] if _source_at_start else source_state(),
        },
    )
    result.setdefault("finished_at", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    print("results:")
    for key, value in result["results"].items():
        print(f"  {key}: {_fmt(value)}")
    for key, value in result.get("targets", {}).items():
        print(f"  target {key}: {_fmt(value)}")
    for key, value in result["results"].items():
        if isinstance(value, dict) and value.get("profile"):
            hot = hottest(Path(value["profile"]), 12)
            print(f"  hottest server functions over {key} window (% of samples, self):")
            for name, pct in hot["self"]:
                print(f"    {pct:5.1f}  {name}")
    for warning in result.get("warnings", []):
        print(f"  WARNING: {warning}")
    server = result.get("server_log")
    if server and (server.get("error_lines") or server.get("tracebacks")):
        print(f"  server log: {_fmt(server)}")
    sys.stdout.flush()
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2, default=str))
    return result


def exit_status(result: Result) -> int:
    """A benchmark command's exit status: 1, with the run's error on stderr, if it
    failed; else 0."""
    if result.get("error"):
        print(f"FAILED: {result['error']}", file=sys.stderr, flush=True)
        return 1
    return 0


def chosen(
    parser: argparse.ArgumentParser,
    text: str,
    known: Iterable[str],
    what: str,
    *,
    required: bool = False,
) -> list[str]:
    """The names of a comma-list option; a name not in ``known`` (or, when
    ``required``, no name at all) is a usage error naming ``what``."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = set(names) - set(known)
    if unknown or (required and not names):
        parser.error(f"unknown {what}: {', '.join(sorted(unknown))}")
    return names


def target(value: float, limit: float, at_most: bool) -> dict[str, Any]:
    """A target line: the measured value, the limit and whether it was met."""
    met = value <= limit if at_most else value >= limit
    return {"value": value, "limit": ("<= " if at_most else ">= ") + str(limit), "met": met}


def dedupe(lines: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(lines))
