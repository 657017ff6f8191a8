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
