"""Ctrl-C and SIGTERM for long commands: our own handlers while they run, and afterwards
the process exactly as it was.

Two traps this module exists for:
- A command started with SIGINT ignored (a background job of a non-interactive shell, some
  schedulers and CI runners) would never see Ctrl-C or `kill -INT`: `run` and `serve`
  install their handlers explicitly, whatever they inherited.
- Python's `signal.signal` returns the handler *Python* last set, which can be stale: a
  library (polars does, on import) may install its own handler in C. Restoring Python's
  stale "ignored" would leave SIGINT ignored for the rest of the process and for every
  child it starts later (an ignored signal survives exec). So on POSIX the OS-level action
  that was really in place is saved and put back as it was.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# larger than any libc's struct sigaction (glibc: 152 bytes, musl: 152, macOS/BSD: 16-32):
# the structure is only copied out and back, never read, so its layout does not matter
_SIGACTION_BYTES = 512

Handler = Callable[[int, "FrameType | None"], object]


def _libc_sigaction() -> Callable[..., int] | None:
    if os.name != "posix":
        return None  # Windows: a handler set with signal() is not inherited by children
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return libc.sigaction
    except (OSError, AttributeError):
        return None


_sigaction = _libc_sigaction()


def _save_os_action(signum: int) -> ctypes.Array | None:
    """The action the kernel has for `signum` right now, as opaque bytes (None off POSIX)."""
    if _sigaction is None:
        return None
    saved = ctypes.create_string_buffer(_SIGACTION_BYTES)
    return saved if _sigaction(signum, None, saved) == 0 else None


def _restore_os_action(signum: int, saved: ctypes.Array | None) -> None:
    if saved is not None and _sigaction is not None:
        _sigaction(signum, saved, None)


@contextlib.contextmanager
def handling(handler: Handler, signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[None]:
    """Route `signals` to `handler` inside the block, even if they were ignored before, then
    put back exactly what was there. Off the main thread (where Python cannot set handlers)
    the block runs with the process's handlers unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: (_save_os_action(sig), signal.signal(sig, handler)) for sig in signals}
    try:
        yield
    finally:
        for sig, (os_action, python_handler) in saved.items():
            signal.signal(sig, python_handler)  # Python's own record, as it was
            _restore_os_action(sig, os_action)  # and the kernel's, which may differ from it


def graceful_stop(request_stop: Callable[[], None], is_stopping: Callable[[], bool]) -> Handler:
    """A handler for long runs: the first signal asks for a graceful stop (no new work, work
    in flight finishes or is released), a second one quits at once (KeyboardInterrupt)."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        if is_stopping():
            raise KeyboardInterrupt
        request_stop()  # no printing here: the main thread may be mid-write (reentrant I/O)

    return handler
