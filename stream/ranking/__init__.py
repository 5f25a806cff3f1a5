"""Ranked, explained lists: pure functions of the viewers, the catalog and the models.

- :mod:`~stream.ranking.ranker`: the top of the catalog for many viewers at once;
- :mod:`~stream.ranking.candidates`: which titles are worth scoring in a large catalog;
- :mod:`~stream.ranking.rerank`: diversity and the exploration slot;
- :mod:`~stream.ranking.explain`: the reasons, in words;
- :mod:`~stream.ranking.group`: one list for several viewers.

Nothing here changes a profile or a model: what a list spends (exploration
impressions) is returned for the caller to apply. Imports :mod:`stream.learning`
and :mod:`stream.contracts`.
"""

from stream.ranking.group import rank_group
from stream.ranking.ranker import RankedItem, rank

__all__ = ["RankedItem", "rank", "rank_group"]
