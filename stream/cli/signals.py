"""Stopping the foreground commands: SIGTERM unwinds like Ctrl-C, and cleanup is not interrupted.

A signal handler must not do the cleanup itself: it runs on top of whatever the main thread is
doing, which may be waiting on the very process the handler would stop (the wait holds that
process's lock until the handler returns; ``stream broker`` used to hang 10 s there and print
a ``TimeoutExpired`` traceback). The handlers here only raise; the main thread stops its children
in a ``finally`` with further SIGINT/SIGTERM ignored, so a second Ctrl-C cannot cut that short
(it is bounded, and the children die with the process anyway: :mod:`stream.runtime.lifetime`).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

__all__ = ["Terminated", "signals_ignored", "sigterm_interrupts"]


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread; a ``KeyboardInterrupt`` so that it unwinds like Ctrl-C."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread."""
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """Within the block (a bounded cleanup), SIGINT and SIGTERM are ignored."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler is not None:  # None: installed outside Python, cannot be restored
                signal.signal(sig, handler)
