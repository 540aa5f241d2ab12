"""Run every scenario (each against its own fresh server), print a summary table and
write all results as JSON to bench/results/ (git-ignored).

Scenarios the reference server serves too (fanout, idle, connects, many_calls_rest)
run against it in the same run, right before or after Scribeline (the order
alternates between repeats); their result carries ``reference`` (its own result)
and ``ratio_vs_reference`` (Scribeline's figure / the reference's).

``--backends sqlite,postgres`` runs the scenarios whose figures depend on the
store once per store (:mod:`bench.stores`); each result says its ``backend``."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
import traceback
from collections.abc import Callable, Coroutine, Sequence
from functools import partial
from pathlib import Path
from typing import Any, cast

from bench import (
    cluster,
    cluster_throughput,
    connects,
    dashboard,
    fanout,
    firehose,
    idle,
    ingest,
    many_calls,
    meetings,
    speech,
)
from bench.backends import Services
from bench.common import RESULTS_DIR, Result, chosen, emit, target
from bench.reference import ServerKind, reference_unavailable
from bench.stores import NOT_ON_POSTGRES, ON_POSTGRES, STORES, Store, on_store, postgres_cpu
from bench.workers import run_async

__all__ = ["main"]

Scenario = Callable[[bool], Coroutine[Any, Any, Result]]
Paired = Callable[[bool, ServerKind], Coroutine[Any, Any, Result]]

#: The scenarios the reference server serves as well: name -> run(quick, server).
PAIRED: dict[str, Paired] = {
    "fanout": lambda quick, server: fanout.run(
        subscribers=200 if quick else 1000, duration=3 if quick else 20, server=server
    ),
    "idle": lambda quick, server: idle.run(
        connections=500 if quick else 5000, warmup=50 if quick else 200, server=server
    ),
    "connects": lambda quick, server: connects.run(
        total=1000 if quick else 10_000, concurrency=200, server=server
    ),
    "many_calls_rest": lambda quick, server: many_calls.run_rest(
        calls=100 if quick else 1000,
        rate=200 if quick else 1000,
        duration=3 if quick else 20,
        server=server,
    ),
}

#: The figures compared with the reference's (dotted: nested); the first is the headline.
REFERENCE_FIGURES: dict[str, tuple[str, ...]] = {
    "fanout": ("server_us_per_delivery", "latency.p99_ms", "deliveries_per_s"),
    "idle": ("kb_per_connection",),
    "connects": ("connects_per_s", "server_us_per_connect", "time_to_established.p99_ms"),
    "many_calls_rest": ("server_us_per_event", "latency.p99_ms", "rest_append_ms_p50"),
}

#: Targets set relative to the reference (Scribeline ÷ reference, at most).
VS_REFERENCE_TARGETS: dict[str, dict[str, float]] = {"fanout": {"server_us_per_delivery": 1.0}}

TIMES = "\N{MULTIPLICATION SIGN}"
_ONLY_LIVE = "the reference serves only live-transcript subscribers and REST publishing"
#: Why the reference cannot serve the other scenarios.
NO_REFERENCE: dict[str, str] = {
    "many_calls": "the reference has no producer WebSocket (/v1/ingest); see many_calls_rest",
    "ingest": "the reference has no producer WebSocket and stores nothing",
    "firehose": "the reference has no organization firehose stream",
    "meetings": "the reference has no meeting-bot streams or actions",
    "cluster": "the reference is one process with no broker or shared database",
    "cluster_throughput": "the reference is one process with no broker or shared database",
    "ingest_backends": "the reference has no storage backends",
    "dashboard": f"{_ONLY_LIVE}, not the dashboard or its API",
    "speech": "no server is measured (the local speech engine in this process)",
}


def _paired(paired: Paired, server: ServerKind, quick: bool) -> Coroutine[Any, Any, Result]:
    return paired(quick, server)


def _scribeline(paired: Paired) -> Scenario:
    return partial(_paired, paired, "scribeline")


#: name -> (full-size run, quick run); "quick" is a smoke test, not a measurement.
SCENARIOS: dict[str, Scenario] = {
    "fanout": _scribeline(PAIRED["fanout"]),
    "many_calls": lambda quick: many_calls.run(
        calls=100 if quick else 1000, rate=200 if quick else 1000, duration=3 if quick else 20
    ),
    "many_calls_rest": _scribeline(PAIRED["many_calls_rest"]),
    "idle": _scribeline(PAIRED["idle"]),
    "connects": _scribeline(PAIRED["connects"]),
    "ingest": lambda quick: ingest.run(
        messages=5000 if quick else 50_000, rest_requests=1000 if quick else 10_000
    ),
    "firehose": lambda quick: firehose.run(
        calls=50 if quick else 300, rate=200 if quick else 1000, duration=3 if quick else 15
    ),
    "meetings": lambda quick: meetings.run(
        bots=20 if quick else 100,
        duration=3 if quick else 20,
        warmup=1 if quick else 2,
        actions=40 if quick else 200,
    ),
    # PostgreSQL and Redis from tests.services, started and stopped by each scenario.
    "cluster": lambda quick: cluster.run(
        calls=100 if quick else 1000, rate=200 if quick else 1000, duration=3 if quick else 8
    ),
    "cluster_throughput": lambda quick: cluster_throughput.run(
        subscribers_per_call=100 if quick else 500, duration=3 if quick else 8
    ),
    "ingest_backends": lambda quick: ingest.run_backends(
        ("sqlite", "pg_redis"),
        messages=5000 if quick else 50_000,
        rest_requests=1000 if quick else 10_000,
    ),
    # The dashboard in Debian's Chromium (Playwright): finals only, then 3 interims per
    # final spread out, then in bursts.
    "dashboard": lambda quick: dashboard.run(
        calls=50 if quick else 300, rate=200 if quick else 1000, duration=3 if quick else 20
    ),
    # No server: the local speech engine in this process, fed the demo call at real time.
    "speech": lambda quick: speech.run(
        calls=(1,) if quick else (1, 2, 4), sweep_seconds=0 if quick else 150
    ),
}


def _num(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:,.2f}".rstrip("0").rstrip(".")
    return f"{value:,}" if isinstance(value, int) else str(value)


def headline(result: Result) -> str:
    """The few numbers that matter for one scenario, on one line."""
    r = result.get("results", {})
    name = result.get("scenario")
    if name in ("fanout", "many_calls", "many_calls_rest", "firehose") and "latency" in r:
        lat = r["latency"]
        cost = (
            f"{_num(r['server_us_per_delivery'])} µs/delivery"
            + _vs_reference(result, "server_us_per_delivery")
            if name == "fanout"
            else f"{_num(r['server_us_per_event'])} µs/event"
            + _vs_reference(result, "server_us_per_event")
        )
        p99 = _num(lat["p99_ms"])
        if name == "many_calls_rest":  # its other target
            p99 += _vs_reference(result, "latency.p99_ms")
        return (
            f"{cost}, "
            f"{_num(r['deliveries_per_s'])} deliveries/s, latency ms p50 {_num(lat['p50_ms'])} "
            f"p90 {_num(lat['p90_ms'])} p99 {p99} max {_num(lat['max_ms'])}"
        )
    if name == "meetings" and "latency" in r:
        lat, act = r["latency"], r["action_round_trip"]
        twin = ""
        if "live_twin" in r:
            live = r["live_twin"].get("server_us_per_delivery", math.nan)
            twin = f", live twin {_num(live)}, {TIMES}{_num(r['bots_over_live'])}"
        return (
            f"{_num(r['server_us_per_delivery'])} µs/delivery{twin}, "
            f"{_num(r['deliveries_per_s'])} deliveries/s, latency ms p50 {_num(lat['p50_ms'])} "
            f"p90 {_num(lat['p90_ms'])} p99 {_num(lat['p99_ms'])} max {_num(lat['max_ms'])}, "
            f"action ms p50 {_num(act['p50_ms'])} p99 {_num(act['p99_ms'])}"
        )
    if name == "idle":
        return (
            f"{_num(r['kb_per_connection'])} KB/connection"
            f"{_vs_reference(result, 'kb_per_connection')} "
            f"({r['connected']} connected, RSS {r['rss_before_mb']} -> {r['rss_after_mb']} MB)"
        )
    if name == "connects":
        lat = r["time_to_established"]
        return (
            f"{_num(r['connects_per_s'])} connects/s{_vs_reference(result, 'connects_per_s')},"
            f" {_num(r['server_us_per_connect'])} µs "
            f"server CPU/connect, p99 to established {_num(lat['p99_ms'])} ms"
        )
    if name == "cluster":
        return _cluster_headline(r)
    if name == "cluster_throughput" and "two_nodes" in r:
        one, two = r["one_node"], r["two_nodes"]
        return (
            f"1 node {_num(one['deliveries_per_s'])}/s, 2 nodes {_num(two['deliveries_per_s'])}/s,"
            f" ratio {_num(r['ratio_two_over_one'])}"
            f" (core per node: {_num(r['projected_ratio_core_per_node'])}); µs/delivery"
            f" 1 node {_num(one['node_A_us_per_delivery'])}, 2 nodes"
            f" A {_num(two['node_A_us_per_delivery'])} B {_num(two['node_B_us_per_delivery'])}"
        )
    if name == "ingest_backends":
        return "; ".join(
            f"{b} WS {_num(r.get(f'{b}_ws_appends_per_s', math.nan))}/s"
            f" REST {_num(r.get(f'{b}_rest_appends_per_s', math.nan))}/s"
            for b in ingest.BACKENDS
            if f"{b}_ws_appends" in r or f"{b}_rest_appends" in r
        )
    if name == "speech" and "calls_1" in r:
        runs = [v for k, v in r.items() if k.startswith("calls_")]
        return (
            "end of speech -> final p50/p90 s: "
            + ", ".join(f"{x['calls']} calls {x['p50_s']}/{x['p90_s']}" for x in runs)
            + f"; {r['tracks_per_core_within_3s']} tracks/core within 3 s; WER {r['wer_one_call']}"
        )
    if name == "dashboard" and "finals_only" in r:
        return "; ".join(_dashboard_phase(phase, f) for phase, f in r.items())
    if name == "ingest":
        return (
            f"WS {_num(r.get('ws_appends_per_s', math.nan))}/s "
            f"({_num(r.get('ws_server_us_per_append', math.nan))} µs/append), "
            f"REST {_num(r.get('rest_appends_per_s', math.nan))}/s "
            f"({_num(r.get('rest_server_us_per_append', math.nan))} µs/append)"
        )
    return str(result.get("error", "?"))


def _figure(results: Any, key: str) -> Any:
    """``results[a][b]`` for the dotted ``key`` "a.b"; None if absent."""
    for part in key.split("."):
        results = results.get(part) if isinstance(results, dict) else None
    return results


def _measured(value: Any) -> bool:
    return isinstance(value, int | float) and not math.isnan(value)


def ratios(name: str, ours: Result, reference: Result) -> dict[str, float]:
    """Scribeline's figure / the reference's, for each figure both runs measured."""
    out: dict[str, float] = {}
    for key in REFERENCE_FIGURES[name]:
        mine = _figure(ours.get("results", {}), key)
        theirs = _figure(reference.get("results", {}), key)
        if _measured(mine) and _measured(theirs) and theirs:
            out[key] = round(mine / theirs, 2)
    return out


def _vs_reference(result: Result, key: str) -> str:
    """' (ref Y, xZ)' after a figure the reference measured too in this run (Z: the ratio)."""
    ref = result.get("reference")
    if not isinstance(ref, dict) or result.get("scenario") not in PAIRED:
        return ""
    if "not_run" in ref:
        return " (ref not run)"
    theirs = _figure(ref.get("results", {}), key)
    if not _measured(theirs):
        return " (ref failed)"
    ratio = result.get("ratio_vs_reference", {}).get(key)
    return f" (ref {_num(theirs)}, {TIMES}{_num(ratio) if ratio is not None else '?'})"


def _dashboard_phase(phase: str, f: dict[str, Any]) -> str:
    """Publish -> text in the page's DOM, what was rendered, the page's and server's cores."""
    lat = f["latency_final"]
    interims = (
        f", interims {f['interims_rendered']}/{f['interims_sent']}" if f["interims_sent"] else ""
    )
    return (
        f"{phase}: final ms p50 {_num(lat['p50_ms'])} p99 {_num(lat['p99_ms'])}"
        f" max {_num(lat['max_ms'])}, finals {f['finals_rendered']}/{f['finals_sent']}{interims},"
        f" page {_num(f['page_renderer_cores'])} cores, server {_num(f['server_cores'])} cores"
    )


