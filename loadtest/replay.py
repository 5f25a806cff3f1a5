"""``python -m loadtest.replay``: replay an interaction log through the real pipeline, prequentially.

The log (see :mod:`loadtest.replay_formats` for the formats and how ratings
become playback events) is published to an embedded broker on a free port,
into run-scoped topics, and applied by real worker processes. Each viewer's
interactions go out in order, the next only after the snapshot reflecting the
previous one has come back; many viewers go at once, earliest time stamp first
(:mod:`loadtest.replay_pacing`).

Every positive interaction (a finish on its format's rating scale: 4 or more
of 5, 8 or more of MovieTweetings' 10; for JSONL one with a ``complete``,
``thumbs_up`` or ``add_to_list``) is judged, before its first event is
published, against its viewer's newest snapshot (the one its previous interaction brought, or
a worker's refresh of it once it aged: ``STREAM_REFRESH_AFTER_S``; with ``--judge read``, against
the list a worker's API makes for the viewer at the interaction's time,
``GET /viewers/{id}/recommendations?fresh=true&at=``, as a home page opened then
would show; the reads of the interactions released together are made at once,
before any of them is published; ``reads`` counts the lists read, ``reads_failed``
the reads answered otherwise, judged on the snapshot): HR@10 and NDCG@10 of the
model's list and of three baselines made from the positives before it: the ten
most popular titles so far, the ten trending titles (positives decayed with a
half-life of ``--trending-half-life`` positives, 1,000) and ten random titles,
all leaving out what the viewer already touched. A viewer's first interaction
has no snapshot yet; first interactions are left out for all four lists alike
(``first_interactions_excluded``). Beyond accuracy: catalog
coverage, intra-list genre diversity and novelty of the judged lists. With
ratings, a replica of the workers' state predicts each rating before the
interaction (:mod:`loadtest.replay_replica`): progressive MAE and RMSE, beside
those of the running mean rating.

Report (``--report``, JSON; top level): ``hr_at_10`` and ``ndcg_at_10`` (each
``model``, ``popularity``, ``trending``, ``random``), ``coverage``, ``diversity`` and
``novelty`` (of the model's lists; ``beyond_accuracy`` has all four kinds),
``mae`` and ``rmse`` (null without ratings), ``mean_rating`` (the mean
predictor's MAE and RMSE), ``events`` (published), ``events_applied`` (as the
snapshots report them), ``viewers``, ``interactions``, ``positives``,
``snapshots_refreshed`` (lists re-ranked because they aged, ``STREAM_REFRESH_AFTER_S``;
``replica_refreshed``: the replica's), ``interactions_judged``, ``first_interactions_excluded``, ``waits_timed_out``,
``leaks_refused`` (always 0 unless something is badly wrong),
``replica_overlap`` (mean share of an awaited snapshot's titles that
the replica's list for the same event holds too; trending is cached for half a
second of wall time, the workers learn the deployment's counts from the model
topic a moment later, and cohorts learn once per batch, whose
bounds differ between the workers and the replica, so lists need not be equal),
``complete`` (every interaction replayed within ``--timeout``),
``duration_s``, ``events_per_s``, ``log`` (its counts, format, time
shift and rating scale), ``list_ages`` (``--offline --ages`` only: per kind and age of the judged
snapshot, made after the viewer's own event or refreshed, the interactions judged, its HR@10 and
that of a list made at the interaction's time), ``settings``, ``series`` (the curves the plots draw) and
``replica_models`` (what each partition's replica model learned: compare with the workers' ``models``
changelog; ``effective`` and ``effective_away``, the ranking weights of a list in a visit and of one for
a viewer back after a while).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer

from stream.cli.demo import start_worker, stop_process, wait_ready
from stream.contracts.topics import CATALOG, EVENTS, RECOMMENDATIONS
from stream.processing import one_blas_thread
from stream.runtime.broker import EmbeddedBroker, free_port
from stream.runtime.kafka import create_topics
from stream.runtime.tokens import TokenStore
from stream.settings import Settings

from .extras import MissingExtra, pyplot, require
from .harness import _tail
from .replay_formats import FORMATS, ReplayLog, guess_format, read_log
from .replay_logs import write_movielens, write_population_log, write_sessions
from .replay_metrics import KINDS, TRENDING_HALF_LIFE, ListAges, Popularity, Tally, Trending, random_list
from .replay_pacing import Pacer, Release
from .replay_replica import RatingScore, Replica

__all__ = ["ReplayConfig", "main", "replay", "summary", "write_report"]

Progress = Callable[[str], None]
#: Most points a curve keeps in the report.
CURVE_POINTS = 300


@dataclass
class ReplayConfig:
    parallel: int = 64
    workers: int = 1
    partitions: int = 4
    timeout_s: float = 600.0
    wait_s: float = 30.0
    seed: int = 7
    bootstrap: str | None = None
    #: Seconds the workers keep running after the replay, e.g. so that they checkpoint their models.
    settle_s: float = 0.0
    #: Positives after which a positive counts half for the trending baseline.
    trending_half_life: float = TRENDING_HALF_LIFE
    #: What an interaction is judged on: ``snapshot``, the list made after the viewer's previous
    #: interaction; ``read``, a list made at the interaction's time (through workers: read from the
    #: HTTP API with ``?fresh=true``, as a home page asking then would get it).
    judge: str = "snapshot"
    #: Offline, judging snapshots: also rank a list at each judged interaction's time, and report both lists'
    #: HR@10 by the age of the judged one (``list_ages``: where a snapshot loses to a list made then).
    ages: bool = False


def replay(log: ReplayLog, cfg: ReplayConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Start a broker (unless ``cfg.bootstrap``) and workers, replay ``log``, stop them; returns the report."""
    say = progress or (lambda _: None)
    tmp = Path(tempfile.mkdtemp(prefix="stream-replay-"))
    broker: EmbeddedBroker | None = None
    procs: list[subprocess.Popen[bytes]] = []
    started = time.monotonic()
    try:
        if cfg.bootstrap is None:
            broker = EmbeddedBroker(log_path=tmp / "broker.log").start()
        token = TokenStore(tmp / "tokens.json").add("replay", ["read"])
        settings = Settings(
            bootstrap=cfg.bootstrap or (broker.bootstrap if broker else ""),
            topic_prefix=f"rp{uuid.uuid4().hex[:8]}.",
            partitions=cfg.partitions,
            web_port=free_port(),
            data_dir=tmp / "data",
            log_level="warn",
            api_tokens_file=tmp / "tokens.json",
        )
        asyncio.run(_prepare(settings, log.catalog))
        configs = []
        for i in range(cfg.workers):
            s = replace(settings, web_port=free_port())
            procs.append(start_worker(s, tmp / f"worker{i}.log"))
            configs.append(s)
        for s, proc in zip(configs, procs, strict=True):
            wait_ready(s, proc, timeout_s=min(120.0, cfg.timeout_s))
        say(f"{len(procs)} worker(s) ready after {time.monotonic() - started:.1f} s; logs in {tmp}")
        remaining = max(1.0, cfg.timeout_s - (time.monotonic() - started))
        first = configs[0]
        reader = Reader(f"http://{first.web_host}:{first.web_port}", token) if cfg.judge == "read" else None
        report = asyncio.run(_replay(settings, log, cfg, remaining, say, reader))
        time.sleep(max(0.0, min(cfg.settle_s, cfg.timeout_s)))
    finally:
        for proc in procs:
            stop_process(proc)
        if broker is not None:
            broker.stop()
    report["settings"] = {
        "parallel": cfg.parallel,
        "workers": cfg.workers,
        "partitions": cfg.partitions,
        "timeout_s": cfg.timeout_s,
        "wait_s": cfg.wait_s,
        "seed": cfg.seed,
        "trending_half_life": cfg.trending_half_life,
        "judge": cfg.judge,
        "topic_prefix": settings.topic_prefix,
        "top_k": settings.top_k,
        "diversity": settings.diversity,
    }
    report["wall_s"] = time.monotonic() - started
    return report


