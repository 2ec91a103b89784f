"""What the person running ``staywire bench`` sees: a rich progress bar, or plain lines."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["Ui"]


class Ui:
    """The rich progress bar, or plain lines when rich is missing or it is turned off."""

    def __init__(self, enabled: bool, total: int) -> None:
        self._progress: Any = None
        self._task: Any = None
        self._console: Any = None
        if enabled:
            try:
                from rich.console import Console
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    SpinnerColumn,
                    TextColumn,
                    TimeElapsedColumn,
                )
            except ImportError:  # pragma: no cover - rich is in the bench extra
                pass
            else:
                self._console = Console(stderr=True)
                self._progress = Progress(
                    SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[detail]}"),
                    console=self._console, transient=False)
                self._task = self._progress.add_task("staywire bench", total=total, detail="")

    def __enter__(self) -> Ui:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def set_total(self, total: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, total=total)

    def step(self, description: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=description, detail="")
        else:
            print(f"[bench] {description}", file=sys.stderr, flush=True)

    def detail(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, detail=text)

    def advance(self) -> None:
        if self._progress is not None:
            self._progress.advance(self._task)

    def log(self, text: str) -> None:
        if self._console is not None:
            self._console.log(text)
        else:
            print(f"[bench] {text}", file=sys.stderr, flush=True)
