"""The wheel, built from the repository, installed in a fresh virtualenv and run there.

``python -m build`` makes the sdist and, from it, the wheel, as a release does. The
wheel must carry every file of the package (migrations, static files, the demo's
recordings) and the licence. Installed with the ``server`` extra into a new
virtualenv outside the repository, ``scribeline demo``, run from a folder outside
the repository, must migrate its database and serve the REST API, the dashboard and
(when the application has them) the API docs, and stop cleanly on SIGTERM.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from urllib.parse import urljoin

import pytest

from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "scribeline"
BUILD_TIMEOUT = 120.0
INSTALL_TIMEOUT = 300.0
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
HTTP_TIMEOUT = 10.0
#: What pip says when it cannot reach the package registry (not a bad requirement).
OFFLINE = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name"
    r" resolution|Network is unreachable|Max retries exceeded|ConnectTimeout|ReadTimeout"
)


def _clean_env() -> dict[str, str]:
    """This process's environment without anything that points Python at the
    repository or configures Scribeline."""
    dropped = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSAFEPATH")
    env = {
        k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("SCRIBELINE_")
    }
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _run(argv: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=timeout
    )


def _build_wheel(outdir: Path) -> Path:
    """The sdist and the wheel built from it, with this virtualenv's setuptools (no
    isolated build environment to install: the `test` extra has the build backend)."""
    build = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(outdir), str(ROOT)]
    result = _run(build, outdir, BUILD_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(list(outdir.glob("scribeline-*.tar.gz"))) == 1
    (wheel,) = outdir.glob("scribeline-*-py3-none-any.whl")
    return wheel


def _package_files() -> set[str]:
    """Every file of the package in the repository, as the wheel names it."""
    return {
        path.relative_to(PACKAGE.parent).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file()
        and path.suffix != ".pyc"
        and not any(p == "__pycache__" or p.startswith(".") for p in path.parts)
    }


def _check_wheel_contents(wheel: Path) -> None:
    """The whole package, the licence, and the SPDX licence in the metadata."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        shipped = {n for n in names if n.startswith("scribeline/")}
        (license_file,) = (n for n in names if n.endswith(".dist-info/licenses/LICENSE"))
        assert archive.read(license_file) == (ROOT / "LICENSE").read_bytes()
        (metadata,) = (n for n in names if n.endswith(".dist-info/METADATA"))
        assert "License-Expression: Apache-2.0" in archive.read(metadata).decode()
    expected = _package_files()
    assert shipped == expected, (
        f"missing from the wheel: {sorted(expected - shipped)}; "
        f"not in the repository: {sorted(shipped - expected)}"
    )
    # What the server reads by path at run time, named so a failure says which.
    for name in (
        "scribeline/migrations/env.py",
        "scribeline/migrations/script.py.mako",
        "scribeline/migrations/versions/0001_initial.py",
        "scribeline/dashboard/static/index.html",
        "scribeline/demo/recordings/call.json",
        "scribeline/py.typed",
    ):
        assert name in shipped, name


def _install(wheel: Path, venv: Path, cwd: Path) -> Path:
    """A new virtualenv (no system site-packages) with the wheel and its ``server``
    extra; its python. This virtualenv's pip installs into it (``--python``): the
    same install as the new one's own pip would do, without copying pip in first."""
    result = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd, 60)
    assert result.returncode == 0, result.stderr
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install"]
    result = _run([*pip, "-q", "--no-compile", f"{wheel}[server]"], cwd, INSTALL_TIMEOUT)
    if result.returncode != 0:
        output = result.stdout + result.stderr
        ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
        if not ci and OFFLINE.search(output):
            pytest.skip(f"pip cannot reach the package registry: {output.strip()[-300:]}")
        pytest.fail(output)
    return python


def _get(url: str, key: str | None = None) -> tuple[int, str, bytes]:
    """Status, content type and body of a GET (redirects followed)."""
    request = urllib.request.Request(url)
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