def replay_offline(log: ReplayLog, cfg: ReplayConfig, progress: Progress | None = None) -> dict[str, Any]:
    """The same protocol without Kafka: each interaction is judged against the replica's list.

    The replica (:mod:`loadtest.replay_replica`) runs the workers' own batch step in process,
    one interaction at a time in time-stamp order, with ``cfg.partitions`` partition models;
    the list a viewer is judged on is the one the replica made after its previous interaction.
    It differs from a replay through workers in what timing changes (batches, half-second
    caches; see ``replica_overlap``), and takes seconds where the workers take minutes: a tool
    for tuning, whose figures a replay through the workers confirms.
    """
    say = progress or (lambda _: None)
    settings = Settings(partitions=cfg.partitions)
    state = _ReplayState(settings, log, cfg)
    last: dict[str, list[str]] = {}
    made: dict[str, tuple[int, bool]] = {}  # per viewer: when its list was ranked (event time), and if by a refresh
    ages = ListAges() if cfg.ages and cfg.judge == "snapshot" else None
    sent: dict[str, int] = {}
    started = shown = time.monotonic()
    for it in log.interactions:
        refreshed = state.replica.refresh()  # the lists that aged by now, re-ranked as a worker would
        last.update(refreshed)
        made.update(dict.fromkeys(refreshed, (state.replica.clock_ms, True)))
        items = last.get(it.user_id)
        if items is not None and cfg.judge == "read":
            items = state.replica.read_list(it.user_id, it.ts)  # as a home page asking now would get
        elif items is not None and ages is not None and it.positive:
            ranked, by_refresh = made[it.user_id]
            fresh = state.replica.read_list(it.user_id, it.ts)
            ages.add(it.ts - ranked, by_refresh, items, fresh, it.item_id)
        state.before_publishing(Release(it, items, sent.get(it.user_id, 0)))
        sent[it.user_id] = sent.get(it.user_id, 0) + len(it.events)
        state.counts["published"] += len(it.events)
        state.pacer.released += 1
        listed = state.replica_lists[it.user_id][1]
        if listed:
            last[it.user_id] = listed
            made[it.user_id] = (it.ts, False)
        if time.monotonic() - shown > 5:
            shown = time.monotonic()
            say(state.progress())
    report = state.report(log, time.monotonic() - started)
    report["complete"] = True
    report["events_applied"] = report["events"]  # what the replica applied, as the workers would
    report["snapshots_refreshed"] = state.replica.refreshed
    if ages is not None:
        report["list_ages"] = ages.summary()
    report["settings"] = {
        "offline": True,
        "partitions": cfg.partitions,
        "seed": cfg.seed,
        "trending_half_life": cfg.trending_half_life,
        "judge": cfg.judge,
        "top_k": settings.top_k,
        "diversity": settings.diversity,
    }
    return report


