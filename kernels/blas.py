"""How kernels call BLAS from inside Numba's parallel loops.

OpenBLAS starts its own worker threads for a GEMM with ``M * N * K`` above
:data:`SINGLE_THREAD_GEMM` (``SMP_THRESHOLD_MIN * GEMM_MULTITHREAD_THRESHOLD`` =
65536 * 4 in its ``interface/gemm.c``). Called from Numba's threads, such a GEMM puts
2 x 2 threads on a 2-core machine, and OpenBLAS's workers keep spinning after it
returns, stalling the next parallel loop: one training step of the digits conv
sample took 73 ms instead of 5 ms that way. Kernels therefore cut their GEMMs so
that ``M * N * K`` stays at or below this bound; each then runs on the calling thread.
"""

SINGLE_THREAD_GEMM = 65536 * 4
