"""Ranking, the learned model and the batch processor, without a broker."""

from __future__ import annotations

import math
import random

import orjson
import pytest
from jsonschema import Draft202012Validator

from stream.contracts.topics import load_schema
from stream.contracts.validation import CatalogEntry, PlaybackEvent
from stream.learning.catalog import Catalog
from stream.learning.features import ViewerTerms, features
from stream.learning.model import FEATURES, PRIOR, PartitionModel
from stream.learning.outcome import Outcome
from stream.learning.profile import Profile
from stream.learning.shared import SharedModel
from stream.learning.signals import interpret
from stream.processing.step import Processor, RawMessage
from stream.ranking.explain import MIN_REASON
from stream.ranking.ranker import rank

T0 = 1_767_225_600_000
DAY = 86_400_000
GENRES = {"d": ("drama", "hospital"), "c": ("comedy", "sitcom"), "m": ("documentary", "ocean")}


def make_catalog(per_genre: int = 4) -> Catalog:
    cat = Catalog()
    for prefix, (genre, tag) in GENRES.items():
        for n in range(1, per_genre + 1):
            cat.upsert(CatalogEntry(f"{prefix}{n}", f"{genre.title()} {n}", (genre,), (tag,), 3000.0, T0 - 400 * DAY))
    return cat


def watched(profile: Profile, cat: Catalog, kind: str, item: str, n: int, progress: float = 1.0) -> None:
    e = PlaybackEvent(f"e{n}", profile.user_id, item, kind, T0 + n, position_s=3000.0 * progress, duration_s=3000.0)
    idx = cat.index_of(item)
    assert idx is not None
    profile.apply(e, interpret(e, profile.paused), cat.entry(idx), offset=n)


def genre(item_id: str) -> str:
    return GENRES[item_id[0]][0]


def test_completions_pull_a_genre_up_and_early_skips_push_one_down() -> None:
    cat, model = make_catalog(), PartitionModel()
    p = Profile("u1")
    watched(p, cat, "complete", "d1", 1)
    watched(p, cat, "skip", "c1", 2, progress=0.01)
    items = rank([p], cat, model, top_k=20, now_ms=T0)[0]
    order = [genre(i.item_id) for i in items]
    assert order[:3] == ["drama"] * 3, order
    assert order[-3:] == ["comedy"] * 3, order
    assert {"d1", "c1"}.isdisjoint(i.item_id for i in items)


def test_retired_titles_are_never_ranked_and_new_ones_at_once() -> None:
    cat, model = make_catalog(), PartitionModel()
    p = Profile("u1")
    watched(p, cat, "complete", "d1", 1)
    cat.retire("d2")
    cat.upsert(CatalogEntry("d9", "Drama 9", ("drama",), ("hospital",), 3000.0, T0 - DAY))
    ids = [i.item_id for i in rank([p], cat, model, top_k=20, now_ms=T0)[0]]
    assert "d2" not in ids and ids[0] == "d9"


def test_diversity_spreads_a_list_across_the_genres_a_viewer_likes() -> None:
    cat, model = make_catalog(12), PartitionModel()
    p = Profile("u1")
    for n in range(1, 4):
        watched(p, cat, "complete", f"d{n}", n)  # a strong drama fan...
    watched(p, cat, "complete", "c1", 4)  # ...who also finished a comedy
    best = rank([p], cat, model, top_k=6, now_ms=T0)[0]
    plain = [i.item_id for i in best]
    varied = rank([p], cat, model, top_k=6, now_ms=T0, diversity=0.5)[0]
    ids = [i.item_id for i in varied]
    assert {genre(i) for i in plain} == {"drama"}, plain
    assert varied[0].score == best[0].score, "the best match still leads"
    assert len({genre(i) for i in ids}) >= 2 and len(ids) == len(set(ids)) == 6, ids
    assert {"d1", "d2", "d3", "c1"}.isdisjoint(ids), "finished titles stay out"
    assert [i.rank for i in varied] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("diversity", [0.0, 0.4])