async def _prepare(settings: Settings, catalog: Sequence[dict[str, Any]]) -> None:
    await create_topics(settings)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, linger_ms=20)
    await producer.start()
    try:
        for entry in catalog:
            await producer.send(settings.topic(CATALOG), key=str(entry["item_id"]).encode(), value=orjson.dumps(entry))
        await producer.flush()
    finally:
        await producer.stop()


class Reader:
    """Reads a viewer's list made at a moment from a worker's API (``?fresh=true&at=``), as a home page
    asking then would; any worker answers for any viewer (it asks the owner)."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {token}"}
        self.session: aiohttp.ClientSession | None = None
        self.made = 0
        self.failed = 0

    async def read(self, user_id: str, at_ms: int) -> list[str] | None:
        """The list's title ids, best first; None when the worker could not answer (counted)."""
        if self.session is None:
            self.session = aiohttp.ClientSession(headers=self.headers)
        url = f"{self.base_url}/viewers/{quote(user_id, safe='')}/recommendations"
        try:
            async with self.session.get(url, params={"fresh": "true", "at": str(at_ms)}) as response:
                if response.status != 200:
                    self.failed += 1
                    return None
                doc = orjson.loads(await response.read())
        except (TimeoutError, aiohttp.ClientError, ValueError):
            self.failed += 1
            return None
        self.made += 1
        return [str(i["item_id"]) for i in doc["items"]]

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


