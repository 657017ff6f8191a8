"""Numba-JIT kernels: pure functions over arrays, forward and backward side by side."""
