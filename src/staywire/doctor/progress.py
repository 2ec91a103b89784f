"""The progress display of the long waits (heartbeats, idle survival): rich on a
terminal (stderr, so ``--json`` on stdout stays clean), nothing otherwise."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Protocol

__all__ = ["NoProgress", "RichProgress", "Waits"]

Update = Callable[[float], None]  # seconds waited so far


class Waits(Protocol):
    def wait(self, label: str, total: float) -> contextlib.AbstractContextManager[Update]: ...


class NoProgress:
    @contextlib.contextmanager
    def wait(self, label: str, total: float) -> Iterator[Update]:
        yield lambda _: None


class RichProgress:
    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                  TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
                                  TimeElapsedColumn(), console=Console(stderr=True),
                                  transient=True)

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    @contextlib.contextmanager
    def wait(self, label: str, total: float) -> Iterator[Update]:
        task = self._progress.add_task(label, total=max(total, 0.1))
        try:
            yield lambda done: self._progress.update(task, completed=min(done, total))
        finally:
            self._progress.remove_task(task)
