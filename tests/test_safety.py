"""Data safety: no run modifies what the user had, clobbers a device or mixes with another run;
faults of the file system, absurd values and Ctrl-C end in one line (docs/safety.md).

One section per class of fault a fuzzing harness over the CLI found (issue 13); the
harness's smallest inputs are the fixtures here.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from onnx_snn_compress import files, footprint
from onnx_snn_compress.compress import CHECKPOINT, REPORT
from onnx_snn_compress.errors import SNNError
from onnx_snn_compress.outputs import LOCK, FolderLock
from onnx_snn_compress.train import TrainConfig, Trainer

from commands import run_cli
from test_compress import CLI_RUN, cli_files, interrupt_after, no_training

FAST = ["--steps-per-budget", "4", "--eval-every", "2", "--budget", "0.6", "--time-steps", "4", "--batch-size", "32", "--quiet"]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and its digest: what the user had."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(code, out, err, fragment):
    assert code == 2 and out == "", (code, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert fragment in err, err


# ---------------------------------------------------------------------------
# 1. An output never overwrites an input, a device or a folder
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("where, option", [("budget_0.9/model.onnx", "model"), ("curve.png", "--data"),
                                           ("report.json", "--data"), (CHECKPOINT, "model")])
def test_compress_refuses_an_input_that_lies_where_it_writes(tmp_path, capsys, monkeypatch, where, option):
    model, data = cli_files(tmp_path)
    out = tmp_path / "out"
    inside = out / where
    inside.parent.mkdir(parents=True)
    inside.write_bytes((model if option == "model" else data).read_bytes())
    before = snapshot(tmp_path)
    no_training(monkeypatch)
    args = [inside, "--data", data] if option == "model" else [model, "--data", inside]
    code, out_text, err = run_cli(["compress", *args, *FAST, "--out", out, "--overwrite"], capsys, monkeypatch)
    one_line_error(code, out_text, err, "where this run writes")
    assert snapshot(tmp_path) == before


def test_compress_may_write_into_the_folder_of_its_inputs(tmp_path, capsys, monkeypatch):
    model, data = cli_files(tmp_path)
    before = snapshot(tmp_path)
    code, _, err = run_cli(["compress", model, "--data", data, *FAST, "--out", tmp_path, "--json"], capsys, monkeypatch)
    assert code == 0, err
    assert {k: v for k, v in snapshot(tmp_path).items() if k in before} == before


@pytest.mark.parametrize("case", ["data", "model", "model through a symlink"])
def test_train_refuses_to_write_over_its_own_input(tmp_path, capsys, monkeypatch, case):
    model, data = cli_files(tmp_path)
    out = {"data": data, "model": model, "model through a symlink": tmp_path / "link.onnx"}[case]
    if case == "model through a symlink":
        out.symlink_to(model)
    before = snapshot(tmp_path)
    no_training(monkeypatch)
    code, out_text, err = run_cli(["train", model, "--data", data, "--epochs", "1", "--out", out], capsys, monkeypatch)
    one_line_error(code, out_text, err, "would overwrite")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", ["train", "convert"])
def test_a_model_is_never_written_over_a_file_of_another_kind_that_is_no_input(tmp_path, capsys, monkeypatch, command):
    model, data = cli_files(tmp_path)
    other = tmp_path / "other_data.npz"  # a data set of the user's that this run does not read
    other.write_bytes(b"the user's data")
    before = snapshot(tmp_path)
    no_training(monkeypatch)
    args = {"train": ["train", model, "--data", data, "--epochs", "1", "--out", other],
            "convert": ["convert", model, other]}
    code, out, err = run_cli(args[command], capsys, monkeypatch)
    one_line_error(code, out, err, "is not a model file")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", ["train", "convert"])
def test_no_command_replaces_a_device_with_a_file(tmp_path, capsys, monkeypatch, command):
    model, data = cli_files(tmp_path)
    no_training(monkeypatch)
    args = {"train": ["train", model, "--data", data, "--out", os.devnull], "convert": ["convert", model, os.devnull]}
    code, out, err = run_cli(args[command], capsys, monkeypatch)
    one_line_error(code, out, err, "not a regular file")
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_a_symlinked_output_is_written_through_to_its_target(tmp_path, capsys, monkeypatch):
    model, _ = cli_files(tmp_path)
    (tmp_path / "models").mkdir()
    target = tmp_path / "models" / "converted.onnx"
    target.write_bytes(b"old")
    link = tmp_path / "latest.onnx"
    link.symlink_to(target)
    code, _, err = run_cli(["convert", model, link], capsys, monkeypatch)
    assert code == 0, err
    assert link.is_symlink() and target.read_bytes() != b"old"


# ---------------------------------------------------------------------------
# 2. One run at a time on an output folder
# ---------------------------------------------------------------------------
def test_a_second_run_on_a_folder_in_use_is_refused_naming_the_lock(tmp_path, capsys, monkeypatch):
    model, data = cli_files(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    lock = FolderLock(out)
    lock.acquire()  # this very process: alive
    try:
        no_training(monkeypatch)
        code, out_text, err = run_cli(["compress", model, "--data", data, *FAST, "--out", out], capsys, monkeypatch)
        one_line_error(code, out_text, err, str(out / LOCK))
        assert sorted(p.name for p in out.iterdir()) == [LOCK]
    finally:
        lock.release()
    assert not (out / LOCK).exists()


def test_a_stale_lock_is_taken_over_with_a_note_and_released_at_the_end(tmp_path, capsys, monkeypatch):
    model, data = cli_files(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (out / LOCK).write_text(f"{gone.pid} {os.uname().nodename} -\n")
    code, _, err = run_cli(["compress", model, "--data", data, *FAST, "--out", out, "--json"], capsys, monkeypatch)
    assert code == 0, err
    assert f"note: took over the stale lock {out / LOCK} of process {gone.pid}" in err
    assert not (out / LOCK).exists() and (out / REPORT).is_file()


def test_the_lock_is_released_when_a_run_fails_or_is_interrupted(tmp_path, capsys, monkeypatch):
    model, data = cli_files(tmp_path)
    with monkeypatch.context() as patch:
        interrupt_after(patch, 3)
        assert run_cli(["compress", model, "--data", data, *FAST, "--out", tmp_path / "cut"], capsys, monkeypatch)[0] == 130
    assert not (tmp_path / "cut" / LOCK).exists()
    original = Trainer.train_step

    def diverge_after_a_checkpoint(self, penalty=None):
        if self.step == 3:
            raise SNNError("training diverged at step 3")
        return original(self, penalty)

    monkeypatch.setattr(Trainer, "train_step", diverge_after_a_checkpoint)
    code, out, err = run_cli(["compress", model, "--data", data, *FAST, "--out", tmp_path / "failed"], capsys, monkeypatch)
    one_line_error(code, out, err, "training diverged")
    assert not (tmp_path / "failed").exists()  # its checkpoint and lock went with it


# ---------------------------------------------------------------------------
# 3. --resume only on the same inputs; a damaged checkpoint is said so
# ---------------------------------------------------------------------------
def test_resume_with_data_that_differ_only_in_the_validation_split_is_refused(tmp_path, capsys, monkeypatch):
    model, data = cli_files(tmp_path)
    base = ["compress", model, "--data", data, *CLI_RUN, "--out", tmp_path / "run"]
    with monkeypatch.context() as patch:
        interrupt_after(patch, 12)
        assert run_cli(base, capsys, monkeypatch)[0] == 130
    arrays = dict(np.load(data))
    arrays["x_val"] = arrays["x_val"][::-1].copy()
    arrays["y_val"] = arrays["y_val"][::-1].copy()
    np.savez(data, **arrays)
    checkpoint = (tmp_path / "run" / CHECKPOINT).read_bytes()
    code, out, err = run_cli([*base, "--resume"], capsys, monkeypatch)
    one_line_error(code, out, err, "another model or other data")
    assert (tmp_path / "run" / CHECKPOINT).read_bytes() == checkpoint


def test_resume_into_a_folder_that_does_not_exist_leaves_none(tmp_path, capsys, monkeypatch):
    model, data = cli_files(tmp_path)
    no_training(monkeypatch)
    code, out, err = run_cli(["compress", model, "--data", data, *FAST, "--out", tmp_path / "a" / "b", "--resume"],
                             capsys, monkeypatch)
    one_line_error(code, out, err, "nothing to resume")
    assert not (tmp_path / "a").exists()


def _damaged_checkpoints(path: Path):
    yield "not a zip", lambda: path.write_bytes(b"this is not a checkpoint\n")
    yield "truncated zip", lambda: np.savez(path, meta=np.array("{}")) or path.write_bytes(path.read_bytes()[:40])
    yield "keys missing", lambda: np.savez(path, meta=np.array(json.dumps({"config": {"train": {}}})))
    yield "bad JSON", lambda: np.savez(path, meta=np.array("{not json"))
    yield "pickled objects", lambda: np.savez(path, meta=np.array([{"a": 1}], dtype=object))


@pytest.mark.parametrize("case", [c for c, _ in _damaged_checkpoints(Path("-"))])
def test_a_damaged_checkpoint_is_named_and_left_as_it_is(tmp_path, capsys, monkeypatch, case):
    model, data = cli_files(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    dict(_damaged_checkpoints(out / CHECKPOINT))[case]()
    before = snapshot(out)
    no_training(monkeypatch)
    code, out_text, err = run_cli(["compress", model, "--data", data, *FAST, "--out", out, "--resume"], capsys, monkeypatch)
    one_line_error(code, out_text, err, f"the checkpoint in {out} is damaged")
    assert "rerun without --resume" in err
    assert snapshot(out) == before


# ---------------------------------------------------------------------------
# 4. File-system faults: one line naming the path and the cause, nothing left behind
# ---------------------------------------------------------------------------
def _fail_writing(monkeypatch, name: str, code: int):
    """Make the atomic write of every file called ``name`` fail with ``code`` at its fsync
    (where a full disk shows when the write itself was buffered)."""
    original = os.fsync

    def fsync(fd):
        if Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(f".{name}."):
            raise OSError(code, os.strerror(code))
        original(fd)

    monkeypatch.setattr(files.os, "fsync", fsync)


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="names the file behind a descriptor through /proc")
@pytest.mark.parametrize("name", [CHECKPOINT, REPORT])  # the first write; the last, after the models
def test_no_space_left_ends_in_one_line_and_leaves_nothing_behind(tmp_path, capsys, monkeypatch, name):
    model, data = cli_files(tmp_path)
    out = tmp_path / "new" / "out"
    _fail_writing(monkeypatch, name, errno.ENOSPC)
    code, out_text, err = run_cli(["compress", model, "--data", data, *FAST, "--out", out], capsys, monkeypatch)
    one_line_error(code, out_text, err, f"{out / name}: No space left on device")
    assert not (tmp_path / "new").exists()


def test_a_read_only_folder_is_one_line_naming_the_path(tmp_path, capsys, monkeypatch):
    model, _ = cli_files(tmp_path)

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), kwargs.get("dir"))

    monkeypatch.setattr(files.tempfile, "mkstemp", read_only)  # root ignores chmod: fake the mount instead
    code, out, err = run_cli(["convert", model, tmp_path / "sub" / "copy.onnx"], capsys, monkeypatch)
    one_line_error(code, out, err, f"{tmp_path / 'sub' / 'copy.onnx'}: Read-only file system")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.npz", "model.onnx"]


@pytest.mark.parametrize("case, fragment", [
    ("a file where a folder is expected", "is a file, not a folder"),
    ("a folder where a file is expected", "is a folder"),
    ("a name longer than the file system allows", "File name too long"),
])
def test_bad_output_paths_of_train_are_one_line_before_any_work(tmp_path, capsys, monkeypatch, case, fragment):
    model, data = cli_files(tmp_path)
    out = {
        "a file where a folder is expected": data / "model.onnx",
        "a folder where a file is expected": tmp_path,
        "a name longer than the file system allows": tmp_path / ("m" * 300 + ".onnx"),
    }[case]
    before = snapshot(tmp_path)
    no_training(monkeypatch)
    code, out_text, err = run_cli(["train", model, "--data", data, "--out", out], capsys, monkeypatch)
    one_line_error(code, out_text, err, fragment)
    assert snapshot(tmp_path) == before


def test_compress_into_a_file_or_below_one_is_one_line(tmp_path, capsys, monkeypatch):
    model, data = cli_files(tmp_path)
    no_training(monkeypatch)
    for out, fragment in ((data, "is not a folder"), (data / "sub", "is a file, not a folder")):
        code, out_text, err = run_cli(["compress", model, "--data", data, *FAST, "--out", out], capsys, monkeypatch)
        one_line_error(code, out_text, err, fragment)


# ---------------------------------------------------------------------------
# 5. Absurd sizes and values are refused before any work
# ---------------------------------------------------------------------------
ALL_LAYERS = ["--prune", "fc1", "--prune", "fc2", "--prune", "fc3"]


@pytest.mark.parametrize("command, options, fragment", [
    ("train", ["--seed", "-1"], "seed"),
    ("train", ["--weight-decay", "-1"], "weight decay"),
    ("train", ["--weight-decay", "nan"], "weight decay"),
    ("train", ["--lr", "3e38"], "learning rate"),
    ("train", ["--time-steps", "100000000"], "needs about"),
    ("compress", ["--seed", "-1"], "seed"),
    ("compress", ["--lr", "3e38"], "learning rate"),
    ("compress", ["--budget", "1e-300", *ALL_LAYERS], "less than one synapse"),
    ("compress", ["--time-steps", "100000000"], "needs about"),
    ("compress", ["--e-ac", "1e308", "--resource", "energy"], "e_ac_pj"),
    ("evaluate", ["--time-steps", "100000000"], "needs about"),
    ("evaluate", ["--seed", "-1"], "seed"),
])
def test_absurd_values_are_one_line_before_any_work(tmp_path, capsys, monkeypatch, command, options, fragment):
    model, data = cli_files(tmp_path)
    no_training(monkeypatch)
    out = {"train": ["--out", tmp_path / "out.onnx"], "compress": ["--out", tmp_path / "out"], "evaluate": []}[command]
    code, out_text, err = run_cli([command, model, "--data", data, *options, *out], capsys, monkeypatch)
    one_line_error(code, out_text, err, fragment)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.onnx").exists()


def test_training_whose_weights_overflow_stops_in_one_line(monkeypatch):
    from test_compress import splits, tiny_mlp

    graph = tiny_mlp()
    train, val, _ = splits(graph)
    trainer = Trainer(graph, train, val, TrainConfig(lr=10.0, progress=False))
    original = trainer.optimizer.step

    def overflowing_step(grads, penalty=None):  # what a huge step does to float32 weights
        original(grads, penalty)
        next(iter(trainer.params.values()))[0] = np.inf

    monkeypatch.setattr(trainer.optimizer, "step", overflowing_step)
    with pytest.raises(SNNError, match="training diverged at step 0 .*lower the learning rate"):
        trainer.train_step()


def _npz_declaring(path: Path, shape: tuple[int, ...]) -> Path:
    """An .npz whose ``x`` and ``x_test`` headers declare ``shape`` (float32) over a body of 16 bytes: the harness's input."""
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.float32))
    header["shape"] = shape
    with zipfile.ZipFile(path, "w") as archive:
        for split in ("", "_test"):
            with archive.open(f"x{split}.npy", "w") as member:
                np.lib.format.write_array_header_1_0(member, header)
                member.write(bytes(16))
            with archive.open(f"y{split}.npy", "w") as member:
                np.lib.format.write_array(member, np.zeros(4, np.int64))
    return path


