"""What each event means (stream.learning.signals) and how it changes a profile (stream.learning.profile)."""

from __future__ import annotations

import random

import orjson
import pytest

from stream.contracts.validation import EVENT_TYPES, CatalogEntry, PlaybackEvent
from stream.learning.profile import (
    DAYPARTS,
    MAX_CONTEXT_GENRES,
    MAX_EXCLUDED,
    MAX_HISTORY,
    MAX_POSITIVES,
    MAX_RECENT_IDS,
    MAX_TAGS,
    Profile,
    daypart,
)
from stream.learning.signals import EARLY, NEARLY_DONE, Signal, interpret

T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC
DAY = 86_400_000
TITLE = CatalogEntry("t1", "Night Shift", ("drama", "crime"), ("hospital",), 3000.0)


def ev(kind: str, item: str = "t1", n: int = 1, ts: int = T0, progress: float = 0.5, **kw: object) -> PlaybackEvent:
    fields: dict[str, object] = {"position_s": 3000.0 * progress, "duration_s": 3000.0}
    if kind in ("rewind", "seek"):
        fields["offset_s"] = -30.0
    fields.update(kw)
    return PlaybackEvent(f"e{n}", "u1", item, kind, ts, **fields)  # type: ignore[arg-type]


def test_an_early_skip_is_a_strong_negative_and_excludes_the_title() -> None:
    signal = interpret(ev("skip", progress=EARLY / 2), paused_item=None)
    assert signal.value == -1.0 and signal.exclude and signal.label == "skipped early"


def test_a_completion_is_a_strong_positive_and_finishes_the_title() -> None:
    signal = interpret(ev("complete", progress=1.0), paused_item=None)
    assert signal.value == 1.0 and signal.exclude and signal.finished


def test_a_rewind_is_engagement() -> None:
    assert interpret(ev("rewind"), paused_item=None).value > 0


def test_pause_then_resume_is_engagement_and_pause_then_stop_is_doubt() -> None:
    assert interpret(ev("pause"), paused_item=None) == Signal(0.0, "paused", learns=False)
    resumed = interpret(ev("resume"), paused_item="t1")
    stopped = interpret(ev("stop", progress=0.5), paused_item="t1")
    assert resumed.value > 0 and resumed.label == "paused then resumed"
    assert stopped.value < 0 and stopped.label == "paused then stopped"
    # a pause of another title says nothing about this one
    assert interpret(ev("stop", progress=0.5), paused_item="t9").label == "stopped midway"


@pytest.mark.parametrize(
    ("kind", "progress", "sign"),
    [
        ("skip", 0.5, -1),
        ("skip", NEARLY_DONE, +1),
        ("stop", 0.02, -1),
        ("stop", 0.95, +1),
        ("play", 0.0, +1),
        ("thumbs_up", 0.0, +1),
        ("thumbs_down", 0.0, -1),
        ("add_to_list", 0.0, +1),
    ],
)
def test_the_direction_of_each_signal(kind: str, progress: float, sign: int) -> None:
    value = interpret(ev(kind, progress=progress), paused_item=None).value
    assert value * sign > 0, f"{kind} at {progress:.0%}: expected sign {sign}, got {value}"


def test_seeking_back_is_engagement_and_forward_is_impatience() -> None:
    assert interpret(ev("seek", offset_s=-60.0), paused_item=None).value > 0
    assert interpret(ev("seek", offset_s=120.0), paused_item=None).value < 0


def test_every_event_type_has_a_meaning_within_bounds() -> None:
    for kind in EVENT_TYPES:
        signal = interpret(ev(kind), paused_item=None)
        assert -1.0 <= signal.value <= 1.0 and signal.label


def test_completion_pulls_genres_and_tags_up_and_excludes_the_title() -> None:
    p = Profile("u1")
    assert p.apply(ev("complete", progress=1.0), interpret(ev("complete"), None), TITLE, offset=0)
    assert p.genres["drama"] > 0 and p.genres["crime"] > 0 and p.tags["hospital"] > 0
    assert p.excluded == ["t1"] and p.finished_titles() == ["t1"]
    assert p.applied == 1 and p.trigger == ["e1", "complete", T0]


def test_early_skip_pushes_genres_down() -> None:
    p = Profile("u1")
    skip = ev("skip", progress=0.01)
    p.apply(skip, interpret(skip, None), TITLE, offset=0)
    assert p.genres["drama"] < 0 and p.early_skips == 1.0 and "t1" in p.excluded


def test_affinities_decay_with_a_half_life_in_event_time() -> None:
    p = Profile("u1")
    done = ev("complete", n=1, progress=1.0)
    p.apply(done, interpret(done, None), TITLE, offset=0, half_life_ms=7 * DAY)
    before = p.genres["drama"]
    other = CatalogEntry("t2", "Laughs", ("comedy",), (), 1500.0)
    later = ev("complete", item="t2", n=2, ts=T0 + 7 * DAY, progress=1.0)
    p.apply(later, interpret(later, None), other, offset=1, half_life_ms=7 * DAY)
    assert p.genres["drama"] == pytest.approx(before / 2)


