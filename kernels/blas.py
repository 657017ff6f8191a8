"""How kernels call BLAS from inside Numba's parallel loops.

Numba's ``np.dot`` calls SciPy's BLAS (``scipy.linalg.cython_blas``; in SciPy's wheels its
own OpenBLAS, a library apart from numpy's). OpenBLAS starts its own worker threads for a
GEMM with ``M * N * K`` above ``SMP_THRESHOLD_MIN * GEMM_MULTITHREAD_THRESHOLD`` = 65536 * 4
(its ``interface/gemm.c``). Called from Numba's threads, such a GEMM puts 2 x 2 threads on
a 2-core machine, and OpenBLAS's workers keep spinning after it returns, stalling the next
parallel loop: one training step of the digits conv sample took 73 ms instead of 5 ms that
way, and a 28x28 conv layer's forward took seconds on a busy machine.

So at import SciPy's OpenBLAS is set to one thread (:func:`pin_kernel_blas`: it then never
starts workers; numpy's own BLAS, used from Python between parallel regions, keeps its
threads). Where that works, kernels may make GEMMs up to :data:`KERNEL_GEMM` (large blocks,
few calls); where it does not (another BLAS), they cut their GEMMs so that ``M * N * K``
stays at or below :data:`SINGLE_THREAD_GEMM` and each runs on the calling thread anyway.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

SINGLE_THREAD_GEMM = 65536 * 4


def _openblas_function(package: str, symbol: str):
    """The function ``symbol`` of the OpenBLAS bundled in the wheel of ``package`` (its
    ``<package>.libs`` folder), as a ctypes function to give its types, or None."""
    try:
        module = __import__(package)
    except ImportError:
        return None
    for library in sorted((Path(module.__file__).parent.parent / f"{package}.libs").glob("libscipy_openblas*.so*")):
        try:
            return getattr(ctypes.CDLL(str(library)), symbol)
        except (OSError, AttributeError):
            continue
    return None


def _openblas_setter(package: str, symbol: str):
    """``symbol`` (an OpenBLAS ``set_num_threads``) of ``package``'s bundled OpenBLAS, or None."""
    setter = _openblas_function(package, symbol)
    if setter is not None:
        setter.argtypes = [ctypes.c_int]
    return setter


def openblas_core(package: str) -> str | None:
    """The kernel set (e.g. "SkylakeX", "Haswell") that the OpenBLAS bundled with ``package``
    ("numpy" or "scipy": the one Numba's ``np.dot`` calls) runs on this CPU, or None where
    there is none. ``OPENBLAS_CORETYPE``, where set, chose it."""
    getter = _openblas_function(package, "scipy_openblas_get_corename64_" if package == "numpy"
                                else "scipy_openblas_get_corename")
    if getter is None:
        return None
    getter.restype = ctypes.c_char_p
    return getter().decode()


def pin_kernel_blas() -> bool:
    """Set SciPy's bundled OpenBLAS (the BLAS of Numba's ``np.dot``) to one thread.

    Returns whether it was found and set (False with another BLAS: nothing is changed).
    """
    try:
        import scipy.linalg.cython_blas  # noqa: F401  (loads the library Numba calls)
    except ImportError:
        return False
    setter = _openblas_setter("scipy", "scipy_openblas_set_num_threads")
    if setter is not None:
        setter(1)
    return setter is not None


def set_numpy_blas_threads(threads: int) -> bool:
    """Set the threads of numpy's bundled OpenBLAS (GEMMs made from Python between parallel
    regions, e.g. ``kernels/linear.py``'s large layers). Returns whether it was found."""
    setter = _openblas_setter("numpy", "scipy_openblas_set_num_threads64_")
    if setter is not None:
        setter(int(threads))
    return setter is not None


#: Whether the kernels' BLAS runs single-threaded (see the module docstring).
KERNEL_BLAS_PINNED = pin_kernel_blas()

#: The largest ``M * N * K`` of a GEMM made from inside a parallel kernel.
KERNEL_GEMM = 2**22 if KERNEL_BLAS_PINNED else SINGLE_THREAD_GEMM