@pytest.mark.parametrize("command", ["evaluate", "train", "compress"])
def test_an_npz_header_declaring_a_huge_array_is_refused_before_reading_it(tmp_path, capsys, monkeypatch, command):
    model, _ = cli_files(tmp_path)
    data = _npz_declaring(tmp_path / "huge.npz", (10**11,))
    out = {"train": ["--out", tmp_path / "out.onnx"], "compress": ["--out", tmp_path / "out"], "evaluate": []}[command]
    code, out_text, err = run_cli([command, model, "--data", data, *out], capsys, monkeypatch)
    one_line_error(code, out_text, err, "declares shape (100000000000,)")
    assert "373 GiB" in err


def test_data_larger_than_the_available_memory_is_refused_saying_how_much_it_needs(tmp_path, capsys, monkeypatch):
    model, _ = cli_files(tmp_path)
    data = tmp_path / "zeros.npz"
    zeros, labels = np.zeros((2**18, 8), np.float32), np.zeros(2**18, np.int64)  # 8 MiB, compressed to little
    np.savez_compressed(data, x=zeros, y=labels, x_test=zeros, y_test=labels)
    monkeypatch.setattr(footprint, "available_bytes", lambda: 2**20)
    code, out, err = run_cli(["evaluate", model, "--data", data], capsys, monkeypatch)
    one_line_error(code, out, err, "needs about 16 MiB of memory but 1 MiB are available")


