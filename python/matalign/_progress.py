"""Progress reporting for long engine calls: ``progress=False | True | callable(done, total)``.

The engine polls the callback between tiles (with the GIL held), so the callback must be cheap.
``progress=True`` shows a ``rich`` bar when rich is installed and a plain stderr bar otherwise;
rich stays an optional dependency.
"""

from __future__ import annotations

import contextlib
import sys
import time

__all__ = ["progress_callback", "progress_bar", "Job"]


class _StderrBar:
    """A minimal text bar on stderr, redrawn at most ~10 times a second."""

    def __init__(self, description: str, stream=None, width: int = 30):
        self.description = description
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self._last = 0.0
        self._shown = False
        self._start = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        frac = min(max(done / total, 0.0), 1.0) if total > 0 else 1.0
        filled = int(round(frac * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = now - self._start
        self.stream.write(f"\r{self.description} [{bar}] {100 * frac:5.1f}% {elapsed:6.1f}s")
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()


@contextlib.contextmanager
def progress_callback(progress, description: str):
    """Yield the callable to hand to the engine (or None), and tidy the display afterwards.

    Parameters
    ----------
    progress : bool, None or callable(done, total)
        False/None: no reporting. True: a progress bar. A callable is passed through unchanged.
    description : str
        Label of the bar.
    """
    if progress is None or progress is False:
        yield None
        return
    if progress is not True:
        yield progress
        return
    try:
        from rich.progress import (BarColumn, Progress, TaskProgressColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)
    except ImportError:
        bar = _StderrBar(description)
        try:
            yield bar
        finally:
            bar.close()
        return
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


class _Counter:
    """``update(n)`` front end over a ``(done, total)`` callback."""

    def __init__(self, callback, total):
        self._callback = callback
        self.total = total
        self.done = 0

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._callback is not None:
            self._callback(self.done, self.total if self.total is not None else self.done)


@contextlib.contextmanager
def progress_bar(total, desc: str, enabled=True):
    """A counting progress bar for Python-side loops (embedding, scoring, generating).

    Yields an object with ``update(n)``. ``enabled`` takes the same values as ``progress=``
    elsewhere (False, True or a callable(done, total)); ``total=None`` means unknown length.

    Examples
    --------
    >>> from matalign._progress import progress_bar
    >>> with progress_bar(3, "work", enabled=False) as bar:
    ...     for _ in range(3):
    ...         bar.update(1)
    >>> bar.done
    3
    """
    with progress_callback(enabled, desc) as callback:
        yield _Counter(callback, total)


class Job:
    """One monotone progress callback over a job of several stages.

    Each stage reports its own (done, total); :meth:`stage` maps it onto the whole job, in
    units of 1/1,000,000 of the estimated work (``total_work``, the sum of the stages' work).
    """

    UNITS = 1_000_000

    def __init__(self, callback, total_work: float):
        self.callback = callback
        self.total = max(float(total_work), 1.0)
        self.done = 0.0
        self.last = -1

    def _emit(self, work: float) -> None:
        units = int(self.UNITS * min(max(work / self.total, 0.0), 1.0))
        if units > self.last:
            self.last = units
            self.callback(units, self.UNITS)

    @contextlib.contextmanager
    def stage(self, work: float):
        """Yield the callback for one stage of the given estimated work (None without a bar)."""
        start = self.done
        if self.callback is None:
            yield None
        else:
            def report(done, total):
                frac = done / total if total > 0 else 1.0
                self._emit(start + work * min(max(frac, 0.0), 1.0))
            yield report
        self.done = start + work
        if self.callback is not None:
            self._emit(self.done)
