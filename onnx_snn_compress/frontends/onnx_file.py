"""Read an ONNX file defensively: every way a file can be wrong becomes one ModelError line."""

from __future__ import annotations

import os
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from ..errors import ModelError, UnsupportedOpError


def _external_tensors(model: onnx.ModelProto):
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            yield tensor


def _check_external_data(model: onnx.ModelProto, folder: Path) -> None:
    """Refuse external-data locations outside the model's folder (path traversal)."""
    root = folder.resolve()
    for tensor in _external_tensors(model):
        entries = {e.key: e.value for e in tensor.external_data}
        location = entries.get("location", "")
        target = (root / location).resolve()
        if not location or os.path.isabs(location) or not target.is_relative_to(root):
            raise ModelError(
                f"initializer {tensor.name!r}: external data location {location!r} escapes the model's folder"
            )
        if not target.is_file():
            raise ModelError(f"initializer {tensor.name!r}: external data file {location!r} is missing")


_REASON_CHARACTERS = 300  # of onnx's checker message in an error line


def read_onnx(path: str | os.PathLike) -> onnx.ModelProto:
    """Load and structurally check an ONNX model, with its external data if any."""
    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, UnicodeDecodeError) as error:
        raise ModelError(f"{path}: not a readable ONNX model (truncated or not ONNX: {type(error).__name__})") from None
    if not model.graph.node or not model.opset_import:
        raise ModelError(f"{path}: not an ONNX model (no graph nodes or no opset)")
    _check_external_data(model, path.parent)
    try:
        if any(True for _ in _external_tensors(model)):
            onnx.load_external_data_for_model(model, str(path.parent))
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, DecodeError, ValueError, OSError) as error:
        # the checker's text spans lines (a node's name and op on their own): one line, whole sentences
        reason = " ".join(str(error).split()) or type(error).__name__
        if len(reason) > _REASON_CHARACTERS:
            reason = reason[:_REASON_CHARACTERS].rsplit(" ", 1)[0] + " ..."
        raise ModelError(f"{path}: invalid ONNX model: {reason}") from None
    return model


# -- reading nodes: shared by the profile and torch.onnx readers ----------------
def attributes(node: onnx.NodeProto) -> dict:
    """A node's attributes as Python values (strings decoded)."""
    values = {}
    for attribute in node.attribute:
        value = onnx.helper.get_attribute_value(attribute)
        values[attribute.name] = value.decode() if isinstance(value, bytes) else value
    return values


def describe(node: onnx.NodeProto) -> str:
    """How an error names a node: ``node 'name' (domain::Op)``."""
    op = f"{node.domain}::{node.op_type}" if node.domain else node.op_type
    return f"node {node.name or node.output[0]!r} ({op})"


def symmetric_pads(node: onnx.NodeProto, attrs: dict, axes: int = 2) -> tuple[int, ...]:
    """(pad_h, pad_w) of a 2-D Conv or pool, (pad_l,) of a 1-D one (``axes=1``); anything else is
    refused by name."""
    if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", ""):
        raise UnsupportedOpError(f"{describe(node)}: auto_pad is not supported; write explicit pads")
    pads = list(attrs.get("pads", [0] * 2 * axes))
    if len(pads) != 2 * axes or pads[:axes] != pads[axes:]:
        raise UnsupportedOpError(f"{describe(node)}: only symmetric {axes}-D padding is supported, got pads={pads}")
    return tuple(pads[:axes])
