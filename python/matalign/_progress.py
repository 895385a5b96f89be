"""Progress reporting for long engine calls: ``progress=False | True | callable(done, total)``.

The engine polls the callback between tiles (with the GIL held), so the callback must be cheap.
``progress=True`` shows a ``rich`` bar when rich is installed and a plain stderr bar otherwise;
rich stays an optional dependency.
"""

from __future__ import annotations

import contextlib
import sys
import time

__all__ = ["progress_callback"]


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
