"""onnx-snn-compress: compress spiking neural networks stored as ONNX, on a CPU."""

from .errors import SNNError

__version__ = "0.1.0"

__all__ = ["Graph", "SNNError", "__version__"]


def __getattr__(name: str):
    # the IR (and numpy with it) loads on first use, so that `snn-compress` can catch
    # a Ctrl-C during its start-up imports (cli/main.py)
    if name == "Graph":
        from .ir import Graph

        return Graph
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
