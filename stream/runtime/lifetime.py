"""Child processes that do not outlive the process that started them.

An orderly stop (Ctrl-C, SIGTERM, the end of a test session) stops every child first. This is
the safety net for the other case, a parent that is SIGKILLed or crashes: a child started with
``preexec_fn=die_with_parent()`` asks the Linux kernel (``prctl(PR_SET_PDEATHSIG)``) for a signal
when its parent dies, so an embedded broker or a worker is never left running by itself.

The kernel's "parent" is the *thread* that forked the child: a child forked from a short-lived
thread (``asyncio.to_thread``, as the fault tests start workers) would be killed when that thread
ends. :func:`die_with_parent` therefore only arms the signal from the main thread, and returns
``None`` (no safety net, no surprise) from any other thread or on a system other than Linux.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import sys
import threading
from collections.abc import Callable

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1


@functools.cache
def _prctl() -> Callable[..., int]:
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the child receive ``sig`` when this process dies, or ``None``.

    SIGKILL by default: the parent that would have stopped the child in order is gone, and the
    child must not be able to linger (the broker keeps nothing on disk; workers are built to be
    killed). Everything the child-side function needs is resolved here, in the parent, so that
    between fork and exec it only makes the system call.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    prctl = _prctl()
    parent = os.getpid()

    def arm() -> None:
        if prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died between the fork and the prctl
            os.kill(os.getpid(), sig)

    return arm
