"""The score exists once: every path computes the same features; ranking changes nothing; lists
are in score order whatever re-ranking did."""

from __future__ import annotations

import itertools
import random

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.contracts.validation import CatalogEntry
from stream.learning.catalog import Catalog
from stream.learning.features import FEATURES, ViewerTerms, features, pair_parts, scan, weight_vector
from stream.learning.model import PartitionModel
from stream.learning.profile import AWAY_MS, Profile
from stream.ranking.group import rank_group
from stream.ranking.ranker import rank

from .test_recommend import EVENING, OLD, T0, apply, event, place

DAY = 86_400_000
GENRES = ("drama", "comedy", "crime", "documentary")
DEVICES = ("tv", "mobile", None)


def world(seed: int = 5) -> tuple[Catalog, list[PartitionModel], list[Profile], list[int | None]]:
    """A catalog with old titles and new releases, two trained models, and viewers with context habits."""
    rng = random.Random(seed)
    cat = Catalog()
    for n in range(60):
        genres = tuple(rng.sample(GENRES, rng.choice([1, 2])))
        tags = tuple(rng.sample([f"tag{t}" for t in range(8)], rng.choice([0, 1, 3])))
        released = EVENING - rng.choice([400] * 8 + [40] * 4 + [3, 1]) * DAY  # a few new releases
        cat.upsert(CatalogEntry(f"t{n}", f"Title {n}", genres, tags, 3000.0, released))
    models = [PartitionModel(), PartitionModel()]
    profiles = []
    for v in range(12):
        p, model = Profile(f"u{v}"), models[v % 2]
        for k in range(rng.randrange(3, 12)):
            item = f"t{rng.randrange(60)}"
            kind = rng.choice(["complete", "complete", "skip", "thumbs_up"])
            e = event(p.user_id, item, kind, EVENING + k * 60_000 + v, rng.choice(DEVICES), rng.random())
            x = features(ViewerTerms.of(p, model, cat, e.ts, e.device), cat, cat.index_of(item) or 0)
            model.learn_event(x, e, _signal(p, e), p.shown, e.device, None)
            apply(p, cat, e)
        profiles.append(p)
    for p, model in zip(profiles, itertools.cycle(models)):  # the item factors learn each viewer's choices
        chosen = p.positives()[::-1]  # oldest first
        for k in range(1, len(chosen)):
            passed = next(f"t{t}" for t in range(k, 60) if f"t{t}" != chosen[k])
            model.shared.factors.learn(chosen[k], chosen[:k][::-1], [passed], [0.0])
    cohorts: list[int | None] = [
        place(m, p.user_id, p.genres, p.applied) if p.genres else None
        for p, m in zip(profiles, itertools.cycle(models))
    ]
    for p, c in zip(profiles, cohorts, strict=True):
        model = models[int(p.user_id[1:]) % 2]
        for item in p.finished_titles()[:3]:
            if c is not None:
                model.cohorts.record(item, c, p.device, 2, model.unit)
    return cat, models, profiles, cohorts


def _signal(p: Profile, e: object) -> object:
    from stream.learning.signals import interpret

    return interpret(e, p.paused)  # type: ignore[arg-type]


def test_the_full_scan_scores_every_pair_as_pair_parts_does() -> None:
    """Also for viewers back after a while (no event for AWAY_MS), ranked with the away weights."""
    cat, models, profiles, cohorts = world()
    for m, away in zip(models, (0.7, 1.9), strict=True):
        m.shared.choice.away[:] = np.linspace(away, 0.1, len(FEATURES))
    owners = [models[v % 2] for v in range(len(profiles))]
    now = EVENING + AWAY_MS + 6 * 60_000  # back: the viewers whose newest event came in the first six minutes
    viewers = [ViewerTerms.current(p, m, cat, now, c) for p, m, c in zip(profiles, owners, cohorts, strict=True)]
    viewers.append(ViewerTerms.current(Profile("cold"), models[0], cat, now))
    back = [v for v in viewers if v.away]
    assert back and len(back) < len(viewers) and all(v.weights != v.model.weights for v in back)
    assert any(v.lift for v in viewers) and any(v.bucket for v in viewers), "the world exercises context and cohorts"
    assert any(v.taste is not None for v in viewers) and viewers[-1].taste is None, "and item factors"
    result = scan(viewers, cat)
    active = cat.matrices().active
    every = np.arange(len(cat.ids))
    for r, viewer in enumerate(viewers):
        parts = pair_parts(viewer, cat)
        expected = parts @ weight_vector(viewer.weights)
        assert result.scores[r][active] == pytest.approx(expected[active], abs=1e-4)
        assert result.parts(r, every, viewer, cat) == pytest.approx(parts, abs=1e-5)
        some = np.asarray([3, 17, 41])
        assert pair_parts(viewer, cat, some) == pytest.approx(parts[some], abs=1e-5)


