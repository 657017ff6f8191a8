"""Run the `snn-compress` command line in-process, as the tests of every command do."""

from __future__ import annotations

import sys

import pytest

from onnx_snn_compress.cli.main import main


def run_cli(args, capsys, monkeypatch) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``snn-compress ARGS`` run in this process."""
    monkeypatch.setattr(sys, "argv", ["snn-compress", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    return exit_info.value.code or 0, out, err
