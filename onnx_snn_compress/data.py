"""Data: load a split from an ``.npz`` file, fit it to a model, encode it over time.

The chain the CLI runs (one call: :func:`load_for_model`)::

    data.npz ──load_split──► x [N, ...], y [N] ──fit_to_model──► [N, *shape] (static)
                                                                 [N, T, *shape] (temporal)
             ──check_labels──► 0 <= y < classes ──encode──► float32 [T, N, *shape]

File layout: keys ``x`` and ``y`` hold the training split; ``x_val``/``y_val``
and ``x_test``/``y_test`` the optional validation and test splits. ``x`` is any
real numeric array with samples on the first axis; ``y`` one integer label per
sample. Files are read with ``allow_pickle=False``: an ``.npz`` can never run
code here.

Every problem with the data raises :class:`~onnx_snn_compress.errors.DataError`
with one line naming it.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import DataError
from .footprint import check_fits, elements, human_size

SPLITS = ("train", "val", "test")
ENCODINGS = ("direct", "poisson")

_SPLIT_KEYS = {"train": ("x", "y"), "val": ("x_val", "y_val"), "test": ("x_test", "y_test")}
# bool, signed and unsigned integers, floats: everything that is a real number.
_NUMERIC_KINDS = "biuf"


# -- loading ----------------------------------------------------------------
class MissingSplitError(DataError):
    """The data file has no such split (neither of its two keys)."""


def load_split(path: str | Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Read one split of an ``.npz`` file: ``x`` as float32 ``[N, ...]``, ``y`` as int64 ``[N]``.

    ``split`` is ``"train"`` (keys ``x``, ``y``), ``"val"`` (``x_val``, ``y_val``)
    or ``"test"`` (``x_test``, ``y_test``). Labels stored as floats are accepted
    when every value is a whole number.
    """
    if split not in SPLITS:
        raise DataError(f"unknown data split {split!r}; choose one of {', '.join(SPLITS)}")
    path = Path(path)
    where = f"data file {str(path)!r}"
    if not path.exists():
        raise DataError(f"{where}: no such file")
    if not path.is_file():
        raise DataError(f"{where}: not a file")
    try:
        is_zip = zipfile.is_zipfile(path)
    except OSError as error:
        raise DataError(f"{where} cannot be read: {error}") from None
    if not is_zip:
        raise DataError(
            f"{where} is not an .npz archive (a zip of .npy arrays, as numpy.savez writes) or is truncated"
        )

    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{where} is not a readable .npz archive: {error}") from None
    with archive:
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataError(f"{where} is not an .npz archive")
        keys = set(archive.files)
        x_key, y_key = _SPLIT_KEYS[split]
        if split == "train":
            missing = [k for k in (x_key, y_key) if k not in keys]
            if missing:
                raise DataError(
                    f"{where} lacks key(s) {', '.join(map(repr, missing))}"
                    f" (it has: {', '.join(map(repr, sorted(keys))) or 'nothing'})"
                )
        else:
            if x_key not in keys and y_key not in keys:
                raise MissingSplitError(f"{where} has no {split!r} split (keys {x_key!r} and {y_key!r})")
            missing = [k for k in (x_key, y_key) if k not in keys]
            if missing:
                raise DataError(f"{where} has a {split!r} split without key {missing[0]!r}")
        x = _read_array(archive, x_key, where)
        y = _read_array(archive, y_key, where)
    return _check_x(x, x_key, where), _check_y(y, x, y_key, x_key, where)


def _check_declared_size(archive, key: str, where: str) -> None:
    """Refuse an array before reading it when its ``.npy`` header declares more data than the
    archive member holds (a damaged or hostile file) or than the machine's memory can take."""
    name = f"{key}.npy" if f"{key}.npy" in archive.zip.namelist() else key
    try:
        info = archive.zip.getinfo(name)
        with archive.zip.open(name) as member:
            version = np.lib.format.read_magic(member)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(member)
            header = member.tell()
    except Exception:  # not an .npy header: reading the array says what is wrong
        return
    if dtype.hasobject:
        return  # refused as pickled objects when read
    count = elements(shape)
    declared = count * dtype.itemsize
    if declared > info.file_size - header:
        raise DataError(
            f"{where}: key {key!r} declares shape {tuple(shape)} of {dtype} ({human_size(declared)}) but holds only "
            f"{info.file_size - header} bytes; the file is truncated or damaged"
        )
    converted = count * (4 if key.startswith("x") else 8)  # the float32 inputs or int64 labels made from it
    check_fits(declared + converted, f"{where}: key {key!r} of shape {tuple(shape)} and dtype {dtype}",
               "use a smaller data set")