def _cluster_headline(r: dict[str, Any]) -> str:
    """p50/p99 in ms per phase (same- and cross-node apart) and node µs per delivery."""
    parts = []
    for phase, f in r.items():
        if "cross_node_p99_ms" in f:
            text = (
                f"same {_num(f['same_node_p50_ms'])}/{_num(f['same_node_p99_ms'])}"
                f" cross {_num(f['cross_node_p50_ms'])}/{_num(f['cross_node_p99_ms'])}"
            )
        else:
            text = f"{_num(f['p50_ms'])}/{_num(f['p99_ms'])}"
        nodes = " ".join(
            f"{k[5]} {_num(v)}"
            for k, v in f.items()
            if k.startswith("node_") and k.endswith("_us_per_delivery")
        )
        parts.append(f"{phase} {text} (µs/delivery {nodes})")
    return "p50/p99 ms: " + "; ".join(parts)


def _flags(result: Result) -> str:
    text = " ".join(result.get("warnings", []))
    flags = []
    if "client side saturated" in text:
        flags.append("client-saturated")
    if "machine saturated" in text:
        flags.append("machine-saturated")
    if "contention" in text:
        flags.append("contention")
    if "failed" in text or "not every" in text or result.get("error"):
        flags.append("ERRORS")
    log = result.get("server_log") or {}
    if log.get("error_lines") or log.get("tracebacks"):
        flags.append("server-errors")
    ref = result.get("reference")
    if isinstance(ref, dict) and "scenario" in ref:
        flags += [f"ref-{flag}" for flag in _flags(ref).split(",") if flag != "-"]
    return ",".join(flags) or "-"


