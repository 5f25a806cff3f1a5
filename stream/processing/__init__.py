"""The pure batch step: one fetch's raw messages and the state they touch in; state changes and outputs out.

Imports :mod:`stream.learning`, :mod:`stream.ranking` and :mod:`stream.contracts`;
no Kafka, no Faust: the runtime (:mod:`stream.runtime`) reads the batch, prefetches
the state, calls the step and writes what it returns.
"""

from stream.processing.step import BatchResult, Processor
from stream.processing.threads import one_blas_thread

__all__ = ["BatchResult", "Processor", "one_blas_thread"]
