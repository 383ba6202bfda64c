"""Memory a run frees goes back to the system instead of staying with the process.

glibc's malloc serves a block of 128 KiB or more with mmap (given back when freed) until
such a block is freed: it then raises that threshold to the freed block's size (up to
32 MiB) and keeps up to twice as much free at the top of each arena, and it gives each
worker thread an arena of its own. A run's large blocks are page bodies and their
decoded columns (several MiB each, in every worker): with 16 workers that kept some
200 MB that no page was using. A fixed threshold keeps every block of 1 MiB or more in
its own mapping, unmapped when freed, at the cost of a mapping and its page faults per
block (small beside reading the block).
"""

from __future__ import annotations

import ctypes
import sys

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 20  # blocks this large or larger: a mapping each, unmapped when freed
TRIM_THRESHOLD = 2 << 20  # free memory kept at the top of an arena before it is given back


def return_freed_memory() -> bool:
    """Fix malloc's thresholds for this process (glibc only; a no-op elsewhere). True when
    they were set. Process-wide and lasting: calling it again changes nothing."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt returns 1 on success; another C library may have none, or ignore it (0)
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
