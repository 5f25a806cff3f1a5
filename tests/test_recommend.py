"""What each snapshot reflects beyond taste: context, cohorts, new releases, variety, reasons, groups.

Pure logic, no broker: events go through :class:`stream.processing.step.Processor` (or
straight into profiles) and lists come from :func:`stream.ranking.ranker.rank`.
"""

from __future__ import annotations

import itertools

import orjson
import pytest

from stream.contracts.validation import CatalogEntry, PlaybackEvent
from stream.learning.catalog import Catalog
from stream.learning.choice import competitors
from stream.learning.cohorts import Cohorts
from stream.learning.features import ViewerTerms, features
from stream.learning.model import FEATURES, PartitionModel
from stream.learning.profile import Profile, daypart
from stream.learning.signals import interpret
from stream.learning.velocity import Trending
from stream.processing.step import Processor, RawMessage
from stream.ranking.explain import EXPLORING, MAX_REASONS, MIN_REASON
from stream.ranking.group import rank_group
from stream.ranking.ranker import rank

T0 = 1_767_225_600_000  # Thursday 2026-01-01 00:00 UTC
HOUR, DAY = 3_600_000, 86_400_000
EVENING, MORNING = T0 + 20 * HOUR, T0 + 8 * HOUR
OLD = T0 - 400 * DAY
PREFIXES = {"d": "drama", "c": "comedy", "m": "documentary", "k": "crime"}


def catalog(per_genre: int = 6) -> Catalog:
    cat = Catalog()
    for prefix, genre in PREFIXES.items():
        for n in range(1, per_genre + 1):
            cat.upsert(CatalogEntry(f"{prefix}{n}", f"{genre.title()} {n}", (genre,), (f"{genre}-tag",), 3000.0, OLD))
    return cat


_ids = itertools.count()


def event(user: str, item: str, kind: str, ts: int, device: str | None = None, progress: float = 1.0) -> PlaybackEvent:
    return PlaybackEvent(
        f"e{next(_ids)}", user, item, kind, ts, position_s=3000.0 * progress, duration_s=3000.0, device=device
    )


def place(model: PartitionModel, user_id: str, genres: dict[str, float], applied: int = 1) -> int:
    """Place a viewer's taste among the cohorts and have them learn it at once, as a replica does its delta."""
    cohort, taste = model.learn_viewer(user_id, genres, applied)
    model.shared.learn_viewer(taste)
    assert cohort is not None
    return cohort


def apply(p: Profile, cat: Catalog, e: PlaybackEvent) -> None:
    idx = cat.index_of(e.item_id)
    assert idx is not None
    p.apply(e, interpret(e, p.paused), cat.entry(idx), offset=p.offset + 1)


def genres_of(items: list[str]) -> list[str]:
    return [PREFIXES.get(i[0], "other") for i in items]


# -- context -------------------------------------------------------------------


def tv_evenings_and_mobile_mornings(cat: Catalog, days: int) -> Profile:
    """A viewer who finishes a drama on the TV each evening and a comedy on mobile each morning."""
    p = Profile("u1")
    for day in range(days):
        apply(p, cat, event("u1", f"d{day + 1}", "complete", EVENING + day * DAY, "tv"))
        apply(p, cat, event("u1", f"c{day + 1}", "complete", MORNING + day * DAY, "mobile"))
    return p


def test_context_changes_the_ranking_as_much_as_the_viewers_history_says() -> None:
    """Drama on the TV in the evening, comedy on mobile in the morning: equal overall."""
    cat, model = catalog(), PartitionModel()
    p = tv_evenings_and_mobile_mornings(cat, days=6)
    assert p.genres["drama"] == pytest.approx(p.genres["comedy"], rel=0.01), "equal overall"
    p.excluded.clear()  # let finished titles be ranked: only their order matters here
    p.history.clear()  # nor are the recent ones left out

    def top_genres(device: str, ts: int) -> list[str]:
        p.device, p.last_ts = device, ts
        return genres_of([i.item_id for i in rank([p], cat, model, top_k=6, now_ms=ts)[0]])

    on_tv = top_genres("tv", EVENING + 7 * DAY)
    on_mobile = top_genres("mobile", MORNING + 7 * DAY)
    assert on_tv[:6] == ["drama"] * 6, f"TV in the evening should be drama; got {on_tv}"
    assert on_mobile[:6] == ["comedy"] * 6, f"mobile in the morning should be comedy; got {on_mobile}"
    p.device, p.last_ts = "tv", EVENING + 7 * DAY
    reasons = rank([p], cat, model, top_k=1, now_ms=p.last_ts)[0][0].reasons
    assert "you watch more drama on TV in the evening" in reasons, reasons


