"""The browser client's codes.js is generated from the server's enum and must not drift."""

from __future__ import annotations

import subprocess
import sys

from staywire.protocol.codes import CloseCode, ErrorCode, js_module

from tests.browser.conftest import STATIC


def test_committed_codes_js_equals_the_generated_module() -> None:
    committed = (STATIC / "codes.js").read_text(encoding="utf-8")
    assert committed == js_module(), (
        "src/staywire/static/codes.js is stale: regenerate it with "
        "`python -m staywire.protocol.codes --js > src/staywire/static/codes.js`")


def test_the_generator_cli_prints_the_same_module() -> None:
    out = subprocess.run([sys.executable, "-m", "staywire.protocol.codes", "--js"],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    assert out == (STATIC / "codes.js").read_text(encoding="utf-8")


def test_every_code_is_in_the_module() -> None:
    text = (STATIC / "codes.js").read_text(encoding="utf-8")
    for code in CloseCode:
        assert f'"{code.name}": {int(code)}' in text
    for err in ErrorCode:
        assert f'"{err.name}": "{err.value}"' in text
