"""A run that measured only some parts rewrites the results file keeping the others, in
the file's own order (so that a rewrite's diff is only what it ran)."""

from __future__ import annotations

import json
from pathlib import Path

from staywire_bench.harness import keep_previous


def test_the_other_parts_are_kept_in_the_files_order(tmp_path: Path) -> None:
    path = tmp_path / "latest.json"
    previous = {"proxy": {"p": 1}, "meta": {"m": 1}, "summary": {"s": 1},
                "scaleout": {"o": 1}}
    path.write_text(json.dumps(previous))
    merged = keep_previous({"sizing": {"z": 2}, "scaleout": {"o": 2}}, path)
    assert list(merged) == ["proxy", "meta", "summary", "scaleout", "sizing"]
    assert merged["scaleout"] == {"o": 2} and merged["proxy"] == {"p": 1}
    assert merged["meta"] == {"m": 1}


def test_no_previous_file_keeps_nothing(tmp_path: Path) -> None:
    assert keep_previous({"sizing": {}}, tmp_path / "none.json") == {"sizing": {}}
