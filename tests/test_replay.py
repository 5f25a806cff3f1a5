"""The replay evaluator: its log formats, metrics and pacing without a broker, and one real replay."""

from __future__ import annotations

import asyncio
import doctest
import math
import random
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner

from loadtest import replay_formats, replay_metrics, replay_pacing, replay_replica
from loadtest.replay import ReplayConfig, _ReplayState, replay, replay_offline, summary, write_report
from loadtest.replay_formats import (
    FIVE_STARS,
    MIN_TS,
    TEN_POINTS,
    Interaction,
    RatingScale,
    behaviour,
    guess_format,
    parse_columns,
    read_csv,
    read_jsonl,
    read_log,
    read_movielens,
    read_movietweetings,
)
from loadtest.replay_logs import write_movielens, write_population_log, write_sessions
from loadtest.replay_metrics import (
    TRENDING_HALF_LIFE,
    Popularity,
    Tally,
    Trending,
    hit_and_ndcg,
    intra_list_diversity,
    jaccard_distance,
    novelty,
    random_list,
)
from loadtest.replay_pacing import Pacer, Release, reflects
from loadtest.replay_replica import RatingScore, Replica
from stream.contracts.topics import MODEL
from stream.contracts.validation import decode_catalog, decode_event
from stream.learning.profile import Profile
from stream.learning.shared import SharedModel
from stream.learning.signals import interpret
from stream.runtime.broker import EmbeddedBroker
from stream.runtime.kafka import partitions_of
from stream.settings import Settings

DATA = Path(__file__).parent / "data" / "replay"


def _check_events(log_events: list[dict[str, object]]) -> None:
    for doc in log_events:
        decode_event(str(doc["user_id"]).encode(), orjson.dumps(doc))  # raises on anything the schema rejects


def _all_valid(log: object) -> None:
    catalog = log.catalog  # type: ignore[attr-defined]
    for entry in catalog:
        assert decode_catalog(str(entry["item_id"]).encode(), orjson.dumps(entry)) is not None
    ids = [e["event_id"] for i in log.interactions for e in i.events]  # type: ignore[attr-defined]
    assert len(ids) == len(set(ids)), "event ids are unique"
    for interaction in log.interactions:  # type: ignore[attr-defined]
        _check_events(interaction.events)


@pytest.mark.parametrize("module", [replay_formats, replay_metrics, replay_pacing, replay_replica])
def test_the_docstring_examples_run(module: object) -> None:
    # testpaths holds tests/ and stream/ only, so loadtest's doctests are run from here
    result = doctest.testmod(module, raise_on_error=False)  # type: ignore[arg-type]
    assert result.attempted > 0 and result.failed == 0


# -- formats -----------------------------------------------------------------------------


def test_movielens_files_become_a_catalog_and_timed_interactions() -> None:
    log = read_movielens(DATA / "u.data", DATA / "u.item")
    _all_valid(log)
    assert len(log.interactions) == 12 and log.viewers == 3 and log.has_ratings
    titles = {e["item_id"]: e for e in log.catalog}
    assert titles["10"]["genres"] == ["Crime", "Drama"]
    assert titles["20"]["title"] == "Café Society (1995)", "u.item is latin-1"
    assert titles["30"]["genres"] == ["Action", "Adventure", "Sci-Fi"] and "release_ts" not in titles["30"]
    assert titles["40"]["genres"] == ["unknown"], "a title u.item does not describe gets a minimal entry"
    # 1997 is before what the pipeline accepts: moved forward by whole days, release dates too
    assert log.shift_ms > 0 and log.shift_ms % 86_400_000 == 0
    first = log.interactions[0]
    assert first.ts == 881250949 * 1000 + log.shift_ms >= MIN_TS
    assert titles["10"]["release_ts"] == 757382400000 + log.shift_ms  # 1994-01-01
    assert [i.positive for i in log.interactions].count(True) == 7
    assert log.events == 7 * 2 + 2 * 4 + 3 * 2
    assert [i.ts for i in log.interactions] == sorted(i.ts for i in log.interactions)


