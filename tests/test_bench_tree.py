"""bench/tree.py: a bench script's child imports the library, kernels included, from the tree it names."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


@pytest.fixture
def copy(tmp_path) -> Path:
    """A tree with this one's pyproject.toml (its package-dir mapping) and a library whose
    packages are empty but for a marked kernels/adam.py."""
    tree = tmp_path / "copy"
    tree.mkdir()
    shutil.copy(ROOT / "pyproject.toml", tree)
    for folder in ("onnx_snn_compress", "kernels", "cli", "samples"):
        (tree / folder).mkdir()
        (tree / folder / "__init__.py").write_text("")
    (tree / "kernels" / "adam.py").write_text("MARK = 'the copy'\n")
    return tree


def python(code: str, *arguments: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter with bench/ first on sys.path (as a bench script has it)."""
    return subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(BENCH)!r})\n{code}",
                           *arguments], capture_output=True, text=True, timeout=60)


def test_library_and_kernels_from_the_named_tree(copy):
    done = python(
        "from tree import use_tree\n"
        "print(use_tree(sys.argv[1]))\n"
        "import onnx_snn_compress, onnx_snn_compress.kernels.adam as adam, onnx_snn_compress.cli as cli\n"
        "import onnx_snn_compress.samples as samples\n"
        "for module in (onnx_snn_compress, adam, cli, samples):\n"
        "    print(module.__file__)\n"
        "print(adam.MARK)\n"
        "print(use_tree(sys.argv[1]))\n", str(copy))  # a second call with the same tree does nothing
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == lines[-1] == str(copy.resolve())
    assert [Path(line) for line in lines[1:5]] == [copy.resolve() / folder / name for folder, name in (
        ("onnx_snn_compress", "__init__.py"), ("kernels", "adam.py"), ("cli", "__init__.py"),
        ("samples", "__init__.py"))]
    assert lines[5] == "the copy"


def test_raises_when_the_library_was_imported_first(copy):
    done = python("import onnx_snn_compress\nfrom tree import use_tree\nuse_tree(sys.argv[1])\n", str(copy))
    assert done.returncode != 0
    assert "RuntimeError" in done.stderr and "already imported" in done.stderr


def test_raises_for_a_second_tree(copy, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(copy, other)
    done = python("from tree import use_tree\nuse_tree(sys.argv[1])\nuse_tree(sys.argv[2])\n", str(copy), str(other))
    assert done.returncode != 0 and "already imports from" in done.stderr


def test_raises_for_a_folder_without_the_library(tmp_path):
    done = python("from tree import use_tree\nuse_tree(sys.argv[1])\n", str(tmp_path))
    assert done.returncode != 0 and "FileNotFoundError" in done.stderr


def test_run_as_a_script_runs_code_in_the_tree(copy):
    done = subprocess.run([sys.executable, str(BENCH / "tree.py"), str(copy), "-c",
                           "import sys, onnx_snn_compress.kernels.adam as adam; print(adam.MARK, sys.argv[1:])",
                           "one", "two"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "the copy ['one', 'two']"


def test_raises_when_pythonpath_names_another_tree(copy, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(copy, other)
    done = subprocess.run([sys.executable, str(BENCH / "tree.py"), str(copy), "-c", "pass"], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(other)})
    assert done.returncode != 0 and "PYTHONPATH names the library" in done.stderr


def test_a_mapped_folder_missing_from_the_tree_fails_to_import(copy):
    shutil.rmtree(copy / "cli")
    done = python("from tree import use_tree\nuse_tree(sys.argv[1])\nimport onnx_snn_compress.cli\n", str(copy))
    assert done.returncode != 0 and "FileNotFoundError" in done.stderr