class _Demo:
    """``scribeline demo`` from the virtualenv, its stdout read line by line."""

    def __init__(self, scribeline: Path, cwd: Path, port: int) -> None:
        self.base_url = f"http://127.0.0.1:{port}"
        self.data_dir = cwd / "data"
        self.stderr = cwd / "stderr.log"
        self.lines: queue.Queue[str | None] = queue.Queue()
        argv = [str(scribeline), "demo", "--host", "127.0.0.1", "--port", str(port)]
        with open(self.stderr, "wb") as stderr:
            self.proc = subprocess.Popen(
                [*argv, "--data-dir", str(self.data_dir)],
                cwd=cwd,
                env=_clean_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        threading.Thread(target=self._pump, name="demo-stdout", daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self.lines.put(None)

    def _died(self) -> str:
        return f"the demo exited ({self.proc.returncode}): {self.stderr.read_text()[-2000:]}"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self.proc.poll() is None, self._died()
            try:
                if _get(f"{self.base_url}/readyz")[0] == 200:
                    return
            except OSError:
                pass  # not listening yet
            assert time.monotonic() < deadline, "not ready in time: " + self._died()
            time.sleep(0.1)  # polling another process's port: no event to await

    def expect(self, pattern: str) -> re.Match[str]:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"the demo did not print {pattern!r} in time")
            assert line is not None, self._died()
            found = re.search(pattern, line)
            if found:
                return found

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; its exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=STOP_TIMEOUT)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)


def _check_calls_and_migrations(demo: _Demo, key: str) -> None:
    """The REST API serves the demo's calls, on a schema at the newest migration."""
    status, _, body = _get(f"{demo.base_url}/v1/calls", key)
    assert status == 200, body
    assert json.loads(body)["calls"], "the demo's calls are listed"
    newest = max(p.name.split("_")[0] for p in (PACKAGE / "migrations" / "versions").glob("0*.py"))
    with sqlite3.connect(demo.data_dir / "scribeline.db") as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(newest,)]


def _check_dashboard(demo: _Demo) -> None:
    """The page and one of its scripts, the files of the repository, from the wheel."""
    static = PACKAGE / "dashboard" / "static"
    for path, name, kind in (
        ("/", "index.html", "text/html"),  # redirected to /dashboard/
        ("/dashboard/js/app.js", "js/app.js", "text/javascript"),
    ):
        status, content_type, body = _get(demo.base_url + path)
        assert status == 200, (path, body)
        assert content_type.startswith(kind), (path, content_type)
        assert body == (static / name).read_bytes(), path


def _app_routes(path: str) -> bool:
    """Whether the repository's application serves ``path``."""
    return any(f'"{path}"' in p.read_text("utf-8") for p in (PACKAGE / "api").glob("*.py"))


def _check_api_docs(demo: _Demo) -> None:
    """``/openapi.json``, and ``/docs`` with every file its page loads from the server."""
    status, _, body = _get(f"{demo.base_url}/openapi.json")
    assert status == 200, body
    assert json.loads(body)["openapi"].startswith("3.1")
    status, content_type, page = _get(f"{demo.base_url}/docs")
    assert status == 200 and content_type.startswith("text/html"), page
    refs = re.findall(r'(?:src|href)="([^"#?]+)', page.decode())
    local = [r for r in refs if not r.startswith(("http:", "https:", "//", "data:"))]
    assert local, "the docs page loads its scripts and styles from the server"
    for ref in local:
        status, _, asset = _get(urljoin(f"{demo.base_url}/docs", ref))
        assert status == 200 and asset, ref


# About 20 s on an idle machine (the install most of it); room for a loaded one.
@pytest.mark.timeout(240)
def test_the_wheel_installs_in_a_fresh_virtualenv_and_runs_the_demo(tmp_path: Path) -> None:
    """Build, check the wheel's files, install it with the server extra into a new
    virtualenv, run ``scribeline demo`` from outside the repository: the installed
    package runs (not the repository's), migrations apply, the API, the dashboard
    and the API docs are served, and SIGTERM stops it with exit code 0."""
    outside = tmp_path / "elsewhere"
    dist = tmp_path / "dist"
    outside.mkdir()
    dist.mkdir()
    assert not outside.resolve().is_relative_to(ROOT)

    wheel = _build_wheel(dist)
    _check_wheel_contents(wheel)
    venv = tmp_path / "venv"
    python = _install(wheel, venv, outside)

    where = _run([str(python), "-c", "import scribeline; print(scribeline.__file__)"], outside, 30)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout

    demo = _Demo(venv / "bin" / "scribeline", outside, free_port())
    try:
        demo.wait_ready()
        key = demo.expect(r"Read-only demo key: (scl_\S+)$").group(1)
        _check_calls_and_migrations(demo, key)
        _check_dashboard(demo)
        if _app_routes("/openapi.json") or _app_routes("/docs"):
            _check_api_docs(demo)
        assert demo.stop() == 0, demo.stderr.read_text()[-2000:]
    finally:
        demo.kill()
