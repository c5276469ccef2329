"""Where a run or a sweep is while it works: a live display on a terminal, plain log lines anywhere else.

The harness reports phase changes, idle segments, measurement windows and counted steps through the functions
here, and the display changes only when one of them is called: the protocol calls them between windows and
between phases, never while a window is timed. On a terminal the rich Live display runs with auto_refresh=False,
so it starts no refresh thread: nothing of the display draws, computes or wakes up inside a window
(docs/sweeps.md#progress-while-it-works). Elsewhere (CI logs, pipes, files) each phase and each window is one log
line, never a redraw. With no display open (progress=false, or Python callers of bench.run) every function does
nothing.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from bench.digits import plain

log = logging.getLogger(__name__)
STEP_LINE_S = 10.0  # a counted step (quality batches) writes a plain line at most this often, and at its end
STEP_REDRAW_S = 0.1  # and redraws the terminal display at most this often
BAR_WIDTH = 24


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))


@dataclass
class _Display:
    runs: int | None  # a sweep's runs; None: one run
    live: Any = None  # rich.live.Live on a terminal; None: plain log lines
    started: float = field(default_factory=time.monotonic)
    run: int = 0  # the sweep's current run, from 1
    run_started: float = 0.0
    finished: bool = False
    doing: str = ""
    counted: tuple[int, int] | None = None  # (done, total) of a counted step
    last_shown: float = 0.0

    def sweep(self) -> str:
        now = time.monotonic()
        if self.finished:
            return f"{self.run} of {self.runs} runs in {_clock(now - self.started)}"
        text = f"run {self.run} of {self.runs}, {_clock(now - self.started)} elapsed"
        if self.run < 2:
            return f"{text}, time left known after the first run"
        # Runs of a sweep take alike long: the finished runs' mean for each run not finished.
        per_run = (self.run_started - self.started) / (self.run - 1)
        left = per_run * (self.runs - self.run + 1) - (now - self.run_started)
        return f"{text}, about {_clock(max(left, 0.0))} left"

    def render(self) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=BAR_WIDTH)
        grid.add_column(no_wrap=True, overflow="ellipsis")
        if self.runs and self.run:
            done = self.run if self.finished else self.run - 1
            grid.add_row(ProgressBar(self.runs, done, width=BAR_WIDTH), Text(self.sweep()))
        if self.doing:  # Text: a phase is never read as rich markup
            bar = ProgressBar(self.counted[1], self.counted[0], width=BAR_WIDTH) if self.counted else ""
            grid.add_row(bar, Text(self.doing))
        return grid

    def show(self, text: str, counted: tuple[int, int] | None = None) -> None:
        self.doing, self.counted, self.last_shown = text, counted, time.monotonic()
        if self.live is not None:
            self.live.refresh()
        else:
            log.info("%s", text)


_display: _Display | None = None


def start(enabled: bool, runs: int | None = None, console: Any = None) -> None:
    """Opens the display of a sweep of `runs` runs, or of one run (None); enabled=False (progress=false) shows
    nothing. `console`: a rich Console to draw on (default: stdout, live only where it is a real terminal)."""
    global _display
    if not enabled or _display is not None:
        return
    from rich.console import Console
    from rich.live import Live

    # FORCE_COLOR in a CI log must not bring redraws into it: only a real terminal gets the live display.
    console = console if console is not None else Console(force_terminal=None if sys.stdout.isatty() else False)
    _display = _Display(runs)
    if console.is_interactive:
        _display.live = Live(get_renderable=_display.render, console=console, auto_refresh=False,
                             redirect_stdout=True, redirect_stderr=False)
        _display.live.start(refresh=True)
        _reroute_logs()
        atexit.register(stop)  # an interrupted sweep must not leave the cursor hidden


def stop() -> None:
    """Closes the display; a sweep's says how many runs took how long."""
    global _display
    closing, _display = _display, None
    if closing is None:
        return
    closing.finished, closing.doing = True, ""
    if closing.live is None:
        if closing.runs:
            log.info("sweep: %s", closing.sweep())
        return
    closing.live.stop()  # draws the last state
    _reroute_logs()
    atexit.unregister(stop)


@contextlib.contextmanager
def shown(enabled: bool) -> Iterator[None]:
    """The display of one run, for as long as the block lasts."""
    start(enabled)
    try:
        yield
    finally:
        stop()


def run_started() -> None:
    """The next run of the sweep begins (each job of a sweep calls it once, whatever becomes of the run)."""
    d = _display
    if d is None or not d.runs:
        return
    d.run, d.run_started = d.run + 1, time.monotonic()
    d.doing, d.counted, d.last_shown = "", None, d.run_started
    if d.live is not None:
        d.live.refresh()
    else:
        log.info("%s", d.sweep())


def phase(text: str) -> None:
    """The run moves to another phase: loading the model, building a variant, an idle segment, warm-up, quality,
    a serve phase."""
    if _display is not None:
        _display.show(text)


def window(name: str, k: int, width: float | None, target: float, elapsed: float | None = None,
           cap: float | None = None) -> None:
    """Window k of a phase (`name`, "" for a single phase) has ended: the interval's relative half-width now
    (None: not computable yet) against the target, and seconds spent of the phase's time cap."""
    if _display is None:
        return
    spread = f"±{plain(100 * width, 2)}%" if width is not None and math.isfinite(width) else "no interval yet"
    text = f"{name + ' ' if name else ''}window {k}: {spread} (target ±{plain(100 * target)}%)"
    if cap is not None and elapsed is not None:
        text += f", {plain(elapsed, 2)} s of the {plain(cap)} s cap"
    _display.show(text)


def step(text: str, done: int, total: int, unit: str) -> None:
    """`done` of `total` units of a counted step (quality examples or text windows); shown sparingly, always at
    its end."""
    d = _display
    if d is None:
        return
    wait = STEP_REDRAW_S if d.live is not None else STEP_LINE_S
    if done >= total or time.monotonic() - d.last_shown >= wait:
        d.show(f"{text}: {done} of {total} {unit}", (done, total))


def _reroute_logs() -> None:
    """Log handlers writing to stdout write through the live display (above it) while it is shown, and to stdout
    again afterwards, so that log lines and the display do not overwrite each other. Handlers configured while it
    is shown (Hydra configures each job's) find the display's stdout by themselves."""
    from rich.file_proxy import FileProxy

    loggers = [logging.getLogger(), *(logger for logger in logging.Logger.manager.loggerDict.values()
                                      if isinstance(logger, logging.Logger))]
    for handler in {h for logger in loggers for h in logger.handlers if isinstance(h, logging.StreamHandler)}:
        stream = handler.stream
        if isinstance(sys.stdout, FileProxy) and stream is sys.stdout.rich_proxied_file:
            handler.setStream(sys.stdout)
        elif not isinstance(sys.stdout, FileProxy) and isinstance(stream, FileProxy):
            handler.setStream(stream.rich_proxied_file)