def print_table(results: Sequence[Result]) -> None:
    rows = [("scenario", "store", "run", "result", "target", "met", "flags")]
    for res in results:
        targets = res.get("targets", {})
        target_text = "; ".join(f"{k} {t['limit']}" for k, t in targets.items()) or "-"
        if targets:
            met_text = "yes" if all(t["met"] for t in targets.values()) else "NO"
        else:  # nothing to meet, unless the scenario itself failed
            met_text = "NO" if "error" in res else "-"
        rows.append(
            (
                str(res.get("scenario")),
                str(res.get("backend", "-")),
                str(res.get("run", 1)),
                headline(res),
                target_text,
                met_text,
                _flags(res),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print()
    for n, row in enumerate(rows):
        print(" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if n == 0:
            print("-+-".join("-" * w for w in widths))
    notes = {
        str(res.get("scenario")): res["reference"]["not_run"]
        for res in results
        if isinstance(res.get("reference"), dict) and "not_run" in res["reference"]
    }
    if any("ratio_vs_reference" in res for res in results):
        print(
            f"\n(ref Y, {TIMES}Z): the reference server in the same run; Z = Scribeline / reference"
        )
    for name, why in notes.items():
        print(f"no reference figure for {name}: {why}")


def _run(name: str, scenario: Scenario, quick: bool, n: int) -> Result:
    """One run of one scenario, printed; a failure becomes the result's ``error``."""
    began = time.monotonic()
    try:
        result: Result = run_async(partial(scenario, quick))
    except Exception as exc:
        traceback.print_exc()
        result = {"scenario": name, "error": f"{type(exc).__name__}: {exc}", "results": {}}
    result["run"] = n
    result["wall_seconds"] = round(time.monotonic() - began, 1)
    emit(result, None)
    print(flush=True)
    return result


def _run_paired(name: str, quick: bool, n: int, unavailable: str | None) -> Result:
    """One run of a scenario, with the reference server's right before or after it
    when it serves that scenario too."""
    if name not in PAIRED or unavailable:
        result = _run(name, SCENARIOS[name], quick, n)
        result["reference"] = {"not_run": NO_REFERENCE.get(name, unavailable)}
        return result
    # Odd runs measure Scribeline first, even runs the reference first.
    kinds: list[ServerKind] = ["scribeline", "reference"]
    if n % 2 == 0:
        kinds.reverse()
    done = {kind: _run(name, partial(_paired, PAIRED[name], kind), quick, n) for kind in kinds}
    result, reference = done["scribeline"], done["reference"]
    reference.pop("host", None)
    result["reference"] = reference
    result["reference_order"] = f"{kinds[0]} first"
    result["ratio_vs_reference"] = ratios(name, result, reference)
    for key, limit in VS_REFERENCE_TARGETS.get(name, {}).items():
        ratio = result["ratio_vs_reference"].get(key)
        if ratio is not None:
            result.setdefault("targets", {})[f"{key} vs reference"] = target(ratio, limit, True)
    print(f"ratio vs reference ({kinds[0]} ran first): {result['ratio_vs_reference']}\n")
    return result


def _run_on(
    store: Store | None,
    services: Services | None,
    name: str,
    quick: bool,
    n: int,
    unavailable: str | None,
) -> Result:
    """:func:`_run_paired` with Scribeline on ``store`` (None: the scenario's own
    choice); PostgreSQL's CPU over the run."""
    if store is None:
        return _run_paired(name, quick, n, unavailable)
    if store != "sqlite":
        print(f"-- {name} on {store} --", flush=True)
    with on_store(store, services):
        before = postgres_cpu(services) if services is not None else 0.0
        result = _run_paired(name, quick, n, unavailable)
    result["backend"] = store
    if services is not None and store != "sqlite":
        # The whole scenario run, set-up included (its window counts it under "others").
        result["postgres_cpu_seconds"] = round(postgres_cpu(services) - before, 2)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--only", default=",".join(SCENARIOS), help="comma list of scenarios to run"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of each scenario")
    parser.add_argument("--quick", action="store_true", help="small smoke-test sizes")
    parser.add_argument(
        "--backends",
        default="sqlite",
        help=f"comma list of stores ({', '.join(STORES)}): each of "
        f"{', '.join(sorted(ON_POSTGRES))} runs on each (PostgreSQL from tests/services.py)",
    )
    parser.add_argument("--out", type=Path, help="JSON output (default bench/results/<time>.json)")
    args = parser.parse_args(argv)
    names = chosen(parser, args.only, SCENARIOS, "scenarios")
    stores = cast(list[Store], chosen(parser, args.backends, STORES, "stores", required=True))
    unavailable = reference_unavailable()
    if unavailable and any(name in PAIRED for name in names):
        print(f"reference server not run: {unavailable}", flush=True)
    results: list[Result] = []
    with contextlib.ExitStack() as stack:
        services = None
        if any(s != "sqlite" for s in stores) and any(n in ON_POSTGRES for n in names):
            services = stack.enter_context(Services())
        for name in names:
            for store in stores if name in ON_POSTGRES else [None]:
                for n in range(1, args.repeat + 1):
                    results.append(_run_on(store, services, name, args.quick, n, unavailable))
    print_table(results)
    if stores != ["sqlite"]:
        for name in names:
            if name not in ON_POSTGRES:
                print(f"{name} ran once, on its own stores: {NOT_ON_POSTGRES.get(name, '')}")
    out = args.out or RESULTS_DIR / time.strftime("run-%Y%m%d-%H%M%S.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
