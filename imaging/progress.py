"""Progress of long work: one ambient reporter that a pipeline sets and the engine and readers advance.

Silent by default. The CLI sets a :class:`RichReporter` (bars on stderr) when stderr is a terminal and ``-q`` is
not given; the Python API takes ``progress=True`` (rich bars), a callable ``fn(stage, done, total)`` or a
:class:`Reporter`. The reporter lives in a :class:`contextvars.ContextVar`, so deep code (the engine's batch loop,
the slide tile loop) advances it without every signature carrying it.

>>> from zeroclick.imaging import progress
>>> seen = []
>>> with progress.reporting(lambda stage, done, total: seen.append((stage, done, total))):
...     progress.stage("segmentation", total=4, unit="slices")
...     progress.advance(4)
>>> seen[-1]
('segmentation', 4, 4)
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

ProgressCallback = Callable[[str, int, "int | None"], None]


class Reporter:
    """Receives stages and counts. The base class ignores everything (the default: silent)."""

    def stage(self, name: str, *, total: int | None = None, unit: str = "") -> None:
        """A new stage starts (the previous one is done); ``total`` units when known (gives an ETA)."""

    def advance(self, n: int = 1) -> None:
        """``n`` more units of the current stage are done."""

    def close(self) -> None:
        """The work is over (bars are removed)."""


class CallbackReporter(Reporter):
    """Calls ``fn(stage, done, total)`` on every stage change and advance (for notebooks and services)."""

    def __init__(self, fn: ProgressCallback) -> None:
        self._fn = fn
        self._stage, self._done, self._total = "", 0, None  # type: tuple[str, int, int | None]

    def stage(self, name: str, *, total: int | None = None, unit: str = "") -> None:
        self._stage, self._done, self._total = name, 0, total
        self._fn(name, 0, total)

    def advance(self, n: int = 1) -> None:
        self._done += int(n)
        self._fn(self._stage, self._done, self._total)


class RichReporter(Reporter):
    """rich progress bars on stderr: stage, units done (of total), elapsed time, ETA when the total is known."""

    def __init__(self, *, console: Any = None, transient: bool = True) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console or Console(stderr=True), transient=transient,
        )
        self._progress.start()
        self._task: Any = None
        self._t0 = time.perf_counter()

    def stage(self, name: str, *, total: int | None = None, unit: str = "") -> None:
        if self._task is not None:
            t = self._progress.tasks[-1]
            self._progress.update(self._task, total=t.completed or 1, completed=t.completed or 1)
            self._progress.stop_task(self._task)
        self._task = self._progress.add_task(name, total=total, unit=unit)

    def advance(self, n: int = 1) -> None:
        if self._task is not None:
            self._progress.advance(self._task, n)

    def close(self) -> None:
        self._progress.stop()


_SILENT = Reporter()
_CURRENT: contextvars.ContextVar[Reporter | None] = contextvars.ContextVar("zeroclick_progress", default=None)


def current() -> Reporter:
    """The reporter in effect (a silent one unless a caller set another)."""
    return _CURRENT.get() or _SILENT


def stage(name: str, *, total: int | None = None, unit: str = "") -> None:
    current().stage(name, total=total, unit=unit)


def advance(n: int = 1) -> None:
    current().advance(n)


def make_reporter(progress: bool | Reporter | ProgressCallback | None) -> Reporter | None:
    """``True`` -> rich bars on stderr, a callable -> :class:`CallbackReporter`, a Reporter as is, else None."""
    if progress is None or progress is False:
        return None
    if isinstance(progress, Reporter):
        return progress
    if progress is True:
        return RichReporter()
    if callable(progress):
        return CallbackReporter(progress)
    raise TypeError(f"progress must be a bool, a Reporter or a callable(stage, done, total), got {progress!r}")


@contextlib.contextmanager
def reporting(progress: bool | Reporter | ProgressCallback | None) -> Iterator[Reporter]:
    """Make ``progress`` the ambient reporter for the block; ``None``/``False`` keeps the one in effect.

    A reporter created here (from ``True`` or a callable) is closed at the end; one passed in is left open
    (its owner, e.g. the CLI, closes it).
    """
    reporter = make_reporter(progress)
    if reporter is None:
        yield current()
        return
    token = _CURRENT.set(reporter)
    try:
        yield reporter
    finally:
        _CURRENT.reset(token)
        if not isinstance(progress, Reporter):
            reporter.close()


def terminal_reporter(*, quiet: bool) -> Reporter | None:
    """For the CLI: rich bars when stderr is a terminal and not ``quiet``; otherwise ``None`` (silent)."""
    if quiet or not sys.stderr.isatty():
        return None
    return RichReporter()


@contextlib.contextmanager
def terminal(*, quiet: bool) -> Iterator[None]:
    """A CLI command's progress: bars on stderr in a terminal (not ``quiet``), from before the heavy imports
    (torch, MONAI take seconds) to the end of the command."""
    reporter = terminal_reporter(quiet=quiet)
    try:
        with reporting(reporter):
            stage("loading libraries")
            yield
    finally:
        if reporter is not None:
            reporter.close()
