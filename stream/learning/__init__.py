"""What is learned from playback events, and what it is learned over.

- :mod:`~stream.learning.catalog`: the titles, as records and as matrices for ranking;
- :mod:`~stream.learning.signals`: what each event means (an early skip, a completion, ...);
- :mod:`~stream.learning.profile`: one viewer's state, changed only by its own methods;
- :mod:`~stream.learning.features`: the one definition of a (viewer, title) pair's score parts;
- :mod:`~stream.learning.model`: what a partition learned about its viewers (which cohort each
  is in, artwork), changed only by its own methods;
- :mod:`~stream.learning.shared`: what the whole deployment learned (popularity, trend, trending,
  co-watch, item factors, the choice weights, the outcome regression, the cohorts' centres and
  counts, exploration budgets), from the deltas every worker reads;
- :mod:`~stream.learning.cohorts`, :mod:`~stream.learning.velocity`, :mod:`~stream.learning.artwork`
  and the rest: the learners they hold.

Imports :mod:`stream.contracts` only; no Kafka, no Faust.
"""

from stream.learning.catalog import Catalog, CatalogMatrices
from stream.learning.model import FEATURES, PRIOR, PartitionModel
from stream.learning.profile import Profile
from stream.learning.signals import Signal, interpret

__all__ = ["FEATURES", "PRIOR", "Catalog", "CatalogMatrices", "PartitionModel", "Profile", "Signal", "interpret"]
