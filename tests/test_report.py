"""The human views of a compression report: rounded numbers, the table, figures, the
self-contained page, and `snn-compress report DIR`, which re-renders them from
report.json without recomputing anything."""

from __future__ import annotations

import copy
import json
import re

import pytest

from onnx_snn_compress.report import accuracy_percent, count, energy, find_baselines, percent, render, seconds, table

from commands import run_cli


def entry(budget: float, kept: float, test: float) -> dict:
    figures = {"params": 11208 * kept, "macs": 306432 * kept, "effective_macs": 17240.888888, "synops": 160186.5333 * kept,
               "energy": 0.9 * 160186.5333 * kept + 4.6 * 17240.888888}
    return {
        "budget": budget, "resource": "params", "achieved": kept, "figures": figures,
        "fractions": {"params": kept, "macs": kept, "effective_macs": 1.0, "synops": kept, "energy": 0.7},
        "accuracy": {"val": test - 0.01, "val_onnxruntime": test - 0.01, "test": test, "test_onnxruntime": test},
        "runtimes_agree": True, "model": f"budget_{budget:g}/model.onnx", "forced": budget < 0.1, "repaired": 0,
        "layers": {"conv1": {"connectivity": 1.0, "nonzero": 72, "synapses": 72},
                   "fc1": {"connectivity": kept / 2, "nonzero": int(8192 * kept / 2), "synapses": 8192}},
        "firing_rates": {"lif1": 0.3, "lif2": 0.1 * kept},
    }


def sample_report(method: str = "minimax") -> dict:
    return {
        "version": 1, "input_model": "digits_conv.onnx", "method": method, "resource": "params",
        "measured_on": "validation split", "measure_samples": 256,
        "input": {"figures": entry(1.0, 1.0, 0.99)["figures"], "accuracy": {"val": 0.98, "test": 0.9944444444}},
        "budgets": [entry(0.2, 0.19994646680942185, 0.9638), entry(0.05, 0.0498, 0.905)],
    }


def write_run(folder, report) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report))


# -- numbers for people ------------------------------------------------------------------
@pytest.mark.parametrize("value, text", [(0.9637883008356546, "96.4 %"), (1.0, "100 %"), (0.0052, "0.52 %"), (None, "-")])
def test_percentages_keep_three_significant_digits(value, text):
    assert percent(value) == text


@pytest.mark.parametrize("value, text", [(0.96, "96.0 %"), (0.962, "96.2 %"), (1.0, "100.0 %"), (0.25, "25.0 %"),
                                         (0.1, "10.0 %"), (0.0987, "9.87 %"), (0.005, "0.5 %"), (None, "-")])
def test_accuracies_keep_one_decimal_from_ten_percent_so_a_column_reads_alike(value, text):
    # a fresh user read "96 %" beside "96.2 %" in one column
    assert accuracy_percent(value) == text


@pytest.mark.parametrize("picojoules, text", [(0.9, "0.9 pJ"), (4600, "4.6 nJ"), (223475.97, "223 nJ"),
                                              (123456, "123 nJ"), (1.2e6, "1.2 µJ"), (3.4e9, "3.4 mJ")])
def test_energy_is_written_with_a_unit_that_keeps_three_digits(picojoules, text):
    assert energy(picojoules) == text


def test_counts_and_durations_read_as_people_write_them():
    assert count(306432.0) == "306,432"
    assert count(160186.5333) == "160,187"
    assert count(12_345_678) == "12.3 M"
    assert [seconds(s) for s in (8.4, 125, 3725)] == ["8 s", "2 min 05 s", "1 h 02 min"]


# -- the table ---------------------------------------------------------------------------
def test_the_table_rounds_every_number_and_names_the_measurement():
    text = table(sample_report())
    assert "first 256 samples of the validation split" in text
    assert "96.4 %" in text and "20 %" in text and "306,432" in text and "forced" in text
    assert not re.search(r"\d\.\d{4,}", text)  # no full-precision floats: those live in report.json


