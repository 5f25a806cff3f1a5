"""The item factors: what they learn from choices, that every replica learns the same, and what they cost."""

from __future__ import annotations

import math
import random
import subprocess
import sys

import numpy as np
import orjson
import pytest
from jsonschema import Draft202012Validator

from stream.contracts.topics import load_schema
from stream.learning.factors import ItemFactors
from stream.learning.features import FEATURES
from stream.learning.shared import Delta, SharedModel, delta_competitors, delta_document, delta_pairs


def _taste_world(seed: int, steps: int) -> list[tuple[str, list[str], list[str], list[float]]]:
    """Choices of viewers of two tastes: each goes on from titles of its taste to another of its taste,
    over titles drawn from the whole catalog. ``a0`` (``b0``) is chosen only after ``a1``-``a4``
    (``b1``-``b4``), never in one history with ``a5``-``a9``: only what the factors share across titles
    can tell that it goes with them."""
    rng = random.Random(seed)
    titles = {side: [f"{side}{n}" for n in range(10)] for side in "ab"}
    everything = titles["a"] + titles["b"]
    out = []
    for _ in range(steps):
        side = rng.choice("ab")
        mine = titles[side]
        history = rng.sample(mine[1:], 3)
        if all(int(h[1:]) <= 4 for h in history):
            chosen = rng.choice([t for t in mine if t not in history])
        else:
            chosen = rng.choice([t for t in mine[1:] if t not in history])
        drawn = rng.sample([t for t in everything if t != chosen], 4)
        out.append((chosen, history, drawn, [math.log(4 / 19)] * 4))
    return out


def test_a_viewer_is_shown_titles_of_its_taste_it_never_saw_together() -> None:
    f = ItemFactors(dim=8)
    for chosen, history, drawn, corrections in _taste_world(1, 4000):
        f.learn(chosen, history, drawn, corrections)
    names = [f"{s}{n}" for s in "ab" for n in range(10)]
    u = f.viewer(["a7"])  # a viewer who finished only a7: a0 never followed it, nor preceded it
    assert u is not None
    scores = dict(zip(names, f.scores(u, names).tolist(), strict=True))
    assert scores["a0"] > max(scores[f"b{n}"] for n in range(10)), scores
    assert min(scores[f"a{n}"] for n in range(10) if n != 7) > max(scores[f"b{n}"] for n in range(10)), scores


def test_a_title_no_viewer_went_on_from_says_nothing_of_a_viewer() -> None:
    f = ItemFactors(dim=8)
    f.learn("b", ["a"], ["c"], [0.0])
    assert f.viewer(["never learned"]) is None
    assert f.viewer(["b"]) is not None and not f.viewer(["b"]).any(), "b was chosen, never gone on from: its p is 0"
    assert f.scores(f.viewer(["a"]), ["unknown"]).tolist() == [0.0]


def test_two_replicas_fed_the_same_deltas_hold_the_same_factors_bit_for_bit() -> None:
    """Through the model topic's documents (rounded, then parsed) as every worker reads them."""
    schema = Draft202012Validator(load_schema("schemas/model-delta.json"))
    one, two = SharedModel(), SharedModel()
    for offset, (chosen, history, drawn, corrections) in enumerate(_taste_world(2, 300)):
        doc = delta_document(0, Delta(offset, chosen, history, None, False, (drawn, corrections)))
        wire = orjson.loads(orjson.dumps(doc))
        schema.validate(wire)
        for replica in (one, two):
            assert replica.apply(0, offset, chosen, history, delta_pairs(wire), False, delta_competitors(wire))
    assert not one.apply(0, 5, "a1", ["a2"], None, False, (["b1"], [0.0])), "a delta read again is not learned twice"
    assert one.factors.learned == two.factors.learned == 300
    assert one.factors.index == two.factors.index
    assert np.array_equal(one.factors.p, two.factors.p) and np.array_equal(one.factors.q, two.factors.q)
    assert np.array_equal(one.factors.b, two.factors.b)


def test_the_history_title_that_put_a_pick_there_is_named() -> None:
    f = ItemFactors(dim=8)
    for chosen, history, drawn, corrections in _taste_world(3, 3000):
        f.learn(chosen, history, drawn, corrections)
    assert f.strongest(["b2", "a3"], "a5") == "a3", "the a-title of the history, not the newer b-title"
    assert f.strongest(["b2", "a3"], "never learned") is None


def test_malformed_competitors_are_refused_and_old_pairs_read_with_factor_zero() -> None:
    with pytest.raises(ValueError, match="competitors"):
        delta_competitors({"competitors": ["a", ""], "corrections": [0.0, 0.0]})
    with pytest.raises(ValueError, match="corrections"):
        delta_competitors({"competitors": ["a", "b"], "corrections": [0.0]})
    with pytest.raises(ValueError, match="corrections"):
        delta_competitors({"competitors": ["a"], "corrections": [float("nan")]})
    assert delta_competitors({"item_id": "a"}) is None
    old = {"pairs": [list(range(1, len(FEATURES)))], "offsets": [0.5]}  # a row written before the factor feature
    pairs = delta_pairs(old)
    assert pairs is not None
    row = pairs[0][0].tolist()
    assert row[FEATURES.index("factor")] == 0.0 and len(row) == len(FEATURES)
    assert row[FEATURES.index("cowatch")] == 5.0 and row[FEATURES.index("popularity")] == 6.0


def test_the_factors_of_a_hundred_thousand_titles_take_under_forty_mib() -> None:
    f = ItemFactors()
    for n in range(100_000):
        f._row(f"t{n}")
    assert f.nbytes() < 40 * 2**20, f.nbytes()


def test_one_blas_thread_limits_this_process_blas_to_one_thread() -> None:
    """In a child process (the limit is for good): as a worker, the bench and the replay call it."""
    code = (
        "import numpy, threadpoolctl\n"
        "from stream.processing import one_blas_thread\n"
        "one_blas_thread()\n"
        "print(sorted({p['num_threads'] for p in threadpoolctl.threadpool_info() if p['user_api'] == 'blas'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[1]", out