def test_movietweetings_files_are_read_on_their_own_scale(tmp_path: Path) -> None:
    log = read_log(DATA / "ratings.dat")  # the format from the name, movies.dat from beside it
    _all_valid(log)
    assert len(log.interactions) == 8 and log.viewers == 3 and log.has_ratings and log.scale == TEN_POINTS
    assert [n for n, _ in log.skipped] == [7, 9], "a rating of 11 and a line without a rating are left out"
    titles = {e["item_id"]: e for e in log.catalog}
    assert titles["0002844"]["title"] == "Fantômas - À l'ombre de la guillotine", "UTF-8, the year dropped"
    assert titles["0002844"]["genres"] == ["Crime", "Drama"]
    assert titles["1022603"]["title"] == "(500) Days of Summer", "only the trailing year goes"
    assert titles["0021283"]["genres"] == ["unknown"], "a movie without genres"
    assert titles["9999999"]["genres"] == ["unknown"], "a movie movies.dat does not list gets a minimal entry"
    assert not any("release_ts" in e for e in log.catalog), "a year is not a release date"
    # 2013 is inside what the pipeline accepts: no shift; sorted by time (the file is sorted by user)
    assert log.shift_ms == 0 and log.interactions[0].ts == 1362062307 * 1000
    assert [i.ts for i in log.interactions] == sorted(i.ts for i in log.interactions)
    # 8-10 finish (positive), 5-7 engaged then gave up, 0-4 an early skip
    by_rating = {i.rating: (i.positive, [e["type"] for e in i.events][-1]) for i in log.interactions}
    assert by_rating == {
        10: (True, "complete"), 9: (True, "complete"), 8: (True, "complete"),
        7: (False, "stop"), 5: (False, "stop"),
        4: (False, "skip"), 3: (False, "skip"), 0: (False, "skip"),
    }  # fmt: skip
    assert log.events == 3 * 2 + 2 * 4 + 3 * 2
    # --items names movies.dat explicitly when it is not beside ratings.dat; without it, minimal entries
    (tmp_path / "ratings.dat").write_bytes((DATA / "ratings.dat").read_bytes())
    named = read_movietweetings(tmp_path / "ratings.dat", DATA / "movies.dat")
    assert named.catalog == log.catalog
    bare = read_log(tmp_path / "ratings.dat")
    assert {e["genres"][0] for e in bare.catalog} == {"unknown"} and len(bare.interactions) == 8


def test_a_csv_file_is_read_through_its_column_mapping() -> None:
    columns = parse_columns("user=uid,item=movie,rating=stars,ts=time,genres=tags")
    log = read_csv(DATA / "ratings.csv", columns, ts_unit="ms")
    _all_valid(log)
    assert len(log.interactions) == 12 and log.viewers == 3 and log.shift_ms == 0
    genres = {e["item_id"]: e["genres"] for e in log.catalog}
    assert genres == {"m1": ["drama", "crime"], "m2": ["comedy"], "m3": ["unknown"], "m4": ["scifi"]}
    assert log.interactions[0].ts == 1767225600000 and log.interactions[0].rating == 5
    assert sum(i.positive for i in log.interactions) == 7
    # seconds are the default unit; the same file read as seconds lands past 2100 and is refused
    with pytest.raises(ValueError, match="2100"):
        read_csv(DATA / "ratings.csv", columns, ts_unit="s")


def test_jsonl_events_are_grouped_into_interactions() -> None:
    log = read_jsonl(DATA / "log.jsonl")
    _all_valid(log)
    got = [(i.user_id, i.item_id, [e["event_id"] for e in i.events], i.positive) for i in log.interactions]
    assert got == [
        ("u1", "t1", ["a1", "a2"], True),
        ("u2", "t2", ["b1", "b2"], False),
        ("u1", "t3", ["a3", "a4", "a5"], False),
        ("u2", "t1", ["b3", "b4"], True),  # thumbs up
        ("u1", "t2", ["a6", "a7"], True),  # added to the list
        ("u1", "t2", ["a8"], False),  # a new play of the same title is a new interaction
    ]
    assert not log.has_ratings
    assert [n for n, _ in log.skipped] == [12, 16], "the repeated event id and the command are left out"
    t3 = next(e for e in log.catalog if e["item_id"] == "t3")
    assert t3["genres"] == ["unknown"] and t3["duration_s"] == 2400


def test_compression_divides_the_gaps_and_formats_are_guessed() -> None:
    plain = read_jsonl(DATA / "log.jsonl")
    fast = read_jsonl(DATA / "log.jsonl", compress=10)
    start = plain.interactions[0].ts
    for a, b in zip(plain.interactions, fast.interactions, strict=True):
        assert b.ts == start + (a.ts - start) // 10
    assert guess_format(Path("x/u.data")) == "movielens"
    assert guess_format(Path("movietweetings-100k/ratings.dat")) == "movietweetings"
    assert guess_format(Path("log.jsonl")) == "jsonl" and guess_format(Path("r.csv")) == "csv"
    with pytest.raises(ValueError, match="--format"):
        guess_format(Path("ratings.txt"))
    with pytest.raises(ValueError, match="ts"):
        parse_columns("user=a,item=b")
    with pytest.raises(ValueError, match="--columns"):
        read_log(DATA / "ratings.csv")


