"""Where a run writes: output paths that cannot clobber an input, a device or another run.

Rules (docs/safety.md), all checked before any work:

- an output file must be a new path or an existing regular file, and must not
  resolve (symlinks followed) to an input of the run;
- an output folder must be a new path or an existing folder, and no input may
  lie where the run writes in it (``OUT/budget_0.5/model.onnx`` as the input
  model of a run into ``OUT``);
- while a run writes into a folder it holds ``OUT/.snn-compress.lock`` (made
  by a hard link, which fails when the lock exists; it names the owner's pid,
  host and start time). A second run on the folder is refused; a lock whose
  owner is gone is stale and taken over with a note;
- a folder that holds a run is refused unless the run is resumed or
  overwritten; overwriting removes only that run's own files;
- a fresh run that fails removes everything it created, so a failure leaves
  nothing behind (an interrupted run keeps its checkpoint for ``--resume``).

Refusals raise :class:`OutputError`. File-system faults while writing (read-only
folder, no space, a name too long) stay ``OSError`` with the path in it
(:mod:`onnx_snn_compress.files` names the file); :func:`describe_os_error` turns
one into the line the CLI prints.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import socket
from pathlib import Path
from typing import Iterable, Mapping

from .errors import SNNError

LOCK = ".snn-compress.lock"


MODEL_SUFFIXES = (".onnx", ".nir")  # what an existing output file of train or convert may be


class OutputError(SNNError):
    """An output path the run may not write."""


def describe_os_error(error: OSError) -> str:
    """``'PATH: cause'`` for a file-system fault, e.g. ``'out/report.json: No space left on device'``."""
    cause = error.strerror or (os.strerror(error.errno) if error.errno else str(error))
    return cause if error.filename is None else f"{error.filename}: {cause}"


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(os.path.realpath(a)) == Path(os.path.realpath(b))


def check_output_file(path: str | os.PathLike, inputs: Mapping[str, str | os.PathLike | None], option: str,
                      kinds: tuple[str, ...] = MODEL_SUFFIXES) -> None:
    """Refuse ``path`` as an output file unless it is new or a regular file that is no input
    and whose suffix is one of ``kinds`` (a model is never written over a data set or a picture).

    ``inputs`` maps what each input is ("the input model", "--data") to its path
    (``None``: not given). Raises OutputError naming ``option``.
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not path.exists():
            raise OutputError(f"{option} {path} is a broken symbolic link; remove it or choose another path")
        if path.is_dir():
            raise OutputError(f"{option} {path} is a folder; give a file name")
        if not path.is_file():
            raise OutputError(f"{option} {path} is not a regular file (a device or pipe); choose another path")
    for what, source in inputs.items():
        if source is not None and Path(source).exists() and _same(path, Path(source)):
            raise OutputError(f"{option} {path} would overwrite {what}; choose another path (inputs are never overwritten)")
    if path.is_file() and path.suffix.lower() not in kinds:
        raise OutputError(f"{option} {path} exists and is not a model file ({', '.join(kinds)}); "
                          "choose another path (only a model file is ever replaced by a model)")
    parent = Path(os.path.realpath(path)).parent
    for folder in (parent, *parent.parents):
        if folder.exists():
            if not folder.is_dir():
                raise OutputError(f"{option} {path}: {folder} is a file, not a folder")
            break


