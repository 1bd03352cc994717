"""glibc allocator settings for the processes that move bulk bytes (nodes and gateways).

Both hand 1 MiB frames and erasure-code segments (2 MiB by default) from allocation to
allocation. With glibc's defaults, buffers that size are served by mmap and returned with
munmap (or carved from the heap top and trimmed back to the kernel soon after), so every new
buffer is fresh pages the kernel must fault in and zero. Measured on the 2-core benchmark
machine with 64 MiB objects (`benchmarks/bench_scale.py --quick --env
S3COMPAT_MALLOC_TUNING=0` against the default): node CPU per GET 157 -> 105 ms and gateway
CPU per PUT 497 -> 352 ms once buffers up to 16 MiB stay on the heap and up to 32 MiB of
free heap is kept.

At most two malloc arenas (ARENA_MAX): in bench-quick this cut the gateway's peak RSS from
571 to 381 MiB (two workers) at the same throughput.

This is the runtime equivalent of MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ /
MALLOC_ARENA_MAX, applied by the process itself so that it needs no wrapper script. An
operator who sets one of these variables keeps their value; S3COMPAT_MALLOC_TUNING=0 leaves
glibc's defaults alone.
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

# mallopt(3) parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

MMAP_THRESHOLD = 16 << 20
"""Allocations below this come from the heap, so freed buffers are reused in place."""

TRIM_THRESHOLD = 32 << 20
"""Free memory at the top of the heap kept for reuse before it is returned to the kernel."""

ARENA_MAX = 2
"""Malloc arenas: glibc's default (8 per core) lets every worker thread that hashes or
encodes a segment keep its own arena of freed segments, multiplying the memory kept."""


def tune_malloc() -> list[str]:
    """Apply the settings above; returns the names of those applied.

    None when S3COMPAT_MALLOC_TUNING=0 or the C library is not glibc. An operator's
    MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_ keeps both thresholds as glibc read
    them from the environment; MALLOC_ARENA_MAX keeps the arena count.
    """
    if os.environ.get("S3COMPAT_MALLOC_TUNING", "1") == "0":
        return []
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return []
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    wanted: list[tuple[str, int, int]] = []
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ and "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        wanted += [
            ("mmap_threshold", _M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            ("trim_threshold", _M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        ]
    if "MALLOC_ARENA_MAX" not in os.environ:
        wanted.append(("arena_max", _M_ARENA_MAX, ARENA_MAX))
    applied = [name for name, param, value in wanted if mallopt(param, value)]
    if len(applied) < len(wanted):
        log.debug("mallopt refused some allocator settings; applied %s", applied)
    return applied