def test_ratings_map_to_behaviour_the_pipeline_reads_as_intended() -> None:
    def signals(rating: float, scale: RatingScale = FIVE_STARS) -> list[str]:
        log_events = []
        for n, (kind, position) in enumerate(behaviour(rating, 3000.0, scale)):
            log_events.append({"event_id": f"e{n}", "user_id": "u", "item_id": "t", "type": kind,
                               "ts": 1767225600000 + n, "position_s": position, "duration_s": 3000.0})  # fmt: skip
        _check_events(log_events)
        paused, labels = None, []
        for doc in log_events:
            event = decode_event(b"u", orjson.dumps(doc))
            labels.append(interpret(event, paused).label)
            paused = event.item_id if event.type == "pause" else None
        return labels

    assert signals(5) == signals(4) == ["started", "completed"]
    assert signals(3) == ["started", "paused", "paused then resumed", "stopped midway"]
    assert signals(2) == signals(1) == ["started", "skipped early"]
    # MovieTweetings' 0-10: 8 or more as 4-5 stars, 5-7 as 3, 0-4 as 1-2
    ten = {r: signals(r, TEN_POINTS) for r in range(11)}
    assert all(ten[r] == signals(5) for r in (8, 9, 10))
    assert all(ten[r] == signals(3) for r in (5, 6, 7))
    assert all(ten[r] == signals(1) for r in (0, 1, 2, 3, 4))
    assert [r for r in range(11) if TEN_POINTS.is_positive(r)] == [8, 9, 10]
    assert [r for r in range(1, 6) if FIVE_STARS.is_positive(r)] == [4, 5]


# -- metrics -----------------------------------------------------------------------------


def test_hit_rate_and_ndcg_on_hand_computed_lists() -> None:
    items = [f"t{i}" for i in range(12)]
    assert hit_and_ndcg(items, "t0") == (1.0, 1.0)
    assert hit_and_ndcg(items, "t3") == (1.0, pytest.approx(1 / math.log2(5)))
    assert hit_and_ndcg(items, "t9") == (1.0, pytest.approx(1 / math.log2(11)))
    assert hit_and_ndcg(items, "t10") == (0.0, 0.0), "only the top 10 count"
    assert hit_and_ndcg([], "t0") == (0.0, 0.0)


def test_diversity_novelty_and_coverage() -> None:
    genres = {"a": frozenset({"drama"}), "b": frozenset({"drama"}), "c": frozenset({"comedy", "drama"})}
    assert jaccard_distance(genres["a"], genres["c"]) == 0.5
    # pairs: a-b 0, a-c 0.5, b-c 0.5
    assert intra_list_diversity(["a", "b", "c"], genres) == pytest.approx(1 / 3)
    assert intra_list_diversity(["a"], genres) is None
    # 4 interactions so far over a catalog of 4: shares (3+1)/8 and (0+1)/8
    assert novelty(["a", "b"], {"a": 3}, total=4, catalog_size=4) == pytest.approx((1 + 3) / 2)
    tally = Tally()
    tally.add(["a", "b"], "b", genres, {}, 0, 4)
    tally.add(["a", "c"], "z", genres, {}, 0, 4)
    out = tally.summary(catalog_size=4)
    assert out["hr_at_10"] == 0.5 and out["ndcg_at_10"] == pytest.approx(1 / math.log2(3) / 2)
    assert out["coverage"] == 0.75 and out["diversity"] == pytest.approx(0.25) and out["judged"] == 2


def test_popularity_and_random_baselines_leave_out_what_the_viewer_touched() -> None:
    ids = [f"t{i}" for i in range(30)]
    pop = Popularity(ids)
    for item, positive in [("t5", True), ("t5", True), ("t7", True), ("t9", False), ("t9", False), ("t3", True)]:
        pop.record(item, positive)
    top = pop.top(exclude={"t7"}, k=5)
    assert top == ["t5", "t3", "t9", "t0", "t1"], "positives, then interactions, then catalog order"
    rng_a, rng_b = random.Random(1), random.Random(1)
    seen = set(ids[:20])
    a = random_list(rng_a, ids, seen)
    assert a == random_list(rng_b, ids, seen), "seeded"
    assert len(a) == 10 and not set(a) & seen and len(set(a)) == 10
    assert len(random_list(random.Random(2), ids, set(ids[:25]))) == 5