def test_ranking_many_viewers_at_once_equals_ranking_each_alone(diversity: float) -> None:
    rng = random.Random(5)
    cat, model = make_catalog(6), PartitionModel()
    ids = [cat.entry(i).item_id for i in cat.active_indices()]
    viewers = []
    for v in range(12):
        p = Profile(f"u{v}")
        for n in range(rng.randrange(0, 6)):
            watched(p, cat, rng.choice(["complete", "skip", "rewind", "thumbs_up"]), rng.choice(ids), n, 0.05)
        viewers.append(p)
    together = rank(viewers, cat, model, top_k=5, now_ms=T0, diversity=diversity)
    for p, listed in zip(viewers, together, strict=True):
        alone = rank([p], cat, model, top_k=5, now_ms=T0, diversity=diversity)[0]
        assert [(i.item_id, i.score) for i in listed] == [(i.item_id, i.score) for i in alone]
    # viewers of two deployments' models in one pass: each row ranked with its own model
    other = PartitionModel()
    for _ in range(50):  # its viewers' choices taught it that taste counts for little
        other.choice.learn_one({"genre": -1.0, "tag": -1.0}, 1.0)
    models = [model if v % 2 else other for v in range(len(viewers))]
    mixed = rank(viewers, cat, models, top_k=5, now_ms=T0, diversity=diversity)
    for p, m, listed in zip(viewers, models, mixed, strict=True):
        alone = rank([p], cat, m, top_k=5, now_ms=T0, diversity=diversity)[0]
        assert [(i.item_id, i.score, i.reasons) for i in listed] == [(i.item_id, i.score, i.reasons) for i in alone]
    assert mixed != together, "the two models rank differently"


def test_each_score_is_the_model_prediction_of_the_titles_features() -> None:
    cat, model = make_catalog(), PartitionModel()
    p = Profile("u1")
    watched(p, cat, "complete", "d1", 1)
    watched(p, cat, "play", "m1", 2, progress=0.0)
    model.shared.learn_start("m1")
    for item in rank([p], cat, model, top_k=20, now_ms=T0)[0]:
        idx = cat.index_of(item.item_id)
        assert idx is not None
        x = features(ViewerTerms.of(p, model, cat, T0), cat, idx)
        assert item.score == pytest.approx(model.predict_one(x) - model.shared.outcome.linear.intercept, abs=1e-3)


def test_reasons_name_the_largest_contributions_truthfully() -> None:
    cat, model = make_catalog(), PartitionModel()
    p = Profile("u1")
    watched(p, cat, "complete", "d1", 1)
    items = rank([p], cat, model, top_k=20, now_ms=T0)[0]
    top = items[0]
    assert top.reasons[0] == "because you finished Drama 1"
    for item in items:
        idx = cat.index_of(item.item_id)
        assert idx is not None
        x = features(ViewerTerms.of(p, model, cat, T0), cat, idx)
        strongest = max(FEATURES, key=lambda f: model.weights[f] * x[f])
        if model.weights[strongest] * x[strongest] < MIN_REASON:
            assert item.reasons == ["something different to try"]
        elif strongest == "popularity":
            assert item.reasons[0] == "popular right now"


def test_a_brand_new_title_is_explained_as_new() -> None:
    cat, model = make_catalog(), PartitionModel()
    cat.upsert(CatalogEntry("n1", "Fresh", ("western",), (), 3000.0, T0 - 2 * DAY))
    items = rank([Profile("cold")], cat, model, top_k=3, now_ms=T0)[0]
    assert items[0].item_id == "n1" and items[0].reasons == ["new this week"]


