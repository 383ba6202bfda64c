"""How a run's C heap (glibc malloc) serves its large blocks: reused by every thread when
they share one arena, each mapped on its own when they do not; never kept per thread.

A run's large blocks are page bodies and what decoding makes of them in passing (a
compressed body, the inflated one, the text polars reads: 1-6 MiB each). Left alone, glibc
gives each worker thread an arena of its own, and once such a block is freed it keeps
blocks that size in those arenas: with 16 workers that held some 200 MB no page was using.

- One arena (`share_one_arena()` before any thread allocates; `import polyledger` does
  it): a block freed by one worker is reused by the next (the big ones are allocated
  under the GIL, so threads hardly contend for the arena), blocks under 8 MiB come from
  it and free memory over 32 MiB at its top goes back to the system. It keeps about the
  largest set of blocks live at once: a page per core being decoded and encoded
  (`polygon.cores.PAGE_WORK`) and the compressed bodies waiting.
- Arenas per thread already (a process whose threads allocated before polyledger was
  imported: glibc fixes the number of arenas then): every block of 1 MiB or more is
  mapped and unmapped when freed. Bounded as well, but each page faults its blocks in
  afresh: about 4,000 page faults a page, 10-25% more CPU (bench/RESULTS.md, 2026-12-01
  08:10-09:40).
"""

from __future__ import annotations

import os
import sys

try:
    import ctypes
except ImportError:  # a Python built without ctypes: malloc as it comes
    ctypes = None  # type: ignore[assignment]

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
# (mmap threshold, trim threshold) in bytes: blocks at least the first are mapped each,
# unmapped when freed; free memory over the second at an arena's top is given back
SHARED_ARENA = (8 << 20, 32 << 20)
ARENA_PER_THREAD = (1 << 20, 2 << 20)


def _mallopt():  # type: ignore[no-untyped-def]
    if ctypes is None or not sys.platform.startswith("linux"):
        return None
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt


def share_one_arena() -> bool:
    """Ask glibc for one arena shared by all threads; it holds only if no thread other than
    the main one has allocated yet (glibc fixes the count of arenas then). True when set;
    a user's own `MALLOC_ARENA_MAX` (which glibc applied at start) is left alone."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    mallopt = _mallopt()
    # mallopt returns 1 on success; another C library may have none, or ignore it (0)
    return mallopt is not None and mallopt(M_ARENA_MAX, 1) == 1


def arenas() -> int | None:
    """How many arenas glibc's malloc has now (`malloc_info`, written to a memory stream),
    None when it cannot tell."""
    if ctypes is None or not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.open_memstream.restype = ctypes.c_void_p
        libc.open_memstream.argtypes = (ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t))
        libc.fclose.argtypes, libc.free.argtypes = (ctypes.c_void_p,), (ctypes.c_void_p,)
        libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
        buffer, size = ctypes.c_void_p(), ctypes.c_size_t()
        stream = libc.open_memstream(ctypes.byref(buffer), ctypes.byref(size))
        if not stream:
            return None
        status = libc.malloc_info(0, stream)
        libc.fclose(stream)  # sets buffer and size; the buffer is ours to free
        try:
            report = ctypes.string_at(buffer.value, size.value) if buffer.value else b""
        finally:
            libc.free(buffer)
    except (OSError, AttributeError):
        return None
    count = report.count(b"<heap nr=")
    return count if status == 0 and count else None


def return_freed_memory() -> str | None:
    """Set malloc's thresholds for this process for how its arenas turned out (glibc only;
    a no-op elsewhere): "shared arena" or "arena per thread", None when nothing was set.
    Process-wide and lasting; call it before the worker threads start."""
    mallopt = _mallopt()
    if mallopt is None:
        return None
    share_one_arena()  # in case nothing allocated in a thread yet
    mode, (mmap_threshold, trim_threshold) = (
        ("shared arena", SHARED_ARENA) if arenas() == 1 else ("arena per thread", ARENA_PER_THREAD)
    )
    if mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1 and mallopt(M_TRIM_THRESHOLD, trim_threshold) == 1:
        return mode
    return None
