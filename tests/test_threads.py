"""The threading policy: the default thread count follows the cores free at start."""

from __future__ import annotations

import sys

import numba
import pytest

from onnx_snn_compress import threads
from onnx_snn_compress.cli.main import main
from onnx_snn_compress.errors import SNNError


def test_the_default_is_the_usable_cores_less_those_other_processes_keep_busy(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(numba.config, "NUMBA_NUM_THREADS", 2)
    for busy, expected in [(0.0, 2), (0.4, 2), (0.6, 1), (1.0, 1), (2.0, 1), (5.0, 1)]:
        monkeypatch.setattr(threads, "busy_cores", lambda seconds=0.25, busy=busy: busy)
        assert threads.default_threads()[0] == expected, busy
    monkeypatch.setattr(threads, "busy_cores", lambda seconds=0.25: None)  # no /proc/stat
    assert threads.default_threads() == (2, "2 usable cores")


def test_a_large_training_step_takes_every_usable_core_even_when_they_are_busy(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(numba.config, "NUMBA_NUM_THREADS", 2)
    monkeypatch.setattr(threads, "busy_cores", lambda seconds=0.25: 1.4)
    assert threads.default_threads(threads.LARGE_STEP_MACS / 2)[0] == 1
    count, why = threads.default_threads(threads.LARGE_STEP_MACS)
    assert count == 2 and "G MACs" in why


def test_a_training_step_counts_the_dense_macs_of_every_sample_and_time_step():
    from onnx_snn_compress.frontends import load_model
    from onnx_snn_compress.resources import summarize
    from onnx_snn_compress.samples import sample_model_path

    graph = load_model(sample_model_path("digits_conv"))
    assert threads.training_step_macs(graph, 64, 8) == 64 * 8 * summarize(graph)["macs_per_step"] == 64 * 8 * 38_304


def test_a_chosen_count_is_said_and_a_given_one_is_used_as_is(monkeypatch):
    monkeypatch.setattr(threads, "default_threads", lambda step_macs=None: (1, "0.8 of 2 usable cores free at start"))
    before = numba.get_num_threads()
    try:
        count, note = threads.use_threads(None)
        assert count == 1 == numba.get_num_threads()
        assert note == "1 thread (0.8 of 2 usable cores free at start); --threads overrides"
        assert threads.use_threads(1) == (1, None)
    finally:
        numba.set_num_threads(before)


@pytest.mark.parametrize("count", [0, -1, numba.config.NUMBA_NUM_THREADS + 1])
def test_an_impossible_thread_count_is_a_one_line_error(count):
    with pytest.raises(SNNError, match="--threads"):
        threads.use_threads(count)


def test_busy_cores_measures_a_load_between_zero_and_the_machine():
    busy = threads.busy_cores(0.05)
    assert busy is None or 0.0 <= busy <= threads.usable_cores() + 1


@pytest.mark.parametrize("command", ["train", "compress"])
def test_every_training_command_takes_threads_and_rejects_an_impossible_count(command, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["snn-compress", command, "--threads", "0", "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    assert exit_info.value.code == 2 and out == "" and err == "error: --threads must be at least 1, got 0\n"
    assert not any(tmp_path.iterdir())

