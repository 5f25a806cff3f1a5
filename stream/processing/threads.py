"""One BLAS thread per process.

A worker is one event loop on one core: partitions and workers are how the deployment uses more
cores. NumPy's OpenBLAS would otherwise split each matrix product of the score (the item-factor
vectors of a fetch's viewers against every title, :func:`stream.learning.features.scan`) over
every core of the machine, whose threads then spin between products. On the processor bench
(``python loadtest/processor_bench.py``, 2 cores) a worker's step took 623-690 µs of CPU per
event with OpenBLAS's default threads against 287-296 µs with one.
"""

from __future__ import annotations

from threadpoolctl import threadpool_limits

__all__ = ["one_blas_thread"]


def one_blas_thread() -> None:
    """Limit this process's BLAS to one thread (for good: call it where a process starts its work)."""
    threadpool_limits(limits=1, user_api="blas")
