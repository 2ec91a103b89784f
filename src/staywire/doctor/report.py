"""The report: a rich table for people, a JSON document of a stable schema for CI
(``SCHEMA``, documented in docs/doctor.md)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from staywire.doctor.compare import Difference
from staywire.doctor.model import Report, Status

__all__ = ["SCHEMA", "as_json", "exit_code", "render"]

SCHEMA = "staywire-doctor/1"
_STYLE = {Status.PASS: "bold green", Status.WARN: "bold yellow", Status.FAIL: "bold red",
          Status.SKIP: "dim"}


def exit_code(report: Report, direct: Report | None = None) -> int:
    codes = [report.exit_code()] + ([direct.exit_code()] if direct is not None else [])
    return 2 if 2 in codes else max(codes)


def as_json(report: Report, direct: Report | None = None,
            diffs: list[Difference] | None = None) -> str:
    doc: dict[str, Any] = {"schema": SCHEMA, **report.as_json()}
    doc["compare"] = None if direct is None else {
        "direct": direct.as_json(), "differences": [d.as_json() for d in diffs or []]}
    doc["exit_code"] = exit_code(report, direct)
    return json.dumps(doc, indent=2)


def _table(report: Report) -> Table:
    preset = f", preset {report.preset} ({report.preset_source})" if report.preset else ""
    table = Table(title=f"staywire doctor {report.url}{preset}", show_lines=True,
                  title_justify="left")
    table.add_column("", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("what it saw / why it matters")
    for c in report.checks:
        cell = Text(c.saw)
        cell.append("\n" + c.why, style="dim")
        table.add_row(Text(c.status.value, style=_STYLE[c.status]), c.title, cell)
    return table


def render(console: Console, report: Report, direct: Report | None = None,
           diffs: list[Difference] | None = None) -> None:
    if report.error is not None:
        console.print(f"[bold red]staywire doctor: cannot open a WebSocket:[/] "
                      f"{report.error[1]}", highlight=False)
    console.print(_table(report))
    fixes = [c for c in report.checks if c.fix and c.status in (Status.WARN, Status.FAIL)]
    for c in fixes:
        console.print(f"[bold]fix[/] {c.id} ({c.status.value}):", highlight=False)
        console.print(Padding(Text(c.fix or ""), (0, 0, 0, 4)))
    if direct is not None:
        console.print(f"\n[bold]compared with the backend {direct.url}[/]:", highlight=False)
        if not diffs:
            console.print("  no difference: the proxy changes nothing the checks see")
        for d in diffs or []:
            console.print(Text(f"  {d.id}: {d.note}\n    through the proxy: {d.proxied}\n"
                               f"    direct:            {d.direct}"))
            if d.fix:
                console.print(Padding(Text("fix:\n" + d.fix), (0, 0, 0, 4)))
    n = report.counts()
    console.print(f"{n['pass']} PASS, {n['warn']} WARN, {n['fail']} FAIL, {n['skip']} SKIP "
                  f"in {report.duration:.2f} s; exit {exit_code(report, direct)}",
                  highlight=False)
