"""The choice learner's sampled softmax and the draws it learns from (no broker)."""

from __future__ import annotations

import math
import random
from collections import Counter

import numpy as np
import pytest

from stream.contracts.validation import CatalogEntry
from stream.learning.catalog import Catalog
from stream.learning.choice import UNIFORM, Choice, competitors
from stream.learning.features import FEATURES
from stream.learning.trend import SharedTrend


def test_the_trend_draws_each_title_as_often_as_its_share_of_the_counts() -> None:
    trend = SharedTrend(half_life=50.0)
    rng = random.Random(1)
    for n in range(400):  # "a" fades out, "c" comes in: the recent counts are what matter
        trend.learn("a" if n < 200 else rng.choice("bcc"))
        trend.learn(rng.choice("abd"))
    draws = Counter(trend.draw(random.Random(s)) for s in range(20_000))
    for item in "abcd":
        assert draws[item] / 20_000 == pytest.approx(trend.probability(item), abs=0.015), item
    assert trend.probability("c") > trend.probability("a") > 0
    assert SharedTrend().draw(rng) is None


def _learned_weight(corrected: bool, seed: int, true_weight: float = 4.0, titles: int = 300) -> float:
    """Viewers choose title ``i`` with chance proportional to ``exp(true_weight * trend_i)``; each choice is
    learned against 16 titles drawn half uniformly, half by that same chance (as trending titles are)."""
    rng = random.Random(seed)
    trend = np.asarray([rng.random() for _ in range(titles)])
    chance = np.exp(true_weight * trend)
    chance /= chance.sum()
    q = UNIFORM / titles + (1 - UNIFORM) * chance
    chosen_at, drawn_at = np.cumsum(chance), np.cumsum(q)
    learner, column = Choice(), FEATURES.index("trend")
    for _ in range(3000):
        chosen = min(int(np.searchsorted(chosen_at, rng.random())), titles - 1)
        rows = [min(int(np.searchsorted(drawn_at, rng.random())), titles - 1) for _ in range(16)]
        rows = [r for r in rows if r != chosen]
        diffs = np.zeros((len(rows), len(FEATURES)))
        diffs[:, column] = trend[chosen] - trend[rows]
        learner.learn_many(diffs, np.log(16 * q[rows]) if corrected else np.zeros(len(rows)))
    return learner.weights["trend"]


@pytest.mark.parametrize("seed", [1, 2])
def test_corrected_for_how_they_were_drawn_a_few_titles_teach_the_weight_of_a_choice_among_all(seed: int) -> None:
    """The weight a softmax over the whole catalog would learn is the one viewers choose by. Learned
    against titles drawn by their trend without the correction, it comes out about half as large."""
    assert _learned_weight(True, seed) == pytest.approx(4.0, abs=0.5)
    assert _learned_weight(False, seed) < 3.0


def test_a_competitor_drawn_by_the_trend_carries_the_log_of_how_often_it_is_drawn() -> None:
    catalog = Catalog()
    for n in range(50):
        catalog.upsert(CatalogEntry(f"t{n}", f"T{n}", ("drama",), (), None))
    catalog.retire("t49")
    trend = SharedTrend()
    for item in ["t1"] * 30 + ["t2"] * 10:
        trend.learn(item)
    rows, corrections = competitors(catalog, 0, ["t5"], "e7", trend, sampled=8)
    assert rows[0] == 5 and corrections[0] == 0.0, "a listed title counts once, as itself"
    assert 0 not in rows and 49 not in rows and len(set(rows)) == len(rows)
    for row, correction in zip(rows[1:], corrections[1:], strict=True):
        q = UNIFORM / 49 + (1 - UNIFORM) * trend.probability(catalog.ids[row])
        assert correction == pytest.approx(math.log(1 - (1 - q) ** 8)), "its chance to be among 8 draws"
    drawn = Counter(catalog.ids[r] for s in range(300) for r in competitors(catalog, 0, [], f"e{s}", trend)[0])
    assert drawn["t1"] > drawn["t2"] > drawn["t3"], "titles are drawn by their trend as well as uniformly"


