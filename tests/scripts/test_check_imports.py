"""The import-circle check that ``make test`` runs over src/staywire (scripts/check_imports.py)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_imports.py"

_spec = importlib.util.spec_from_file_location("check_imports", SCRIPT)
assert _spec is not None and _spec.loader is not None
check_imports = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_imports)


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_circle_hidden_under_type_checking_is_found(tmp_path: Path) -> None:
    root = _package(tmp_path, {
        "__init__.py": "",
        "a.py": "from pkg.b import B\n",
        "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import A\n",
    })
    assert [circle for circle, _ in check_imports.check(root)] == [["pkg.a", "pkg.b", "pkg.a"]]


def test_relative_function_local_and_module_imports_count(tmp_path: Path) -> None:
    root = _package(tmp_path, {
        "__init__.py": "",
        "sub/__init__.py": "",
        "sub/x.py": "def f():\n    from .. import top\n",
        "top.py": "from pkg.sub import x\n",  # ``from package import module``: edge to the module
    })
    assert [circle for circle, _ in check_imports.check(root)] == [
        ["pkg.sub.x", "pkg.top", "pkg.sub.x"]]


def test_a_package_init_reexporting_its_modules_is_no_circle(tmp_path: Path) -> None:
    root = _package(tmp_path, {
        "__init__.py": "from pkg.a import A\nfrom pkg.b import B\n",
        "a.py": "class A: ...\n",
        "b.py": "from pkg.a import A\nclass B(A): ...\n",
    })
    assert check_imports.check(root) == []


def test_the_protocol_core_importing_a_broker_is_an_upward_import(tmp_path: Path) -> None:
    root = _package(tmp_path, {
        "staywire/__init__.py": "",
        "staywire/brokers/__init__.py": "",
        "staywire/brokers/base.py": "class Publication: ...\n",
        "staywire/protocol/__init__.py": "",
        "staywire/protocol/recovery.py": "from staywire.brokers.base import Publication\n",
    })
    graph = check_imports.graph_of(root / "staywire")
    assert check_imports.violations(graph) == [
        "staywire.protocol.recovery imports staywire.brokers.base "
        "(staywire.protocol must not import staywire.brokers)"]


def test_the_runtime_package_has_no_import_circle() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), str(ROOT / "src" / "staywire")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 import circle(s)" in result.stdout