def test_the_memory_estimate_grows_with_time_steps_and_batch():
    from dataclasses import replace

    from test_compress import splits, tiny_mlp

    graph = tiny_mlp()
    train, val, _ = splits(graph)
    longer = (replace(train, time_steps=8), replace(val, time_steps=8))
    estimate = footprint.run_bytes(graph, (train, val), 32, training=True)
    assert footprint.run_bytes(graph, longer, 32, training=True) == 2 * estimate
    assert footprint.run_bytes(graph, (train, val), 96, training=True) > estimate
    assert footprint.run_bytes(graph, (train, val), 32, training=False) <= estimate
    assert estimate > 4 * 96 * 8 * 4  # at least the encoded training split


def test_available_memory_is_read_from_meminfo(tmp_path):
    (tmp_path / "meminfo").write_text("MemTotal: 100 kB\nMemAvailable:     2048 kB\n")
    assert footprint.available_bytes(tmp_path / "meminfo") == 2 * 2**20
    assert footprint.available_bytes(tmp_path / "missing") is None


# ---------------------------------------------------------------------------
# 6. Ctrl-C at any moment exits 130 with one line
# ---------------------------------------------------------------------------
def _ctrl_c_as_in_a_terminal() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _signal_state(pid) -> str:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return "unknown"
    return " ".join(line.replace("\t", "") for line in lines if line.startswith(("SigBlk", "SigIgn", "SigCgt", "SigPnd", "ShdPnd")))