async def _read_lists(reader: Reader, releases: Sequence[Release]) -> None:
    """Judge each positive of ``releases`` on its viewer's list read at its time (the reads at once,
    before any of them is published: a read sees no interaction released after it)."""
    judged = [r for r in releases if r.items is not None and r.interaction.positive]
    lists = await asyncio.gather(*(reader.read(r.interaction.user_id, r.interaction.ts) for r in judged))
    for release, read in zip(judged, lists, strict=True):
        if read is not None:  # None: judged on the snapshot
            release.items = read


async def _replay(
    settings: Settings, log: ReplayLog, cfg: ReplayConfig, timeout_s: float, say: Progress, reader: Reader | None
) -> dict[str, Any]:
    state = _ReplayState(settings, log, cfg)
    pacer = state.pacer
    topic = settings.topic(EVENTS)

    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, linger_ms=2)
    await producer.start()
    consumer = await _tail(settings.bootstrap, settings.topic(RECOMMENDATIONS), from_start=True)
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    shown = t0
    try:
        while not pacer.done and time.monotonic() < deadline:
            releases = pacer.release(time.monotonic())
            if reader is not None:
                await _read_lists(reader, releases)
            for release in releases:
                it = release.interaction
                state.before_publishing(release)
                key = it.user_id.encode()
                for doc in it.events:
                    await producer.send(topic, key=key, value=orjson.dumps(doc))
                state.counts["published"] += len(it.events)
            batches = await consumer.getmany(timeout_ms=20, max_records=5000)
            now = time.monotonic()
            for records in batches.values():
                for record in records:
                    state.on_snapshot(orjson.loads(record.value), now)
            if now - shown > 5:
                shown = now
                say(state.progress())
        await producer.flush()
    finally:
        await producer.stop()
        await consumer.stop()
        if reader is not None:
            await reader.close()
    report = state.report(log, time.monotonic() - t0)
    if reader is not None:
        report["reads"], report["reads_failed"] = reader.made, reader.failed
    return report


