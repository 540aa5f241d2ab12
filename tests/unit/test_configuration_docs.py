"""docs/configuration.md names every setting the server reads (``Settings``).

A table row may name several settings that share a prefix, the first in full and
the others by their end: ``SCRIBELINE_WEBHOOK_BACKOFF``, ``_BACKOFF_MAX``."""

from __future__ import annotations

import re
from pathlib import Path

from scribeline.config import Settings

DOC = Path(__file__).parents[2] / "docs" / "configuration.md"
_SPAN = re.compile(r"`([A-Z_][A-Z0-9_]*)`")


def documented(text: str) -> set[str]:
    """The setting names the document's lines give, the short forms expanded."""
    names: set[str] = set()
    for line in text.splitlines():
        spans = _SPAN.findall(line)
        full = [s for s in spans if s.startswith("SCRIBELINE_")]
        names.update(full)
        if not full:
            continue
        first = full[0].split("_")
        for short in (s for s in spans if s.startswith("_")):
            # every prefix of the first name (past SCRIBELINE) that the end may follow
            names.update("_".join(first[:i]) + short for i in range(2, len(first)))
    return names


def test_every_setting_is_in_the_configuration_doc() -> None:
    names = documented(DOC.read_text())
    missing = [
        f"SCRIBELINE_{field.upper()}"
        for field in Settings.model_fields
        if f"SCRIBELINE_{field.upper()}" not in names
    ]
    assert missing == []


def test_short_forms_expand_only_after_a_full_name() -> None:
    """The check can fail: a name not written is not found."""
    row = "| `SCRIBELINE_WEBHOOK_BACKOFF`, `_BACKOFF_MAX` | `5`, `7200` | ... |"
    assert {"SCRIBELINE_WEBHOOK_BACKOFF", "SCRIBELINE_WEBHOOK_BACKOFF_MAX"} <= documented(row)
    assert "SCRIBELINE_WEBHOOK_TIMEOUT" not in documented(row)
    assert documented("| `_BACKOFF_MAX` | x |") == set()
