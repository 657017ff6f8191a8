"""Freed memory stays in the process: a step's arrays reuse the last step's pages."""

from __future__ import annotations

import resource

import numpy as np
import pytest

from onnx_snn_compress.memory import keep_freed_memory


def test_freed_memory_is_kept_so_repeated_steps_fault_in_no_new_pages():
    if not keep_freed_memory():
        pytest.skip("not glibc")

    def step():  # a training step's pattern: large arrays made and dropped
        for _ in range(4):
            np.ones(1 << 21, dtype=np.float32).sum()

    step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        step()
    assert resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before < 100  # 8 MB arrays: 2,048 pages each
