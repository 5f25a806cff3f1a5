"""The artwork bandit on simulated viewers, without a broker."""

from __future__ import annotations

import random
from collections.abc import Callable

import orjson
import pytest
from scipy import stats

from stream.contracts.validation import DEVICES, PlaybackEvent
from stream.learning.artwork import ArtworkBandit, Context, _beta, _Draws

T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC: night
#: Chance that a viewer plays the title after being shown (context, variant).
PlayRate = Callable[[Context, str], float]


def simulate(
    bandit: ArtworkBandit,
    rate: PlayRate,
    rounds: int,
    seed: int,
    devices: tuple[str, ...] = DEVICES,
    start: int = 0,
) -> list[tuple[Context, str, bool, float]]:
    """Show one title to ``rounds`` viewers; each plays it with ``rate(context, variant)``.

    Returns (context, variant chosen, played, the uniform that decided the play), so
    other policies can be scored on the same viewers (common random numbers).
    """
    rng = random.Random(seed)
    log = []
    for n in range(start, start + rounds):
        ctx = Context(rng.choice(devices), rng.randrange(4))
        variant = bandit.choose("t1", ("a", "b"), ctx, f"u{rng.randrange(10**6)}", salt=n)
        assert variant is not None
        u = rng.random()
        played = u < rate(ctx, variant)
        bandit.feedback([("t1", variant)], "t1" if played else None, variant if played else None, ctx)
        log.append((ctx, variant, played, u))
    return log


def approx(plays: float, shows: float) -> object:
    """Counts as expected up to the fading of a few impressions."""
    return pytest.approx((plays, shows), abs=0.01)


def share(log: list[tuple[Context, str, bool, float]], variant: str) -> float:
    return sum(v == variant for _, v, _, _ in log) / len(log)


def b_better(ctx: Context, variant: str) -> float:
    return 0.2 if variant == "b" else 0.08


# -- learning ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_converges_to_the_variant_played_more_often_and_beats_fixed_and_random_choice(seed: int) -> None:
    bandit = ArtworkBandit()
    log = simulate(bandit, b_better, rounds=600, seed=seed)
    everywhere = Context()
    assert bandit.estimate("t1", "b", everywhere) > bandit.estimate("t1", "a", everywhere)
    assert share(log[200:400], "b") >= 0.65, "not converged within a few hundred impressions"
    assert share(log[-200:], "b") >= 0.7
    plays = sum(played for *_, played, _ in log)
    # the same viewers (same uniforms) shown always a, or a fair coin's choice
    coin = random.Random(seed + 1000)
    always_a = sum(u < b_better(ctx, "a") for ctx, _, _, u in log)
    at_random = sum(u < b_better(ctx, coin.choice("ab")) for ctx, _, _, u in log)
    assert plays > 1.6 * always_a, (plays, always_a)
    assert plays > 1.15 * at_random, (plays, at_random)


def test_learns_that_tv_viewers_prefer_a_and_mobile_viewers_b() -> None:
    def rate(ctx: Context, variant: str) -> float:
        return 0.2 if (variant == "a") == (ctx.device == "tv") else 0.07

    bandit = ArtworkBandit()
    log = simulate(bandit, rate, rounds=2000, seed=7, devices=("tv", "mobile"))
    tv, mobile = Context("tv"), Context("mobile")
    assert bandit.estimate("t1", "a", tv) > bandit.estimate("t1", "b", tv)
    assert bandit.estimate("t1", "b", mobile) > bandit.estimate("t1", "a", mobile)
    late = log[-600:]
    for device, preferred in (("tv", "a"), ("mobile", "b")):
        mine = [entry for entry in late if entry[0].device == device]
        assert share(mine, preferred) >= 0.75, (device, share(mine, preferred))
    # a device never seen falls back to what all devices together say (the two halves roughly cancel)
    tablet = Context("tablet", daypart=1)
    for variant in "ab":
        everywhere = bandit.estimate("t1", variant, Context())
        assert bandit.estimate("t1", variant, tablet) == pytest.approx(everywhere, abs=0.03)


def test_a_cohort_level_refines_its_device_and_daypart() -> None:
    bandit, night = ArtworkBandit(), Context("web", 3)
    rng = random.Random(3)
    for _ in range(3000):
        cohort = rng.randrange(2)
        ctx = Context("web", 3, cohort)
        variant = rng.choice("ab")
        preferred = "a" if cohort == 0 else "b"
        bandit.learn("t1", variant, ctx, float(rng.random() < (0.25 if variant == preferred else 0.05)))
    assert bandit.estimate("t1", "a", Context("web", 3, 0)) > 0.2 > bandit.estimate("t1", "b", Context("web", 3, 0))
    assert bandit.estimate("t1", "b", Context("web", 3, 1)) > 0.2 > bandit.estimate("t1", "a", Context("web", 3, 1))
    # without a cohort, the mix of both
    assert 0.1 < bandit.estimate("t1", "a", night) < 0.2