def _interrupt_when(tmp_path, ready) -> subprocess.CompletedProcess:
    model, data = cli_files(tmp_path)
    command = [sys.executable, "-m", "onnx_snn_compress", "compress", str(model), "--data", str(data), *FAST,
               "--steps-per-budget", "100000", "--out", str(tmp_path / "out"), "--json"]  # --json: no progress lines
    # PYTHONFAULTHANDLER: a run that does not stop is aborted below and prints where every thread was.
    # The child starts with Ctrl-C as a shell's foreground job has it (default, not blocked): an
    # ignored or blocked SIGINT is inherited across exec, and a process that inherits it rightly
    # ignores Ctrl-C (as `nohup` and background jobs rely on): a suite started as `bash .ci/run &`
    # from a script (SIGINT ignored) failed here until the child's was reset.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                               env={**os.environ, "PYTHONFAULTHANDLER": "1"}, preexec_fn=_ctrl_c_as_in_a_terminal)
    deadline = time.monotonic() + 120
    while not ready(process.pid) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    process.send_signal(signal.SIGINT)
    try:
        out, err = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:  # e.g. a child that ignores SIGINT: keep the evidence
        states = f"signal masks: child {_signal_state(process.pid)}; this process {_signal_state('self')}"
        process.send_signal(signal.SIGABRT)
        out, err = process.communicate()
        pytest.fail(f"still running 120 s after Ctrl-C; {states}; where it was:\n{err}")
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def _mapped(pid: int, library: str) -> bool:
    try:
        return library in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="POSIX timers")