def check_output_folder(
    folder: str | os.PathLike, inputs: Mapping[str, str | os.PathLike | None], writes: Iterable[str], option: str = "--out"
) -> None:
    """Refuse ``folder`` unless it is new or a folder, and no input lies where the run writes in it.

    ``writes`` are the glob patterns of the names the run writes at the top of
    the folder (``"report.json"``, ``"budget_*"``: everything below such a
    folder counts as written).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{option} {folder} exists and is not a folder")
    for parent in Path(os.path.realpath(folder)).parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"{option} {folder}: {parent} is a file, not a folder")
            break
    root = Path(os.path.realpath(folder))
    patterns = list(writes)
    for what, source in inputs.items():
        if source is None:
            continue
        resolved = Path(os.path.realpath(source))
        if resolved == root or root in resolved.parents:
            first = resolved.relative_to(root).parts[:1]
            if not first or any(fnmatch.fnmatch(first[0], p) for p in patterns):
                raise OutputError(
                    f"{what} {source} lies in {folder}, where this run writes; copy it elsewhere or choose another {option}"
                )


# ---------------------------------------------------------------------------
# The folder lock
# ---------------------------------------------------------------------------
def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), or None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    now = _start_time(pid)
    return started is None or now is None or now == started  # a reused pid is another process


def _owner() -> str:
    """``pid host start-time token``: the token tells two locks of one process apart."""
    pid = os.getpid()
    return f"{pid} {socket.gethostname()} {_start_time(pid) or '-'} {os.urandom(4).hex()}\n"


class FolderLock:
    """An exclusive claim on an output folder: ``folder/.snn-compress.lock`` holding ``pid host start token``."""

    def __init__(self, folder: str | os.PathLike):
        self.path = Path(folder) / LOCK
        self.content = _owner()
        self.notes: list[str] = []

    def acquire(self) -> None:
        """Take the lock or raise OutputError naming it. The lock appears whole or not at all
        (a hard link of a written temporary file), so an interrupt never leaves an empty one."""
        staged = self.path.with_name(f"{LOCK}.{os.getpid()}.tmp")
        for _ in range(2):
            try:
                staged.write_text(self.content)
                os.link(staged, self.path)
            except FileExistsError:
                self._check_stale()
                continue
            finally:
                staged.unlink(missing_ok=True)
            return
        raise OutputError(f"another run took {self.path} at the same moment; try again")

    def _check_stale(self) -> None:
        try:
            fields = self.path.read_text().split()
        except FileNotFoundError:
            return
        pid = int(fields[0]) if fields and fields[0].isdigit() else None
        host = fields[1] if len(fields) > 1 else None
        started = fields[2] if len(fields) > 2 and fields[2] != "-" else None
        if pid is not None and host == socket.gethostname() and not _alive(pid, started):
            self.path.unlink(missing_ok=True)
            self.notes.append(f"took over the stale lock {self.path} of process {pid}, which is no longer running")
            return
        owner = f"process {pid} on {host}" if pid is not None else "an unreadable owner"
        raise OutputError(
            f"another run ({owner}) is writing into {self.path.parent}: it holds {self.path}; "
            "wait for it, or remove the lock if no such run is active"
        )

    def release(self) -> None:
        try:
            if self.path.read_text() == self.content:
                self.path.unlink()
        except FileNotFoundError:
            pass


# ---------------------------------------------------------------------------
# One run's use of its output folder
# ---------------------------------------------------------------------------
class RunFolder:
    """A run's output folder from start to end: made, locked, cleaned, released.

    ``with RunFolder(out, writes, holds_run, resume=..., overwrite=...) as folder:``
    refuses a folder that holds another run (``holds_run``: names whose presence
    means one) unless ``resume`` or ``overwrite``; with ``overwrite`` removes
    that run's files (names matching ``writes``) and nothing else. If the body
    fails with anything but an interrupt and the run was not resumed, every
    path it created is removed; a folder the run made goes whenever it is left
    empty. ``notes``
    lists what was assumed (a stale lock taken over).
    """

    def __init__(self, folder: str | os.PathLike, writes: Iterable[str], holds_run: Iterable[str], *,
                 resume: bool = False, overwrite: bool = False):
        if resume and overwrite:
            raise OutputError("--resume continues the run in the folder and --overwrite replaces it; give one of them")
        self.folder, self.writes, self.holds_run = Path(folder), tuple(writes), tuple(holds_run)
        self.resume, self.overwrite = resume, overwrite
        self.lock = FolderLock(self.folder)
        self.notes = self.lock.notes
        self.made: Path | None = None
        self.before: set[Path] = set()

    def check(self) -> None:
        """Refuse a folder that holds a run unless resumed or overwritten (before any work)."""
        held = [name for name in self.holds_run if (self.folder / name).exists()]
        if held and not (self.resume or self.overwrite):
            raise OutputError(
                f"--out {self.folder} already holds a run ({held[0]}); pass --resume to continue it, "
                "--overwrite to replace it, or choose another folder"
            )

    def __enter__(self) -> "RunFolder":
        self.check()
        if not self.folder.exists():
            self.made = self.folder
            while not self.made.parent.exists() and self.made.parent != self.made:
                self.made = self.made.parent
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.lock.acquire()
            if self.overwrite:
                for path in self._run_files():
                    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
            self.before = set(self.folder.rglob("*"))
        except BaseException:
            self.lock.release()
            self._remove_made()
            raise
        return self

    def _run_files(self) -> list[Path]:
        return [p for p in self.folder.iterdir() if any(fnmatch.fnmatch(p.name, w) for w in self.writes)]

    def __exit__(self, kind, error, traceback) -> None:
        failed = kind is not None and not issubclass(kind, KeyboardInterrupt)
        try:
            if failed and not self.resume:
                self._remove_created()
        finally:
            self.lock.release()
            if kind is not None:
                self._remove_made()  # only when empty: a resumed or interrupted run may have written there

    def _remove_created(self) -> None:
        created = [p for p in self.folder.rglob("*") if p not in self.before and p.name != LOCK]
        for path in sorted(created, key=lambda p: len(p.parts), reverse=True):  # contents before their folders
            try:
                path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()
            except OSError:
                pass  # best effort: the error that stopped the run is the one to report

    def _remove_made(self) -> None:
        if self.made is None:
            return
        for folder in [self.folder, *self.folder.parents]:
            try:
                folder.rmdir()  # only empty folders go
            except OSError:
                return
            if folder == self.made:
                return