def test_a_floor_keeps_a_weight_from_going_below_it_while_the_others_learn_as_before() -> None:
    """Viewers keep choosing the less popular of two titles, and the more trending: the popularity weight
    is taught down, the trend weight up. With a floor on popularity it stops there and the trend's
    grows as much or more (it does the rest); the floor survives a checkpoint."""
    pop, trend = FEATURES.index("popularity"), FEATURES.index("trend")
    diffs = np.zeros((1, len(FEATURES)))
    diffs[0, pop], diffs[0, trend] = -0.8, 0.5
    free, floored = Choice(), Choice(floor={"popularity": -0.25})
    for _ in range(400):
        free.learn_many(diffs, np.zeros(1))
        floored.learn_many(diffs, np.zeros(1))
    assert free.weights["popularity"] < -0.25 and free.weights["trend"] > 0.5
    assert floored.weights["popularity"] == -0.25
    assert floored.weights["trend"] >= free.weights["trend"], "the trend does the rest of the work"
    restored = Choice.from_state(floored.to_state())
    assert restored.floor == {"popularity": -0.25}
    restored.learn_many(diffs, np.zeros(1))
    assert restored.weights["popularity"] == -0.25


def test_no_ranking_weight_of_the_deployment_goes_below_zero() -> None:
    """Each feature is built so that more of it speaks for a title; the shared choice learner's floor keeps
    every ranking weight (the prior's plus the correction) at 0 or above, however the choices go."""
    from stream.learning.model import PartitionModel
    from stream.learning.outcome import PRIOR

    model = PartitionModel()
    rng = np.random.default_rng(3)
    pop = FEATURES.index("popularity")
    for _ in range(500):  # the chosen titles are the less popular ones; the rest is noise
        diffs = rng.normal(0.0, 1.0, (8, len(FEATURES)))
        diffs[:, pop] = -abs(diffs[:, pop])
        model.shared.choice.learn_many(diffs, rng.normal(0.0, 1.0, 8))
    assert min(model.weights.values()) >= 0.0
    assert model.weights["popularity"] == 0.0 < PRIOR["popularity"], "held at its floor"


def test_the_choices_of_viewers_back_after_a_while_weigh_for_their_lists_as_much_as_the_floor_allows() -> None:
    """In a visit viewers choose what goes with what they just watched; back after a while, what trends.
    Both teach the weights every list takes; the second also what only lists of viewers back take. The
    floor bounds those lists' weights (the sum), and a checkpoint keeps both parts; an older one has none."""
    cowatch, trend = FEATURES.index("cowatch"), FEATURES.index("trend")
    in_visit, back = np.zeros((1, len(FEATURES))), np.zeros((1, len(FEATURES)))
    in_visit[0, cowatch], in_visit[0, trend] = 0.6, -0.2
    back[0, cowatch], back[0, trend] = -0.4, 0.6
    learner, floored = Choice(), Choice(floor={"cowatch": -0.5})
    for _ in range(300):
        learner.learn_many(in_visit, np.zeros(1))
        learner.learn_many(back, np.zeros(1), away=True)
        floored.learn_many(back, np.zeros(1), away=True)
    visit, away = learner.total(False), learner.total(True)
    assert away[trend] > visit[trend] + 1.0 and away[cowatch] < visit[cowatch] - 1.0
    assert list(visit) == list(learner.weights.values()), "the weights of a list in a visit"
    assert floored.total(True)[cowatch] == pytest.approx(-0.5), "the floor holds the sum"
    assert floored.total(False)[cowatch] == pytest.approx(-0.5)
    assert np.array_equal(Choice.from_state(learner.to_state()).total(True), away)
    older = learner.to_state()
    del older["away"]
    assert np.array_equal(Choice.from_state(older).total(True), visit)