def test_a_viewer_whose_habits_do_not_change_with_context_is_not_penalised() -> None:
    cat, model = catalog(), PartitionModel()
    p = Profile("u1")
    for n, item in enumerate(["d1", "c1", "d2", "c2", "m1"]):
        apply(p, cat, event("u1", item, "complete", EVENING + n * 60_000, "tv"))  # all on TV one weekday evening
    with_context = rank([p], cat, model, top_k=10, now_ms=p.last_ts)[0]
    p.contexts = {}
    without = rank([p], cat, model, top_k=10, now_ms=p.last_ts)[0]
    assert [(i.item_id, i.score) for i in with_context] == [(i.item_id, i.score) for i in without]
    idx = cat.index_of("d3")
    assert idx is not None
    assert features(ViewerTerms.of(p, model, cat, p.last_ts, "tv"), cat, idx)["context"] == 0.0


def test_a_genre_the_viewer_only_skips_gets_no_context_lift_nor_a_you_watch_more_reason() -> None:
    """Skipping comedy less often on the TV at night than on mobile is not watching more of it there."""
    cat, model = catalog(), PartitionModel()
    p = Profile("u1")
    night = T0 + 23 * HOUR
    for day in range(3):
        apply(p, cat, event("u1", f"d{day + 1}", "complete", night + day * DAY, "tv"))
        apply(p, cat, event("u1", f"c{day + 1}", "skip", MORNING + day * DAY, "mobile", progress=0.01))
    apply(p, cat, event("u1", "c4", "skip", night + 3 * DAY, "tv", progress=0.01))
    assert p.genres["comedy"] < 0 < p.genres["drama"]
    idx = cat.index_of("c5")
    assert idx is not None
    assert features(ViewerTerms.of(p, model, cat, p.last_ts, "tv"), cat, idx)["context"] <= 0.0
    p.excluded.clear()
    for item in rank([p], cat, model, top_k=24, now_ms=p.last_ts)[0]:
        if item.item_id.startswith("c"):
            assert not any("you watch more comedy" in r for r in item.reasons), (item.item_id, item.reasons)


def test_a_known_viewer_on_a_new_device_gets_no_context_lift_from_it() -> None:
    cat, model = catalog(), PartitionModel()
    p = tv_evenings_and_mobile_mornings(cat, days=4)
    idx = cat.index_of("d5")
    assert idx is not None
    on_tv = features(ViewerTerms.of(p, model, cat, EVENING + 5 * DAY, "tv"), cat, idx)["context"]
    on_tablet = features(ViewerTerms.of(p, model, cat, EVENING + 5 * DAY, "tablet"), cat, idx)["context"]
    assert on_tv > on_tablet > 0, "the evening still counts on a tablet; the TV habit does not"


def test_a_title_nobody_has_watched_ranks_for_a_viewer_whose_taste_matches_its_tags() -> None:
    cat, model = catalog(), PartitionModel()
    for n in range(30):
        model.shared.learn_start(f"c{1 + n % 6}")  # comedy is what everyone starts
    cat.upsert(CatalogEntry("x1", "Ward Nine", ("medical",), ("drama-tag",), 3000.0, OLD))  # unseen, old
    p = Profile("u1")
    for n in range(3):
        apply(p, cat, event("u1", f"d{n + 1}", "complete", EVENING + n))
    items = rank([p], cat, model, top_k=5, now_ms=EVENING)[0]
    x1 = next((i for i in items if i.item_id == "x1"), None)
    assert x1 is not None and model.shared.popularity.share("x1") == 0.0, [i.item_id for i in items]
    assert "because you finished Drama 3" in x1.reasons, x1.reasons


# -- cohorts -------------------------------------------------------------------


def _feed(processor: Processor, model: PartitionModel, profiles: dict[str, Profile], docs: list[dict]) -> list[dict]:
    """Run events through the processor as one partition's batches; returns the snapshots."""
    start = model.offset + 1
    messages = [
        RawMessage(d["user_id"].encode(), orjson.dumps(d), "playback-events", 0, start + n) for n, d in enumerate(docs)
    ]
    stored = {user: profile.dumps() for user, profile in profiles.items()}
    result = processor.process(messages, stored, model, now_ms=T0)
    profiles.update(result.profiles)
    assert not result.dead_letters, result.dead_letters
    return [orjson.loads(s) for _, s in result.snapshots]