def test_counts_fade_so_a_change_of_taste_is_followed() -> None:
    def before(ctx: Context, variant: str) -> float:
        return 0.2 if variant == "a" else 0.08

    def after(ctx: Context, variant: str) -> float:
        return 0.2 if variant == "b" else 0.08

    results = {}
    for half_life in (300.0, 1e12):
        bandit = ArtworkBandit(half_life=half_life)
        simulate(bandit, before, rounds=4000, seed=1, devices=("tv",))
        log = simulate(bandit, after, rounds=3000, seed=2, devices=("tv",), start=4000)
        results[half_life] = share(log[-1000:], "b")
    assert results[300.0] >= 0.8, results
    # the same bandit without forgetting is still anchored to the old taste
    assert results[1e12] < results[300.0] - 0.3, results


# -- choices ---------------------------------------------------------------------------


def test_no_artwork_is_none_one_variant_is_that_one_and_a_retired_variant_is_never_chosen() -> None:
    bandit, ctx = ArtworkBandit(), Context("tv", 2)
    for n in range(500):  # "old" was the best by far before it left the catalog
        bandit.learn("t1", "old", ctx, 1.0)
        bandit.learn("t1", "a" if n % 2 else "b", ctx, float(n % 10 < 2))
    assert bandit.estimate("t1", "old", ctx) > 0.9
    picks = {bandit.choose("t1", ("a", "b"), ctx, f"u{n}", salt=n) for n in range(300)}
    assert picks == {"a", "b"}
    for n in range(50):
        assert bandit.choose("t2", ("only",), ctx, f"u{n}", salt=n) == "only"
        assert bandit.choose("t3", (), ctx, f"u{n}", salt=n) is None
    items = [("t1", ("a", "b")), ("t2", ("only",)), ("t3", ())]
    many = bandit.choose_many(items, ctx, "u1", salt=4)
    assert many == [bandit.choose(i, v, ctx, "u1", salt=4) for i, v in items]
    assert many[1:] == ["only", None]


def test_choices_are_deterministic_pure_and_vary_with_viewer_and_salt() -> None:
    bandit = ArtworkBandit()
    simulate(bandit, b_better, rounds=50, seed=5)
    twin = ArtworkBandit.from_state(bandit.to_state())
    before = bandit.to_state()
    ctx = Context("mobile", 1)
    for n in range(200):
        first = bandit.choose("t1", ("a", "b"), ctx, f"u{n}", salt=n)
        assert bandit.choose("t1", ("a", "b"), ctx, f"u{n}", salt=n) == first
        assert twin.choose("t1", ("a", "b"), ctx, f"u{n}", salt=n) == first
    assert bandit.to_state() == before, "choose changed the state"
    # on a title nothing is known of, draws spread over the variants...
    by_salt = [bandit.choose("cold", ("a", "b", "c"), ctx, "u1", salt=n) for n in range(300)]
    by_viewer = [bandit.choose("cold", ("a", "b", "c"), ctx, f"u{n}", salt=0) for n in range(300)]
    for picks in (by_salt, by_viewer):
        assert all(70 <= picks.count(v) <= 130 for v in "abc"), [picks.count(v) for v in "abc"]
    # ...and the order the catalog lists them in does not decide
    assert [bandit.choose("cold", ("c", "b", "a"), ctx, "u1", salt=n) for n in range(300)] != by_salt


def test_beta_draws_follow_the_beta_distribution() -> None:
    for a, b in ((1.0, 1.0), (3.0, 27.0), (0.4, 0.7), (250.5, 40.0)):
        draws = _Draws(f"{a}/{b}".encode())
        sample = [_beta(a, b, draws) for _ in range(4000)]
        assert stats.kstest(sample, stats.beta(a, b).cdf).pvalue > 0.01, (a, b)


# -- feedback -------------------------------------------------------------------------


def test_feedback_counts_shown_but_not_played_as_failures_and_the_play_as_a_success() -> None:
    bandit, ctx = ArtworkBandit(), Context("tv", 2)
    bandit.feedback([("t1", "a"), ("t2", "x"), ("t3", "p")], "t2", "x", ctx)
    assert bandit.counts("t1", "a", ctx) == approx(0.0, 1.0)
    assert bandit.counts("t2", "x", ctx) == approx(1.0, 1.0)
    assert bandit.counts("t3", "p", ctx) == approx(0.0, 1.0)
    # every level of the context learned it
    for level in (Context(), Context("tv"), ctx):
        assert bandit.counts("t2", "x", level) == approx(1.0, 1.0)
    assert bandit.counts("t2", "x", Context("mobile")) == approx(0.0, 0.0)
    # a play that names no artwork credits the variant shown; nothing played: all failures
    bandit.feedback([("t1", "a")], "t1", None, ctx)
    assert bandit.counts("t1", "a", ctx) == approx(1.0, 2.0)
    bandit.feedback([("t1", "a"), ("t2", "x")], None, None, ctx)
    assert bandit.counts("t1", "a", ctx) == approx(1.0, 3.0)
    assert bandit.counts("t2", "x", ctx) == approx(1.0, 2.0)


