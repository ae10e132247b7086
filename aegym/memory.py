"""Opt-in allocator setting for long batched runs: keep freed memory in the process.

A batched env step allocates many large tensors (a 64-voice second of audio is 4 MB)
and frees them again. glibc's malloc returns big free blocks to the kernel (``munmap``
above its mmap threshold, heap trimming above its trim threshold), so the next step
takes the same memory back as fresh pages, each one a page fault: thousands per step.
Where page faults are expensive (virtual machines), that is a large share of a step
(see ``scripts/bench_step.py``, which reports page faults per step).

:func:`retain_freed_memory` raises both thresholds so that freed memory stays in the
process and is reused. It changes the whole process (the resident size stays at its
peak), so aegym never calls it by itself; call it at the start of a training or
benchmark process. The same effect without code: ``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_`` in the environment.
"""

from __future__ import annotations

import ctypes
import ctypes.util

from aegym._checks import check_int

# mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc caps the mmap threshold at HEAP_MAX_SIZE / 2 (32 MiB on 64-bit) and ignores larger.
_MAX_MMAP_THRESHOLD = 32 << 20


def retain_freed_memory(trim_threshold_bytes: int = 1 << 30) -> bool:
    """Keep freed memory in this process (glibc only): blocks up to 32 MiB come from
    the heap instead of ``mmap``, and the heap is trimmed only above
    ``trim_threshold_bytes``. Returns ``False`` (and changes nothing) where glibc's
    ``mallopt`` is not available (other C libraries, other systems)."""
    check_int("trim_threshold_bytes", trim_threshold_bytes, 0)
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    trim = min(trim_threshold_bytes, 2**31 - 1)
    return bool(mallopt(_M_MMAP_THRESHOLD, _MAX_MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, trim)
    )