def test_trending_counts_positives_decayed_by_count_on_hand_computed_cases() -> None:
    ids = [f"t{i}" for i in range(6)]
    trend = Trending(ids, half_life=1.0)  # each positive halves every older count
    for item, positive in [("t1", True), ("t2", True), ("t1", False), ("t3", True), ("t3", True), ("t4", False)]:
        trend.record(item, positive)
    # t1: 1/2^3 (three positives after it); t2: 1/2^2; t3: 1/2 + 1; the others never positive
    assert (trend.count("t1"), trend.count("t2"), trend.count("t3"), trend.count("t4")) == (0.125, 0.25, 1.5, 0.0)
    assert trend.top(exclude={"t2"}, k=4) == ["t3", "t1", "t0", "t4"], "decayed counts, then catalog order"
    assert trend.top(exclude=set(), k=2) == ["t3", "t2"]
    # the default: a positive counts half after 1,000 later positives
    trend = Trending(ids)
    assert TRENDING_HALF_LIFE == 1000
    trend.record("t0", True)
    for _ in range(1000):
        trend.record("t5", True)
    assert trend.count("t0") == pytest.approx(0.5)
    assert trend.count("t5") == pytest.approx(0.5 / (1 - 2 ** (-1 / 1000)))  # the geometric sum 1 + d + ... + d^999
    # a title popular a while ago falls behind one with two recent positives; popularity keeps it first
    trend, pop = Trending(ids, half_life=1.0), Popularity(ids)
    for item in ["t0"] * 5 + ["t1"] * 8 + ["t2"] * 2:
        trend.record(item, True)
        pop.record(item, True)
    # t2: 1 + 1/2; t1: (1/4)(1 + 1/2 + ... + 1/2^7) = (1/4)(2 - 1/2^7); t0: (1/2^10)(2 - 1/2^4)
    assert trend.count("t2") == 1.5 and trend.count("t1") == (2 - 2**-7) / 4
    assert trend.count("t0") == (2 - 2**-4) / 2**10
    assert trend.top(set(), k=3) == ["t2", "t1", "t0"] and pop.top(set(), k=3) == ["t1", "t0", "t2"]
    with pytest.raises(ValueError, match="half-life"):
        Trending(ids, half_life=0)


def test_trending_matches_a_brute_force_decay_across_rescales() -> None:
    rng = random.Random(3)
    ids = [f"t{i}" for i in range(40)]
    for half_life in (0.5, 2.0, 1000.0):  # 0.5: the unit passes 1e12 every 20 positives and is rescaled
        trend, counts = Trending(ids, half_life), dict.fromkeys(ids, 0.0)
        for _ in range(300):
            item, positive = ids[min(rng.randrange(40), rng.randrange(40))], rng.random() < 0.7
            trend.record(item, positive)
            if positive:
                counts = {i: c * 2 ** (-1 / half_life) for i, c in counts.items()}
                counts[item] += 1
            exclude = set(rng.sample(ids, 5))
            want = sorted((i for i in ids if i not in exclude), key=lambda i: (-counts[i], ids.index(i)))[:10]
            assert trend.top(exclude) == want
            assert trend.count(item) == pytest.approx(counts[item], rel=1e-9)
        assert trend.unit < 1e12


