"""The load-test harness: a short real run against the embedded broker, and its pure parts."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest

from loadtest.__main__ import main as loadtest_main
from loadtest.harness import _learning_summary, drain_events, ramp_verdict
from loadtest.measure import percentiles, trend
from loadtest.population import Population
from stream.contracts.validation import decode_catalog, decode_event


def test_the_population_is_deterministic_from_its_seed_and_valid() -> None:
    a, b = Population(40, 300, seed=3), Population(40, 300, seed=3)
    assert a.catalog == b.catalog
    assert [v.threshold for v in a.viewers] == [v.threshold for v in b.viewers]
    for entry in a.catalog:
        assert decode_catalog(entry["item_id"].encode(), orjson.dumps(entry)) is not None
    for key, value in drain_events(a, 500, seed=1):
        decode_event(key, value)  # raises on anything the schema rejects


def test_viewers_react_by_their_hidden_taste() -> None:
    pop = Population(30, 400, seed=5)
    rng = random.Random(1)
    for viewer in pop.viewers[:10]:
        liked = next(t for t in range(400) if pop.would_finish(viewer, t))
        kinds = [e["type"] for e in pop.session(viewer, liked, rng, 1_767_225_600_000)]
        assert kinds[0] == "play" and kinds[-1] == "complete"
        disliked = min(range(400), key=lambda t: pop.appeal(viewer, t))
        kinds = [e["type"] for e in pop.session(viewer, disliked, rng, 1_767_225_600_000)]
        assert kinds == ["play", "skip"]


def test_percentiles_trend_and_learning_summary() -> None:
    assert percentiles([])["p50"] is None
    p = percentiles(list(range(1, 101)))
    assert p["p50"] == pytest.approx(50.5) and p["max"] == 100
    assert trend([1.0, 1.0]) is None
    measures = [{"events": e, "model": 0.6, "popularity": 0.2, "random": 0.15} for e in (3, 12, 29, 31)]
    summary = _learning_summary(measures)
    assert summary["after"] == {"model": 0.6, "popularity": 0.2, "random": 0.15}
    assert [c["events"] for c in summary["curve"]] == [5, 15, 30, 35]


def test_the_ramp_stops_at_the_first_step_whose_lag_grew() -> None:
    lags = [10, 5, 8, 6, 9, 7, 50, 300, 200, 100, 20, 0]  # the 4th step's lag grows, then drains
    result = {
        "timeline": [{"t": t, "lag": lag} for t, lag in enumerate(lags, start=1)],
        "step_s": 2.0,
        "steps": [100, 200, 300, 400, 500, 600],
        "steps_offered": 4,
    }
    verdict = ramp_verdict(result)
    assert verdict["sustainable_eps"] == 300
    assert [s["bounded"] for s in verdict["steps"]] == [True, True, True, False]


@pytest.mark.broker
def test_a_short_run_accounts_for_every_event_and_writes_its_report(tmp_path: Path) -> None:
    code = loadtest_main(
        [
            "--viewers", "300", "--titles", "300", "--titles-large", "1200", "--events", "1500",
            "--duration", "6", "--rate", "100", "--learn-viewers", "60", "--learn-events", "8",
            "--learn-seconds", "20", "--partitions", "4", "--ramp-step", "2", "--out", str(tmp_path),
        ]
    )  # fmt: skip
    assert code == 0
    report = orjson.loads((tmp_path / "latest.json").read_bytes())
    for field in ("sustainable_eps", "baselines", "latency_ms", "events_sent", "events_applied",
                  "bytes_per_viewer", "catalog_scaling", "learning"):  # fmt: skip
        assert field in report, field
    assert report["events_applied"] == report["events_sent"], "every sent event must be accounted for"
    assert report["sustainable_eps"] > 0
    steps = report["ramp"]["steps"]
    assert steps and steps[0]["rate"] < report["sustainable_eps"], "the ramp climbs towards the drained rate"
    assert all(s["bounded"] for s in steps[:-1]), "the ramp stops at the first step whose lag grew"
    assert report["baselines"]["faust_eps"] > 0 and report["baselines"]["aiokafka_eps"] > 0
    lat = report["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"] and lat["rate"] == 100
    assert lat["sent_eps"] > 90, "the open loop offers the rate asked for"
    assert set(report["catalog_scaling"]) >= {"300", "1200"}
    assert report["bytes_per_viewer"]["serialised_max"] <= 2048
    assert {"model", "popularity", "random", "curve"} <= set(report["learning"])
    assert len(list(tmp_path.glob("report-*.png"))) == 4


@pytest.mark.broker
def test_the_http_phase_reads_viewers_lists_beside_the_stream(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = loadtest_main(
        [
            "--viewers", "200", "--titles", "200", "--events", "400", "--duration", "5", "--rate", "80",
            "--learn-viewers", "10", "--learn-events", "4", "--learn-seconds", "5", "--partitions", "2",
            "--no-baselines", "--no-scaling", "--no-ramp", "--http-concurrency", "2", "--http-requests", "3000",
            "--out", str(tmp_path),
        ]
    )  # fmt: skip
    assert code == 0
    http = orjson.loads((tmp_path / "latest.json").read_bytes())["http"]
    assert http["error"] is None
    assert 0 < http["requests"] <= 3000 and http["rps"] > 0 and http["window_s"] > 0
    assert http["statuses"] == {"200": http["requests"]}, "every viewer read has a snapshot, and the token is accepted"
    assert http["viewers"] > 0 and http["concurrency"] == 2
    assert 0 < http["latency_ms"]["p50"] <= http["latency_ms"]["p99"] and http["latency_ms"]["n"] == http["requests"]
    assert 0 < http["stream_latency_ms"]["p50"] <= http["stream_latency_ms"]["p99"]
    assert 0 < http["stream_latency_ms_without"]["p50"] <= http["stream_latency_ms_without"]["p99"]
    assert isinstance(http["stream_p99_rise_pct"], float)
    assert http["stream"]["applied"] == http["stream"]["sent"] > 0
    out = capsys.readouterr().out
    assert "http reads" in out and "req/s" in out and "stream under reads" in out
