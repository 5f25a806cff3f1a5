"""Measuring instruments: percentiles, a process sampler, a tail-fetch probe."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ProcSampler", "Span", "percentiles", "trend"]

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """p50, p95, p99 and max of ``values`` (None when empty).

    >>> percentiles([1, 2, 3, 4, 100])["max"]
    100.0
    """
    if not len(values):
        return {"p50": None, "p95": None, "p99": None, "max": None, "n": 0}
    arr = np.asarray(values, dtype=np.float64)
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "max": float(arr.max()), "n": len(arr)}


def trend(series: Sequence[float]) -> float | None:
    """Ratio of the last third's median to the first third's (None when too short).

    >>> trend([10, 10, 10, 20, 20, 20, 40, 40, 40])
    4.0
    """
    n = len(series) // 3
    if n < 1:
        return None
    first = float(np.median(series[:n]))
    last = float(np.median(series[-n:]))
    return last / first if first > 0 else None


@dataclass
class Span:
    """How fast a drain went, from the timestamps its output records carry.

    Each output record is stamped (CreateTime, milliseconds) by the producer
    that wrote it, when it was sent, so the span from the first to the last
    record measures the processor itself, not how often the harness polled.
    Poll times would not do: a drain of a few thousand events by a fast loop
    can arrive in one poll, which has no duration.

    >>> span = Span()
    >>> for ts in (1_000, 1_250, 1_500):
    ...     span.add(ts)
    >>> span.count, span.seconds, span.rate
    (3, 0.5, 6.0)
    """

    count: int = 0
    first_ms: int | None = None
    last_ms: int | None = None

    def add(self, timestamp_ms: int, n: int = 1) -> None:
        self.count += n
        if self.first_ms is None or timestamp_ms < self.first_ms:
            self.first_ms = timestamp_ms
        if self.last_ms is None or timestamp_ms > self.last_ms:
            self.last_ms = timestamp_ms

    @property
    def seconds(self) -> float:
        if self.first_ms is None or self.last_ms is None:
            return float("nan")
        # one millisecond at least: the timestamps' resolution
        return max(self.last_ms - self.first_ms, 1) / 1000.0

    @property
    def rate(self) -> float:
        """Records per second (0.0 before any record)."""
        return self.count / self.seconds if self.count else 0.0


@dataclass
class ProcSampler:
    """CPU and resident memory of some processes, from /proc (Linux)."""

    pids: list[int]
    samples: list[dict[str, float]] = field(default_factory=list)
    _last: tuple[float, float] | None = None

    def _read(self) -> tuple[float, float]:
        cpu = rss = 0.0
        for pid in self.pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    parts = f.read().rsplit(")", 1)[1].split()
                cpu += (int(parts[11]) + int(parts[12])) / _TICKS
                with open(f"/proc/{pid}/statm") as f:
                    rss += int(f.read().split()[1]) * _PAGE
            except (OSError, IndexError, ValueError):
                continue
        return cpu, rss

    def sample(self, t: float | None = None) -> None:
        now = time.monotonic() if t is None else t
        cpu, rss = self._read()
        if self._last is not None:
            last_t, last_cpu = self._last
            if now > last_t:
                self.samples.append(
                    {"t": now, "cpu_percent": 100.0 * (cpu - last_cpu) / (now - last_t), "rss_mb": rss / 2**20}
                )
        self._last = (now, cpu)

    def summary(self) -> dict[str, float | None]:
        if not self.samples:
            return {"cpu_percent_mean": None, "cpu_percent_max": None, "rss_mb_max": None}
        cpu = [s["cpu_percent"] for s in self.samples]
        return {
            "cpu_percent_mean": float(np.mean(cpu)),
            "cpu_percent_max": float(np.max(cpu)),
            "rss_mb_max": float(max(s["rss_mb"] for s in self.samples)),
        }
