"""How a run's C heap serves large blocks (`fetch/heap.py`): after `return_freed_memory()`,
blocks of a few MiB that worker threads free are given back beyond a bound (never kept in
an arena per thread), and, when `import polyledger` came before any thread allocated, a
page-sized block freed by one worker is reused by the next (not mapped and faulted in
afresh each time)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from polyledger.fetch import heap

# the probes measure glibc's malloc (Linux); elsewhere the module leaves malloc as it comes
glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="measures glibc's malloc")

# threads that allocate before polyledger is imported: glibc has an arena per thread then
EARLY_THREAD = """
import threading
thread = threading.Thread(target=lambda: bytearray(300_000))
thread.start()
thread.join()
"""
SET_UP = """
from polyledger.fetch.heap import return_freed_memory
set_up = str(return_freed_memory()).replace(" ", "-")
"""
NOT_SET_UP = "set_up = None  # glibc as it comes: polyledger not even imported"

KEPT = textwrap.dedent(
    """
    import threading, psutil
    {set_up}
    process = psutil.Process()
    held, freed = threading.Barrier(7), threading.Barrier(7)

    def work():
        big = bytearray(16 << 20)  # freed first: glibc would raise its mmap threshold to 16 MiB
        del big
        blocks = [bytearray(6 << 20) for _ in range(4)]  # 24 MiB, touched (zeroed)
        held.wait()
        del blocks
        freed.wait()

    before = process.memory_info().rss
    threads = [threading.Thread(target=work) for _ in range(6)]  # worker threads, all at once
    for thread in threads:
        thread.start()
    held.wait()
    freed.wait()
    for thread in threads:
        thread.join()
    print(set_up, (process.memory_info().rss - before) >> 20)
    """
)

FAULTS = textwrap.dedent(
    """
    import ctypes, resource, threading
    {set_up}
    if {per_block_mapping}:  # the previous setting: every block of 1 MiB or more mapped
        ctypes.CDLL(None).mallopt(-3, 1 << 20)

    def page():  # what decoding a page allocates in passing
        blocks = [bytearray(5 << 20) for _ in range(3)]
        del blocks

    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    page()
    before = faults()
    for _ in range(10):  # one worker after another
        thread = threading.Thread(target=page)
        thread.start()
        thread.join()
    print(set_up, faults() - before)
    """
)


def _probe(source: str) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", source], check=True, capture_output=True, text=True
    ).stdout.split()
    return out[0], int(out[1])


@glibc_only
def test_blocks_freed_by_workers_go_back_to_the_system():
    set_up, kept_mib = _probe(KEPT.format(set_up=SET_UP))
    assert set_up == "shared-arena"
    # of the 144 MiB six workers held at once: what sits below a block still in use stays
    # (reused by the next page), the rest goes back
    assert kept_mib < 48


@glibc_only
def test_with_an_arena_per_thread_already_they_are_mapped_and_go_back_as_well():
    set_up, kept_mib = _probe(KEPT.format(set_up=EARLY_THREAD + SET_UP))
    assert set_up == "arena-per-thread"
    assert kept_mib < 12


@glibc_only
def test_without_it_glibc_keeps_them_in_each_thread_arena_so_the_probe_has_teeth():
    _, kept_mib = _probe(KEPT.format(set_up=NOT_SET_UP))
    assert kept_mib >= 96


@glibc_only
def test_a_page_sized_block_freed_by_one_worker_is_reused_by_the_next():
    set_up, faults = _probe(FAULTS.format(set_up=SET_UP, per_block_mapping=False))
    assert set_up == "shared-arena"
    # 10 pages of 15 MiB would fault in some 38,000 pages of 4 KiB if mapped afresh
    assert faults < 4_000


@glibc_only
def test_mapping_each_block_faults_every_page_in_again_so_the_probe_has_teeth():
    _, faults = _probe(FAULTS.format(set_up=SET_UP, per_block_mapping=True))
    assert faults > 30_000


@glibc_only
def test_importing_polyledger_first_is_enough_when_threads_allocate_before_the_run():
    # polars starts threads of its own once used; the run sets its thresholds later
    set_up, faults = _probe(
        FAULTS.format(set_up="import polyledger\n" + EARLY_THREAD + SET_UP, per_block_mapping=False)
    )
    assert set_up == "shared-arena"
    assert faults < 4_000


def test_off_linux_malloc_is_left_as_it_comes(monkeypatch):
    # Windows and macOS users import polyledger too: nothing is set, and the run says so
    monkeypatch.setattr(sys, "platform", "win32")
    assert heap.share_one_arena() is False
    assert heap.arenas() is None
    assert heap.return_freed_memory() is None


@glibc_only
def test_the_arena_count_is_read_from_glibc():
    probe = """
import threading
from polyledger.fetch.heap import arenas
before = arenas()
threads = [threading.Thread(target=lambda: bytearray(300_000)) for _ in range(3)]
for thread in threads: thread.start()
for thread in threads: thread.join()
print(before, arenas())
"""
    environ = {name: value for name, value in os.environ.items() if name != "MALLOC_ARENA_MAX"}
    shared = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, env=environ
    )
    assert shared.stdout.split() == ["1", "1"]  # import polyledger asked for one arena
    own = subprocess.run(
        [sys.executable, "-c", probe],
        check=True,
        capture_output=True,
        text=True,
        env={**environ, "MALLOC_ARENA_MAX": "8"},
    )
    before, after = map(int, own.stdout.split())
    assert before == 1 and after > 1  # the user's setting kept: an arena per thread
