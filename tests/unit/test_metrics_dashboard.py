"""The Grafana dashboard and the operations guide name only metrics the server
exports, and the guide lists every one of them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from prometheus_client.parser import text_string_to_metric_families

from scribeline.broker.memory import MemoryBroker
from scribeline.hub import Hub
from scribeline.ingest.publish import Publisher
from scribeline.metrics import Metrics
from scribeline.registry import Registry

DOCS = Path(__file__).resolve().parents[2] / "docs"
NAME = re.compile(r"\bscribeline_[a-z_]+")
#: The sample names of each metric type, after the family's name.
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def _exported() -> tuple[set[str], set[str]]:
    """(metric family names, series names) of a server with every part present."""
    broker = MemoryBroker()
    storage = SimpleNamespace(observe_commits=lambda hook: None)
    engine = SimpleNamespace(queue_depth=0, busy_workers=0, open_tracks=0, on_decode=None)
    services = SimpleNamespace(
        registry=Registry(20, 20),
        hub=Hub(broker, cast(Any, storage), lambda e, m: None),
        publisher=Publisher(broker),
        broker=broker,
        storage=storage,
        media=SimpleNamespace(local=engine),
    )
    metrics = Metrics()
    metrics.watch(cast(Any, services))
    families, samples = set(), set()
    for family in text_string_to_metric_families(metrics.render().decode()):
        families.add(family.name)
        suffixes = _SUFFIXES.get(family.type, ("",))
        samples.update(family.name + suffix for suffix in suffixes)  # a series with no labels yet
    return families, samples


async def test_every_dashboard_query_names_exported_metrics() -> None:
    """Each panel's expressions use metrics that exist, over a Prometheus data source
    chosen by a variable; every exported family has a panel."""
    dashboard = json.loads((DOCS / "grafana" / "scribeline.json").read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    families, samples = _exported()
    used: set[str] = set()
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            names = set(NAME.findall(target["expr"]))
            assert names, target["expr"]
            assert names <= samples, (panel["title"], names - samples)
            used |= names
    shown = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in used}
    assert families <= shown, families - shown


async def test_the_operations_guide_lists_every_metric() -> None:
    """Each exported family is in the guide's Metrics table, and nothing else is."""
    guide = (DOCS / "operations.md").read_text()
    section = guide.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    listed = {
        re.sub(r"_total$", "", n) for n in re.findall(r"^\| `(scribeline_\w+)`", section, re.M)
    }
    families, _ = _exported()
    assert listed == families