class _ReplayState:
    """What a replay keeps as it goes: the pacer, the lists judged, the replica, the snapshots seen."""

    def __init__(self, settings: Settings, log: ReplayLog, cfg: ReplayConfig) -> None:
        self.catalog_ids = [str(e["item_id"]) for e in log.catalog]
        self.genres = {str(e["item_id"]): frozenset(e["genres"]) for e in log.catalog}
        self.size = len(self.catalog_ids)
        self.pacer = Pacer(log.interactions, cfg.parallel, cfg.wait_s)
        self.replica = Replica(log.catalog, settings)
        self.popularity = Popularity(self.catalog_ids)
        self.trending = Trending(self.catalog_ids, cfg.trending_half_life)
        self.rng = random.Random(cfg.seed)
        self.tallies = {kind: Tally() for kind in KINDS}
        rated = [i.rating for i in log.interactions if i.rating is not None]
        self.ratings = RatingScore(min(rated), max(rated)) if rated else None
        self.touched: dict[str, set[str]] = {}
        #: per viewer: the last event published, and the replica's list after it
        self.replica_lists: dict[str, tuple[str, list[str]]] = {}
        self.applied: dict[str, int] = {}
        self.counts = {"published": 0, "positives": 0, "first": 0, "compared": 0, "snapshots": 0, "refreshed": 0}
        #: summed share of each awaited snapshot's titles that the replica's list holds too
        self.overlap = 0.0

    def before_publishing(self, release: Release) -> None:
        """Predict the interaction's rating and judge the lists, then let the replica apply it."""
        it = release.interaction
        self.replica.refresh()  # as the workers re-rank aged lists between batches
        if self.ratings is not None and it.rating is not None:
            score = self.replica.score(it.user_id, it.item_id, it.ts)
            if score is not None:
                self.ratings.update(score, it.rating)
        seen = self.touched.setdefault(it.user_id, set())
        if it.positive:
            self._judge(it.item_id, release.items, seen)
        # the baselines learn the interaction only once it is judged: they never see what they are judged on
        self.popularity.record(it.item_id, it.positive)
        self.trending.record(it.item_id, it.positive)
        seen.add(it.item_id)
        self.replica_lists[it.user_id] = (it.events[-1]["event_id"], self.replica.apply(it.user_id, it.events))

    def _judge(self, item_id: str, items: list[str] | None, seen: set[str]) -> None:
        """A positive interaction: the model's list (None for a first interaction) and the baselines."""
        self.counts["positives"] += 1
        if items is None:
            self.counts["first"] += 1
            return
        lists = {
            "model": items,
            "popularity": self.popularity.top(seen),
            "trending": self.trending.top(seen),
            "random": random_list(self.rng, self.catalog_ids, seen),
        }
        for kind, listed in lists.items():
            self.tallies[kind].add(
                listed, item_id, self.genres, self.popularity.interactions, self.popularity.total, self.size
            )

    def on_snapshot(self, snap: dict[str, Any], now: float) -> None:
        self.counts["snapshots"] += 1
        self.counts["refreshed"] += "refreshed_at" in snap
        user = snap["user_id"]
        self.applied[user] = max(self.applied.get(user, 0), snap["events_applied"])
        if self.pacer.on_snapshot(snap, now):
            expected = self.replica_lists.get(user)
            if expected is not None and expected[0] == snap["trigger"]["event_id"]:
                self.counts["compared"] += 1
                worker_list = {i["item_id"] for i in snap["items"]}
                self.overlap += len(worker_list & set(expected[1])) / max(1, len(worker_list))

    def progress(self) -> str:
        model = self.tallies["model"]
        hr = model.hits / max(1, model.judged)
        return f"{self.pacer.released}/{self.pacer.total} interactions, {model.judged} judged, HR@10 {hr:.3f}"

    def report(self, log: ReplayLog, duration: float) -> dict[str, Any]:
        tallies, counts, pacer, size = self.tallies, self.counts, self.pacer, self.size
        model = tallies["model"].summary(size)
        beyond = {kind: tallies[kind].summary(size) for kind in KINDS}
        rating_summary = self.ratings.summary() if self.ratings is not None else None
        return {
            "schema_version": 1,
            "hr_at_10": {kind: beyond[kind]["hr_at_10"] for kind in KINDS},
            "ndcg_at_10": {kind: beyond[kind]["ndcg_at_10"] for kind in KINDS},
            "coverage": model["coverage"],
            "diversity": model["diversity"],
            "novelty": model["novelty"],
            "beyond_accuracy": beyond,
            "mae": rating_summary["mae"] if rating_summary else None,
            "rmse": rating_summary["rmse"] if rating_summary else None,
            "mean_rating": (
                {"mae": rating_summary["mean_rating_mae"], "rmse": rating_summary["mean_rating_rmse"]}
                if rating_summary
                else None
            ),
            "rating": rating_summary,
            "events": counts["published"],
            "events_applied": sum(self.applied.values()),
            "snapshots": counts["snapshots"],
            "snapshots_refreshed": counts["refreshed"],
            "replica_refreshed": self.replica.refreshed,
            "viewers": log.viewers,
            "interactions": pacer.released,
            "interactions_in_log": len(log.interactions),
            "positives": counts["positives"],
            "interactions_judged": tallies["model"].judged,
            "first_interactions_excluded": counts["first"],
            "waits_timed_out": pacer.timeouts,
            "leaks_refused": pacer.leaks_refused,
            "replica_overlap": self.overlap / counts["compared"] if counts["compared"] else None,
            "complete": pacer.done,
            "duration_s": duration,
            "events_per_s": counts["published"] / duration if duration else None,
            "log": {
                "titles": size,
                "interactions": len(log.interactions),
                "events": log.events,
                "has_ratings": log.has_ratings,
                "skipped_lines": len(log.skipped),
                "shift_ms": log.shift_ms,
                "rating_scale": log.scale.name if log.scale is not None and log.has_ratings else None,
            },
            "series": _series(tallies, self.ratings),
            "replica_models": {
                str(p): {
                    "learned": m.learned,
                    "weights": dict(m.shared.outcome.linear.weights),  # the deployment's regression
                    "intercept": m.shared.outcome.linear.intercept,
                    "effective": m.weights,
                    "effective_away": m.weights_for(away=True),  # for lists of viewers back after a while
                }
                for p, m in enumerate(self.replica.models)
            },
        }


