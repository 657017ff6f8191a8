"""Write samples/digits.npz: the scikit-learn digits, split once, for good.

The data are the 1,797 real 8x8 handwritten digits that ship inside the
scikit-learn package (a copy of the test set of the UCI "Optical Recognition
of Handwritten Digits", E. Alpaydin and C. Kaynak, 1998, CC BY 4.0; no
download). scikit-learn is needed only here, never by the library, so run this
script from a throwaway environment:

    python3 -m venv /tmp/sk-venv
    /tmp/sk-venv/bin/pip install scikit-learn numpy
    /tmp/sk-venv/bin/python scripts/make_digits_data.py          # writes samples/digits.npz

The split is stratified per class and seeded (SEED below), so rerunning the
script rewrites the same file content.

Layout of the file (what onnx_snn_compress.data.load_split reads):

    x, y             train       60 %
    x_val, y_val     validation  20 %  (snapshot / model selection)
    x_test, y_test   test        20 %  (reported only)

x is float32 ``[N, 1, 8, 8]`` in [0, 1] (pixel / 16, exact in float32),
y is int64 in 0..9.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SEED = 20230808  # fixed forever: changing it changes every reported accuracy
FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}
DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "samples" / "digits.npz"


def stratified_split(labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Indices of train/val/test: each class is split in the same proportions."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in FRACTIONS}
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_train = int(round(FRACTIONS["train"] * len(members)))
        n_val = int(round(FRACTIONS["val"] * len(members)))
        parts["train"].append(members[:n_train])
        parts["val"].append(members[n_train : n_train + n_val])
        parts["test"].append(members[n_train + n_val :])
    # Shuffle across classes so a reader taking the first k samples sees all digits.
    return {name: rng.permutation(np.concatenate(chunks)) for name, chunks in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()

    from sklearn.datasets import load_digits  # only here: not a dependency of the package

    digits = load_digits()
    images = digits.images.astype(np.float64)  # [1797, 8, 8], integers 0..16
    labels = digits.target.astype(np.int64)
    assert images.shape == (1797, 8, 8) and images.min() == 0 and images.max() == 16
    x = (images / 16.0).astype(np.float32)[:, None, :, :]

    write_splits(x, labels, args.output)


def write_splits(x: np.ndarray, labels: np.ndarray, output: Path) -> None:
    """Split (x, labels) with :func:`stratified_split` and SEED; save the npz layout above."""
    split = stratified_split(labels, SEED)
    arrays = {}
    for name, key in (("train", ""), ("val", "_val"), ("test", "_test")):
        arrays["x" + key] = np.ascontiguousarray(x[split[name]])
        arrays["y" + key] = np.ascontiguousarray(labels[split[name]])
    assert sum(len(i) for i in split.values()) == len(labels)
    assert len(np.unique(np.concatenate(list(split.values())))) == len(labels)

    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(output, **arrays)
    sizes = ", ".join(f"{name} {len(idx)}" for name, idx in split.items())
    print(f"wrote {output} ({output.stat().st_size} bytes): {sizes}")


if __name__ == "__main__":
    main()