def test_the_deployments_regression_predicts_outcomes_without_moving_the_ranking_weights() -> None:
    model = PartitionModel()
    liked = {"genre": 1.0, "tag": 0.0, "popularity": 0.0, "freshness": 0.0}
    popular = {"genre": 0.0, "tag": 0.0, "popularity": 1.0, "freshness": 0.0}
    for _ in range(300):  # viewers finish what matches their genres and skip what is merely popular
        model.learn_one(liked, 1.0)
        model.learn_one(popular, -1.0)
    assert model.predict_one(liked) == pytest.approx(1.0, abs=0.2) and model.predict_one(popular) < -0.5
    assert model.weights == {f: PRIOR[f] for f in FEATURES}, "ranking weights: the prior and the choices only"
    restored = PartitionModel.from_state(orjson.loads(orjson.dumps(model.to_state())))
    assert restored.predict_one(popular) > 0, "the regression is the deployment's, not the partition's"
    restored.shared = model.shared  # as the processor hands every partition its worker's replica
    assert restored.predict_one(liked) == model.predict_one(liked)
    outcome = Outcome.from_state(orjson.loads(orjson.dumps(model.shared.outcome.to_state())))
    assert outcome.predict_one(liked) == model.predict_one(liked)
    assert outcome.mae.get() == pytest.approx(model.shared.outcome.mae.get())
    assert outcome.learned == model.shared.outcome.learned == 600


def test_popularity_counts_the_deployments_starts_and_fades() -> None:
    shared = SharedModel()
    for offset in range(10):
        shared.apply(0, offset, "a", start=True)
    shared.apply(1, 0, "b", start=True)  # another partition's start counts alike
    pop = shared.popularity.array(["a", "b", "c"])
    assert pop[0] == pytest.approx(1.0) and 0 < pop[1] < pop[0] and pop[2] == 0
    assert shared.trend.learned == 0, "a start is not a finish or like"
    for _ in range(60000):  # many half-lives of other titles' starts later
        shared.learn_start("z")
    assert shared.popularity.share("a") < 1e-3 and math.isfinite(shared.popularity.array(["a"])[0])


def rows(profiles: dict[str, Profile]) -> dict[str, bytes]:
    """Profiles as the table stores them: what the runtime prefetches for a batch."""
    return {user: profile.dumps() for user, profile in profiles.items()}


def _message(doc: object, offset: int, key: bytes | None = b"u1") -> RawMessage:
    return RawMessage(key, orjson.dumps(doc), "playback-events", 0, offset)


def _event(n: int, user: str, item: str, kind: str) -> dict[str, object]:
    return {
        "event_id": f"{user}-{n}",
        "user_id": user,
        "item_id": item,
        "type": kind,
        "ts": T0 + n,
        "position_s": 3000.0 if kind == "complete" else 30.0,
        "duration_s": 3000.0,
    }


def test_a_batch_gives_one_snapshot_per_viewer_reflecting_all_its_events() -> None:
    cat = make_catalog()
    proc = Processor(cat, top_k=3)
    store: dict[str, bytes] = {}
    batch = [
        _message(_event(1, "u1", "d1", "complete"), 0),
        _message(_event(1, "u2", "c1", "skip"), 1, key=b"u2"),
        _message(_event(2, "u1", "c1", "skip"), 2),
        RawMessage(b"u1", b"{oops", "playback-events", 0, 3),
        _message(_event(3, "u1", "zz", "play"), 4),
    ]
    result = proc.process(batch, store, PartitionModel(), now_ms=T0 + 10)
    assert result.applied == 3 and len(result.dead_letters) == 2
    snaps = {user: orjson.loads(raw) for user, raw in result.snapshots}
    assert len(result.snapshots) == 2 and set(snaps) == {"u1", "u2"}
    u1 = snaps["u1"]
    assert (u1["version"], u1["events_applied"]) == (1, 2)
    assert u1["trigger"] == {"event_id": "u1-2", "type": "skip", "ts": T0 + 2}
    assert u1["generated_at"] == T0 + 10
    letters = [orjson.loads(v) for _, v in result.dead_letters]
    assert letters[0]["offset"] == 3 and "invalid JSON" in letters[0]["error"]
    assert letters[1]["offset"] == 4 and "'zz'" in letters[1]["error"]

    store.update(rows(result.profiles))
    again = proc.process(batch[:3], store, PartitionModel())
    assert again.applied == 0 and again.duplicates == 3 and again.snapshots == []


