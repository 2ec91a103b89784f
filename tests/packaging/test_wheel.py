"""The wheel, installed in a fresh venv, works on its own: server, client and static files.

The editable install the suite runs on reads the source tree, so a module or a static file
missing from the wheel, or a runtime dependency missing from pyproject.toml, goes unseen
there. Here the root project is built into a wheel from a copy of the tree, installed into a
new venv without system site-packages, and used from a directory outside the tree.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # runs first (tests/conftest.py)
STATIC = ROOT / "src" / "staywire" / "static"
CLIENT_SCRIPT = Path(__file__).with_name("wheel_client.py")
# Build from a copy without these: a stale build/ or egg-info would leak old files into the
# wheel (setuptools does not clean build/lib), and the venvs are large and irrelevant.
_NOT_COPIED = shutil.ignore_patterns(".git", ".venv*", "build", "dist", "*.egg-info",
                                     "__pycache__", "node_modules", ".*_cache", ".hypothesis",
                                     "test-artifacts")


def _run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, f"{argv} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class InstalledServer(ServerProcess):
    """The suite's server process, started with the venv's ``staywire`` console script."""

    def __init__(self, executable: Path, options: dict[str, Any]) -> None:
        self.executable = executable
        super().__init__(options)

    def argv(self) -> list[str]:
        argv = super().argv()
        assert argv[:3] == [sys.executable, "-m", "staywire"], argv
        return [str(self.executable), *argv[3:]]


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with only the wheel (and what it depends on) installed."""
    base = tmp_path_factory.mktemp("wheel")
    tree, wheels, env_dir = base / "tree", base / "wheels", base / "venv"
    shutil.copytree(ROOT, tree, ignore=_NOT_COPIED)
    # An absolute path: `pip wheel tree` would look for a package named "tree" on the index.
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels),
          f"{tree}/"], timeout=300)
    built = sorted(wheels.glob("staywire-*.whl"))
    assert len(built) == 1, built
    _run([sys.executable, "-m", "venv", str(env_dir)], timeout=120)
    _run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", str(built[0])],
         timeout=600)
    return env_dir


@pytest.fixture
def outside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A working directory outside the tree, and no PYTHON* variable pointing back into it."""
    for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE"):
        monkeypatch.delenv(name, raising=False)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield cwd


# About 12 s here; the suite's 180 s would not cover pip fetching dependencies on a slow link,
# and the fixture's setup counts against the test's timeout.
@pytest.mark.timeout(600)
def test_installed_wheel_serves_and_round_trips(venv: Path, outside: Path) -> None:
    python = venv / "bin" / "python"
    located = _run([str(python), "-I", "-c", "import staywire; print(staywire.__file__)"],
                   cwd=outside, timeout=60).stdout.strip()
    module = Path(located).resolve()
    assert module.is_relative_to(venv.resolve()), module
    assert not module.is_relative_to(ROOT), module

    srv = InstalledServer(venv / "bin" / "staywire",
                          {"allow_anonymous": True, "anonymous_channels": ["*"]})
    try:
        srv.start()
        # Every file the browser loads comes out of the wheel's package data, byte for byte.
        served = sorted(p for p in STATIC.iterdir()
                        if p.suffix in {".js", ".css", ".html"} or p.name.endswith(".d.ts"))
        assert any(p.name == "staywire.js" for p in served)
        for path in served:
            status, body = _get(f"{srv.http}/{path.name}")
            assert status == 200, f"/{path.name}: HTTP {status} (missing from the wheel?)"
            assert body == path.read_bytes(), f"/{path.name} differs from the source"

        proc = _run([str(python), "-I", str(CLIENT_SCRIPT), srv.url, "room:wheel"],
                    cwd=outside, timeout=60)
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        log = srv.log()
        srv.close()
    assert Path(result["module"]).resolve().is_relative_to(venv.resolve()), result
    assert Path(result["prefix"]).resolve() == venv.resolve()
    assert result["data"] == {"text": "from the wheel"}
    assert result["offset"] == result["published_offset"] == 1
    assert "Traceback" not in log, log
