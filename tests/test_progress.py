"""The progress display (bench/progress.py): never active inside a window, plain lines through a pipe, a live
display on a real terminal."""

import io
import logging
import os
import re
import select
import subprocess
import sys
import threading
import time

import pytest
from rich.console import Console

from bench import progress
from bench.measure import idle_baseline, measure
from tests.conftest import EVAL_CACHE, PROJECT, run_bench
from tests.test_measure import TEST, Clock, FakeMeter

TIME = r"\d+:\d\d:\d\d"
WINDOW = re.compile(r"window (\d+): (±[\d.]+%|no interval yet) \(target ±5%\), [\d.]+ s of the 4 s cap")


class Screen(io.StringIO):
    """A console's file that notes in `events` each time the display writes."""

    def __init__(self, events: list) -> None:
        super().__init__()
        self.events = events

    def write(self, text: str) -> int:
        self.events.append("display")
        return super().write(text)


class Lines(logging.Handler):
    """bench.progress's log lines, each noted in `events`."""

    def __init__(self, events: list) -> None:
        super().__init__(logging.INFO)
        self.events, self.lines = events, []

    def emit(self, record: logging.LogRecord) -> None:
        self.events.append("display")
        self.lines.append(record.getMessage())


@pytest.fixture
def lines():
    """Plain lines of bench.progress, whatever the root logger's level."""
    logger = logging.getLogger("bench.progress")
    handler, level = Lines([]), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "plain"])