def test_the_learning_features_of_a_pair_are_its_row_of_pair_parts() -> None:
    cat, models, profiles, cohorts = world()
    viewer = ViewerTerms.of(profiles[3], models[1], cat, EVENING + 5, "tv", cohorts[3])
    parts = pair_parts(viewer, cat)
    for idx in (0, 9, 33):
        assert list(features(viewer, cat, idx).values()) == pytest.approx(parts[idx].tolist(), abs=1e-6)
        assert list(features(viewer, cat, idx)) == list(FEATURES)


def test_ranking_changes_neither_profiles_nor_models() -> None:
    cat, models, profiles, cohorts = world()
    owners = [models[v % 2] for v in range(len(profiles))]
    profile_rows = [p.dumps() for p in profiles]

    def states() -> list[bytes]:  # each partition's model, and the cohorts and budgets of its deployment's
        return [orjson.dumps([m.to_state(), m.cohorts.to_state(m.unit), m.exploration.to_state()]) for m in models]

    model_states = states()
    lists = rank(profiles, cat, owners, 10, EVENING, diversity=0.5, cohorts=cohorts, exploration=3)
    assert any(ranked.explored for ranked in lists), "the pass fills exploration slots"
    rank_group(profiles[:3], cat, models[0], top_k=5, now_ms=EVENING)
    assert [p.dumps() for p in profiles] == profile_rows
    assert states() == model_states


def test_a_pass_never_spends_more_of_a_budget_than_it_has() -> None:
    """Two viewers of one cohort in one pass: the second sees the impression the first would spend."""
    cat = Catalog()
    for n in range(12):
        cat.upsert(CatalogEntry(f"d{n}", f"Drama {n}", ("drama",), (), 3000.0, OLD))
    cat.upsert(CatalogEntry("n1", "Premiere", ("western",), (), 3000.0, EVENING - DAY))
    model = PartitionModel()
    twins = [Profile(u, genres={"drama": 3.0}, last_ts=EVENING) for u in ("u1", "u2")]
    cohort = place(model, "u1", twins[0].genres)
    assert place(model, "u2", twins[1].genres) == cohort
    for budget, explored in ((1, 1), (2, 2)):
        lists = rank(twins, cat, model, 5, EVENING, cohorts=[cohort, cohort], exploration=budget)
        assert [r.explored for r in lists].count("n1") == explored, [r.explored for r in lists]
        assert all(r.spends for r in lists if r.explored)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    diversity=st.sampled_from([0.0, 0.3, 1.5]),
    exploration=st.sampled_from([0, 2]),
    top_k=st.integers(1, 15),
)
def test_every_list_is_in_score_order_whatever_the_re_ranking(
    seed: int, diversity: float, exploration: int, top_k: int
) -> None:
    cat, models, profiles, cohorts = world(seed)
    owners = [models[v % 2] for v in range(len(profiles))]
    for ranked in rank(profiles, cat, owners, top_k, EVENING, diversity, cohorts, exploration):
        scores = [item.score for item in ranked]
        assert all(a >= b for a, b in itertools.pairwise(scores)), scores
        assert [item.rank for item in ranked] == list(range(1, len(ranked) + 1))
        if diversity == 0.0 and exploration == 0:
            assert [i.score for i in ranked] == [i.relevance for i in ranked]


def test_the_old_catalog_of_a_stale_world_is_still_ranked() -> None:
    cat = Catalog()
    cat.upsert(CatalogEntry("a", "A", ("drama",), (), 3000.0, OLD))
    ranked = rank([Profile("u", genres={"drama": 1.0})], cat, PartitionModel(), 3, T0)[0]
    assert [i.item_id for i in ranked] == ["a"] and ranked.explored is None