def test_an_event_that_strikes_a_defect_is_dead_lettered_and_its_viewer_kept_as_before_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A valid event whose processing raises goes to the DLQ; the worker, the batch and every
    other event carry on, and the viewer's profile is exactly as if the event had never come."""
    cat = make_catalog()
    batch = [
        _message(_event(1, "u1", "d1", "complete"), 0),
        _message(_event(2, "u1", "c1", "skip"), 1),  # a producer's copy of it follows at offset 3
        _message(_event(3, "u1", "m1", "complete"), 2),  # strikes the defect
        _message(_event(2, "u1", "c1", "skip"), 3),
        _message(_event(1, "u2", "c2", "complete"), 4, key=b"u2"),
        _message(_event(4, "u1", "d2", "complete"), 5),
    ]
    healthy = Processor(cat, top_k=3).process([m for m in batch if m.offset != 2], {}, PartitionModel())

    apply = Profile.apply

    def faulty(self: Profile, event: PlaybackEvent, *args: object, **kwargs: object) -> bool:
        apply(self, event, *args, **kwargs)  # type: ignore[arg-type]  # the state is changed, then it raises
        if event.event_id == "u1-3":
            raise ZeroDivisionError("float division by zero")
        return True

    monkeypatch.setattr(Profile, "apply", faulty)
    result = Processor(cat, top_k=3).process(batch, {}, PartitionModel())
    assert result.failed == 1 and result.applied == 4 and result.duplicates == 1
    [(key, letter)] = result.dead_letters
    doc = orjson.loads(letter)
    assert key == b"u1" and doc["offset"] == 2
    assert doc["error"].startswith("processing failed: ZeroDivisionError: float division by zero")
    assert orjson.loads(doc["raw"])["event_id"] == "u1-3"
    assert {u: p.dumps() for u, p in result.profiles.items()} == {u: p.dumps() for u, p in healthy.profiles.items()}
    snaps = {user: orjson.loads(raw) for user, raw in result.snapshots}
    assert snaps["u1"]["events_applied"] == 3 and snaps["u1"]["trigger"]["event_id"] == "u1-4"
    assert snaps["u2"]["events_applied"] == 1

    # the viewer's first event fails: nothing of it is written, the rest of the batch goes on
    only = Processor(cat, top_k=3).process([batch[2], batch[4]], {}, PartitionModel())
    assert only.failed == 1 and set(only.profiles) == {"u2"} and [u for u, _ in only.snapshots] == ["u2"]


