"""The browser client as an npm package, packed from the same files the server serves.

``src/staywire/static/package.json`` makes the served directory an npm package: `npm pack`
it, install the tarball into a throwaway project, and ``import ... from 'staywire'`` must
work there, through ``exports``, with the modules the entry point imports and nothing of
the demo page.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import tomllib
from pathlib import Path

import pytest

import staywire

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "src" / "staywire" / "static"
CONSUMER = Path(__file__).with_name("npm_consumer.mjs")
DEMO_FILES = {"index.html", "demo.js", "demo.css"}

needs_npm = pytest.mark.skipif(
    shutil.which("npm") is None or shutil.which("node") is None,
    reason="npm and node are needed to pack the browser client and load it")

_IMPORT = re.compile(r"""(?:\bfrom|\bimport)\s*\(?\s*['"]\./([A-Za-z0-9_\-]+\.js)['"]""")


def _manifest() -> dict[str, object]:
    data: dict[str, object] = json.loads((STATIC / "package.json").read_text())
    return data


def _client_modules() -> set[str]:
    """staywire.js and every module it imports, directly or not (relative imports only)."""
    seen: set[str] = set()
    todo = ["staywire.js"]
    while todo:  # bounded by the files in static/
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += _IMPORT.findall((STATIC / name).read_text())
    return seen


def _npm_env(tmp_path: Path) -> dict[str, str]:
    # A cache of its own: the test neither reads nor fills the user's ~/.npm.
    env = dict(os.environ)
    env.update(npm_config_cache=str(tmp_path / "npm-cache"), npm_config_update_notifier="false",
               npm_config_fund="false", npm_config_audit="false")
    return env


def _npm(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(["npm", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f"npm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_one_version_everywhere() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    version = pyproject["project"]["version"]
    js = re.search(r"^export const VERSION = '([^']+)';$", (STATIC / "staywire.js").read_text(),
                   re.MULTILINE)
    assert js is not None, "staywire.js no longer exports VERSION"
    assert _manifest()["version"] == version
    assert staywire.__version__ == version
    assert js.group(1) == version


def test_manifest_points_at_the_served_files() -> None:
    manifest = _manifest()
    assert manifest["name"] == "staywire"
    assert manifest["type"] == "module"
    assert "private" not in manifest
    assert not manifest.get("dependencies") and not manifest.get("peerDependencies")
    assert manifest["exports"] == {".": {"types": "./staywire.d.ts", "default": "./staywire.js"},
                                   "./package.json": "./package.json"}
    files = manifest["files"]
    assert isinstance(files, list)
    assert set(files) == _client_modules() | {"staywire.d.ts"}
    assert all((STATIC / name).is_file() for name in files)


@needs_npm
def test_packed_tarball_installs_and_imports_by_name(tmp_path: Path) -> None:
    env = _npm_env(tmp_path)
    out = tmp_path / "packed"
    out.mkdir()
    packed = json.loads(_npm(["pack", "--json", "--pack-destination", str(out), str(STATIC)],
                             tmp_path, env))
    tarball = out / packed[0]["filename"]
    with tarfile.open(tarball) as tar:
        names = {n.removeprefix("package/") for n in tar.getnames()}
    assert "staywire.d.ts" in names
    assert not names & DEMO_FILES, f"the demo page was packed: {names & DEMO_FILES}"
    assert names == _client_modules() | {"staywire.d.ts", "package.json"}

    project = tmp_path / "consumer"
    project.mkdir()
    (project / "package.json").write_text(json.dumps(
        {"name": "consumer", "private": True, "type": "module"}))
    # A local tarball without dependencies installs with no network at all.
    _npm(["install", "--offline", "--no-audit", "--no-fund", "--ignore-scripts", str(tarball)],
         project, env)
    shutil.copy(CONSUMER, project / CONSUMER.name)
    proc = subprocess.run(["node", CONSUMER.name], cwd=project, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, f"the consumer failed:\n{proc.stdout}\n{proc.stderr}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])

    installed = project / "node_modules" / "staywire"
    assert result["entry"] == (installed / "staywire.js").as_uri()
    assert Path(result["manifest"]) == installed / "package.json"
    assert result["version"] == _manifest()["version"]
    assert result["protocols"] == ["staywire.v2", "staywire.v1"]
    assert result["frames"][0] == "auth"
    assert {"sub", "pub"} <= set(result["frames"])
    assert result["received"] == [{"data": {"text": "hello"}, "offset": 1}]
    assert result["ack"] == {"epoch": "E1", "offset": 2, "duplicate": False}
    assert result["states"][-1] == "CLOSED"