def test_the_baselines_never_see_the_interaction_they_are_judged_on(tmp_path: Path) -> None:
    # 25 titles, each skipped once by its own viewer (not positive); then x finishes a0 (its first
    # interaction, not judged), and v1 finishes a20, never positive before: judged against
    # trending [a0, a2, ..., a10] and popularity alike. Had a baseline counted a20 before judging
    # it, a20 would be first on both lists.
    rows = ["uid,movie,stars,time"] + [f"v{n},a{n},1,{1767225600 + n}" for n in range(25)]
    rows += ["x,a0,5,1767226000", "v1,a20,5,1767226100"]
    (tmp_path / "log.csv").write_text("\n".join(rows) + "\n")
    log = read_log(tmp_path / "log.csv", columns="user=uid,item=movie,rating=stars,ts=time")
    state = _ReplayState(Settings(partitions=2), log, ReplayConfig(seed=1))
    judged = []
    for it in log.interactions:
        first = it.user_id not in state.touched
        state.before_publishing(Release(it, None if first else ["zz"], 0 if first else 2))
        if it.positive and not first:
            judged.append(it.item_id)
            assert state.trending.count("a20") == pytest.approx(1.0), "counted once judged"
    assert judged == ["a20"]
    assert state.tallies["trending"].judged == state.tallies["popularity"].judged == 1
    assert state.tallies["trending"].hits == state.tallies["popularity"].hits == 0.0
    assert state.trending.top({"a1"}) == ["a20", "a0", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9"]


def test_rating_errors_match_a_batch_recomputation() -> None:
    rng = random.Random(4)
    score = RatingScore(1.0, 5.0)
    pairs = [(rng.random(), float(rng.randint(1, 5))) for _ in range(200)]
    for s, rating in pairs:
        score.update(s, rating)
    errors = [model for model, _ in score.trace]
    assert score.mae.get() == pytest.approx(sum(errors) / len(errors))
    assert score.rmse.get() == pytest.approx(math.sqrt(sum(e * e for e in errors) / len(errors)))
    means = [3.0] + [sum(r for _, r in pairs[:n]) / n for n in range(1, len(pairs))]
    assert score.mean_mae.get() == pytest.approx(sum(abs(r - m) for (_, r), m in zip(pairs, means, strict=True)) / 200)


# -- pacing and the no-leakage rule ----------------------------------------------------


def _log(viewers: int, each: int, seed: int = 1) -> list[Interaction]:
    rng = random.Random(seed)
    out = []
    for v in range(viewers):
        for k in range(each):
            n = len(out)
            events = [{"event_id": f"v{v}i{k}e{j}"} for j in range(rng.randint(1, 4))]
            out.append(Interaction(n, f"v{v}", f"t{k}", rng.randrange(10_000), events))
    return out


def test_no_interaction_is_judged_against_a_snapshot_that_reflects_it() -> None:
    """A fake worker applies events after random delays; every judgement is checked against what was sent."""
    rng = random.Random(9)
    log = _log(12, 6)
    pacer = Pacer(log, parallel=5, wait_s=1e9)
    applied: dict[str, int] = {}
    in_flight: list[tuple[float, str, dict[str, object]]] = []
    clock, judged, versions = 0.0, 0, dict.fromkeys((i.user_id for i in log), 0)
    previous: dict[str, Interaction] = {}
    while not pacer.done:
        for release in pacer.release(clock):
            it = release.interaction
            if it.user_id in previous:
                assert release.items is not None and release.snapshot_applied == release.sent_before
                judged += 1
            else:
                assert release.items is None and release.sent_before == 0
            previous[it.user_id] = it
            applied[it.user_id] = applied.get(it.user_id, 0) + len(it.events)
            for n, doc in enumerate(it.events):  # one snapshot per event, as a worker batch of one
                versions[it.user_id] += 1
                snap = {"user_id": it.user_id, "version": versions[it.user_id],
                        "events_applied": applied[it.user_id] - len(it.events) + n + 1,
                        "trigger": {"event_id": doc["event_id"]}, "items": [{"item_id": "x"}]}  # fmt: skip
                in_flight.append((clock + rng.random(), it.user_id, snap))
        assert len(pacer.awaiting) <= 5
        in_flight.sort(key=lambda x: x[0])
        clock, _, snap = in_flight.pop(0)
        pacer.on_snapshot(snap, clock)
    assert judged == len(log) - 12 and pacer.timeouts == 0 and pacer.leaks_refused == 0


def test_one_viewer_at_a_time_goes_in_timestamp_order_and_a_leaking_snapshot_is_refused() -> None:
    log = _log(4, 3, seed=2)
    pacer = Pacer(log, parallel=1)
    order = []
    while not pacer.done:
        for release in pacer.release(0.0):
            order.append(release.interaction)
            last = release.interaction.events[-1]["event_id"]
            pacer.on_snapshot({"user_id": release.interaction.user_id, "version": len(order),
                               "events_applied": pacer.sent[release.interaction.user_id],
                               "trigger": {"event_id": last}, "items": []}, 0.0)  # fmt: skip
    assert [i.ts for i in order] == sorted(i.ts for i in log)

    log = _log(1, 2)
    pacer = Pacer(log, parallel=4, wait_s=5.0)
    assert len(pacer.release(0.0)) == 1
    # a snapshot claiming an event not yet sent (impossible from a real worker) must not be used
    pacer.on_snapshot({"user_id": "v0", "version": 1, "events_applied": 99, "trigger": {"event_id": "?"},
                       "items": [{"item_id": "t1"}]}, 0.1)  # fmt: skip
    assert pacer.release(1.0) == [], "still waiting for the snapshot of the first interaction"
    (second,) = pacer.release(6.0)  # waited longer than wait_s
    assert pacer.timeouts == 1 and second.items is None and pacer.leaks_refused == 1
    assert reflects({"events_applied": 1, "trigger": {"event_id": "v0i1e0"}}, 5, ["v0i1e0"])


# -- the replica and the generators ------------------------------------------------------


def test_the_replica_partitions_like_the_producer_and_learns_from_what_it_applies() -> None:
    log = read_csv(DATA / "ratings.csv", parse_columns("user=uid,item=movie,rating=stars,ts=time,genres=tags"), "ms")
    replica = Replica(log.catalog, Settings(partitions=4))
    partitioner = DefaultPartitioner()
    assert all(replica.partition(u) == partitioner(u.encode(), [0, 1, 2, 3], [0, 1, 2, 3]) for u in "abc")
    before = replica.score("a", "m1", 1767225600000)
    liked = next(i for i in log.interactions if i.user_id == "a" and i.item_id == "m1")
    items = replica.apply("a", liked.events)
    profile = Profile.loads(replica.rows["a"])
    assert profile.applied == len(liked.events) and "m1" not in items, "a finished title is excluded"
    # m1 was finished: another drama|crime title would score higher, and the profile leans to drama
    assert profile.genres["drama"] > 0
    assert replica.score("a", "m1", 1767225601000) != before


def test_the_generators_write_logs_the_readers_take(tmp_path: Path) -> None:
    counts = write_population_log(tmp_path / "pop.jsonl", viewers=12, interactions=5, titles=80, seed=3)
    log = read_jsonl(tmp_path / "pop.jsonl")
    _all_valid(log)
    assert log.events == counts["events"] and len(log.catalog) == 80 and log.viewers == 12
    assert len(log.interactions) == 12 * 5 and not log.skipped
    write_movielens(tmp_path / "ml", viewers=10, titles=40, interactions=6, seed=3)
    ml = read_movielens(tmp_path / "ml" / "u.data", tmp_path / "ml" / "u.item")
    _all_valid(ml)
    assert len(ml.interactions) == 60 and len(ml.catalog) == 40 and ml.has_ratings
    write_population_log(tmp_path / "again.jsonl", viewers=12, interactions=5, titles=80, seed=3)
    assert (tmp_path / "pop.jsonl").read_bytes() == (tmp_path / "again.jsonl").read_bytes(), "deterministic"


def test_a_sessions_log_keeps_the_most_rated_titles_and_gives_each_viewer_one_session(tmp_path: Path) -> None:
    src = tmp_path / "mt"
    src.mkdir()
    (src / "movies.dat").write_text("".join(f"{t}::Film {t} (2013)::Drama\n" for t in range(5)))
    rated = [(u, t, 8, 1_365_000_000 + 3600 * (t * 7 + u)) for u in range(4) for t in range(3) if (u, t) != (3, 1)]
    rated += [(0, 3, 9, 1_365_000_000), (9, 4, 9, 1_365_000_000)]  # titles rated once: not among the 3 most rated
    (src / "ratings.dat").write_text("".join(f"{u}::{t}::{r}::{ts}\n" for u, t, r, ts in rated))
    counts = write_sessions(src / "ratings.dat", tmp_path / "out", top_titles=3, min_ratings=3, seed=1)
    log = read_log(tmp_path / "out" / "ratings.dat")
    assert counts == {"viewers": 3, "ratings": 9} and {i.item_id for i in log.interactions} == {"0", "1", "2"}
    order = [i.user_id for i in log.interactions]  # in time order: each viewer's ratings one after another
    assert sorted(order) == ["0"] * 3 + ["1"] * 3 + ["2"] * 3 and all(order[k] == order[k - k % 3] for k in range(9))
    assert [i.item_id for i in log.interactions if i.user_id == "1"] == ["0", "1", "2"], "each viewer's own order"
    kept = write_sessions(src / "ratings.dat", tmp_path / "kept", top_titles=3, min_ratings=3, keep_times=True)
    assert kept == counts and (tmp_path / "kept" / "ratings.dat").read_text().splitlines()[0] == "0::0::8::1365000000"


# -- a real replay -----------------------------------------------------------------------


def _taste_log(path: Path, viewers: int = 20, each: int = 8) -> None:
    """Six genres of eight titles; each viewer loves one genre (rates its titles 5) and rates others 1."""
    rng = random.Random(5)
    genres = ["drama", "comedy", "crime", "scifi", "horror", "western"]
    rows = ["uid,movie,stars,time,genre"]
    for v in range(viewers):
        loved = genres[v % len(genres)]
        mine = [f"{loved}-{k}" for k in rng.sample(range(8), each - 2)]
        others = [f"{g}-{rng.randrange(8)}" for g in rng.sample([g for g in genres if g != loved], 2)]
        stamps = sorted(rng.randrange(1_000_000) for _ in range(each))
        picks = [(t, 5) for t in mine] + [(t, 1) for t in others]
        rng.shuffle(picks)
        if picks[0][1] == 1:
            picks.insert(0, picks.pop(next(n for n, p in enumerate(picks) if p[1] == 5)))
        for (title, stars), ts in zip(picks, stamps, strict=True):
            rows.append(f"v{v},{title},{stars},{1767225600 + ts},{title.split('-')[0]}")
    path.write_text("\n".join(rows) + "\n")


@pytest.mark.broker
def test_a_replay_through_a_real_worker_accounts_for_every_event(broker: EmbeddedBroker, tmp_path: Path) -> None:
    _taste_log(tmp_path / "log.csv")
    log = read_log(tmp_path / "log.csv", columns="user=uid,item=movie,rating=stars,ts=time,genres=genre")
    assert len(log.interactions) == 160 and log.viewers == 20
    # settle: the workers checkpoint an idle partition's model after STREAM_CHECKPOINT_S (2 s)
    cfg = ReplayConfig(parallel=16, partitions=4, timeout_s=50, wait_s=15, bootstrap=broker.bootstrap, settle_s=6)
    report = replay(log, cfg)
    for key in ("hr_at_10", "ndcg_at_10", "coverage", "diversity", "novelty", "mae", "rmse", "events", "viewers"):
        assert key in report, key
    assert set(report["hr_at_10"]) == set(report["ndcg_at_10"]) == {"model", "popularity", "trending", "random"}
    assert report["complete"] and report["waits_timed_out"] == 0 and report["leaks_refused"] == 0
    assert report["events"] == report["events_applied"] == log.events
    assert report["viewers"] == 20 and report["interactions"] == 160
    positives = sum(i.positive for i in log.interactions)
    assert report["positives"] == positives
    assert report["interactions_judged"] + report["first_interactions_excluded"] == positives
    assert report["first_interactions_excluded"] <= 20
    assert report["mae"] is not None and report["mean_rating"]["mae"] is not None
    assert report["hr_at_10"]["model"] >= report["hr_at_10"]["random"]
    written = write_report(report, tmp_path / "report.json")
    assert [p.name for p in written] == ["report.json", "report-quality.png", "report-ratings.png"]
    assert "HR@10" in summary(report) and "trending" in summary(report)

    # The replica that predicts ratings learned from exactly the events the workers' partition
    # models learned from, and its outcome regression from the same outcomes as the deltas the
    # workers published teach. Its weights agree closely, not exactly: cohorts learn once per
    # batch and the worker's batches are not the replica's, and trending and popularity are
    # reused for half a second of wall time, so a few features differ a little.
    prefix = report["settings"]["topic_prefix"]
    checkpoints: dict[str, dict[str, Any]] = {}
    for record in asyncio.run(_read_all(broker.bootstrap, f"{prefix}stream-models-changelog")):
        if record.value is not None:
            checkpoints[record.key.decode()] = orjson.loads(record.value)
    assert checkpoints, "the workers checkpointed their models"
    for partition, state in checkpoints.items():
        assert state["n"] == report["replica_models"][partition.strip('"')]["learned"], partition
    published = SharedModel()
    for record in asyncio.run(_read_all(broker.bootstrap, f"{prefix}{MODEL}")):
        if record.key != b"cohorts":  # the workers' cohorts' state, not a delta
            published.apply_document(orjson.loads(record.value))
    assert published.outcome.learned == sum(m["learned"] for m in report["replica_models"].values())
    mine = report["replica_models"]["0"]["weights"]
    for feature, weight in published.outcome.linear.weights.items():
        assert weight == pytest.approx(mine.get(feature, 0.0), abs=0.15), feature


async def _read_all(bootstrap: str, topic: str, timeout_s: float = 10.0, quiet_s: float = 1.5) -> list[Any]:
    """Every record of ``topic``: read until nothing more came for ``quiet_s`` after the first record
    (the embedded broker's end offsets are unreliable, see README)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    try:
        tps = await partitions_of(consumer, topic, timeout_s=5.0)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        last = math.inf  # the quiet spell counts from the first record
        while time.monotonic() < deadline and time.monotonic() - last < quiet_s:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
                last = time.monotonic()
        return records
    finally:
        await consumer.stop()


def test_the_offline_replay_judges_the_replicas_lists_by_the_same_rules() -> None:
    log = read_log(DATA / "log.jsonl")
    report = replay_offline(log, ReplayConfig(partitions=2))
    positives = sum(1 for i in log.interactions if i.positive)
    firsts = report["first_interactions_excluded"]
    assert report["positives"] == positives and report["interactions_judged"] == positives - firsts
    assert report["complete"] and report["events_applied"] == log.events and report["settings"]["offline"]
    assert set(report["hr_at_10"]) == {"model", "popularity", "trending", "random"}
    # judged against the replica's list after the viewer's previous interaction: the same as building it by hand
    replica = replay_replica.Replica(log.catalog, Settings(partitions=2))
    last: dict[str, list[str]] = {}
    hits = 0
    for it in log.interactions:
        if it.positive and it.user_id in last:
            hits += it.item_id in last[it.user_id][:10]
        listed = replica.apply(it.user_id, it.events)
        if listed:
            last[it.user_id] = listed
    assert report["hr_at_10"]["model"] == pytest.approx(hits / report["interactions_judged"])


def test_the_offline_replay_can_judge_lists_made_at_each_interactions_time() -> None:
    log = read_log(DATA / "log.jsonl")
    report = replay_offline(log, ReplayConfig(partitions=2, judge="read"))
    assert report["settings"]["judge"] == "read"
    # by hand: before each interaction, a list made at its time from the viewer's stored profile
    replica = replay_replica.Replica(log.catalog, Settings(partitions=2))
    seen: set[str] = set()
    hits = 0
    for it in log.interactions:
        if it.positive and it.user_id in seen:
            hits += it.item_id in replica.read_list(it.user_id, it.ts)[:10]
        if replica.apply(it.user_id, it.events):
            seen.add(it.user_id)
    assert report["hr_at_10"]["model"] == pytest.approx(hits / report["interactions_judged"])


def test_the_offline_replay_tells_where_snapshots_lose_to_lists_made_then_by_their_age(tmp_path: Path) -> None:
    write_movielens(tmp_path, viewers=30, titles=60, interactions=10, seed=1)  # days of interactions: lists age
    log = read_log(tmp_path / "u.data")
    report = replay_offline(log, ReplayConfig(partitions=2, ages=True))
    read = replay_offline(log, ReplayConfig(partitions=2, judge="read"))
    ages = report["list_ages"]
    kinds = {name.split(" ", 1)[0] for name in ages}
    assert kinds == {"event", "refreshed"} and len(ages) > 4
    assert all(name.split(" ", 1)[1] in {a for a, _ in replay_metrics.AGES} for name in ages)
    judged = report["interactions_judged"]
    assert sum(row["judged"] for row in ages.values()) == judged
    assert read["hr_at_10"]["model"] != report["hr_at_10"]["model"]  # on this log, lists made then differ
    # the judged lists' hits add up to the snapshot judge's, those made then to the read judge's
    assert sum(row["judged"] * row["hr_at_10"] for row in ages.values()) == pytest.approx(
        report["hr_at_10"]["model"] * judged
    )
    assert sum(row["judged"] * row["made_then_hr_at_10"] for row in ages.values()) == pytest.approx(
        read["hr_at_10"]["model"] * judged
    )
    assert "list age" in summary(report) and "list_ages" not in read


@pytest.mark.broker
def test_a_replay_through_a_worker_can_judge_the_lists_its_api_makes(broker: EmbeddedBroker, tmp_path: Path) -> None:
    _taste_log(tmp_path / "log.csv")
    log = read_log(tmp_path / "log.csv", columns="user=uid,item=movie,rating=stars,ts=time,genres=genre")
    cfg = ReplayConfig(parallel=16, partitions=2, timeout_s=50, wait_s=15, bootstrap=broker.bootstrap, judge="read")
    report = replay(log, cfg)
    assert report["complete"] and report["waits_timed_out"] == 0 and report["leaks_refused"] == 0
    assert report["events"] == report["events_applied"] == log.events
    # every judged positive was judged on a list read from the worker's API at its time
    assert report["reads_failed"] == 0 and report["reads"] == report["interactions_judged"] > 0
    assert report["settings"]["judge"] == "read"
    assert report["hr_at_10"]["model"] >= report["hr_at_10"]["random"]