def _read_array(archive, key: str, where: str) -> np.ndarray:
    _check_declared_size(archive, key, where)
    try:
        array = archive[key]
    except ValueError as error:
        if "allow_pickle" in str(error) or "pickle" in str(error).lower():
            raise DataError(
                f"{where}: key {key!r} holds pickled Python objects; only numeric arrays are accepted"
            ) from None
        raise DataError(f"{where}: key {key!r} cannot be read: {error}") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise DataError(f"{where}: key {key!r} cannot be read (corrupt archive?): {error}") from None
    if not isinstance(array, np.ndarray):  # a zip member that is not an .npy file
        raise DataError(f"{where}: key {key!r} is not a numpy array")
    return array


def _check_x(x: np.ndarray, key: str, where: str) -> np.ndarray:
    if x.dtype.kind not in _NUMERIC_KINDS:
        raise DataError(f"{where}: key {key!r} is not numeric (dtype {x.dtype}); inputs must be real numbers")
    if x.ndim == 0:
        raise DataError(f"{where}: key {key!r} is a scalar; it needs one sample per row")
    if x.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(x)))
        if bad:
            raise DataError(f"{where}: key {key!r} holds {bad} NaN or infinite value(s)")
    with np.errstate(over="ignore"):  # overflow is reported below, as a DataError
        x32 = np.ascontiguousarray(x, dtype=np.float32)
    if x.dtype.kind == "f" and x.dtype.itemsize > 4:
        bad = int(np.count_nonzero(~np.isfinite(x32)))
        if bad:
            raise DataError(f"{where}: key {key!r} holds {bad} value(s) too large for float32")
    return x32


def _check_y(y: np.ndarray, x: np.ndarray, key: str, x_key: str, where: str) -> np.ndarray:
    if y.dtype.kind not in _NUMERIC_KINDS:
        raise DataError(f"{where}: key {key!r} is not numeric (dtype {y.dtype}); labels must be integers")
    if y.ndim != 1:
        raise DataError(
            f"{where}: key {key!r} has shape {y.shape}; labels need shape [N], one class index per sample"
        )
    if y.size == 0:
        raise DataError(f"{where}: key {key!r} is empty; the split has no samples")
    if y.shape[0] != x.shape[0]:
        raise DataError(
            f"{where}: {x_key!r} has {x.shape[0]} samples but {key!r} has {y.shape[0]} labels"
        )
    if y.dtype.kind == "f":
        whole = np.isfinite(y) & (y == np.round(y))
        if not np.all(whole):
            first = y[~whole][0].item()
            raise DataError(f"{where}: key {key!r} holds a label that is not an integer ({first!r})")
        if np.any(np.abs(y) > 2**62):
            raise DataError(f"{where}: key {key!r} holds a label too large to be a class index")
    elif y.dtype.kind == "u" and y.dtype.itemsize == 8 and np.any(y > 2**62):
        raise DataError(f"{where}: key {key!r} holds a label too large to be a class index")
    return np.ascontiguousarray(y, dtype=np.int64)


# -- fitting to the model ---------------------------------------------------
def fit_to_model(x: np.ndarray, input_shape: Sequence[int]) -> tuple[np.ndarray, bool]:
    """Shape data for a model whose per-sample input shape is ``input_shape``.

    - temporal: ``x`` is ``[N, T, *input_shape]`` (``ndim == len(input_shape) + 2``
      and the trailing dims equal ``input_shape``); returned unchanged, ``True``.
    - static: ``x`` is ``[N, ...]`` with ``prod(...) == prod(input_shape)``
      (e.g. ``[N, 1, 8, 8]`` for an input ``(64,)``); returned as
      ``[N, *input_shape]`` (row-major reshape), ``False``.

    When both readings fit (``T == 1``: ``[N, 1, *input_shape]``) the data are
    taken as static, so the requested number of time steps applies.
    Anything else raises DataError naming both shapes.
    """
    shape = tuple(int(d) for d in input_shape)
    x = np.asarray(x)
    if x.ndim < 1 or x.shape[0] == 0:
        raise DataError(f"data of shape {x.shape} hold no samples")
    sample_shape = x.shape[1:]
    is_static = int(np.prod(sample_shape)) == int(np.prod(shape))
    is_temporal = x.ndim == len(shape) + 2 and sample_shape[1:] == shape
    if is_temporal and not (is_static and sample_shape[0] == 1):
        return x, True
    if is_static:
        return x.reshape((x.shape[0], *shape)), False
    raise DataError(
        f"data samples have shape {_fmt(sample_shape)} but the model expects {_fmt(shape)}"
        f" per sample (static data [N, {', '.join(map(str, shape))}] or any shape of"
        f" {int(np.prod(shape))} values; temporal data [N, T, {', '.join(map(str, shape))}])"
    )