def test_a_ctrl_c_inside_a_destructor_is_raised_again_after_it(monkeypatch):
    from onnx_snn_compress.cli import main

    monkeypatch.setattr(main, "_AGAIN_AFTER", 600.0)  # cancelled below, long before it fires

    class Finalized:
        def __del__(self):  # where Python prints a KeyboardInterrupt and drops it
            main._interrupt(signal.SIGINT, sys._getframe())

    try:
        Finalized()
        assert signal.getitimer(signal.ITIMER_REAL)[0] > 0  # armed to raise it again, outside
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    with pytest.raises(KeyboardInterrupt):  # anywhere else: at once
        main._interrupt(signal.SIGINT, sys._getframe())


def test_a_destructor_failing_after_a_ctrl_c_prints_nothing(monkeypatch, capsys):
    from onnx_snn_compress.cli import main

    monkeypatch.delenv("SNN_COMPRESS_DEBUG", raising=False)
    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)

    class HalfMade:  # as llvmlite's ObjectRef when Ctrl-C lands inside its __init__
        def __del__(self):
            del self.handle  # never set: AttributeError, which Python prints and drops

    with pytest.raises(KeyboardInterrupt):
        main._interrupt(signal.SIGINT, sys._getframe())
    HalfMade()
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("SNN_COMPRESS_DEBUG", "1")
    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)
    with pytest.raises(KeyboardInterrupt):
        main._interrupt(signal.SIGINT, sys._getframe())
    HalfMade()
    assert "AttributeError" in capsys.readouterr().err


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="watches the start-up through /proc")
@pytest.mark.parametrize("moment", ["during start-up imports", "while training"])
def test_ctrl_c_at_any_moment_exits_130_with_one_line(tmp_path, moment):
    if moment == "during start-up imports":
        ready = lambda pid: _mapped(pid, "_multiarray_umath")  # noqa: E731  numpy is loading
    else:
        ready = lambda pid: (tmp_path / "out" / LOCK).exists()  # noqa: E731
    done = _interrupt_when(tmp_path, ready)
    assert done.returncode == 130, done.stderr
    assert done.stderr.count("\n") == 1 and "interrupted" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out" / LOCK).exists()


