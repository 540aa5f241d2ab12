"""Optional: sample the server with py-spy during each measurement window.

Set ``BENCH_PYSPY`` to a py-spy executable (``pip install --target /tmp/pyspy py-spy``
gives ``/tmp/pyspy/bin/py-spy``) and every scenario records the server over its
measurement window, in py-spy's collapsed-stack ("raw") format, under
``BENCH_PYSPY_OUT`` (default bench/results/profiles/); ``BENCH_PYSPY_ARGS`` adds
py-spy options (``--native`` for C frames). Sampling costs the server a
little CPU, so profiled runs are marked and are not for the headline numbers.

``python -m bench.profile FILE`` prints the hottest functions of a recording.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

__all__ = ["Profiler", "hottest", "main"]

_DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "profiles"


class Profiler:
    """py-spy attached to one process, if ``BENCH_PYSPY`` is set; otherwise a no-op."""

    def __init__(self, pid: int, label: str = "server") -> None:
        self.exe = os.environ.get("BENCH_PYSPY", "")
        self.pid = pid
        out_dir = Path(os.environ.get("BENCH_PYSPY_OUT", str(_DEFAULT_OUT)))
        self.path = out_dir / f"{label}-{pid}-{time.strftime('%H%M%S')}.txt"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.exe)

    def start(self) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        extra = os.environ.get("BENCH_PYSPY_ARGS", "").split()  # e.g. "--native"
        argv = [self.exe, "record", "--pid", str(self.pid), "--format", "raw", "--rate", "200"]
        argv += ["--output", str(self.path), *extra]
        if "--native" not in extra:  # py-spy cannot unwind native frames without pausing
            argv.append("--nonblocking")
        self._proc = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.3)  # attach before the window opens

    def stop(self) -> Path | None:
        if self._proc is None:
            return None
        self._proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            self._proc.wait(30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            return None
        return self.path if self.path.exists() else None


def _frames(stack: str) -> list[str]:
    # py-spy raw lines: "frame;frame;frame count", frames as "func (file:line)".
    out = []
    for frame in stack.split(";"):
        name, _, where = frame.partition(" (")
        where = where.rstrip(")")
        file = where.rsplit(":", 1)[0]
        short = "/".join(Path(file).parts[-2:]) if file else "?"
        out.append(f"{name} ({short})")
    return out


def hottest(path: Path, top: int = 15) -> dict[str, list[tuple[str, float]]]:
    """The functions with the most samples: on top of the stack (self) and anywhere (total)."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = _frames(stack)
        samples += count
        own[frames[-1]] += count
        for name in set(frames):
            total[name] += count
    if not samples:
        return {"self": [], "total": []}
    return {
        "self": [(n, round(100 * c / samples, 1)) for n, c in own.most_common(top)],
        "total": [(n, round(100 * c / samples, 1)) for n, c in total.most_common(top)],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Summarize a py-spy raw recording.")
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args(argv)
    hot = hottest(args.file, args.top)
    for kind in ("self", "total"):
        print(f"-- % of samples, {kind} --")
        for name, pct in hot[kind]:
            print(f"{pct:6.1f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
