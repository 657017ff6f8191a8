"""Adam's one-pass update kernels (kernels/adam.py) on parameters of several sizes, in one tree.

    NUMBA_NUM_THREADS=1 python bench/adam_loops.py [TREE]      (and =2; TREE: default this one)

Times ``_adam_serial`` (a plain ``range`` loop) and ``_adam_parallel`` (a ``prange`` loop) of
TREE's kernels/adam.py (whatever is installed: ``tree.use_tree``) on float32 parameters of 640
to 627,200 entries (digits_conv's fc2, digits_mlp's fc1, 40,000, mnist_mlp's fc1), unmasked:
median wall time of 200 calls.
``adam_update`` picks one of them by size and thread count. Not a test.
"""

import sys
import time

import numpy as np

from tree import OWN_TREE, use_tree

use_tree(sys.argv[1] if len(sys.argv) > 1 else OWN_TREE)
import numba  # noqa: E402

from onnx_snn_compress.kernels import adam  # noqa: E402


def median_us(kernel, arguments, repeats=200):
    kernel(*arguments)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        kernel(*arguments)
        times.append(time.perf_counter() - started)
    return 1e6 * sorted(times)[len(times) // 2]


def main() -> None:
    f32 = np.float32
    constants = (False, False, False, f32(0), f32(1), f32(0.1), f32(0.999), f32(0.001), f32(-1e-7), f32(0.1), f32(1e-8))
    print(f"{adam.__file__}, {numba.get_num_threads()} thread(s); median us per call, range loop -> prange loop:")
    for size in (640, 8192, 40_000, 627_200):
        rng = np.random.default_rng(0)
        arrays = (rng.standard_normal(size).astype(f32), rng.standard_normal(size).astype(f32),
                  np.zeros(size, f32), np.ones(size, f32), np.zeros(0, f32))
        serial, parallel = (median_us(kernel, arrays + constants) for kernel in (adam._adam_serial, adam._adam_parallel))
        print(f"  {size:>7} entries: {serial:9.1f} -> {parallel:7.1f}  ({1e3 * serial / size:.1f} -> "
              f"{1e3 * parallel / size:.2f} ns an entry)")


if __name__ == "__main__":
    main()