def _fmt(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def check_labels(y: np.ndarray, num_classes: int) -> None:
    """Raise DataError unless every label lies in ``[0, num_classes)``."""
    y = np.asarray(y)
    outside = (y < 0) | (y >= num_classes)
    if np.any(outside):
        bad = np.unique(y[outside])
        shown = ", ".join(str(int(v)) for v in bad[:5]) + (", ..." if len(bad) > 5 else "")
        raise DataError(
            f"{int(np.count_nonzero(outside))} label(s) outside 0..{num_classes - 1}"
            f" (the model has {num_classes} classes): {shown}"
        )


# -- encoding over time -----------------------------------------------------
def encode(
    x: np.ndarray,
    time_steps: int,
    encoding: str = "direct",
    seed: int = 0,
    temporal: bool = False,
) -> np.ndarray:
    """Turn data into the time-major float32 graph input ``[T, N, *shape]``.

    Static data ``x [N, *shape]`` (``temporal=False``), with ``T = time_steps``:

        direct:   ``X[t] = x`` for every t (analog input current, the usual
                  first layer of a directly trained SNN)
        poisson:  ``X[t] ~ Bernoulli(clip(x, 0, 1))`` independently per element
                  and step, from ``numpy.random.default_rng(seed)``: the same
                  ``x`` and ``seed`` always give the same spikes, and
                  ``mean_t X[t] -> clip(x, 0, 1)`` as T grows. Values are read as
                  probabilities, so scale x to [0, 1] first.

    Temporal data ``x [N, T, *shape]`` (``temporal=True``) is already a
    sequence: it is only transposed to ``[T, N, *shape]``; ``time_steps``,
    ``encoding`` and ``seed`` are ignored and T comes from the data.
    """
    x = np.asarray(x, dtype=np.float32)
    if temporal:
        if x.ndim < 3:
            raise DataError(f"temporal data need shape [N, T, ...], got {x.shape}")
        return np.ascontiguousarray(np.swapaxes(x, 0, 1))
    if isinstance(time_steps, bool) or not isinstance(time_steps, (int, np.integer)) or time_steps < 1:
        raise DataError(f"time steps must be a positive integer, got {time_steps!r}")
    if encoding == "direct":
        return np.ascontiguousarray(np.broadcast_to(x, (int(time_steps), *x.shape)))
    if encoding == "poisson":
        rng = np.random.default_rng(seed)
        probability = np.clip(x, 0.0, 1.0)
        # Drawing one step at a time keeps the float64 uniforms at the size of x.
        spikes = np.empty((int(time_steps), *x.shape), dtype=np.float32)
        for t in range(int(time_steps)):
            spikes[t] = rng.random(x.shape, dtype=np.float32) < probability
        return spikes
    raise DataError(f"unknown encoding {encoding!r}; choose one of {', '.join(ENCODINGS)}")


def check_seed(seed) -> None:
    """Raise DataError unless ``seed`` is an integer in [0, 2**63) (what numpy's generators take)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
        raise DataError(f"seed must be an integer in [0, 2**63), got {seed!r}")


# -- the one call of the CLI ------------------------------------------------
@dataclass(frozen=True, eq=False)  # arrays have no single truth value to compare
class ModelData:
    """One split fitted to a model, and how to encode it.

    ``x`` is sample-major: ``[N, *shape]`` (static) or ``[N, T, *shape]``
    (temporal); ``y`` is int64 ``[N]`` with every label a class of the model.
    ``time_steps`` is the T every encoded batch has (the data's own T when
    ``temporal``).
    """

    x: np.ndarray
    y: np.ndarray
    temporal: bool
    time_steps: int
    encoding: str
    seed: int
    #: the file's per-sample shape, where it was not the model's input shape and was reshaped to it
    reshaped_from: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def input_metadata(self) -> dict[str, str]:
        """T and the encoding, as metadata_props of a model made with these data (docs/profile.md)."""
        from .profile import KEY_ENCODING, KEY_TIME_STEPS

        return {KEY_TIME_STEPS: str(self.time_steps), KEY_ENCODING: "temporal" if self.temporal else self.encoding}

    def inputs(self, index=slice(None), seed: int | None = None) -> np.ndarray:
        """The graph input ``[T, n, *shape]`` for the samples ``x[index]``.

        Poisson spikes depend on the selected samples and on ``seed``
        (default: this data's seed); pass a new seed per epoch for fresh spikes.
        """
        return encode(
            self.x[index],
            self.time_steps,
            self.encoding,
            self.seed if seed is None else seed,
            temporal=self.temporal,
        )


DEFAULT_TIME_STEPS = 8


def model_time_steps(metadata: dict, time_steps: int | None) -> tuple[int, str | None]:
    """T for static data, and a note when it is the model's own.

    ``time_steps`` when given (``--time-steps``); else the T a torch.onnx export was unrolled over
    (metadata ``time_steps``, kept by the profile), since its weights were trained at that T; else
    :data:`DEFAULT_TIME_STEPS`.
    """
    if time_steps is not None:
        return time_steps, None
    exported = metadata.get("time_steps", "")
    if exported.isdigit() and int(exported) > 0:
        return int(exported), (f"T = {exported} for static data: the time steps the model was exported with; "
                               f"override with --time-steps")
    return DEFAULT_TIME_STEPS, None


def load_for_model(
    path: str | Path,
    input_shape: Sequence[int],
    num_classes: int,
    split: str = "train",
    time_steps: int = 8,
    encoding: str = "direct",
    seed: int = 0,
) -> ModelData:
    """Load ``split`` of ``path``, fit it to a model's per-sample ``input_shape``
    (``graph.input.shape``), check labels against ``num_classes``
    (``graph.num_classes``) and validate the encoding options.

    Encode with :meth:`ModelData.inputs`. For temporal data ``time_steps`` and
    ``encoding`` are ignored (the data carry their own T).
    """
    if encoding not in ENCODINGS:
        raise DataError(f"unknown encoding {encoding!r}; choose one of {', '.join(ENCODINGS)}")
    x, y = load_split(path, split)
    file_shape = tuple(int(d) for d in x.shape[1:])
    try:
        x, temporal = fit_to_model(x, input_shape)
        check_labels(y, num_classes)
    except DataError as error:
        raise DataError(f"data file {str(path)!r}, split {split!r}: {error}") from None
    if temporal:
        time_steps = int(x.shape[1])
    elif isinstance(time_steps, bool) or not isinstance(time_steps, (int, np.integer)) or time_steps < 1:
        raise DataError(f"time steps must be a positive integer, got {time_steps!r}")
    check_seed(seed)
    reshaped = None if temporal or file_shape == tuple(int(d) for d in input_shape) else file_shape
    return ModelData(x=x, y=y, temporal=temporal, time_steps=int(time_steps), encoding=encoding, seed=int(seed),
                     reshaped_from=reshaped)


def split_notes(path: str | Path, splits: tuple[ModelData, ModelData | None, ModelData | None],
                input_shape: Sequence[int], without_val: str, without_test: str) -> list[str]:
    """What was assumed in reading ``splits`` (train, val, test) of ``path`` for a model: its
    layout (:func:`layout_note`), and what the command does without a validation split
    (``without_val``) or a test split (``without_test``)."""
    train, val, test = splits
    where = f"data file {str(path)!r}"
    return [note for note in (
        layout_note(path, train, input_shape),
        None if val is not None else f"{where} has no validation split (x_val, y_val): {without_val}",
        None if test is not None else f"{where} has no test split (x_test, y_test): {without_test}",
    ) if note]


def layout_note(path: str | Path, data: ModelData, input_shape: Sequence[int]) -> str | None:
    """The note that says ``data`` were reshaped to a model's ``input_shape`` with more than one
    axis longer than 1 (the file's layout is then a guess: row-major, channels first), or None."""
    shape = tuple(int(d) for d in input_shape)
    if data.reshaped_from is None or sum(d > 1 for d in shape) < 2:
        return None  # reshaped to a vector: flattening row-major is the one convention
    return (f"data file {str(path)!r}: samples of shape {_fmt(data.reshaped_from)} read as the model's input "
            f"{_fmt(shape)}, row-major; if they are laid out otherwise (e.g. channels last), reshape them to "
            f"[N, {', '.join(map(str, shape))}] first")


def load_splits_for_model(
    path: str | Path,
    input_shape: Sequence[int],
    num_classes: int,
    time_steps: int = 8,
    encoding: str = "direct",
    seed: int = 0,
) -> tuple[ModelData, ModelData | None, ModelData | None]:
    """The train, val and test splits fitted to a model (see :func:`load_for_model`);
    val and test are ``None`` when the file has no such split."""

    def load(split: str) -> ModelData | None:
        try:
            return load_for_model(path, input_shape, num_classes, split, time_steps, encoding, seed)
        except MissingSplitError:
            if split == "train":
                raise
            return None

    return load("train"), load("val"), load("test")
