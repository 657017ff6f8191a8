"""Atomic file output: a reader never sees a half-written file, and a failed write leaves nothing.

Which paths a run may write at all (never an input, a device or another run's
folder) is decided before any work, in :mod:`onnx_snn_compress.outputs`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _default_mode() -> int:
    """0666 less the process umask: what a plain ``open(path, "w")`` would give."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    A symbolic link is followed (its target is replaced, not the link). Missing
    folders are made; on any failure (no space, read-only, interrupt) the
    temporary file and the folders made here are removed and the error is raised.
    """
    path = Path(os.path.realpath(path))
    made = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name[:200]}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, _default_mode())  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException as error:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        for folder in made:  # innermost first
            try:
                folder.rmdir()
            except OSError:
                break
        if isinstance(error, OSError) and error.errno is not None:  # name the file, not the temporary one
            raise OSError(error.errno, error.strerror, str(path)) from None
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
