"""Strict parsing of integers from text (paths, query strings, cursors, CLI ids).

``str.isdigit()`` accepts characters ``int()`` refuses (``"²"``) and ``int()``
accepts what no id looks like (``"+1"``, ``" 1"``, ``"1_0"``, other scripts'
digits). An id here is 1 to 19 ASCII digits within a signed 64-bit integer,
which is what every store can hold.
"""

from __future__ import annotations

import re

__all__ = ["MAX_INT64", "parse_int"]

MAX_INT64 = 2**63 - 1

_DIGITS = re.compile(r"[0-9]{1,19}")


def parse_int(text: str | None, lo: int = 0, hi: int = MAX_INT64) -> int | None:
    """``text`` as an integer in ``[lo, hi]``, or None if it is not one."""
    if text is None or not _DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if lo <= value <= hi else None
