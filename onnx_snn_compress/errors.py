"""User-facing errors.

Every problem a user can cause (a bad file, bad data, an unsupported op) is raised
as an :class:`SNNError` whose message is one line naming the problem. The CLI
prints that line on stderr and exits with code 2; it never shows a traceback.
"""

from __future__ import annotations

# The exit codes of `snn-compress` (the contract a CI job relies on; docs/ci.md)
EXIT_OK = 0
EXIT_GATE_FAILED = 1  # the run completed and wrote its outputs, but a quality gate failed
EXIT_BAD_INPUT = 2  # bad input or usage: nothing was written
EXIT_INTERNAL_ERROR = 3  # a bug in this tool (set SNN_COMPRESS_DEBUG=1 for the traceback)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT); `compress --resume` continues


class SNNError(Exception):
    """A problem with the user's input, reported as one line."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str):
        # One line, always: a multi-line message would break CI logs that grep stderr.
        super().__init__(" ".join(str(message).split()))


class ModelError(SNNError):
    """The model file cannot be read or is not an SNN this tool understands."""


class UnsupportedOpError(ModelError):
    """The model holds an op (or op pattern) that no frontend can turn into the IR."""


class DataError(SNNError):
    """The data file cannot be read or does not fit the model."""


class IRError(SNNError):
    """A graph that violates the IR's rules (bad shapes, dangling edges, cycles)."""


def install_hint(extra: str) -> str:
    """How to install the optional extra ``extra`` ("nir", "plot"): pip naming its packages with
    the floors pyproject.toml gives them (``pip install 'nir>=1.0' 'h5py>=3.8'``), which works
    from a clone as from the package index (``'onnx-snn-compress[nir]'`` needs the package on
    the index); read from the installed metadata, else the extra's name alone."""
    import importlib.metadata
    import re

    try:
        requirements = importlib.metadata.requires("onnx-snn-compress") or []
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
        requirements = []
    marker = re.compile(r"""^\s*extra\s*==\s*["']""" + re.escape(extra) + r"""["']\s*$""")
    packages = [spec.strip() for spec, _, condition in (r.partition(";") for r in requirements) if marker.match(condition)]
    if not packages:
        return f"install the [{extra}] extra of onnx-snn-compress"
    return "pip install " + " ".join(f"'{package}'" for package in packages) + f" (the [{extra}] extra)"