def _doc(user: str, item: str, kind: str, ts: int, device: str = "tv", progress: float = 1.0) -> dict:
    return {
        "event_id": f"e{next(_ids)}",
        "user_id": user,
        "item_id": item,
        "type": kind,
        "ts": ts,
        "position_s": 3000.0 * progress,
        "duration_s": 3000.0,
        "device": device,
    }


def test_viewers_of_different_taste_fall_into_different_cohorts() -> None:
    c = Cohorts()
    tastes = {"drama": {"drama": 1.0, "crime": 0.4}, "comedy": {"comedy": 1.0, "documentary": -0.3}}
    for _ in range(50):
        for taste in tastes.values():
            c.learn(taste)
    assert c.assign(tastes["drama"]) != c.assign(tastes["comedy"])
    assert c.assign({"drama": 0.8}) == c.assign(tastes["drama"]), "a new drama viewer joins the drama cohort"
    back = Cohorts.from_state(orjson.loads(orjson.dumps(c.to_state(1.0))))
    assert back.assign({"comedy": 0.9}) == c.assign({"comedy": 0.9})


def test_a_cold_viewers_first_list_is_its_cohorts_not_the_global_popularity_list() -> None:
    """Comedy fans outnumber drama fans, so comedy is globally popular; two drama events suffice."""
    cat, model = catalog(per_genre=8), PartitionModel()
    processor = Processor(cat, top_k=5)
    profiles: dict[str, Profile] = {}
    fans = [(f"dfan{v}", ("d5", "d6", "d7", "d8", "k1"), "c8") for v in range(30)]
    fans += [(f"cfan{v}", ("c1", "c2", "c3", "c4", "c5"), f"d{2 + v % 3}") for v in range(90)]
    for n, (user, titles, skipped) in enumerate(fans):
        for t, item in enumerate(titles):  # one batch per session, as a live stream has them
            ts = EVENING + n * 1000 + t
            _feed(processor, model, profiles, [_doc(user, item, "play", ts), _doc(user, item, "complete", ts)])
        ts = EVENING + n * 1000 + 10  # and each abandons a title of the other taste
        _feed(
            processor,
            model,
            profiles,
            [_doc(user, skipped, "play", ts), _doc(user, skipped, "skip", ts, progress=0.01)],
        )
    popular = sorted(cat.ids, key=lambda i: -model.shared.popularity.share(i))[:5]
    assert genres_of(popular) == ["comedy"] * 5

    snapshot = _feed(
        processor,
        model,
        profiles,
        [_doc("new", "d1", "play", EVENING + 10**6), _doc("new", "d1", "complete", EVENING + 10**6)],
    )[-1]
    listed = [i["item_id"] for i in snapshot["items"]]
    cohort_titles = {"d5", "d6", "d7", "d8", "k1"}
    assert len(cohort_titles & set(listed)) >= 4, f"the drama cohort's favourites; got {listed}"
    assert not set(popular) & set(listed), f"not the global list; got {listed}"


# -- content velocity ----------------------------------------------------------


def _new_release_world(budget: int) -> tuple[Catalog, PartitionModel, Processor, dict[str, Profile]]:
    cat = catalog()
    cat.upsert(CatalogEntry("n1", "Premiere", ("western",), ("frontier",), 3000.0, EVENING - DAY))
    model = PartitionModel()
    processor = Processor(cat, top_k=5, exploration=budget)
    model.shared = processor.shared  # as the processor hands it
    model.trending.refresh_s = 0.0  # every count at once (the worker reuses values for 0.5 s)
    return cat, model, processor, {}


