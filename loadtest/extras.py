"""The ``bench`` extra: matplotlib (the plots) and tqdm (the progress bar).

Only the load test and the replay use them, so they are an optional extra,
not dependencies of ``stream``; they are imported only where they are used,
and a missing one is named together with what to install.

>>> require("json")
>>> str(MissingExtra("nothing-such"))
"nothing-such is not installed: the load test and the replay need the bench extra: pip install '.[bench]'"
"""

from __future__ import annotations

import importlib.util
from types import ModuleType

__all__ = ["INSTALL", "MissingExtra", "pyplot", "require"]

INSTALL = "pip install '.[bench]'"


class MissingExtra(ImportError):
    """A module of the ``bench`` extra is not installed; the message says what to install."""

    def __init__(self, *modules: str) -> None:
        names = " and ".join(modules)
        verb = "is" if len(modules) == 1 else "are"
        super().__init__(f"{names} {verb} not installed: the load test and the replay need the bench extra: {INSTALL}")


def require(*modules: str) -> None:
    """Raise :class:`MissingExtra` now if any of ``modules`` is missing (before a long run, not at its end)."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtra(*missing)


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` drawing to files (the Agg backend, no display); :class:`MissingExtra` without it."""
    try:
        import matplotlib
    except ImportError as exc:
        raise MissingExtra("matplotlib") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