# ---------------------------------------------------------------------------
# Output folder hygiene (issue 12)
# ---------------------------------------------------------------------------
def test_a_finished_run_removes_its_checkpoint_unless_asked_to_keep_it(tmp_path, capsys, monkeypatch):
    model, data = cli_files(tmp_path)
    for keep in (False, True):
        out = tmp_path / f"keep_{keep}"
        code, _, err = run_cli(["compress", model, "--data", data, *FAST, "--out", out, "--json",
                                *(["--keep-checkpoint"] if keep else [])], capsys, monkeypatch)
        assert code == 0, err
        assert (out / CHECKPOINT).exists() is keep
        assert (out / REPORT).is_file() and not (out / LOCK).exists()
    # resuming a finished run changes nothing (but the timings), with or without its checkpoint
    def results(out):
        report = json.loads((out / REPORT).read_text())
        report.pop("timings_s", None)
        return report, {k: v for k, v in snapshot(out).items() if k.startswith("budget_")}

    for keep in (False, True):
        out = tmp_path / f"keep_{keep}"
        before = results(out)
        code, _, err = run_cli(["compress", model, "--data", data, *FAST, "--out", out, "--resume", "--json",
                                *(["--keep-checkpoint"] if keep else [])], capsys, monkeypatch)
        assert code == 0, err
        assert results(out) == before


def test_overwrite_replaces_only_the_runs_own_files(tmp_path, capsys, monkeypatch):
    model, data = cli_files(tmp_path)
    out = tmp_path / "out"
    base = ["compress", model, "--data", data, "--steps-per-budget", "4", "--eval-every", "2", "--time-steps", "4",
            "--out", out, "--json"]
    assert run_cli([*base, "--budget", "0.6"], capsys, monkeypatch)[0] == 0
    (out / "notes.txt").write_text("mine")
    (out / "budget_0.6" / "mine.txt").write_text("mine too")  # inside a run's folder: that folder is the run's
    code, _, err = run_cli([*base, "--budget", "0.5"], capsys, monkeypatch)
    one_line_error(code, _, err, "--overwrite")
    code, _, err = run_cli([*base, "--budget", "0.5", "--overwrite"], capsys, monkeypatch)
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.glob("budget_*")) == ["budget_0.5"]
    assert json.loads((out / REPORT).read_text())["budgets"][0]["budget"] == 0.5


def test_resume_and_overwrite_together_are_refused(tmp_path, capsys, monkeypatch):
    model, data = cli_files(tmp_path)
    no_training(monkeypatch)
    code, out, err = run_cli(["compress", model, "--data", data, *FAST, "--out", tmp_path / "out", "--resume",
                              "--overwrite"], capsys, monkeypatch)
    one_line_error(code, out, err, "give one of them")
