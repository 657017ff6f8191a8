"""Run configurations as TOML files: read one (``--config``), write the effective one.

A configuration is a flat table whose keys are the command's long option names
without the dashes (``steps-per-budget = 300``; underscores work as well) plus
``model`` for the model argument. Repeated options take arrays
(``budget = [0.1, 0.02]``). Relative paths are relative to the file's folder.
TOML is read with the standard library's ``tomllib`` (Python >= 3.11) or
``tomli`` (its backport) below.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from .errors import SNNError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - depends on the Python version
    import tomli as tomllib


def read_config(path: str | Path) -> dict:
    """The table of ``path`` with keys normalised to ``snake_case``; one-line SNNError on any problem."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            table = tomllib.load(handle)
    except FileNotFoundError:
        raise SNNError(f"--config {path}: no such file") from None
    except IsADirectoryError:
        raise SNNError(f"--config {path}: not a file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise SNNError(f"--config {path}: not valid TOML ({error})") from None
    nested = [key for key, value in table.items() if isinstance(value, dict)]
    if nested:
        raise SNNError(f"--config {path}: tables are not options ({', '.join(nested)}); write flat key = value lines")
    return {key.replace("-", "_"): value for key, value in table.items()}


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"TOML has no portable spelling for {value}")
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, (str, Path)):
        text = str(value)
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    raise TypeError(f"cannot write {type(value).__name__} as a TOML value")


def to_toml(options: dict, header: str = "") -> str:
    """Options (``snake_case`` keys) as a flat TOML table with dashed keys; ``None`` values are left out."""
    lines = [f"# {line}" for line in header.splitlines()]
    lines += [f"{key.replace('_', '-')} = {_toml_value(value)}" for key, value in options.items() if value is not None]
    return "\n".join(lines) + "\n"
