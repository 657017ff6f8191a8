"""Numba-JIT kernels: pure functions over arrays, forward and backward side by side.

Numba's parallel kernels run on its OpenMP thread pool. By default GNU OpenMP's idle
workers spin for a while after each parallel region (300,000 spins); on a machine whose
cores are busy with other work those spinning threads take the time slices the working
ones need, and a 2-thread training step of the digits MLP took 270 ms instead of 14-23 ms
with passive waiting (two runs each, load average 9-12 on 2 cores, bench/README.md). Idle
workers that sleep at once cost the other way on an idle machine: each parallel region then
wakes a sleeping core, and a step of the small nets, dozens of short regions, took 2-3x its
time (digits_mlp 0.75-0.89 ms against 0.27, bench/README.md, twelfth session). So unless the
environment sets a policy, idle workers spin briefly, then sleep (``OMP_WAIT_POLICY=PASSIVE``
with ``GOMP_SPINCOUNT=3000``, libgomp's spins before a worker sleeps, which take precedence
over the policy's none; 10,000 already doubled a busy machine's digits_conv step). Both must be set before the OpenMP runtime loads, i.e. before
the first parallel kernel runs; a policy the user set is left alone, spin count included.
"""

import os

if "OMP_WAIT_POLICY" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    os.environ.setdefault("GOMP_SPINCOUNT", "3000")
