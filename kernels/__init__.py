"""Numba-JIT kernels: pure functions over arrays, forward and backward side by side.

Numba's parallel kernels run on its OpenMP thread pool. By default GNU OpenMP's idle
workers spin for a while after each parallel region; on a machine whose cores are busy
with other work those spinning threads take the time slices the working ones need, and
a 2-thread training step of the digits MLP took 270 ms instead of 14-23 ms with passive
waiting (two runs each, load average 9-12 on 2 cores, bench/README.md). So unless the
environment says otherwise, idle workers sleep at once (``OMP_WAIT_POLICY=PASSIVE``). It
must be set before the OpenMP runtime loads, i.e. before the first parallel kernel runs.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
