"""Progress of long work on stderr: a live bar for people, periodic lines for CI logs.

One :class:`Progress` serves training and compression. When its stream is a
terminal it draws a rich progress bar (step counts, ETA and the live status
the caller passes: budget, phase, loss, accuracy); otherwise (CI logs, files)
it prints a plain line (the same, plus elapsed time) at most every ``interval`` seconds;
``quiet`` silences both. Messages (:meth:`Progress.line`) always print unless
quiet. Progress never goes to stdout, so ``--json`` output stays clean.
Numbers are rounded for people here; full precision lives in the JSON output.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from .report import seconds


_SAID_COMPILING = False  # the compile line is said once per process
RATE_STEPS = 5  # the fewest steps a plain line's time left is measured over


def kernels_compiled(backward: bool = True) -> bool:
    """Whether Numba's on-disk cache holds the spiking-neuron kernels already (the
    forward one, and with ``backward`` the training one too).

    On a cold start (fresh install, new Python or Numba) the first forward and
    backward pass compile the kernels, which takes a minute or more; a caller says
    so before it happens. Reads Numba's cache index paths; True when unsure.
    """
    try:
        from .kernels import neuron

        kernels = (neuron._lif_forward_kernel, neuron._lif_backward_kernel) if backward else (neuron._lif_forward_kernel,)
        paths = [kernel._cache._cache_file._index_path for kernel in kernels]
    except Exception:  # a Numba without these internals: better silent than wrong
        return True
    from pathlib import Path

    return all(Path(path).is_file() for path in paths)


class Task:
    """One stretch of counted work (``total`` of ``unit``); see :meth:`Progress.task`."""

    def __init__(self, progress: "Progress", description: str, total: int, completed: int = 0, unit: str = "steps"):
        self.progress, self.description, self.total, self.completed = progress, description, total, completed
        self.unit = unit
        self.status = ""
        self.started = time.monotonic()
        # (time, count) the time left is measured from: after the first step, then at each plain
        # line, and only over at least RATE_STEPS steps. A step that compiles kernels (the first,
        # or a later one: the solver's, the evaluation's) takes longer than an interval and so
        # ends one: it stretches no estimate beyond the next line (a fresh user saw "2/1,200
        # steps, about 4 h 27 min left" of a run that took 2 min 18 s)
        self._rate_from = None
        self._last_line = self.started
        self._bar = None
        if progress.live:
            self._bar = progress._rich().add_task(description, total=total, completed=completed, status="")

    def advance(self, steps: int = 1, description: str | None = None, status: str | None = None) -> None:
        """Count ``steps`` more; optionally change the description or the status text."""
        self.completed += steps
        if description is not None:
            self.description = description
        if status is not None:
            self.status = status
        if self._bar is not None:
            self.progress._rich().update(self._bar, completed=self.completed, description=self.description,
                                         status=self.status)
            return
        now = time.monotonic()
        if self._rate_from is None:
            self._rate_from = (now, self.completed)
        if self.progress.enabled and now - self._last_line >= self.progress.interval:
            self._last_line = now
            self.progress.line(self._plain_line(now))
            self._rate_from = (now, self.completed)

    def _plain_line(self, now: float) -> str:
        elapsed = now - self.started
        since, counted = self._rate_from
        done = self.completed - counted
        text = (f"{self.description}: {self.completed:,}/{self.total:,} {self.unit} "
                f"({100 * self.completed / max(1, self.total):.0f} %)")
        if self.status:
            text += f", {self.status}"
        text += f", {seconds(elapsed)} elapsed"
        if done >= RATE_STEPS and self.completed < self.total:
            left = (now - since) / done * (self.total - self.completed)
            text += f", about {seconds(left)} left" if left >= 1 else ", under a second left"
        return text

    def close(self) -> None:
        if self._bar is not None:
            self.progress._rich().remove_task(self._bar)
            self._bar = None
            self.progress._stop_if_idle()

    def __enter__(self) -> "Task":
        return self

    def __exit__(self, *_) -> None:
        self.close()


class Progress:
    """Where progress goes: ``stream`` (default: the current ``sys.stderr``).

    ``live`` (default: whether the stream is a terminal) draws a rich bar;
    ``interval`` is the least number of seconds between two plain lines.
    """

    def __init__(self, stream: TextIO | None = None, quiet: bool = False, interval: float = 10.0,
                 live: bool | None = None):
        self.stream = sys.stderr if stream is None else stream
        self.enabled = not quiet
        self.interval = interval
        isatty = getattr(self.stream, "isatty", lambda: False)
        self.live = self.enabled and (isatty() if live is None else live)
        self._progress = None

    def line(self, text: str) -> None:
        """One message on its own line (above the bar when one is drawn)."""
        if not self.enabled:
            return
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.stream, flush=True)

    def task(self, description: str, total: int, completed: int = 0, unit: str = "steps") -> Task:
        """Start counting ``total`` steps (``completed`` of them done already, after a resume)."""
        return Task(self, description, total, completed, unit)

    def say_if_compiling(self, training: bool = True) -> None:
        """A line before work that will compile the Numba kernels (cold start only, once per
        process); ``training=False`` for work that runs the forward kernels only."""
        global _SAID_COMPILING
        if self.enabled and not _SAID_COMPILING and not kernels_compiled(backward=training):
            _SAID_COMPILING = True
            self.line("compiling the Numba kernels for this machine (once per install, about a minute or two) ...")

    def _rich(self):
        if self._progress is None:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn,
                                       TimeRemainingColumn)
            from rich.table import Column

            whole = Column(no_wrap=True)
            self._progress = RichProgress(
                # the counts and the time left whole on any width; the status (last) takes what is
                # left of the line and ends in "…" where it does not fit (80 columns: about 24
                # characters beside "budget 0.05 (4/4) finetune"; a fresh user saw the counts cut)
                TextColumn("{task.description}", table_column=whole), BarColumn(bar_width=10),
                MofNCompleteColumn(table_column=whole), TimeRemainingColumn(),
                TextColumn("{task.fields[status]}", table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis")),
                console=Console(file=self.stream), transient=True, expand=True,
                # the time left from the last 5 s of steps (rich's default, 30 s, keeps a step that
                # compiled kernels in the estimate for half a minute: hours left for a 2 min run)
                speed_estimate_period=5.0,
            )
            self._progress.start()
        return self._progress

    def _stop_if_idle(self) -> None:
        if self._progress is not None and not self._progress.tasks:
            self._progress.stop()
            self._progress = None