def _series(tallies: dict[str, Tally], ratings: RatingScore | None) -> dict[str, Any]:
    """Cumulative and rolling HR@10 and NDCG@10 per judged interaction, thinned to ``CURVE_POINTS``."""
    n = tallies["model"].judged
    window = max(20, n // 10)
    step = max(1, n // CURVE_POINTS)
    points = sorted({*range(step, n + 1, step), n} - {0})
    out: dict[str, Any] = {"judged": points, "rolling_window": window}
    for kind in KINDS:
        trace = tallies[kind].trace
        for m, name in ((0, "hr"), (1, "ndcg")):
            total, prefix = 0.0, [0.0]
            for value in trace:
                total += value[m]
                prefix.append(total)
            cum = [round(prefix[p] / p, 4) for p in points]
            rolling = [round((prefix[p] - prefix[max(0, p - window)]) / min(p, window), 4) for p in points]
            out[f"{name}_{kind}"] = cum
            out[f"{name}_{kind}_rolling"] = rolling
    if ratings is not None and ratings.trace:
        r = len(ratings.trace)
        rstep = max(1, r // CURVE_POINTS)
        rpoints = sorted({*range(rstep, r + 1, rstep), r})
        model_sum, mean_sum, mae_model, mae_mean = 0.0, 0.0, [], []
        marks = set(rpoints)
        for i, (a, b) in enumerate(ratings.trace, 1):
            model_sum += a
            mean_sum += b
            if i in marks:
                mae_model.append(round(model_sum / i, 4))
                mae_mean.append(round(mean_sum / i, 4))
        out["rated"] = rpoints
        out["mae_model"] = mae_model
        out["mae_mean"] = mae_mean
    return out


# -- output ------------------------------------------------------------------------------


def _f(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def summary(report: dict[str, Any]) -> str:
    hr, ndcg = report["hr_at_10"], report["ndcg_at_10"]
    lines = [
        "stream replay",
        "  HR@10      " + "  ".join(f"{kind} {_f(hr.get(kind))}" for kind in KINDS),
        "  NDCG@10    " + "  ".join(f"{kind} {_f(ndcg.get(kind))}" for kind in KINDS),
        f"  lists      coverage {_f(report['coverage'])}  diversity {_f(report['diversity'])}"
        f"  novelty {_f(report['novelty'], 2)} bits",
    ]
    if report["mae"] is not None:
        mean = report["mean_rating"]
        lines.append(
            f"  ratings    MAE {_f(report['mae'])}  RMSE {_f(report['rmse'])}"
            f"  (running mean: MAE {_f(mean['mae'])}  RMSE {_f(mean['rmse'])})"
        )
    lines += [
        f"  judged     {report['interactions_judged']} of {report['positives']} positive interactions"
        f" ({report['first_interactions_excluded']} first interactions left out)",
        f"  replayed   {report['interactions']}/{report['interactions_in_log']} interactions of"
        f" {report['viewers']} viewers; {report['events']} events published, {report['events_applied']} applied"
        f" in {report['duration_s']:.1f} s ({report['events_per_s'] or 0:.0f} ev/s)",
        f"  checks     waits timed out {report['waits_timed_out']}, leaks refused {report['leaks_refused']},"
        f" replica overlap {_f(report['replica_overlap'])}" + ("" if report["complete"] else "  INCOMPLETE"),
    ]
    for name, row in report.get("list_ages", {}).items():
        lines.append(
            f"  list age   {name}: {row['judged']} judged, HR@10 {_f(row['hr_at_10'])}"
            f" (a list made then: {_f(row['made_then_hr_at_10'])})"
        )
    return "\n".join(lines)


def write_report(report: dict[str, Any], path: Path, plots_dir: Path | None = None) -> list[Path]:
    """Write the JSON report and its PNG plots (next to it unless ``plots_dir``); returns the paths."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    out = plots_dir or path.parent
    out.mkdir(parents=True, exist_ok=True)
    return [path, *plots(report, out, path.stem)]


def plots(report: dict[str, Any], out: Path, stem: str) -> list[Path]:
    plt = pyplot()
    series = report["series"]
    written = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colours = {"model": "C0", "popularity": "C1", "random": "C2", "trending": "C3"}
    for ax, name, label in ((axes[0], "hr", "HR@10"), (axes[1], "ndcg", "NDCG@10")):
        for kind in KINDS:
            ax.plot(series["judged"], series[f"{name}_{kind}"], color=colours[kind], label=f"{kind} (cumulative)")
            ax.plot(
                series["judged"],
                series[f"{name}_{kind}_rolling"],
                color=colours[kind],
                alpha=0.35,
                linestyle="--",
                label=f"{kind} (last {series['rolling_window']})",
            )
        ax.set(xlabel="interactions judged", ylabel=label, title=f"{label}, prequential")
        ax.set_ylim(bottom=0)
    axes[0].legend(fontsize=7)
    written.append(_save(fig, out / f"{stem}-quality.png"))
    if "rated" in series:
        fig, ax = plt.subplots(figsize=(8, 4))
        ax.plot(series["rated"], series["mae_model"], label="calibrated model score")
        ax.plot(series["rated"], series["mae_mean"], label="running mean rating")
        ax.set(xlabel="ratings predicted", ylabel="MAE (cumulative)", title="Rating prediction, predict then learn")
        ax.legend()
        written.append(_save(fig, out / f"{stem}-ratings.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadtest.replay", description=__doc__.split("\n\n")[0])
    p.add_argument("log", nargs="?", type=Path, help="the interaction log to replay")
    p.add_argument("--format", choices=FORMATS, help="default: guessed from the file name")
    p.add_argument(
        "--items",
        type=Path,
        help="movielens: the u.item file (genres and titles); movietweetings: movies.dat (default: beside ratings.dat)",
    )
    p.add_argument("--columns", help="csv: e.g. user=uid,item=movie,rating=stars,ts=time[,genres=col][,title=col]")
    p.add_argument("--ts-unit", choices=("s", "ms"), default="s", help="csv: unit of the ts column (default s)")
    p.add_argument("--compress", type=float, default=1.0, help="divide the gaps between time stamps by this")
    p.add_argument("--limit", type=int, help="replay only the first N interactions (in time order)")
    p.add_argument("--parallel", type=int, default=64, help="most viewers waiting for a snapshot at once")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds for the whole run, start-up included")
    p.add_argument("--wait", type=float, default=30.0, help="most seconds a viewer waits for its snapshot")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--trending-half-life",
        type=float,
        default=TRENDING_HALF_LIFE,
        help=f"positives after which a positive counts half for the trending baseline (default {TRENDING_HALF_LIFE:g})",
    )
    p.add_argument("--bootstrap", help="an existing cluster (default: an embedded broker started for the run)")
    p.add_argument(
        "--offline",
        action="store_true",
        help="judge the in-process replica's lists instead of the workers' (no broker; seconds, for tuning)",
    )
    p.add_argument(
        "--judge",
        choices=("snapshot", "read"),
        default="snapshot",
        help="judge each interaction on the snapshot made after the viewer's previous one (default), or on a"
        " list made at its time, as GET .../recommendations?fresh=true answers (read)",
    )
    p.add_argument(
        "--ages",
        action="store_true",
        help="--offline, judging snapshots: also rank a list at each judged interaction's time and report both"
        " lists' HR@10 by the age of the snapshot (slower: a second ranking per judged interaction)",
    )
    p.add_argument("--report", type=Path, help="JSON report (default loadtest/results/replay-<time>.json)")
    p.add_argument("--plots", type=Path, help="directory for the PNG plots (default: next to the report)")
    p.add_argument("--write-population-log", type=Path, metavar="PATH", help="write a harness-population JSONL log")
    p.add_argument("--write-movielens", type=Path, metavar="DIR", help="write a synthetic u.data and u.item")
    p.add_argument(
        "--write-sessions",
        type=Path,
        metavar="DIR",
        help="from the MovieTweetings log given: its most rated titles, viewers who rated enough of them, each"
        " viewer's ratings one session of its own (no trend across viewers); into DIR/ratings.dat, movies.dat",
    )
    p.add_argument("--top-titles", type=int, default=0, help="--write-sessions: the most rated titles kept (0: all)")
    p.add_argument("--min-ratings", type=int, default=15, help="--write-sessions: the fewest ratings a viewer kept has")
    p.add_argument("--keep-times", action="store_true", help="--write-sessions: keep the log's time stamps")
    p.add_argument("--viewers", type=int, default=300, help="for the generators")
    p.add_argument("--interactions", type=int, default=20, help="for the generators: per viewer")
    p.add_argument("--titles", type=int, default=1000, help="for the generators")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    if _generate(p, args):
        return 0
    if not args.trending_half_life > 0:
        p.error("--trending-half-life: expected a positive number")
    if args.ages and not (args.offline and args.judge == "snapshot"):
        p.error("--ages: only offline, judging snapshots")
    try:
        require("matplotlib")  # for the plots: now, not after the replay
    except MissingExtra as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    try:
        log = read_log(args.log, args.format, args.items, args.columns, args.ts_unit, args.compress)
    except (OSError, ValueError) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    if args.limit is not None:
        log.interactions = log.interactions[: args.limit]
    if not log.interactions:
        print("replay: the log holds no interactions", file=sys.stderr)
        return 2
    for number, reason in log.skipped[:5]:
        print(f"replay: line {number} left out: {reason}", file=sys.stderr)
    if len(log.skipped) > 5:
        print(f"replay: ... {len(log.skipped)} lines left out in all", file=sys.stderr)
    # SIGTERM unwinds like Ctrl-C, so the broker and workers this run started are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    one_blas_thread()  # as the workers run (the replica runs their step in this process)
    cfg = ReplayConfig(
        parallel=args.parallel,
        workers=args.workers,
        partitions=args.partitions,
        timeout_s=args.timeout,
        wait_s=args.wait,
        seed=args.seed,
        bootstrap=args.bootstrap,
        trending_half_life=args.trending_half_life,
        judge=args.judge,
        ages=args.ages,
    )
    print(
        f"replaying {len(log.interactions)} interactions of {log.viewers} viewers ({log.events} events,"
        f" {len(log.catalog)} titles)",
        file=sys.stderr,
    )
    run = replay_offline if args.offline else replay
    report = run(log, cfg, lambda line: print(line, file=sys.stderr, flush=True))
    report["log"]["path"] = str(args.log)
    report["log"]["format"] = args.format or guess_format(args.log)
    path = args.report or Path("loadtest/results") / f"replay-{time.strftime('%Y%m%d-%H%M%S')}.json"
    written = write_report(report, path, args.plots)
    print(summary(report))
    print("wrote " + ", ".join(str(w) for w in written))
    return 0 if report["complete"] else 1


def _generate(p: argparse.ArgumentParser, args: argparse.Namespace) -> bool:
    """``--write-population-log``, ``--write-movielens`` and ``--write-sessions``: write the logs asked for.
    False if none is asked for (then a log to replay is required)."""
    if not (args.write_population_log or args.write_movielens or args.write_sessions):
        if args.log is None:
            p.error("a log to replay is required (or --write-population-log / --write-movielens / --write-sessions)")
        return False
    if args.write_sessions and args.log is None:
        p.error("--write-sessions: a MovieTweetings ratings.dat to derive from is required")
    if args.write_population_log:
        counts = write_population_log(
            args.write_population_log, args.viewers, args.interactions, args.titles, args.seed
        )
        print(f"wrote {args.write_population_log}: {counts}")
    if args.write_movielens:
        counts = write_movielens(args.write_movielens, args.viewers, args.titles, args.interactions, args.seed)
        print(f"wrote {args.write_movielens}/u.data and u.item: {counts}")
    if args.write_sessions:
        counts = write_sessions(
            args.log, args.write_sessions, args.top_titles, args.min_ratings, args.seed, args.keep_times
        )
        print(f"wrote {args.write_sessions}/ratings.dat and movies.dat: {counts}")
    return True


if __name__ == "__main__":
    sys.exit(main())
