"""Memory a run frees goes back to the system (`fetch/heap.py`): after
`return_freed_memory()`, blocks of a few MiB freed by a thread are unmapped, even after a
larger block was freed (which, left alone, makes glibc keep such blocks in its arenas)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

PROBE = textwrap.dedent(
    """
    import threading, psutil
    from polyledger.fetch.heap import return_freed_memory

    set_up = return_freed_memory() if {call} else None
    process = psutil.Process()
    freed = []

    def work():
        big = bytearray(16 << 20)  # freed first: glibc would raise its mmap threshold to 16 MiB
        del big
        blocks = [bytearray(6 << 20) for _ in range(4)]  # 24 MiB, touched (zeroed)
        before = process.memory_info().rss
        del blocks
        freed.append(before - process.memory_info().rss)

    thread = threading.Thread(target=work)  # a worker thread: an arena of its own
    thread.start()
    thread.join()
    print(set_up, freed[0] >> 20)
    """
)


def _freed_mib(call: bool) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(call=call)], check=True, capture_output=True, text=True
    ).stdout.split()
    return out[0], int(out[1])


def test_blocks_freed_by_a_worker_go_back_to_the_system():
    set_up, freed = _freed_mib(call=True)
    assert set_up == "True"
    assert freed >= 20  # the 24 MiB of blocks, less what the interpreter itself moved


def test_without_it_glibc_keeps_them_so_the_probe_has_teeth():
    _, freed = _freed_mib(call=False)
    assert freed < 8
