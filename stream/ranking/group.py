"""One list for several viewers watching together (``stream group``).

Every member's taste scores every title as in their own list (:mod:`stream.ranking.ranker`).
The group's score of a title is the members' mean, and a title any member strongly
dislikes (their taste part below ``-dislike``), has already put away (finished,
skipped early, thumbs down) or is of a genre a member said never to show is left out:
"least misery" first, then the average.
Reasons name who the pick is for.

>>> from stream.learning.catalog import Catalog
>>> from stream.contracts.validation import CatalogEntry
>>> cat = Catalog()
>>> for i, g in enumerate(["drama", "drama", "comedy", "horror"]):
...     cat.upsert(CatalogEntry(f"t{i}", f"T{i}", (g,), (), 3000.0))
>>> ann = Profile("ann", genres={"drama": 2.0, "comedy": 1.0})
>>> bob = Profile("bob", genres={"comedy": 2.0, "drama": -1.5})
>>> [(i.item_id, i.reasons[0]) for i in rank_group([ann, bob], cat, PartitionModel(), top_k=2, now_ms=0)]
[('t2', 'good for everyone: ann likes comedy, bob likes comedy'), ('t3', 'nobody minds it')]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stream.learning.catalog import Catalog
from stream.learning.features import VIEWER_FEATURES, ViewerTerms, pair_parts, weight_vector
from stream.learning.model import PartitionModel
from stream.learning.profile import Profile
from stream.ranking.ranker import RankedItem

__all__ = ["DISLIKE", "rank_group"]

#: A member's taste part (genre + tag contribution) below minus this is a strong dislike.
DISLIKE = 0.3
#: ... and above this, a reason to name them in the pick's reason.
LIKE = 0.05


def rank_group(
    members: Sequence[Profile],
    catalog: Catalog,
    model: PartitionModel,
    top_k: int = 10,
    now_ms: int = 0,
    dislike: float = DISLIKE,
) -> list[RankedItem]:
    """The group's list, best first: the mean of the members' scores, no member strongly against."""
    mats = catalog.matrices()
    if not members or mats.genres.shape[0] == 0:
        return []
    w = weight_vector(model.weights)
    parts = [pair_parts(ViewerTerms.of(m, model, catalog, now_ms), catalog) for m in members]
    # each member's taste part (genre and tag, as in their own list), and the part no member changes
    taste = np.vstack([p[:, :2] @ w[:2] for p in parts])  # (members, titles)
    shared = parts[0][:, len(VIEWER_FEATURES) :] @ w[len(VIEWER_FEATURES) :]
    shared[~mats.active] = -np.inf
    group = taste.mean(axis=0) + shared
    group[(taste < -dislike).any(axis=0)] = -np.inf
    for member in members:
        put_away = [i for i in map(catalog.index_of, member.excluded) if i is not None]
        group[put_away] = -np.inf
        if member.dislikes:  # a genre any member said never to show: a hard filter
            group[catalog.rows_with_genres(member.dislikes)] = -np.inf
    k = min(top_k, len(group))
    top = np.argpartition(group, -k)[-k:]
    top = top[np.argsort(-group[top], kind="stable")]
    items: list[RankedItem] = []
    for idx in top.tolist():
        if group[idx] == -np.inf:
            break
        entry = catalog.entry(idx)
        fans = [
            f"{m.user_id} likes {_favourite(m, entry.genres)}" for r, m in enumerate(members) if taste[r, idx] > 0.05
        ]
        if len(fans) == len(members):
            reason = "good for everyone: " + ", ".join(fans)
        elif fans:
            reason = "for " + ", ".join(fans) + "; nobody minds it"
        else:
            reason = "nobody minds it"
        score = round(float(group[idx]), 4)
        items.append(RankedItem(entry.item_id, len(items) + 1, score, score, [reason]))
    return items


def _favourite(member: Profile, genres: Sequence[str]) -> str:
    return max(genres, key=lambda g: member.genres.get(g, 0.0))