def test_a_play_naming_another_variant_credits_it_and_fails_the_shown_one_once() -> None:
    bandit, ctx = ArtworkBandit(), Context("web", 0)
    # listed twice by the caller: still one impression
    bandit.feedback([("t1", "a"), ("t1", "a"), ("t2", "x")], "t1", "b", ctx)
    assert bandit.counts("t1", "a", ctx) == approx(0.0, 1.0)
    assert bandit.counts("t1", "b", ctx) == approx(1.0, 1.0)
    assert bandit.counts("t2", "x", ctx) == approx(0.0, 1.0)


def test_a_play_of_a_title_not_shown_credits_it_only_when_it_is_tracked() -> None:
    bandit, ctx = ArtworkBandit(), Context("tv", 3)
    bandit.feedback([("t1", "a")], "single", "only", ctx)  # a one-variant title found elsewhere
    assert len(bandit) == 1 and bandit.counts("single", "only") == approx(0.0, 0.0)
    bandit.feedback([("t2", "x")], "t1", "b", ctx)  # t1 is tracked: its named variant was seen and played
    assert bandit.counts("t1", "b", ctx) == approx(1.0, 1.0)
    assert bandit.counts("t1", "a", ctx) == approx(0.0, 1.0)


def test_rewards_outside_zero_to_one_are_refused() -> None:
    with pytest.raises(ValueError, match=r"t1/a: expected a reward in 0\.\.1; got 2"):
        ArtworkBandit().learn("t1", "a", Context(), 2)


# -- state ----------------------------------------------------------------------------------


def test_state_round_trips_exactly_through_json() -> None:
    bandit = ArtworkBandit(prior=(0.5, 4.5), strength=20, half_life=50, max_cells=400)
    rng = random.Random(11)
    for n in range(3000):
        ctx = Context(rng.choice(DEVICES), rng.randrange(4), rng.choice((None, 1, 2)))
        item = f"t{rng.randrange(40)}"
        bandit.feedback([(item, rng.choice("abc"))], item if rng.random() < 0.2 else None, None, ctx)
        if n % 7 == 0:
            bandit.learn(item, "d", ctx, 0.5)
    state = bandit.to_state()
    restored = ArtworkBandit.from_state(orjson.loads(orjson.dumps(state)))
    assert restored.to_state() == state
    assert restored.size == bandit.size and len(restored) == len(bandit)
    ctx = Context("tv", 2, 1)
    for n in range(40):
        item = f"t{n}"
        assert restored.choose(item, "abcd", ctx, f"u{n}", n) == bandit.choose(item, "abcd", ctx, f"u{n}", n)
    # and they go on learning alike (eviction order included)
    for n in range(500):
        for b in (bandit, restored):
            b.feedback([(f"n{n}", "a"), (f"t{n % 50}", "b")], f"n{n}", "a", ctx)
    assert restored.to_state() == bandit.to_state()


def test_state_of_another_version_is_refused() -> None:
    state = ArtworkBandit().to_state() | {"version": 0}
    with pytest.raises(ValueError, match="expected version 1; got 0"):
        ArtworkBandit.from_state(state)


def test_state_stays_within_its_bound_however_many_titles() -> None:
    bandit = ArtworkBandit(max_cells=2000)
    rng = random.Random(2)
    for n in range(20_000):
        ctx = Context(rng.choice(DEVICES), rng.randrange(4))
        bandit.feedback([(f"t{n}", "a"), (f"t{n}", "b")], None, None, ctx)
        bandit.learn(f"t{n}", "b", ctx, 0.0)
        assert bandit.size <= 2000
    state = bandit.to_state()
    counters = sum(len(row) // 2 for title in state["titles"].values() for row in title["c"].values())
    assert counters == bandit.size
    assert len(orjson.dumps(state)) < 60_000
    # the titles kept are the most recently updated
    assert "t19999" in state["titles"] and "t0" not in state["titles"]
    assert list(state["titles"])[-1] == "t19999"
    bandit.forget("t19999")
    assert bandit.counts("t19999", "a") == approx(0.0, 0.0) and bandit.size < counters


# -- context -----------------------------------------------------------------------------------


def test_context_keys_run_from_coarse_to_fine_and_bad_parts_are_refused() -> None:
    assert Context().keys == ("",)
    assert Context("tv", 2, 7).keys == ("", "tv", "tv|2", "tv|2|7")
    assert Context(None, 2).keys == ("", "|2")
    assert Context("tv", None, 7).keys == ("", "tv", "tv||7")
    assert len({k for c in (Context("tv", 2), Context(None, 2), Context("tv", None, 2)) for k in c.keys}) == 5
    e = PlaybackEvent("e1", "u1", "t1", "play", T0 + 19 * 3_600_000, device="mobile", artwork_id="b")
    assert Context.of(e, cohort=3) == Context("mobile", 2, 3)
    with pytest.raises(ValueError, match="expected one of tv, mobile, tablet, web, other or None; got 'fridge'"):
        Context("fridge")
    with pytest.raises(ValueError, match=r"daypart: expected an integer 0\.\.3 or None; got 4"):
        Context("tv", 4)
    with pytest.raises(ValueError, match="cohort: expected a non-negative integer or None; got -1"):
        Context("tv", 1, -1)