def test_context_habits_count_devices_and_dayparts_on_play() -> None:
    p = Profile("u1")
    evening = T0 + 19 * 3_600_000
    play = ev("play", ts=evening, device="tv")
    p.apply(play, interpret(play, None), TITLE, offset=0)
    assert p.devices == {"tv": 1.0}
    assert DAYPARTS[daypart(evening)] == "evening" and p.dayparts[2] == 1.0


def test_pause_state_is_remembered_until_resume_or_stop() -> None:
    p = Profile("u1")
    for n, kind in enumerate(["play", "pause", "resume"]):
        e = ev(kind, n=n)
        signal = interpret(e, p.paused)
        p.apply(e, signal, TITLE, offset=n)
        if kind == "pause":
            assert p.paused == "t1"
    assert p.paused is None and signal.label == "paused then resumed"


def test_a_redelivered_or_repeated_event_is_applied_once() -> None:
    p = Profile("u1")
    e = ev("complete", progress=1.0)
    assert p.apply(e, interpret(e, None), TITLE, offset=5)
    assert not p.apply(e, interpret(e, None), TITLE, offset=5), "same offset applied twice"
    assert not p.apply(e, interpret(e, None), TITLE, offset=9), "same event id at a new offset applied twice"
    assert p.applied == 1


def test_a_viewer_s_positives_outlast_its_short_history_newest_first() -> None:
    p = Profile("u1")
    n = 0
    for k in range(MAX_POSITIVES + 5):  # each finished title after one given up on: history holds few positives
        for kind, progress, item in (("play", 0.0, f"g{k}"), ("stop", 0.5, f"g{k}"), ("complete", 1.0, f"t{k}")):
            n += 1
            e = ev(kind, item, n=n, ts=T0 + n * 60_000, progress=progress)
            p.apply(e, interpret(e, p.paused), TITLE, offset=n)
    newest = [f"t{k}" for k in range(MAX_POSITIVES + 4, 4, -1)]
    assert p.positives() == newest
    assert sum(1 for _, _, finished in p.history if finished) < MAX_HISTORY
    # liked again: it moves up; thumbed down: it leaves
    for kind, item in (("thumbs_up", newest[-1]), ("thumbs_down", newest[0])):
        n += 1
        e = ev(kind, item, n=n, ts=T0 + n * 60_000)
        p.apply(e, interpret(e, p.paused), TITLE, offset=n)
    assert p.positives() == [newest[-1], *newest[1:-1]]
    assert Profile.loads(p.dumps()).positives() == p.positives()


def test_a_profile_row_written_before_its_positives_were_kept_reads_them_from_its_history() -> None:
    p = Profile("u1", history=[["a", 1.0, 1], ["b", -1.0, 0], ["c", 0.6, 0], ["a", 0.4, 0]])
    row = orjson.loads(p.dumps())
    del row["lk"]
    assert Profile.loads(orjson.dumps(row)).positives() == ["c", "a"]


def test_a_profile_row_written_before_duplicate_offsets_existed_still_loads() -> None:
    p = Profile("u1", offset=5)
    row = orjson.loads(p.dumps())
    del row["dx"]
    assert Profile.loads(orjson.dumps(row)) == p


def test_profile_round_trips_and_stays_bounded_and_small() -> None:
    rng = random.Random(3)
    p = Profile("viewer-0000012345")
    genres = [f"genre{g}" for g in range(20)]
    for n in range(2000):
        title = CatalogEntry(
            f"title-{rng.randrange(100000):06d}",
            "x",
            tuple(rng.sample(genres, 3)),
            tuple(f"tag{rng.randrange(500)}" for _ in range(6)),
            3000.0,
        )
        kind = rng.choice(EVENT_TYPES)
        e = PlaybackEvent(
            f"event-{n:012d}",
            p.user_id,
            title.item_id,
            kind,
            T0 + n * 60_000,
            position_s=rng.uniform(0, 3000),
            duration_s=3000.0,
            offset_s=-10.0,
            device=rng.choice(["tv", "mobile", "tablet", "web", "other"]),
        )
        p.apply(e, interpret(e, p.paused), title, offset=n)
    assert len(p.tags) <= MAX_TAGS and len(p.history) <= MAX_HISTORY
    assert len(p.excluded) <= MAX_EXCLUDED and len(p.recent_ids) <= MAX_RECENT_IDS
    raw = p.dumps()
    # The worst case: every event type, 20 genres, all five devices, every daypart. The load
    # test's viewers (one device, one hour) measure about 1.2-1.5 KB (README, "Load testing").
    assert len(raw) <= 3072, f"a profile must stay under 3 KB even at worst; this one is {len(raw)} bytes"
    assert len(p.contexts) <= 5 + 4 + 2 and all(len(v) <= MAX_CONTEXT_GENRES for v in p.contexts.values())
    back = Profile.loads(raw)
    assert back.dumps() == raw
    assert back.applied == p.applied == 2000
