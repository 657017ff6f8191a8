"""onnx-snn-compress: compress spiking neural networks stored as ONNX, on a CPU."""

from .errors import SNNError
from .ir import Graph

__version__ = "0.1.0"

__all__ = ["Graph", "SNNError", "__version__"]