def test_a_ranking_defect_costs_only_the_viewer_it_strikes_its_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    import stream.processing.step

    cat = make_catalog()

    def faulty(profiles: list[Profile], *args: object, **kwargs: object) -> list[list[object]]:
        if any(p.user_id == "u2" for p in profiles):
            raise IndexError("index 7 is out of bounds")
        return rank(profiles, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(stream.processing.step, "rank", faulty)
    batch = [_message(_event(1, user, "d1", "complete"), n, key=user.encode()) for n, user in enumerate(["u1", "u2"])]
    result = Processor(cat, top_k=3).process(batch, {}, PartitionModel())
    assert result.applied == 2 and result.unranked == 1 and result.dead_letters == []
    assert [u for u, _ in result.snapshots] == ["u1"]
    assert result.profiles["u2"].applied == 1 and result.profiles["u2"].version == 0  # written; no snapshot yet
    assert result.profiles["u1"].version == 1


def test_the_titles_a_fetch_names_that_the_catalog_lacks_are_found_before_any_state_changes() -> None:
    """The worker waits for its catalog reader when a fetch names such titles; retired ones do not wait."""
    cat = make_catalog()
    cat.retire("c2")
    proc = Processor(cat, top_k=3)
    batch = [
        _message(_event(1, "u1", "d1", "play"), 0),
        _message(_event(2, "u1", "new1", "play"), 1),
        _message(_event(3, "u1", "c2", "play"), 2),
        RawMessage(b"u1", b"{oops", "playback-events", 0, 3),
    ]
    plan = proc.plan([(0, batch)])
    assert plan.unknown_titles(cat) == {"new1"}
    result = proc.step(plan, {}, {0: PartitionModel()})[0]
    errors = [orjson.loads(v)["error"] for _, v in result.dead_letters]
    assert result.applied == 1 and errors[0].endswith("got 'new1' (unknown)")
    assert errors[1].endswith("got 'c2' (retired)") and "invalid JSON" in errors[2]


def test_snapshots_follow_their_schema_and_hint_at_the_title_to_prefetch() -> None:
    cat = make_catalog()
    proc = Processor(cat, top_k=3)
    validator = Draft202012Validator(load_schema("schemas/recommendation-snapshot.json"))
    store: dict[str, bytes] = {}
    paused = {**_event(1, "u1", "d2", "pause"), "position_s": 600.0}
    result = proc.process([_message(_event(0, "u1", "d1", "play"), 0), _message(paused, 1)], store, PartitionModel())
    snap = orjson.loads(result.snapshots[0][1])
    validator.validate(snap)
    assert snap["prefetch"] == {"item_id": "d2", "why": "paused, likely to resume"}
    store.update(rows(result.profiles))
    stopped = proc.process([_message(_event(2, "u1", "d2", "stop"), 2)], store, PartitionModel())
    snap = orjson.loads(stopped.snapshots[0][1])
    validator.validate(snap)
    assert snap["prefetch"] == {"item_id": snap["items"][0]["item_id"], "why": "top of the list"}


def test_after_a_crash_the_model_learns_each_event_once_from_its_checkpoint() -> None:
    """Profiles were written past the model's last checkpoint; the redelivered events teach it again."""
    cat = make_catalog()
    proc = Processor(cat, top_k=3)
    kinds = ["play", "complete", "skip", "play", "complete", "play"]
    items = ["d1", "d1", "c1", "d2", "d2", "m1"]
    batch = [_message(_event(n, "u1", items[n], kinds[n]), n) for n in range(6)]
    store: dict[str, bytes] = {}
    live = PartitionModel()
    store.update(rows(proc.process(batch[:3], store, live).profiles))
    checkpoint = orjson.dumps(live.to_state())  # offset 2
    store.update(rows(proc.process(batch[3:], store, live).profiles))
    # crash: the profile reflects offsets 0-5, the model's checkpoint 0-2; reading resumes at 3,
    # and a producer publishes event 4 again at offset 6
    restored = PartitionModel.from_state(orjson.loads(checkpoint))
    assert restored.offset == 2
    again = proc.process([*batch[3:], _message(_event(4, "u1", "d2", "complete"), 6)], store, restored)
    assert again.applied == 0 and again.duplicates == 4
    assert restored.learned == live.learned  # each learning event once, none twice
    restored.trending.refresh_s = live.trending.refresh_s = 0.0  # counts of starts and finishes, as they are
    assert [restored.trending.of(i) for i in items] == pytest.approx([live.trending.of(i) for i in items])
    assert restored.offset == 5  # the newest event it learned from: the copy at 6 teaches nothing
    # read once more (a second crash before the next checkpoint): nothing changes
    before = restored.learned
    proc.process(batch[3:], store, restored)
    assert restored.learned == before


def test_candidates_on_a_large_catalog_find_what_scoring_every_title_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    import stream.ranking.ranker as ranking

    rng = random.Random(9)
    cat, model = Catalog(), PartitionModel()
    genres = [f"g{i}" for i in range(20)]
    for n in range(25_000):
        cat.upsert(
            CatalogEntry(
                f"x{n}",
                f"X {n}",
                tuple(rng.sample(genres, rng.randint(1, 3))),
                tuple(f"tag{rng.randrange(300)}" for _ in range(3)),
                3000.0,
                T0 - rng.randrange(2000) * DAY,
            )
        )
    for _ in range(3000):
        model.shared.learn_start(f"x{rng.randrange(25_000)}")
    viewers = []
    for v in range(20):
        p = Profile(f"u{v}")
        for n in range(8):
            watched(p, cat, rng.choice(["complete", "skip", "thumbs_up"]), f"x{rng.randrange(25_000)}", n, 0.05)
        viewers.append(p)
    with_candidates = rank(viewers, cat, model, top_k=10, now_ms=T0)
    monkeypatch.setattr(ranking, "LARGE_CATALOG", 10**9)
    exact = rank(viewers, cat, model, top_k=10, now_ms=T0)
    overlap = [
        len({i.item_id for i in a} & {i.item_id for i in b}) / 10 for a, b in zip(with_candidates, exact, strict=True)
    ]
    quality = [sum(i.score for i in a) / sum(i.score for i in b) for a, b in zip(with_candidates, exact, strict=True)]
    # an approximation, on purpose: most of the exact top 10, and lists nearly as good
    assert sum(overlap) / len(overlap) >= 0.8, overlap
    assert min(quality) >= 0.9 and sum(quality) / len(quality) >= 0.97, quality


def test_what_other_viewers_finished_after_a_title_is_picked_and_named_for_a_viewer_who_finished_it() -> None:
    cat, model = make_catalog(), PartitionModel()
    for _ in range(5):  # other viewers who finish Drama 1 go on to finish Comedy 3, of another genre
        model.shared.learn("d1", [])
        model.shared.learn("c3", ["d1"])
    p = Profile("u1")
    watched(p, cat, "complete", "d1", 1)
    items = {i.item_id: i for i in rank([p], cat, model, top_k=4, now_ms=T0)[0]}
    assert "c3" in items and items["c3"].reasons[0] == "because you finished Drama 1", items
    assert not any(i.item_id.startswith("c") for i in rank([p], cat, PartitionModel(), top_k=4, now_ms=T0)[0])
    x = features(ViewerTerms.of(p, model, cat, T0), cat, cat.index_of("c3") or 0)
    assert x["cowatch"] == 1.0 and x["genre"] == 0.0
    cold = rank([Profile("u2")], cat, model, top_k=3, now_ms=T0)[0]
    assert all("Drama 1" not in r for i in cold for r in i.reasons), "a viewer without that history is not told so"


def test_what_the_item_factors_learned_is_picked_and_named_by_the_history_title_that_put_it_there() -> None:
    """The factors alone (no co-watch count links the two): viewers who finished Drama 1 or Drama 2
    went on to Comedy 3 over the other comedies; a viewer who finished only Drama 2 gets Comedy 3,
    because of Drama 2, not of the older Drama 3 it also finished."""
    cat, model = make_catalog(), PartitionModel()
    comedies = [f"c{n}" for n in range(1, 5) if n != 3]
    for _ in range(100):
        for seen in (["d1"], ["d2"]):
            model.shared.factors.learn("c3", seen, comedies, [0.0] * len(comedies))
    assert not model.shared.cowatch.co, "nothing co-watched"
    p = Profile("u1")
    watched(p, cat, "complete", "d3", 1)
    watched(p, cat, "complete", "d2", 2)
    items = {i.item_id: i for i in rank([p], cat, model, top_k=4, now_ms=T0)[0]}
    assert "c3" in items and "because you finished Drama 2" in items["c3"].reasons, items
    assert not any(i.item_id.startswith("c") for i in rank([p], cat, PartitionModel(), top_k=4, now_ms=T0)[0])
    x = features(ViewerTerms.of(p, model, cat, T0), cat, cat.index_of("c3") or 0)
    assert x["factor"] > 0.5 and x["cowatch"] == 0.0 and x["genre"] == 0.0, x
    other = features(ViewerTerms.of(p, model, cat, T0), cat, cat.index_of("c1") or 0)
    assert other["factor"] < 0, "a comedy passed over for it"
