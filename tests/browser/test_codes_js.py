"""The browser client's codes.js is generated from the server's enum and must not drift."""

from __future__ import annotations

import subprocess
import sys

from staywire.protocol.codes import CloseCode, ErrorCode
from staywire.protocol.envelope import CHANNEL_PATTERN, SUBPROTOCOL
from staywire.protocol.jsgen import js_module
from staywire.protocol.stream import MAX_ID

from tests.browser.conftest import STATIC


def test_committed_codes_js_equals_the_generated_module() -> None:
    committed = (STATIC / "codes.js").read_text(encoding="utf-8")
    assert committed == js_module(), (
        "src/staywire/static/codes.js is stale: regenerate it with "
        "`python -m staywire.protocol.jsgen > src/staywire/static/codes.js`")


def test_the_generator_cli_prints_the_same_module() -> None:
    out = subprocess.run([sys.executable, "-m", "staywire.protocol.jsgen"],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    assert out == (STATIC / "codes.js").read_text(encoding="utf-8")


def test_every_code_is_in_the_module() -> None:
    text = (STATIC / "codes.js").read_text(encoding="utf-8")
    for code in CloseCode:
        assert f'"{code.name}": {int(code)}' in text
    for err in ErrorCode:
        assert f'"{err.name}": "{err.value}"' in text


def test_protocol_constants_reach_the_module_and_mean_the_same_in_node(tmp_path) -> None:
    # Node evaluates the generated module: the same subprotocol, the same limit, and the
    # regular expression accepts and refuses exactly the names the server's does.
    import json
    import re
    import shutil

    import pytest

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (make system-deps)")
    names = ["room", "room\n", "a:b/c=d@e.f-g_h", "x" * 128, "x" * 129, "", "a b", "é", "a\nb", "a*"]
    script = (f"import * as m from {json.dumps((STATIC / 'codes.js').as_uri())};\n"
              f"const names = {json.dumps(names)};\n"
              "console.log(JSON.stringify({sub: m.SUBPROTOCOL, max: m.MAX_ID,"
              " ok: names.map((n) => m.CHANNEL_PATTERN.test(n))}));\n")
    (tmp_path / "probe.mjs").write_text(script)
    out = json.loads(subprocess.run([node, str(tmp_path / "probe.mjs")], capture_output=True,
                                    text=True, check=True, timeout=30).stdout)
    assert out["sub"] == SUBPROTOCOL
    assert out["max"] == MAX_ID
    server = re.compile(CHANNEL_PATTERN)
    assert out["ok"] == [server.fullmatch(n) is not None for n in names]


def test_the_hand_written_types_name_every_code() -> None:
    # staywire.d.ts is written by hand; a Record over fewer keys still type-checks
    # against the module, so only this test sees a code the types forgot.
    import re

    text = (STATIC / "staywire.d.ts").read_text(encoding="utf-8")
    close = re.search(r"const CloseCode: Readonly<\{(.*?)\}>", text, re.S)
    errors = re.search(r"const ErrorCode: Readonly<Record<(.*?),\s*string>>", text, re.S)
    assert close is not None and errors is not None
    declared_close = dict(re.findall(r"(\w+): (\d+)", close.group(1)))
    assert declared_close == {c.name: str(int(c)) for c in CloseCode}
    assert set(re.findall(r"'(\w+)'", errors.group(1))) == {e.name for e in ErrorCode}