@pytest.mark.parametrize("reaction", ["complete", "skip"])
def test_a_new_release_is_explored_then_rises_or_falls_with_its_plays(reaction: str) -> None:
    cat, model, processor, profiles = _new_release_world(budget=6)
    shown: list[dict] = []
    for v in range(12):  # drama viewers: the western matches nobody's taste
        for snap in _feed(processor, model, profiles, [_doc(f"v{v}", "d1", "complete", EVENING + v)]):
            shown += [i for i in snap["items"] if i["item_id"] == "n1"]
    explored = [i for i in shown if EXPLORING in i["reasons"]]
    assert len(explored) == 6, "exactly the budget of exploration impressions in this cohort"
    assert all(i["rank"] == 3 for i in explored)
    assert len(shown) == 6, "once the budget is spent, a new release without plays is not listed"

    def score() -> float:
        """The premiere's score for one of the drama viewers (without exploration)."""
        p = profiles["v0"]
        items = rank([p], cat, model, 40, EVENING + 500, cohorts=[model.viewers.recent["v0"][0]])[0]
        return next(i.score for i in items if i.item_id == "n1")

    before = score()
    # what is on: the drama titles are started and finished; then viewers react to the premiere
    for v in range(20):
        docs = [
            _doc(f"w{v}", f"d{2 + v % 5}", "play", EVENING + 100 + v),
            _doc(f"w{v}", "d6", "complete", EVENING + 100),
        ]
        progress = 1.0 if reaction == "complete" else 0.02
        docs += [
            _doc(f"w{v}", "n1", "play", EVENING + 200 + v),
            _doc(f"w{v}", "n1", reaction, EVENING + 200, progress=progress),
        ]
        _feed(processor, model, profiles, docs)
    after = score()
    trend = model.trending.of("n1")
    if reaction == "complete":
        assert trend == 1.0 and after > before + 0.2, f"what catches on rises: {before} -> {after}"
        items = rank([profiles["v0"]], cat, model, 40, EVENING + 500, cohorts=[model.viewers.recent["v0"][0]])[0]
        n1 = next(i for i in items if i.item_id == "n1")
        assert "trending in the last hour" in n1.reasons, n1
    else:
        assert trend < 0 and after < before < 0.15, f"what viewers abandon falls: {before} -> {after}"
        assert after < 0, "below every title nobody played"


def test_a_viewer_shown_the_same_new_release_in_consecutive_lists_spends_one_impression() -> None:
    _, model, processor, profiles = _new_release_world(budget=6)
    explored = []
    for n in range(4):  # one viewer, four batches (rewinds: nothing is excluded); the premiere stays in its slot
        snapshot = _feed(processor, model, profiles, [_doc("u1", "d1", "rewind", EVENING + n) | {"offset_s": -30.0}])[0]
        explored += [i["item_id"] for i in snapshot["items"] if EXPLORING in i["reasons"]]
    assert explored == ["n1"] * 4
    assert model.exploration.shown == {f"{model.viewers.recent['u1'][0]}|n1": 1}
    _feed(processor, model, profiles, [_doc("u2", "d1", "complete", EVENING + 9)])
    assert sum(model.exploration.shown.values()) == 2, "another viewer is another impression"


def test_trending_windows_fade_and_forget() -> None:
    model = PartitionModel()
    model.trending.refresh_s = 0.0
    for n in range(10):
        model.trending.record("old", T0 + n, 1.0)
    model.trending.record("now", T0 + 30 * 60_000, 1.0)
    assert model.trending.of("old") > model.trending.of("now") > 0, "three windows ago, 10 starts outweigh 1"
    model.trending.record("now", T0 + 2 * HOUR, 1.0)
    assert model.trending.of("old") == 0.0, "older than the hour kept"
    back = Trending.from_state(orjson.loads(orjson.dumps(model.trending.to_state())))
    back.refresh_s = 0.0
    assert back.of("now") == model.trending.of("now")


def test_trending_by_catalog_row_follows_a_growing_catalog_and_a_new_one() -> None:
    trending = Trending()
    trending.refresh_s = 0.0
    ids = ["a", "b"]
    for n, item in enumerate(["a", "c", "a", "b", "c", "c"]):
        trending.record(item, T0 + n, 1.0)
        ids.append(f"x{n}")
        if n == 3:
            ids.append("c")  # the catalog appends a row for c
        fresh = [trending.of(i) for i in ids]  # what every row should hold
        assert trending.array(ids).tolist() == pytest.approx(fresh), n
    other = ["c", "b", "a"]  # another catalog: rows are its own
    assert trending.array(other).tolist() == pytest.approx([trending.of(i) for i in other])


# -- diversity and reasons -----------------------------------------------------


def test_two_viewers_with_different_histories_get_different_lists_and_the_setting_spreads_genres() -> None:
    cat, model = catalog(), PartitionModel()
    a, b = Profile("a"), Profile("b")
    for n in range(3):
        apply(a, cat, event("a", f"d{n + 1}", "complete", EVENING + n))
        apply(b, cat, event("b", f"k{n + 1}", "complete", EVENING + n))
    apply(a, cat, event("a", "c1", "complete", EVENING + 9))
    lists = rank([a, b], cat, model, top_k=6, now_ms=EVENING + 10)
    assert [i.item_id for i in lists[0]] != [i.item_id for i in lists[1]]
    spread = {
        d: len(set(genres_of([i.item_id for i in rank([a], cat, model, top_k=6, now_ms=EVENING, diversity=d)[0]])))
        for d in (0.0, 0.3, 1.0)
    }
    assert spread[0.0] < spread[0.3] <= spread[1.0], spread


