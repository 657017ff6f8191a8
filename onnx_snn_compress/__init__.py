"""onnx-snn-compress: compress spiking neural networks stored as ONNX, on a CPU.

The Python API (docs/api.md)::

    from onnx_snn_compress import compress, evaluate, load_model
"""

import sys
import types

from .errors import SNNError

__version__ = "0.1.0"

_API = ("compress", "evaluate", "load_model", "CompressResult", "EvaluateResult")


def __getattr__(name: str):
    # imported on first use, so `snn-compress --help` does not load Numba and onnxruntime, and
    # `snn-compress` can hold back a Ctrl-C during its start-up imports (cli/main.py)
    if name == "Graph":
        from .ir import Graph

        return Graph
    if name == "load_model":
        from .frontends import load_model

        return load_model
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value) -> None:
        # Importing the submodules `compress` and `evaluate` would bind them here, hiding the
        # API functions of the same names; the functions keep the names (the submodules stay
        # importable as `from onnx_snn_compress.compress import ...` and in sys.modules).
        if name in _API and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = ["Graph", "SNNError", "__version__", *_API]