def test_the_display_does_nothing_inside_a_window(terminal, lines, monkeypatch):
    monkeypatch.setenv("TERM", "xterm-256color")
    for name in ("TTY_COMPATIBLE", "TTY_INTERACTIVE", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)
    clock = Clock()
    meter = FakeMeter(clock, noise=lambda i: 0.5 * (-1) ** (i // 2))  # windows disagree: more than the minimum
    lines.events = meter.events  # the meter's starts and stops, the display's writes: one order
    screen = Screen(meter.events)
    threads = threading.active_count()
    progress.start(True, console=Console(file=screen, force_terminal=terminal, width=100))
    try:
        assert threading.active_count() == threads  # no refresh thread: nothing runs on its own
        idle = idle_baseline(meter, lambda: None, TEST, False, clock, clock.sleep)
        measure(lambda: meter.call(0.1), lambda: None, meter, TEST, TEST.min_window_s, idle, clock=clock)
        assert threading.active_count() == threads
    finally:
        progress.stop()
    inside, shown = False, 0
    for event in meter.events:
        if isinstance(event, tuple):  # ("start", calls so far)
            inside = True
        elif event == "stop":
            inside = False
        elif event == "display":
            assert not inside, "the display acted while a window was timed"
            shown += 1
    assert meter.working_windows > TEST.min_windows
    assert shown >= TEST.idle_segments + meter.working_windows  # it did show each segment and window
    text = screen.getvalue() if terminal else "\n".join(lines.lines)
    assert (not terminal) == (lines.lines != [])  # one mode or the other, never both
    assert f"idle baseline: segment {TEST.idle_segments} of {TEST.idle_segments}" in text
    assert f"window {meter.working_windows}: ±" in text and "(target ±2%)" in text


def test_plain_lines_say_which_run_of_the_sweep_and_how_long_is_left(lines):
    progress.start(True, runs=2, console=Console(file=io.StringIO()))
    try:
        progress.run_started()
        progress.phase("loading the model")
        progress.window("", 1, None, 0.05, 0.21, 4.0)
        progress.window("prefill", 5, 0.0312, 0.05, 1.234, 2.0)
        progress.run_started()
        progress.step("quality", 3, 10, "examples")  # too soon after the last line: shown at its end only
        progress.step("quality", 10, 10, "examples")
    finally:
        progress.stop()
    expected = [f"run 1 of 2, {TIME} elapsed, time left known after the first run", "loading the model",
                r"window 1: no interval yet \(target ±5%\), 0.21 s of the 4 s cap",
                r"prefill window 5: ±3.1% \(target ±5%\), 1.2 s of the 2 s cap",
                f"run 2 of 2, {TIME} elapsed, about {TIME} left", "quality: 10 of 10 examples",
                f"sweep: 2 of 2 runs in {TIME}"]
    assert len(lines.lines) == len(expected), lines.lines
    for line, pattern in zip(lines.lines, expected):
        assert re.fullmatch(pattern, line), (line, pattern)


def test_no_display_shows_nothing(lines):
    progress.start(False, runs=2, console=Console(file=io.StringIO()))  # progress=false
    progress.run_started()
    progress.phase("loading the model")
    progress.window("", 1, 0.1, 0.05)
    progress.stop()
    progress.phase("no display open: a Python caller of bench.run")
    assert lines.lines == []


def _sweep(model_dir, tmp_path, *more):
    return (f"model.name_or_path={model_dir}", "model.name=tiny", "quant=fp32,int8", "batch_size=1", "seq_len=16",
            "profile=quick", f"hydra.sweep.dir={tmp_path}/sweep", *more, "-m")


@pytest.mark.slow
def test_through_a_pipe_every_phase_and_window_is_one_plain_line(tiny_model_dir, tmp_path):
    result = run_bench(*_sweep(tiny_model_dir, tmp_path, "eval.max_test_samples=20"))
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stdout and "\x1b[" not in result.stdout  # lines, never redraws
    shown = [line.split(" - ", 1)[1] for line in result.stdout.splitlines() if "[bench.progress]" in line]
    first, second = [i for i, s in enumerate(shown) if s.startswith("run ")]
    assert shown[first].startswith("run 1 of 2, ") and first == 0
    assert re.fullmatch(f"run 2 of 2, {TIME} elapsed, about {TIME} left", shown[second])
    for run in (shown[first + 1:second], shown[second + 1:]):
        for phase in ("loading the model", "idle baseline: segment 1 of 3", "idle baseline: segment 3 of 3",
                      "warm-up", "windows until ±5% or the 4 s cap", "quality: eval=bbc-topics"):
            assert phase in run, (phase, run)
        assert any(re.fullmatch(r"building the (fp32|int8) variant on pytorch", s) for s in run), run
        windows = [WINDOW.fullmatch(s) for s in run if s.startswith("window ")]
        assert all(windows) and [int(w[1]) for w in windows] == list(range(1, len(windows) + 1)), run
        assert len(windows) >= 4 and windows[-1][2].startswith("±")  # at least profile.min_windows
        assert any(re.fullmatch(r"quality: (\d+) of \1 examples", s) for s in run), run
        order = ["warm-up", "windows until ±5% or the 4 s cap", "quality: eval=bbc-topics"]
        assert [run.index(s) for s in order] == sorted(run.index(s) for s in order), run
    # The sweep's end: in Hydra's own log format, since Hydra has taken back logging from the last job by then.
    assert re.search(f"sweep: 2 of 2 runs in {TIME}\n\nSweep summary \\(2 rows", result.stdout)


@pytest.mark.slow
def test_on_a_terminal_the_display_is_live_and_log_lines_go_above_it(tiny_model_dir, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TERM": "xterm-256color", "COLUMNS": "120"}
    for name in ("TTY_COMPATIBLE", "TTY_INTERACTIVE", "FORCE_COLOR", "NO_COLOR"):
        env.pop(name, None)
    controller, terminal = os.openpty()
    child = subprocess.Popen([sys.executable, "-m", "bench", f"eval.cache_dir={EVAL_CACHE}",
                              *_sweep(tiny_model_dir, tmp_path, "eval=none")],
                             cwd=PROJECT, env=env, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal)
    os.close(terminal)
    chunks, deadline = [], time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            if not select.select([controller], [], [], 1.0)[0]:
                continue
            try:
                data = os.read(controller, 65536)
            except OSError:  # EIO: the child has closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        child.wait(timeout=60)
    finally:
        os.close(controller)
        if child.poll() is None:
            child.kill()
    out = b"".join(chunks).decode("utf-8", "replace")
    assert child.returncode == 0, out[-3000:]
    assert "\x1b[?25l" in out and out.rfind("\x1b[?25h") > out.rfind("\x1b[?25l")  # cursor hidden, then back
    assert "\x1b[1A\x1b[2K" in out  # the display redrawn in place: up a line, erase it
    assert "[bench.progress]" not in out  # no plain lines on a terminal
    assert re.search(r"window \d+: ±[\d.]+% \(target ±5%\)", out) and "idle baseline: segment" in out
    assert re.search(f"run 2 of 2, {TIME} elapsed, about {TIME} left", out)
    assert re.search(f"2 of 2 runs in {TIME}", out)
    assert "[bench.run][INFO] - run " in out  # log lines still shown, above the display
    assert "Sweep summary (2 rows" in out
