"""The one place where numba jit flags are set.

No ``fastmath`` anywhere: these kernels are checked against reference vectors.
``cache=True`` keeps compiled kernels on disk between runs (``NUMBA_CACHE_DIR``
moves the cache).
"""

from __future__ import annotations

import numba

JIT_FLAGS = dict(nogil=True, cache=True, fastmath=False, error_model="numpy")
PARALLEL_FLAGS = dict(JIT_FLAGS, parallel=True)

# every serial and parallel kernel as defined: tests/test_warmup.py checks that
# aposos.warmup compiles each one called from Python (the others compile inside those)
KERNELS: list = []


def _registered(dispatcher):
    KERNELS.append(dispatcher)
    return dispatcher


def kernel(func):
    """Compile a serial kernel (callable from other kernels)."""
    return _registered(numba.njit(**JIT_FLAGS)(func))


def parallel_kernel(func):
    """Compile a kernel whose outer loop is a ``prange`` over independent rows."""
    return _registered(numba.njit(**PARALLEL_FLAGS)(func))


def inline_kernel(func):
    """A small kernel inlined into its callers (so loops around it can vectorise)."""
    return numba.njit(inline="always", **JIT_FLAGS)(func)
