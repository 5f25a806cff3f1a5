"""One contract, run over every learner, as River runs one over its estimators.

Each learner follows River's protocol (``learn_one`` changes it in place and returns
nothing, ``predict_one`` is pure) and checkpoints as JSON (``to_state``/``from_state``):
it predicts before learning anything, predicting changes nothing, neither call changes
its input, a restored copy predicts as the original, and a copy learns on its own.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from stream.learning.artwork import ArtworkBandit
from stream.learning.choice import Choice
from stream.learning.cohorts import Cohorts
from stream.learning.features import FEATURES
from stream.learning.outcome import Outcome
from stream.learning.velocity import Trending

GENRES = ("drama", "comedy", "crime", "documentary")


@dataclass
class Case:
    make: Callable[[], Any]
    restore: Callable[[dict[str, Any]], Any]
    example: Callable[[random.Random], tuple[dict[str, Any], Any]]  # one (x, y) to learn from
    probes: list[dict[str, Any]]  # inputs to predict for


def _features(rng: random.Random) -> tuple[dict[str, Any], Any]:
    return {f: rng.uniform(-1, 1) for f in FEATURES}, rng.choice([-1.0, 0.3, 1.0])


def _taste(rng: random.Random) -> tuple[dict[str, Any], Any]:
    return {g: rng.uniform(-1, 1) for g in rng.sample(GENRES, 2)}, None


def _trend(rng: random.Random) -> tuple[dict[str, Any], Any]:
    return {"item_id": rng.choice("abc"), "ts": 1_767_225_600_000 + rng.randrange(3_600_000)}, rng.choice([1.0, -3.0])


def _pair(rng: random.Random) -> tuple[dict[str, Any], Any]:
    return {f: rng.uniform(-1, 1) for f in FEATURES}, 1.0  # a chosen title's features less a passed one's


def _impression(rng: random.Random) -> tuple[dict[str, Any], Any]:
    context = {"device": rng.choice(["tv", "mobile"]), "daypart": rng.randrange(4), "cohort": rng.randrange(3)}
    return {"item_id": rng.choice("ab"), "variant": rng.choice(["p1", "p2"]), **context}, float(rng.random() < 0.4)


CASES = {
    "Outcome": Case(
        Outcome,
        Outcome.from_state,
        _features,
        [dict.fromkeys(FEATURES, 0.5), {"genre": 1.0, "popularity": -0.2}],
    ),
    "Cohorts": Case(Cohorts, Cohorts.from_state, _taste, [{"drama": 1.0}, {"comedy": 0.8, "crime": -0.3}]),
    "Trending": Case(Trending, Trending.from_state, _trend, [{"item_id": "a"}, {"item_id": "z"}]),
    "Choice": Case(Choice, Choice.from_state, _pair, [dict.fromkeys(FEATURES, 0.2), {"popularity": -0.5}]),
    "ArtworkBandit": Case(
        ArtworkBandit,
        ArtworkBandit.from_state,
        _impression,
        [{"item_id": "a", "variant": "p1", "device": "tv", "daypart": 2}, {"item_id": "q", "variant": "p9"}],
    ),
}


def _state(learner: Any) -> bytes:
    return orjson.dumps(learner.to_state(), option=orjson.OPT_SORT_KEYS)  # a checkpoint is JSON


def _trained(case: Case, n: int = 60, seed: int = 3) -> Any:
    learner = case.make()
    if isinstance(learner, Trending):
        learner.refresh_s = 0.0  # every count at once (a worker reuses the values for half a second)
    rng = random.Random(seed)
    for _ in range(n):
        x, y = case.example(rng)
        assert learner.learn_one(x, y) is None
    return learner


def _predictions(learner: Any, probes: list[dict[str, Any]]) -> list[Any]:
    return [learner.predict_one(x) for x in probes]


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_learner_predicts_before_it_has_learned_anything(name: str) -> None:
    case = CASES[name]
    for value in _predictions(case.make(), case.probes):
        assert isinstance(value, int | float)


@pytest.mark.parametrize("name", sorted(CASES))
def test_predicting_changes_neither_the_learner_nor_its_input(name: str) -> None:
    case = CASES[name]
    learner = _trained(case)
    before = _state(learner)
    probes = copy.deepcopy(case.probes)
    _predictions(learner, probes)
    assert _state(learner) == before
    assert probes == case.probes


@pytest.mark.parametrize("name", sorted(CASES))
def test_learning_changes_the_learner_and_not_its_input(name: str) -> None:
    case = CASES[name]
    learner = _trained(case, n=5)
    before = _state(learner)
    x, y = case.example(random.Random(99))
    given = copy.deepcopy(x)
    learner.learn_one(x, y)
    assert x == given
    assert _state(learner) != before


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_restored_learner_predicts_as_the_original(name: str) -> None:
    case = CASES[name]
    learner = _trained(case)
    restored = case.restore(orjson.loads(_state(learner)))
    if isinstance(restored, Trending):
        restored.refresh_s = 0.0
    assert _predictions(restored, case.probes) == pytest.approx(_predictions(learner, case.probes), abs=1e-3)
    assert _state(restored) == _state(learner)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_restored_copy_learns_on_its_own(name: str) -> None:
    case = CASES[name]
    learner = _trained(case)
    before = _state(learner)
    clone = case.restore(orjson.loads(before))
    rng = random.Random(7)
    for _ in range(20):
        clone.learn_one(*case.example(rng))
    assert _state(learner) == before
    assert _state(clone) != before