def test_a_column_reads_in_one_unit_when_its_largest_count_reaches_ten_million():
    report = sample_report()
    report["input"]["figures"]["macs"] = 16_800_000
    report["budgets"][0]["figures"]["macs"] = 6_508_460
    text = table(report)
    assert "16.8 M" in text and "6.51 M" in text and "6,508,460" not in text
    assert "2,241" in text  # the synapse column stays exact


# -- figures, the page, and the report command --------------------------------------------
def test_render_writes_every_figure_and_a_self_contained_page_without_touching_the_report(tmp_path):
    pytest.importorskip("matplotlib")
    write_run(tmp_path, sample_report())
    before = (tmp_path / "report.json").read_bytes()
    text, written = render(tmp_path, as_html=True)
    assert text == table(sample_report())
    assert sorted(p.name for p in written) == sorted(
        [f"{name}.{suffix}" for name in ("curve", "connectivity", "firing_rates") for suffix in ("png", "svg")]
        + ["report.html"])
    assert (tmp_path / "report.json").read_bytes() == before
    assert (tmp_path / "curve.png").read_bytes().startswith(b"\x89PNG")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert page.count("<svg") == 3  # the three figures, inlined
    assert not re.search(r'(src|href)="(?!data:|#)', page)  # nothing points at another file
    assert "96.4 %" in page


def test_the_curve_draws_the_baselines_the_folder_holds(tmp_path):
    pytest.importorskip("matplotlib")
    write_run(tmp_path, sample_report())
    write_run(tmp_path / "magnitude", sample_report("magnitude"))
    assert list(find_baselines(tmp_path)) == ["magnitude (magnitude)"]
    render(tmp_path)
    svg = (tmp_path / "curve.svg").read_text(encoding="utf-8")
    assert "magnitude (magnitude)" in svg and "input model" in svg  # matplotlib keeps legend text as comments


def test_figures_are_skipped_with_a_reason_when_there_is_no_accuracy(tmp_path):
    pytest.importorskip("matplotlib")
    report = sample_report()
    for item in report["budgets"]:
        item["accuracy"] = {}
    write_run(tmp_path, report)
    _, written = render(tmp_path)
    assert "curve.png" not in [p.name for p in written]
    assert "connectivity.png" in [p.name for p in written]


def test_the_report_command_prints_the_table_and_writes_the_page(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    write_run(tmp_path, sample_report())
    code, out, err = run_cli(["report", tmp_path, "--html"], capsys, monkeypatch)
    assert code == 0, err
    assert "96.4 %" in out and "report.html" in out
    assert (tmp_path / "report.html").is_file()


BROKEN = json.dumps({"budgets": [{"budget": 0.1}], "input": {}, "method": "minimax", "resource": "params"})


@pytest.mark.parametrize("content, fragment", [(None, "does not exist"), ("{not json", "not readable JSON"),
                                               ('{"budgets": []}', "not a compression report"),
                                               (BROKEN, "lacks what the views need")])
def test_the_report_command_refuses_a_folder_without_a_report_in_one_line(tmp_path, content, fragment, capsys, monkeypatch):
    if content is not None:
        (tmp_path / "report.json").write_text(content)
    code, out, err = run_cli(["report", tmp_path], capsys, monkeypatch)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and fragment in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if content is None else ["report.json"])


def test_a_report_of_an_older_version_without_measure_samples_still_renders():
    report = copy.deepcopy(sample_report())
    del report["measure_samples"]
    for item in [report["input"], *report["budgets"]]:
        del item["figures"]["effective_macs"]
    assert "measured on the validation split" in table(report)


def test_without_matplotlib_the_note_names_the_package_which_pip_installs_from_a_clone_too(monkeypatch):
    # `pip install 'onnx-snn-compress[plot]'` needs the package on the index; the package itself
    # installs anywhere (a fresh user of a clone tried the first)
    from onnx_snn_compress import report

    monkeypatch.setattr(report, "_pyplot", lambda: None)
    assert report.figures_missing_note() == "no figures: matplotlib is not installed; pip install 'matplotlib>=3.7' (the [plot] extra)"
