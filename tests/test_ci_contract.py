"""The contract a CI pipeline relies on (issue 12): exit codes, quality gates, one JSON
document per --json run, a report that validates against the shipped schema, TOML
configuration that repeats a run, the Python API, and the workflow of docs/ci.md.

Tiny models and few steps: what is asserted holds for any model and any number of steps.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

import onnx_snn_compress
from onnx_snn_compress import ir
from onnx_snn_compress.backends.onnx_profile import save
from onnx_snn_compress.gates import Gates, apply_to_report
from onnx_snn_compress.profile import KEY_ENCODING, KEY_TIME_STEPS
from onnx_snn_compress.samples import digits_path, sample_model_path
from onnx_snn_compress.schema import report_schema, validate_report
from commands import run_cli

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--steps-per-budget", "6", "--eval-every", "3", "--batch-size", "32", "--time-steps", "4",
        "--budget", "0.6", "--budget", "0.3"]



def mlp(first_share_large: bool = False) -> ir.Graph:
    """8 -> 6 -> 24 -> 3 (first layer 14 % of the synapses), or 48 -> 12 -> 3 (94 %)."""
    rng = np.random.default_rng(0)
    sizes = (48, 12, 3) if first_share_large else (8, 6, 24, 3)
    nodes: list[ir.Node] = [ir.Input("x", shape=(sizes[0],))]
    previous = "x"
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        weight = (rng.normal(size=(fan_out, fan_in)) * 2.0 / np.sqrt(fan_in)).astype(np.float32)
        nodes += [ir.Linear(f"fc{index}", (previous,), weight=weight, bias=np.full(fan_out, 0.2, np.float32)),
                  ir.Neuron(f"lif{index}", (f"fc{index}",), beta=0.9)]
        previous = f"lif{index}"
    return ir.Graph([*nodes, ir.Readout("out", (previous,))], {"name": "mlp"})


def files(tmp_path: Path, graph: ir.Graph | None = None) -> tuple[Path, Path]:
    """A model file and learnable data (the label is the argmax of a fixed projection)."""
    graph = mlp() if graph is None else graph
    model, data = tmp_path / "model.onnx", tmp_path / "data.npz"
    save(graph, model)
    rng = np.random.default_rng(1)
    projection = rng.normal(size=(graph.input.shape[0], 3))
    arrays = {}
    for split, size in (("", 64), ("_val", 32), ("_test", 32)):
        x = rng.uniform(0, 1, size=(size, *graph.input.shape)).astype(np.float32)
        arrays[f"x{split}"], arrays[f"y{split}"] = x, np.argmax(x @ projection, axis=1)
    np.savez(data, **arrays)
    return model, data


def compress_cli(tmp_path, capsys, monkeypatch, *extra, out="out", graph=None):
    model, data = files(tmp_path, graph)
    return run_cli(["compress", model, "--data", data, *FAST, "--out", tmp_path / out, *extra], capsys, monkeypatch)


def read_report(folder: Path) -> dict:
    report = json.loads((folder / "report.json").read_text())
    validate_report(report)
    return report


# ---------------------------------------------------------------------------
# Exit codes and quality gates
# ---------------------------------------------------------------------------
def test_a_failed_gate_still_writes_the_report_names_the_budget_and_exits_1(tmp_path, capsys, monkeypatch):
    code, _, err = compress_cli(tmp_path, capsys, monkeypatch, "--max-resource", "0")
    assert code == 1
    report = read_report(tmp_path / "out")
    assert report["gates"]["passed"] is False and report["gates"]["max_resource"] == 0
    for entry in report["budgets"]:
        assert entry["gate"]["passed"] is False
        assert any("--max-resource" in reason for reason in entry["gate"]["failed"])
        assert f"gate failed: budget {entry['budget']:g}: params" in err
        assert (tmp_path / "out" / entry["model"]).is_file()
    assert "Traceback" not in err


def test_gates_that_pass_exit_0_and_say_so_in_the_report(tmp_path, capsys, monkeypatch):
    code, _, err = compress_cli(tmp_path, capsys, monkeypatch, "--min-accuracy", "0", "--max-accuracy-drop", "1")
    assert code == 0, err
    report = read_report(tmp_path / "out")
    assert report["gates"] == {"min_accuracy": 0.0, "max_accuracy_drop": 1.0, "max_resource": None, "split": "test",
                               "select": "all", "passed": True}
    assert all(entry["gate"] == {"passed": True, "failed": []} for entry in report["budgets"])
    assert report["selected"] is None


def test_best_within_gates_selects_the_smallest_passing_model_and_exits_0(tmp_path, capsys, monkeypatch):
    first = compress_cli(tmp_path, capsys, monkeypatch, "--json", out="probe")
    figures = {e["budget"]: e["figures"]["params"] for e in json.loads(first[1])["budgets"]}
    # a resource bound that only the larger model breaks: the smaller one is selected, the run passes
    bound = (figures[0.6] + figures[0.3]) / 2
    code, out, err = compress_cli(tmp_path, capsys, monkeypatch, "--max-resource", str(bound),
                                  "--select", "best-within-gates", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["selected"] == 0.3 and report["gates"]["passed"] is True
    assert [e["gate"]["passed"] for e in report["budgets"]] == [False, True]
    # the same bound without selection: one budget fails, so the run does
    code, _, err = compress_cli(tmp_path, capsys, monkeypatch, "--max-resource", str(bound), out="all")
    assert code == 1 and "gate failed: budget 0.6" in err and "gate failed: budget 0.3" not in err


def report_with(accuracies: list[float], params: list[float], dense: float = 0.9) -> dict:
    return {"resource": "params", "input": {"accuracy": {"val": 0.5, "test": dense}, "figures": {"params": 100.0}},
            "budgets": [{"budget": p / 100, "accuracy": {"val": 0.5, "test": a}, "figures": {"params": p}}
                        for a, p in zip(accuracies, params)]}


def test_accuracy_drop_is_measured_against_the_uncompressed_model_on_the_test_split():
    report = report_with([0.89, 0.85, 0.80], [50, 20, 10])
    assert apply_to_report(report, Gates(max_accuracy_drop=0.05), "best-within-gates") is True
    assert [e["gate"]["passed"] for e in report["budgets"]] == [True, True, False]
    assert report["selected"] == 0.2  # the smallest model within 5 points of 90 %
    assert "accuracy drop 0.1000 (from 0.9000) > --max-accuracy-drop 0.05" in report["budgets"][2]["gate"]["failed"]


def test_best_within_gates_without_a_passing_model_fails_and_selects_nothing():
    report = report_with([0.5, 0.4], [50, 20])
    assert apply_to_report(report, Gates(min_accuracy=0.9), "best-within-gates") is False
    assert report["selected"] is None and report["gates"]["passed"] is False


@pytest.mark.parametrize("option, value, fragment", [
    ("--min-accuracy", "95", "accuracies are fractions"),
    ("--max-accuracy-drop", "-0.1", "outside [0, 1]"),
    ("--max-resource", "-1", "--max-resource -1"),
    ("--select", "best", "best-within-gates"),  # the choices are listed
])
def test_bad_gates_are_bad_input_exit_2_before_any_work(tmp_path, capsys, monkeypatch, option, value, fragment):
    code, out, err = compress_cli(tmp_path, capsys, monkeypatch, option, value)
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1 and out == ""
    assert not (tmp_path / "out").exists()


def test_an_internal_error_exits_3_in_one_line_and_ctrl_c_exits_130(tmp_path, capsys, monkeypatch):
    import onnx_snn_compress.api as api

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(api, "compress", broken)
    code, _, err = compress_cli(tmp_path, capsys, monkeypatch)
    assert code == 3 and err.strip() == "internal error: RuntimeError: a bug (set SNN_COMPRESS_DEBUG=1 for the traceback)"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "compress", interrupted)
    code, _, err = compress_cli(tmp_path, capsys, monkeypatch)
    assert code == 130 and "--resume" in err


def test_evaluate_gates_accuracy_drop_against_a_reference_model_and_resource(tmp_path, capsys, monkeypatch):
    model, data = files(tmp_path)
    base = ["evaluate", model, "--data", data, "--time-steps", "4"]
    code, out, err = run_cli([*base, "--max-accuracy-drop", "0", "--reference-model", model, "--json"], capsys, monkeypatch)
    assert code == 0, err
    result = json.loads(out)
    assert result["reference_accuracy"] == result["accuracy"] and result["gates"]["passed"] is True
    code, out, err = run_cli([*base, "--max-resource", "10", "--json"], capsys, monkeypatch)
    assert code == 1 and "gate failed: params 264 > --max-resource 10" in err
    assert json.loads(out)["figures"]["params"] == 8 * 6 + 6 * 24 + 24 * 3
    code, _, err = run_cli([*base, "--max-accuracy-drop", "0.1"], capsys, monkeypatch)
    assert code == 2 and "--reference-model" in err


# ---------------------------------------------------------------------------
# Machine-readable output: --json, the report and its schema
# ---------------------------------------------------------------------------
def test_every_command_with_json_prints_exactly_one_json_document_on_stdout(tmp_path, capsys, monkeypatch):
    model, data = files(tmp_path)
    commands = {
        "inspect": ["inspect", model],
        "evaluate": ["evaluate", model, "--data", data, "--time-steps", "4"],
        "convert": ["convert", model, tmp_path / "copy.onnx"],
        "train": ["train", model, "--data", data, "--out", tmp_path / "trained.onnx", "--epochs", "1",
                  "--time-steps", "4"],
        "compress": ["compress", model, "--data", data, *FAST, "--out", tmp_path / "out"],
        "report": ["report", tmp_path / "out"],  # the folder compress wrote just before
        "bench": ["bench", model, "--batch", "1", "--repeats", "2"],
        "schema": ["schema"],
    }
    registered = {command.name or command.callback.__name__ for command in onnx_snn_compress.cli.app.app.registered_commands}
    assert registered == set(commands)  # a new command joins this test
    for name, args in commands.items():
        code, out, err = run_cli([*args, "--json"], capsys, monkeypatch)
        assert code == 0, (name, err)
        json.loads(out)  # one document and nothing else: json.loads refuses trailing text
        assert out.strip().startswith("{") and out.endswith("}\n"), name


def test_the_report_carries_schema_version_tool_version_digests_config_threads_and_timings(tmp_path, capsys,
                                                                                           monkeypatch):
    code, out, err = compress_cli(tmp_path, capsys, monkeypatch, "--json", "--threads", "1")
    assert code == 0, err
    report = read_report(tmp_path / "out")
    assert json.loads(out) == report
    assert report["schema_version"] == report_schema()["properties"]["schema_version"]["const"]
    assert report["tool"] == {"name": "onnx-snn-compress", "version": onnx_snn_compress.__version__}
    for name in ("model", "data"):
        path = Path(report["inputs"][name]["path"])
        assert report["inputs"][name]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert {"load", "prepare", "search", "finetune", "export", "total"} <= report["timings_s"].keys()
    assert report["timings_s"]["total"] >= report["timings_s"]["finetune"] > 0
    assert report["config"]["steps_per_budget"] == 6 and report["config"]["budget"] == [0.6, 0.3]
    assert report["threads"] == 1  # what a run repeats bit for bit with


def test_the_report_names_the_thread_count_the_policy_chose(tmp_path, capsys, monkeypatch):
    code, _, err = compress_cli(tmp_path, capsys, monkeypatch)
    assert code == 0, err
    chosen = re.search(r"note: (\d+) threads? \(", err)
    assert chosen and read_report(tmp_path / "out")["threads"] == int(chosen.group(1))


def test_the_schema_command_prints_the_shipped_schema_and_reports_are_checked_by_it(capsys, monkeypatch):
    code, out, _ = run_cli(["schema"], capsys, monkeypatch)
    assert code == 0 and json.loads(out) == report_schema()
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(report_schema())
    broken = {"schema_version": 1}
    with pytest.raises(jsonschema.ValidationError):
        validate_report(broken)


# ---------------------------------------------------------------------------
# Configuration files
# ---------------------------------------------------------------------------
def test_a_config_file_sets_options_and_the_command_line_overrides_them(tmp_path, capsys, monkeypatch):
    model, data = files(tmp_path)
    (tmp_path / "run.toml").write_text(
        'model = "model.onnx"\ndata = "data.npz"\nbudget = [0.5]\nsteps-per-budget = 4\neval_every = 2\n'
        'time-steps = 4\nmethod = "magnitude"\nseed = 3\n'
    )
    code, out, err = run_cli(["compress", "--config", tmp_path / "run.toml", "--seed", "5", "--out", tmp_path / "out",
                              "--json"], capsys, monkeypatch)
    assert code == 0, err
    report = json.loads(out)
    assert report["method"] == "magnitude" and [e["budget"] for e in report["budgets"]] == [0.5]
    assert report["seed"] == 5  # the command line wins
    assert report["inputs"]["model"]["path"] == str(model)  # relative to the file's folder
    assert report["config"]["eval_every"] == 2 and report["config"]["data"] == str(data)


def test_the_saved_config_repeats_the_run_exactly(tmp_path, capsys, monkeypatch):
    code, _, err = compress_cli(tmp_path, capsys, monkeypatch, "--seed", "2", "--method", "gradual")
    assert code == 0, err
    first = read_report(tmp_path / "out")
    code, _, err = run_cli(["compress", "--config", tmp_path / "out" / "config.toml", "--out", tmp_path / "again"],
                           capsys, monkeypatch)
    assert code == 0, err
    second = read_report(tmp_path / "again")
    for report in (first, second):
        del report["timings_s"]
    assert second == first
    for entry in first["budgets"]:
        assert (tmp_path / "out" / entry["model"]).read_bytes() == (tmp_path / "again" / entry["model"]).read_bytes()


def test_train_options_come_from_a_config_file_too(tmp_path, capsys, monkeypatch):
    model, _ = files(tmp_path)
    (tmp_path / "train.toml").write_text('data = "data.npz"\nepochs = 3\ntime-steps = 4\noptimizer = "sgd"\nlr = 0.01\n')
    code, out, err = run_cli(["train", model, "--config", tmp_path / "train.toml", "--epochs", "1",
                              "--out", tmp_path / "trained.onnx", "--json"], capsys, monkeypatch)
    assert code == 0, err
    assert len(json.loads(out)["history"]) == 1  # the command line wins
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "trained.onnx")).metadata_props}
    assert "sgd lr=0.01" in props["training"] and props[KEY_TIME_STEPS] == "4"


@pytest.mark.parametrize("text, fragment", [
    ("steps = 3\n", "steps is not an option of snn-compress compress"),
    ("budget = [0.5\n", "not valid TOML"),
    ("[compress]\nseed = 1\n", "tables are not options"),
])
def test_a_bad_config_file_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, text, fragment):
    (tmp_path / "bad.toml").write_text(text)
    code, out, err = run_cli(["compress", "--config", tmp_path / "bad.toml", "--out", tmp_path / "out"], capsys, monkeypatch)
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1 and out == ""
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------
# Defaults that work, and words that agree
# ---------------------------------------------------------------------------
def test_a_first_layer_with_most_synapses_is_pruned_by_default_with_a_note(tmp_path, capsys, monkeypatch):
    code, _, err = compress_cli(tmp_path, capsys, monkeypatch, graph=mlp(first_share_large=True))
    assert code == 0, err
    assert "note: the first synapse layer 'fc1' holds 94 % of the synapses" in err and "--prune" in err
    report = read_report(tmp_path / "out")
    assert report["prunable"] == ["fc1", "fc2"] and report["notes"]
    # a model whose first layer is small keeps it dense, as the paper does, and says nothing
    code, _, err = compress_cli(tmp_path, capsys, monkeypatch, out="small_first")
    assert code == 0 and "note: the first synapse layer" not in err
    assert read_report(tmp_path / "small_first")["prunable"] == ["fc2", "fc3"]


def test_inspect_and_compress_count_params_the_same_way(tmp_path, capsys, monkeypatch):
    code, out, _ = compress_cli(tmp_path, capsys, monkeypatch, "--json")
    report = json.loads(out)
    inspected = json.loads(run_cli(["inspect", tmp_path / "model.onnx", "--json"], capsys, monkeypatch)[1])
    assert inspected["params"] == report["input"]["figures"]["params"] == 264
    pruned = tmp_path / "out" / report["budgets"][-1]["model"]
    inspected = json.loads(run_cli(["inspect", pruned, "--json"], capsys, monkeypatch)[1])
    assert inspected["params"] == report["budgets"][-1]["figures"]["params"]
    assert inspected["parameters"] > inspected["params"]  # biases are parameters, not synapses


def test_exported_models_carry_their_time_steps_and_encoding(tmp_path, capsys, monkeypatch):
    code, out, _ = compress_cli(tmp_path, capsys, monkeypatch, "--encoding", "poisson", "--json")
    assert code == 0
    for entry in json.loads(out)["budgets"]:
        props = {p.key: p.value for p in onnx.load(str(tmp_path / "out" / entry["model"])).metadata_props}
        assert props[KEY_TIME_STEPS] == "4" and props[KEY_ENCODING] == "poisson"
    code, _, _ = run_cli(["train", tmp_path / "model.onnx", "--data", tmp_path / "data.npz", "--epochs", "1",
                          "--time-steps", "5", "--out", tmp_path / "trained.onnx"], capsys, monkeypatch)
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "trained.onnx")).metadata_props}
    assert code == 0 and props[KEY_TIME_STEPS] == "5" and props[KEY_ENCODING] == "direct"


@pytest.mark.parametrize("command, choices", [
    ("compress", ["minimax", "magnitude", "gradual", "synops", "best-within-gates", "poisson"]),
    ("evaluate", ["onnxruntime", "torch-onnx", "subtract-delayed"]),
    ("train", ["sgd", "cosine", "ce_rate"]),
])
def test_help_lists_the_choices(command, choices, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # one line per option, so no choice is wrapped
    code, out, _ = run_cli([command, "--help"], capsys, monkeypatch)
    assert code == 0
    for choice in choices:
        assert choice in out


def test_the_cli_offers_exactly_the_library_runtimes():
    from onnx_snn_compress.cli.models import Runtime
    from onnx_snn_compress.evaluate import RUNTIMES

    assert tuple(member.value for member in Runtime) == RUNTIMES


# ---------------------------------------------------------------------------
# The Python API
# ---------------------------------------------------------------------------
def test_the_python_api_takes_the_cli_options_and_returns_typed_results(tmp_path):
    from onnx_snn_compress import CompressResult, EvaluateResult, compress, evaluate, load_model

    model, data = files(tmp_path)
    result = compress(model, data=data, budget=[0.6, 0.3], steps_per_budget=6, eval_every=3, batch_size=32,
                      time_steps=4, out=tmp_path / "out", min_accuracy=0.0, select="best-within-gates", log=None)
    assert isinstance(result, CompressResult) and result.passed and result.selected == 0.3
    assert result.report == read_report(tmp_path / "out")
    graph = load_model(result.model_path(result.selected))
    assert isinstance(graph, ir.Graph)
    checked = evaluate(result.model_path(0.3), data=data, time_steps=4, runtime="onnxruntime",
                       max_accuracy_drop=1.0, reference_model=model, log=None)
    assert isinstance(checked, EvaluateResult) and checked.passed
    assert checked.accuracy == pytest.approx(result.report["budgets"][1]["accuracy"]["test_onnxruntime"])
    with pytest.raises(onnx_snn_compress.SNNError, match="outside \\(0, 1\\]"):
        compress(model, data=data, budget=[2.0], out=tmp_path / "bad", log=None)


@pytest.mark.parametrize("command", ["compress", "evaluate"])
def test_the_api_takes_every_option_of_the_command_with_the_same_default(command):
    import inspect

    import typer.main

    from onnx_snn_compress import api
    from onnx_snn_compress.cli.main import app

    signature = inspect.signature(getattr(api, command)).parameters
    params = typer.main.get_command(app).commands[command].params
    assert [p.default for p in params if p.name == "quiet"] == [False]  # --quiet is the API's progress=False
    assert signature["progress"].default is True
    options = [p for p in params if p.name not in ("as_json", "config", "quiet")]
    for option in options:
        assert option.name in signature, option.name
        default = option.default.value if hasattr(option.default, "value") else option.default
        default = str(default) if isinstance(default, Path) else default
        assert default == signature[option.name].default, option.name
    assert {o.name for o in options} == set(signature) - {"progress", "log"}


# ---------------------------------------------------------------------------
# The workflow of docs/ci.md, on the embedded sample
# ---------------------------------------------------------------------------
def workflow_steps() -> list[str]:
    """The ``run:`` commands of the workflow in docs/ci.md, but the install step."""
    text = (ROOT / "docs" / "ci.md").read_text()
    workflow = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    steps, lines = [], workflow.splitlines()
    for index, line in enumerate(lines):
        match = re.match(r"(\s*)run: (.*)$", line)
        if not match:
            continue
        if match.group(2) != "|":
            steps.append(match.group(2))
            continue
        indent, body = None, []
        for follow in lines[index + 1:]:
            indent = indent if indent is not None else len(follow) - len(follow.lstrip())
            if follow.strip() and len(follow) - len(follow.lstrip()) < indent:
                break
            body.append(follow[indent:])
        steps.append("\n".join(body))
    return [step for step in steps if "pip install" not in step]


def run_workflow(folder: Path, min_accuracy: str) -> list[int]:
    """Run the steps as GitHub Actions does (bash -eo pipefail), stopping at the first failure."""
    env = {**os.environ, "MODEL": str(sample_model_path("digits_conv")), "DATA": str(folder / "data.npz"),
           "MIN_ACCURACY": min_accuracy, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    codes = []
    for step in workflow_steps():
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=600)
        codes.append(done.returncode)
        if done.returncode != 0:
            break
    return codes


def test_the_documented_workflow_passes_on_the_sample_and_fails_on_an_unmet_gate(tmp_path):
    assert len(workflow_steps()) == 4
    with np.load(digits_path()) as digits:  # the sample, fewer samples, so the test is quick
        subset = {key: digits[key][:120] for key in digits.files}
    for name in ("pass", "fail"):
        folder = tmp_path / name
        (folder / "ci").mkdir(parents=True)
        np.savez(folder / "data.npz", **subset)
        (folder / "ci" / "compress.toml").write_text("budget = [0.3, 0.2]\nsteps-per-budget = 4\neval-every = 2\n")
    assert run_workflow(tmp_path / "pass", "0.5") == [0, 0, 0, 0]
    report = read_report(tmp_path / "pass" / "out")
    assert report["selected"] is not None
    assert json.loads((tmp_path / "pass" / "out" / "edge.json").read_text())["gates"]["passed"] is True
    # an accuracy no model reaches: the compress step exits 1, its report is there for the artifact
    assert run_workflow(tmp_path / "fail", "1.0") == [0, 1]
    assert read_report(tmp_path / "fail" / "out")["gates"]["passed"] is False


def test_the_schema_names_every_method_resource_and_granularity_the_tool_has():
    from onnx_snn_compress.resources import RESOURCES
    from onnx_snn_compress.solvers import METHODS

    properties = report_schema()["properties"]
    assert properties["method"]["enum"] == list(METHODS)
    assert properties["granularity"]["enum"] == ["global", "layer"]
    assert report_schema()["$defs"]["resource"]["enum"] == list(RESOURCES)