def test_every_reason_names_a_part_of_the_score_that_is_really_there() -> None:
    cat, model = catalog(), PartitionModel()  # the prior's weights: every feature counts
    model.trending.refresh_s = 0.0
    for v in range(20):  # a drama cohort that starts crime and documentaries on TV in the evening
        cohort = place(model, f"f{v}", {"drama": 1.0, "comedy": 0.8})
        for item in ("k1", "k2", "m1"):
            model.shared.learn_start(item)  # what the deployment starts
            model.cohorts.record(item, cohort, "tv", daypart(EVENING), model.unit)
        model.trending.record("k3", EVENING, 1.0)
    p = Profile("u1")
    for day in range(3):  # the newest event: drama on TV in the evening
        apply(p, cat, event("u1", f"c{day + 1}", "complete", MORNING + day * DAY, "mobile"))
        apply(p, cat, event("u1", f"d{day + 1}", "complete", EVENING + day * DAY, "tv"))
    cohort = model.cohorts.assign(Cohorts.taste(p.genres))
    now = p.last_ts
    items = rank([p], cat, model, top_k=10, now_ms=now, cohorts=[cohort])[0]
    phrases = {
        "genre": ("because you finished", "because you watch"),
        "tag": ("because you finished", "because you like"),
        "context": ("you watch more",),
        "cohort": ("popular with viewers like you",),
        "cowatch": ("because you finished", "because you liked"),
        "popularity": ("popular right now",),
        "trending": ("trending",),
        "trend": ("many viewers",),
        "freshness": ("new",),
    }
    seen_features = set()
    for item in items:
        idx = cat.index_of(item.item_id)
        assert idx is not None
        x = features(ViewerTerms.of(p, model, cat, now, p.device, cohort), cat, idx)
        parts = {f: model.weights[f] * x[f] for f in FEATURES}
        assert item.score == pytest.approx(sum(parts.values()), abs=1e-3)
        strong = sorted((f for f in FEATURES if parts[f] >= MIN_REASON), key=lambda f: -parts[f])[:MAX_REASONS]
        if not strong:
            assert item.reasons == ["something different to try"]
            continue
        for feature, reason in zip(strong, item.reasons, strict=True):
            assert reason.startswith(phrases[feature]), f"{item.item_id}: {reason!r} for {feature} ({parts})"
            seen_features.add(feature)
    assert {"genre", "context", "cohort", "popularity", "trending"} <= seen_features, seen_features


# -- groups --------------------------------------------------------------------


def test_a_group_list_avoids_a_genre_one_member_strongly_dislikes() -> None:
    cat, model = catalog(), PartitionModel()
    ann, bob = Profile("ann"), Profile("bob")
    for n in range(3):
        apply(ann, cat, event("ann", f"k{n + 1}", "complete", EVENING + n))  # ann loves crime
        apply(bob, cat, event("bob", f"k{n + 4}", "skip", EVENING + n, progress=0.01))  # bob can't stand it
        apply(bob, cat, event("bob", f"c{n + 1}", "complete", EVENING + n))
    alone = [i.item_id for i in rank([ann], cat, model, top_k=3, now_ms=EVENING)[0]]
    assert genres_of(alone) == ["crime"] * 3
    together = [i.item_id for i in rank_group([ann, bob], cat, model, top_k=5, now_ms=EVENING)]
    assert together and "crime" not in genres_of(together), together


def test_the_daypart_of_the_fixture_times() -> None:
    assert (daypart(EVENING), daypart(MORNING)) == (2, 0)


# -- artwork -------------------------------------------------------------------


