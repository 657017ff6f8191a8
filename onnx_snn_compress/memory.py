"""Keep freed memory in the process, so a training step's arrays reuse the last step's pages.

A training step allocates its intermediate arrays afresh (outputs, potentials, gradients),
several MB each at real sizes. glibc serves such blocks with ``mmap`` and returns them to
the kernel on free, so every step faults in fresh zeroed pages: 1,400 minor page faults per
digits-conv step, 5,300 per MNIST-conv step, 20-30 % of a sample's step (bench/README.md).
:func:`keep_freed_memory` raises glibc's mmap and trim thresholds (``mallopt``), so freed
blocks stay in the heap and the next step's arrays of the same sizes land on pages already
mapped. The cost is that up to :data:`KEPT_BYTES` of freed memory stays with the process.
"""

from __future__ import annotations

import ctypes
import ctypes.util

#: Blocks up to this size come from the heap, and this much freed heap is kept.
KEPT_BYTES = 1 << 30

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory() -> bool:
    """Set glibc's thresholds once for this process; False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, KEPT_BYTES) and mallopt(_M_TRIM_THRESHOLD, KEPT_BYTES))
