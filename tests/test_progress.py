"""Progress on stderr: a live bar on a terminal, at most one plain line every few
seconds otherwise (CI logs), nothing when quiet; a line before kernels compile."""

from __future__ import annotations

import io
import re

import pytest

from onnx_snn_compress import progress as progress_module
from onnx_snn_compress.progress import Progress


class Clock:
    """A stand-in for time.monotonic that the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", fake)
    return fake


def test_plain_lines_come_at_most_once_per_interval(clock):
    stream = io.StringIO()
    progress = Progress(stream, interval=5.0)
    with progress.task("epoch 1/2", total=100) as task:
        for _ in range(100):
            clock.now += 0.5  # 50 s in all: at most 10 lines
            task.advance(status="loss 0.31")
    lines = stream.getvalue().splitlines()
    assert 8 <= len(lines) <= 10
    assert lines[0].startswith("epoch 1/2: 10/100 steps (10 %), loss 0.31, 5 s elapsed")


def test_the_time_left_ignores_the_first_step_which_may_compile_kernels(clock):
    stream = io.StringIO()
    progress = Progress(stream, interval=5.0)
    task = progress.task("compress", total=11)
    clock.now += 120  # the first step compiles
    task.advance()
    for _ in range(5):
        clock.now += 1
        task.advance()
    assert stream.getvalue().splitlines()[-1].endswith("about 5 s left")  # 5 steps left at 1 s each, not 2 min


def test_a_later_step_that_compiles_stretches_no_estimate_beyond_the_next_line(clock):
    stream = io.StringIO()
    progress = Progress(stream, interval=5.0)
    task = progress.task("compress", total=1000)
    for seconds_taken in (60, 35):  # the first step compiles the training kernels, the second the solver's
        clock.now += seconds_taken
        task.advance()
    for _ in range(20):
        clock.now += 0.5
        task.advance()
    lines = stream.getvalue().splitlines()
    assert "left" not in lines[0] and "left" not in lines[1]  # each over one slow step
    assert lines[-1].endswith("about 8 min 09 s left")  # 978 steps left at 0.5 s each, not 35 s each


def test_the_last_second_is_not_said_as_about_0_s_left(clock):
    stream = io.StringIO()
    progress = Progress(stream, interval=0.45)  # a line about every 5 steps
    task = progress.task("compress", total=100)
    for _ in range(99):
        clock.now += 0.1
        task.advance()
    assert stream.getvalue().splitlines()[-1].endswith(", under a second left")


def test_quiet_prints_nothing_at_all(clock, monkeypatch):
    monkeypatch.setattr(progress_module, "kernels_compiled", lambda backward=True: False)
    stream = io.StringIO()
    progress = Progress(stream, quiet=True, interval=0.0)
    progress.say_if_compiling()
    progress.line("a message")
    with progress.task("x", total=3) as task:
        for _ in range(3):
            clock.now += 10
            task.advance()
    assert stream.getvalue() == ""


def test_a_cold_start_says_once_that_kernels_compile_and_a_warm_one_does_not(monkeypatch):
    for compiled, expected in ((False, "compiling the Numba kernels"), (True, "")):
        monkeypatch.setattr(progress_module, "_SAID_COMPILING", False)
        monkeypatch.setattr(progress_module, "kernels_compiled", lambda backward=True: compiled)
        stream = io.StringIO()
        Progress(stream).say_if_compiling()
        Progress(stream).say_if_compiling()  # a second stage of the same process: said already
        assert expected in stream.getvalue() and stream.getvalue().count("\n") == (not compiled)


def test_evaluation_asks_only_for_the_forward_kernels(monkeypatch):
    asked = []
    monkeypatch.setattr(progress_module, "_SAID_COMPILING", False)
    monkeypatch.setattr(progress_module, "kernels_compiled", lambda backward=True: asked.append(backward) or True)
    Progress(io.StringIO()).say_if_compiling(training=False)
    assert asked == [False]


def test_a_terminal_gets_a_live_bar_and_messages_above_it():
    stream = io.StringIO()
    progress = Progress(stream, live=True)
    with progress.task("budget 0.1 of params: finetune", total=4) as task:
        progress.line("budget 0.2: kept 20 % of the params")
        for _ in range(4):
            task.advance(status="loss 0.2")
    assert "budget 0.2: kept 20 % of the params" in stream.getvalue()
    assert progress._progress is None  # the bar is gone once its task is closed


def test_the_live_bar_keeps_the_counts_whole_on_80_columns_and_cuts_the_status_instead():
    from rich.console import Console

    progress = Progress(io.StringIO(), live=True)
    with progress.task("budget 0.05 (4/4) finetune", total=1200, completed=1130) as task:
        task.advance(status="best val 93.3 %, loss 0.00618")
        bars = progress._rich()
        screen = Console(file=io.StringIO(), width=80, color_system=None, legacy_windows=False)
        with screen.capture() as captured:
            screen.print(bars.make_tasks_table(bars.tasks))
    line = captured.get().rstrip("\n")
    assert len(line) <= 80 and line.startswith("budget 0.05 (4/4) finetune")
    assert "1131/1200" in line and line.endswith("…")  # the counts whole, the status cut


def test_the_live_bars_time_left_forgets_a_step_that_compiled_kernels_within_seconds(monkeypatch):
    import rich.console

    now = [1000.0]
    monkeypatch.setattr(rich.console, "monotonic", lambda: now[0])  # the clock rich's bar reads
    progress = Progress(io.StringIO(), live=True)
    with progress.task("compress", total=1000) as task:
        for seconds_taken in (60, 20):  # the first step compiles the training kernels, the second the solver's
            now[0] += seconds_taken
            task.advance()
        bars = progress._rich()
        left = bars.tasks[0].time_remaining
        assert left is None or left < 3600  # not 998 steps at 20 s each (a fresh user saw 4 h 27 min)
        for _ in range(20):
            now[0] += 0.5
            task.advance()
        assert 400 < bars.tasks[0].time_remaining < 600  # 978 steps at 0.5 s


def test_training_reports_each_epoch_with_rounded_numbers(capsys):
    import numpy as np

    from onnx_snn_compress import ir
    from onnx_snn_compress.data import ModelData
    from onnx_snn_compress.train import TrainConfig, train

    rng = np.random.default_rng(0)
    graph = ir.Graph([ir.Input("x", shape=(4,)), ir.Linear("fc", ("x",), weight=rng.normal(size=(2, 4)).astype(np.float32)),
                      ir.Neuron("lif", ("fc",)), ir.Readout("out", ("lif",))])
    data = ModelData(rng.uniform(size=(16, 4)).astype(np.float32), rng.integers(0, 2, 16), temporal=False, time_steps=3,
                     encoding="direct", seed=0)
    log = io.StringIO()
    train(graph, data, data, TrainConfig(epochs=2, batch_size=8), log=log)
    lines = [line for line in log.getvalue().splitlines() if line.startswith("epoch")]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert re.fullmatch(r"epoch 1/2: loss [\d.e+-]+, train acc [\d.]+ %, val acc [\d.]+ % \(\d+ s\)", lines[0]), lines[0]
    assert not re.search(r"\d\.\d{4,}", log.getvalue())  # rounded for people


def test_evaluation_counts_samples_in_both_runtimes(clock):
    import numpy as np

    from onnx_snn_compress import ir
    from onnx_snn_compress.data import ModelData
    from onnx_snn_compress.evaluate import evaluate

    rng = np.random.default_rng(1)
    graph = ir.Graph([ir.Input("x", shape=(4,)), ir.Linear("fc", ("x",), weight=rng.normal(size=(2, 4)).astype(np.float32)),
                      ir.Neuron("lif", ("fc",)), ir.Readout("out", ("lif",))])
    data = ModelData(rng.uniform(size=(10, 4)).astype(np.float32), rng.integers(0, 2, 10), temporal=False, time_steps=3,
                     encoding="direct", seed=0)
    for runtime in ("sim", "onnxruntime"):
        stream = io.StringIO()
        progress = Progress(stream, interval=0.0)
        quiet = evaluate(graph, data, runtime, batch_size=4)
        shown = evaluate(graph, data, runtime, batch_size=4, progress=progress)
        assert shown.accuracy == quiet.accuracy
        assert stream.getvalue().splitlines()[-1].startswith(f"evaluate ({runtime}): 10/10 samples (100 %)")