def test_snapshots_carry_the_bandits_artwork_and_a_play_teaches_it() -> None:
    cat = catalog()
    cat.upsert(CatalogEntry("a1", "Two Posters", ("drama",), ("drama-tag",), 2900.0, OLD, ("poster-a", "poster-b")))
    model, processor, profiles = PartitionModel(), Processor(cat, top_k=8), {}
    snapshot = _feed(processor, model, profiles, [_doc("u1", "d1", "complete", EVENING)])[0]
    art = {i["item_id"]: i["artwork_id"] for i in snapshot["items"]}
    assert art["a1"] in ("poster-a", "poster-b") and art["d2"] is None, art
    assert profiles["u1"].shown == [["a1", art["a1"]]]

    play = _doc("u1", "a1", "play", EVENING + 1) | {"artwork_id": art["a1"], "position_s": 0.0}
    _feed(processor, model, profiles, [play])
    plays, shows = model.artwork.counts("a1", art["a1"])
    assert (plays, shows) == (1.0, 1.0), "the impression and its play, learned once"
    back = PartitionModel.from_state(orjson.loads(orjson.dumps(model.to_state())))
    assert back.artwork.counts("a1", art["a1"]) == (1.0, 1.0)


# -- which titles get chosen ---------------------------------------------------------------


def test_viewers_who_choose_the_popular_titles_teach_the_model_that_popularity_is_worth_more() -> None:
    """How a chosen title goes says nothing about why it was chosen; what viewers finish over the
    titles they passed does. Here every viewer finishes whatever is most started, whatever its
    genre: the regression learns no reason to rank it higher, the choice learner does."""
    cat, model = catalog(), PartitionModel()
    processor, profiles = Processor(cat, top_k=5), {}
    # what is most started is also what is most finished lately: the two features share the credit
    before = model.weights["popularity"] + model.weights["trend"]
    docs = []
    for v in range(60):
        user = f"v{v}"
        for n, item in enumerate(("c1", "d1", "m1")):  # the same three titles, every viewer
            docs += [_doc(user, item, "play", EVENING + v * 10 + n), _doc(user, item, "complete", EVENING + v * 10 + n)]
    _feed(processor, model, profiles, docs)
    assert model.choice.learned > 0
    after = model.weights["popularity"] + model.weights["trend"]
    assert after > before + 0.2, (before, after)
    assert model.choice.weights["popularity"] > 0 and model.choice.weights["trend"] > 0


def test_the_titles_listed_above_a_started_one_are_what_it_was_chosen_over() -> None:
    cat, model = catalog(), PartitionModel()
    processor, profiles = Processor(cat, top_k=6), {}
    snapshot = _feed(processor, model, profiles, [_doc("u1", "d1", "complete", EVENING)])[0]
    listed = [i["item_id"] for i in snapshot["items"]]
    assert profiles["u1"].listed == listed
    pick = listed[3]
    _feed(processor, model, profiles, [_doc("u1", pick, "play", EVENING + 1)])
    assert profiles["u1"].passed == listed[:3], "the three titles above it (at most MAX_PASSED)"
    learned, finish = model.choice.learned, _doc("u1", pick, "complete", EVENING + 2)
    rows, corrections = competitors(
        cat, cat.index_of(pick), profiles["u1"].passed, finish["event_id"], model.shared.trend
    )
    assert [cat.ids[r] for r in rows[:3]] == listed[:3] and corrections[:3] == [0.0] * 3, "each listed title once"
    assert len(rows) > 3 and pick not in {cat.ids[r] for r in rows}, "and titles drawn from the catalog"
    _feed(processor, model, profiles, [finish])
    assert model.choice.learned == learned + 1, "one choice, over all of them"


def test_a_title_the_viewer_started_and_left_is_not_offered_while_it_is_among_its_recent_titles() -> None:
    cat, model = catalog(), PartitionModel()
    processor, profiles = Processor(cat, top_k=len(cat)), {}
    docs = [_doc("u1", "d1", "play", EVENING), _doc("u1", "d1", "stop", EVENING + 1, progress=0.4)]
    listed = [i["item_id"] for i in _feed(processor, model, profiles, docs)[-1]["items"]]
    assert "d1" not in listed and "d2" in listed, "every other title is listed, not the one just left"
    assert "d1" not in profiles["u1"].excluded, "it is not put away for good"
    later = [
        _doc("u1", f"c{n}", kind, EVENING + 10 + 2 * n + (kind == "stop"))
        for n in range(1, 6)
        for kind in ("play", "stop")
    ]
    nine = _feed(processor, model, profiles, later[:9])[-1]
    assert "d1" not in [i["item_id"] for i in nine["items"]], "nine events later it is still among them"
    tenth = _feed(processor, model, profiles, later[9:])[-1]
    assert "d1" in [i["item_id"] for i in tenth["items"]], "ten events later it may come back"
