"""The load-test harness: drive the real pipeline, measure it, compare it.

Phases, each on fresh run-scoped topics (the embedded broker slows down as a
partition accumulates batches, so no phase inherits another's backlog):

1. ``drain``: publish N events first, then start the worker(s) and time how
   fast they are all applied: the sustainable rate. The same events are
   drained by a bare Faust agent and a raw aiokafka loop (baselines), and by
   the pipeline again over the large catalog (catalog scaling).
2. ``ramp``: open loop at rising rates until the lag grows: the open-loop
   sustainable rate (lower than the drained one: an open loop's fetches are small).
3. ``latency``: open loop at half the ramp's sustainable rate (or ``--rate``):
   every snapshot's end-to-end latency (received minus its trigger's
   publication), throughput, lag, worker CPU and memory, and a tail-fetch probe
   of the broker per second.
4. ``http``: the latency phase again (same rate, same events), while after its
   warm-up a few keep-alive clients (``--http-concurrency``, in a process of their
   own, :mod:`loadtest.http_load`) read ``GET /viewers/{id}/recommendations`` of
   viewers with snapshots, on loopback, until the phase ends or
   ``--http-requests`` were made: the reads' rate, latency and statuses, and the
   stream's latency while they ran beside the latency phase's (``--no-http``: skip).
5. ``learning``: closed loop: viewers pick from the lists they receive and
   react by their hidden tastes; after each session the list is scored against
   what the viewer would finish, beside a popularity list and a random list.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream.cli.demo import start_worker, stop_process, wait_ready
from stream.contracts.topics import CATALOG, EVENTS, RECOMMENDATIONS
from stream.contracts.validation import decode_catalog, decode_event
from stream.learning.profile import Profile
from stream.learning.signals import interpret
from stream.runtime.broker import EmbeddedBroker, free_port
from stream.runtime.kafka import create_topics, partitions_of
from stream.runtime.tokens import TokenStore
from stream.settings import Settings

from .http_load import REQUEST_TIMEOUT_S, TOKEN_ENV
from .measure import ProcSampler, Span, percentiles, trend
from .population import Population, SimViewer

__all__ = ["Config", "run"]

Progress = Callable[[str, float], None]
#: Fetch wait of the harness's own consumers of the pipeline's output.
TAIL_WAIT_MS = 20
#: What the ``http`` phase is held to (printed beside its figures; nothing asserts them).
HTTP_GOALS = {"http_p99_ms": 20.0, "stream_p99_rise_pct": 10.0}


@dataclass
class Config:
    viewers: int = 10_000
    titles: int = 5_000
    titles_large: int = 100_000
    seed: int = 7
    drain_events: int = 30_000
    baseline_events: int = 20_000
    rate: float | None = None
    duration: float = 30.0
    workers: int = 1
    partitions: int = 8
    learn_viewers: int = 1_000
    learn_events: int = 32
    learn_seconds: float = 90.0
    bootstrap: str | None = None
    baselines: bool = True
    scaling: bool = True
    ramp: bool = True
    ramp_step_s: float = 6.0
    http: bool = True
    http_concurrency: int = 4
    http_max_requests: int = 20_000
    #: Requests per second of the http phase in all (None: as fast as the clients get answers).
    http_rate: float | None = None
    out_dir: Path = Path("loadtest/results")


class Run:
    def __init__(self, cfg: Config, progress: Progress) -> None:
        self.cfg = cfg
        self.progress = progress
        self.run_id = uuid.uuid4().hex[:6]
        self.tmp = Path(tempfile.mkdtemp(prefix="stream-loadtest-"))
        self.broker: EmbeddedBroker | None = None
        self.bootstrap = cfg.bootstrap or ""
        self.health_urls: dict[int, str] = {}
        self.web_urls: dict[int, str] = {}
        # Every worker of the run reads this file; the http phase's clients present the token.
        self.tokens_file = self.tmp / "tokens.json"
        self.token = TokenStore(self.tokens_file).add("loadtest", ["read"])

    def __enter__(self) -> Run:
        if not self.cfg.bootstrap:
            self.broker = EmbeddedBroker(log_path=self.tmp / "broker.log").start()
            self.bootstrap = self.broker.bootstrap
        return self

    def __exit__(self, *exc: object) -> None:
        if self.broker is not None:
            self.broker.stop()

    def settings(self, tag: str) -> Settings:
        return Settings(
            bootstrap=self.bootstrap,
            topic_prefix=f"lt{self.run_id}-{tag}.",
            partitions=self.cfg.partitions,
            web_host="127.0.0.1",
            web_port=free_port(),
            data_dir=self.tmp / f"data-{tag}",
            log_level="warn",
            api_tokens_file=self.tokens_file,
        )

    # -- plumbing ---------------------------------------------------------------

    async def publish(self, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, linger_ms=20, max_batch_size=1 << 20, compression_type=None
        )
        await producer.start()
        try:
            for key, value in messages:
                await producer.send(topic, key=key, value=value)
            await producer.flush()
        finally:
            await producer.stop()

    def start_workers(self, settings: Settings, n: int) -> list[subprocess.Popen[bytes]]:
        procs = []
        for i in range(n):
            s = replace(settings, web_port=free_port())
            proc = start_worker(s, self.tmp / f"{settings.topic_prefix}worker{i}.log")
            procs.append(proc)
            self.web_urls[proc.pid] = f"http://{s.web_host}:{s.web_port}"
            self.health_urls[proc.pid] = f"{self.web_urls[proc.pid]}/health"
            wait_ready(s, proc, timeout_s=120)
        return procs

    def counters(self, procs: list[subprocess.Popen[bytes]]) -> dict[str, int]:
        """The workers' own counters (their /health pages), summed: applied, batches, snapshots..."""
        total: Counter[str] = Counter()
        for proc in procs:
            with contextlib.suppress(OSError, ValueError):
                with urllib.request.urlopen(self.health_urls[proc.pid], timeout=2) as response:
                    health = orjson.loads(response.read())
                total.update({k: v for k, v in health.items() if isinstance(v, int) and not isinstance(v, bool)})
        return dict(total)

    async def prepare(self, settings: Settings, pop: Population) -> None:
        await create_topics(settings)
        await self.publish(settings.topic(CATALOG), [(e["item_id"].encode(), orjson.dumps(e)) for e in pop.catalog])

    # -- phase 1: drained throughput ------------------------------------------------

    async def drain_pipeline(self, tag: str, pop: Population, events: list[tuple[bytes, bytes]]) -> dict[str, Any]:
        settings = self.settings(tag)
        await self.prepare(settings, pop)
        await self.publish(settings.topic(EVENTS), events)
        procs = self.start_workers(settings, self.cfg.workers)
        sampler = ProcSampler([p.pid for p in procs])
        try:
            applied: dict[str, int] = {}
            total = 0
            span = Span()
            snapshots = 0
            consumer = await _tail(settings.bootstrap, settings.topic(RECOMMENDATIONS), from_start=True)
            deadline = time.monotonic() + 600
            try:
                sampler.sample()
                next_sample = time.monotonic() + 1
                while total < len(events) and time.monotonic() < deadline:
                    batches = await consumer.getmany(timeout_ms=200, max_records=5000)
                    for records in batches.values():
                        for r in records:
                            snap = orjson.loads(r.value)
                            user = snap["user_id"]
                            n = snap["events_applied"]
                            before = applied.get(user, 0)
                            if n > before:
                                total += n - before
                                applied[user] = n
                                span.add(r.timestamp, n - before)
                            snapshots += 1
                    if time.monotonic() >= next_sample:
                        sampler.sample()
                        next_sample += 1
                    self.progress(f"{tag}: applied", total / len(events))
            finally:
                await consumer.stop()
            counters = self.counters(procs)
        finally:
            for proc in procs:
                stop_process(proc)
        return {
            "events": len(events),
            "applied": total,
            "snapshots": snapshots,
            "elapsed_s": span.seconds,
            "eps": span.rate,
            "worker": sampler.summary(),
            "worker_counters": counters,
            "events_per_batch": counters["applied"] / counters["batches"] if counters.get("batches") else None,
        }

    async def drain_baseline(self, kind: str, events: list[tuple[bytes, bytes]]) -> dict[str, Any]:
        prefix = f"lt{self.run_id}-{kind}."
        source, sink = prefix + "in", prefix + "out"
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(t, self.cfg.partitions, 1) for t in (source, sink)])
        finally:
            await admin.close()
        await self.publish(source, events)
        cmd = [
            sys.executable, "-m", "loadtest.baselines", kind, "--bootstrap", self.bootstrap,
            "--source", source, "--sink", sink, "--group", prefix + "group",
            "--expect", str(len(events)), "--partitions", str(self.cfg.partitions),
        ]  # fmt: skip
        log = open(self.tmp / f"{kind}.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log)
        try:
            consumer = await _tail(self.bootstrap, sink, from_start=True)
            span = Span()
            deadline = time.monotonic() + 600
            try:
                while span.count < len(events) and time.monotonic() < deadline:
                    batches = await consumer.getmany(timeout_ms=200, max_records=10000)
                    for records in batches.values():
                        for r in records:
                            span.add(r.timestamp)
                    self.progress(f"baseline {kind}", span.count / len(events))
            finally:
                await consumer.stop()
        finally:
            stop_process(proc)
            log.close()
        return {"events": len(events), "seen": span.count, "elapsed_s": span.seconds, "eps": span.rate}

    # -- phase 2: latency under an open-loop rate -----------------------------------

    async def open_loop(
        self,
        pop: Population,
        rate: float,
        duration: float,
        steps: list[float] | None = None,
        tag: str = "latency",
        reads: bool = False,
    ) -> dict[str, Any]:
        """Offer ``rate`` events/s for ``duration`` s (or each of ``steps`` for an equal share of it).

        With ``reads``, the workers' read API is loaded too, from the warm-up's end to the phase's
        (:meth:`read_load`); the result's ``reads`` holds what the clients saw.
        """
        settings = self.settings(tag)
        await self.prepare(settings, pop)
        clients = await self.start_readers() if reads else None
        try:
            procs = self.start_workers(settings, self.cfg.workers)
        except BaseException:
            await _end(clients)
            raise
        sampler = ProcSampler([p.pid for p in procs])
        rng = random.Random(self.cfg.seed + 1)
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=1)
        await producer.start()
        consumer = await _tail(self.bootstrap, settings.topic(RECOMMENDATIONS), from_start=True)
        probe = await _tail(self.bootstrap, settings.topic(EVENTS), from_start=False, partitions=[0])
        loop = _OpenLoop(pop, settings.topic(EVENTS), steps or [rate], duration, bool(steps), rng, sampler)
        try:
            jobs: list[Coroutine[Any, Any, Any]] = [
                loop.produce(producer),
                loop.consume(consumer, probe, lambda done: self.progress(tag, done)),
            ]
            if clients is not None:
                jobs.append(self.read_load(loop, clients, [self.web_urls[p.pid] for p in procs]))
            done = await asyncio.gather(*jobs)
        finally:
            await _end(clients)
            await producer.stop()
            await consumer.stop()
            await probe.stop()
            for proc in procs:
                stop_process(proc)
        result = loop.result(rate)
        if clients is not None:
            result["reads"] = done[2]
        return result

    async def start_readers(self) -> asyncio.subprocess.Process:
        """The read load's process (:mod:`loadtest.http_load`), started ahead: it waits for its job on stdin."""
        log = open(self.tmp / "http_load.log", "ab")  # noqa: SIM115 - the child's stderr, closed below
        try:
            return await asyncio.create_subprocess_exec(
                sys.executable, "-m", "loadtest.http_load",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log,
                env={**os.environ, TOKEN_ENV: self.token},
            )  # fmt: skip
        finally:
            log.close()

    async def read_load(self, loop: _OpenLoop, clients: asyncio.subprocess.Process, urls: list[str]) -> dict[str, Any]:
        """Once the warm-up is over, have ``clients`` read viewers' lists until the open loop stops offering.

        The viewers are those whose snapshots the harness has received by then. Returns the
        clients' requests, the ``window`` they ran in (s from the open loop's start) and the
        stream's end-to-end latencies of the events published inside it; or ``error``.
        """
        cfg = self.cfg
        end = loop.t0 + loop.duration
        while time.perf_counter() < loop.steady_from or not loop.applied_by_user:
            if time.perf_counter() >= end:
                return {"error": "no viewer had a snapshot before the phase ended", "requests": []}
            await asyncio.sleep(0.05)
        viewers = sorted(loop.applied_by_user)
        seconds = max(0.0, end - time.perf_counter())
        job = {
            "urls": urls,
            "viewers": viewers,
            "concurrency": cfg.http_concurrency,
            "seconds": seconds,
            "max_requests": cfg.http_max_requests,
            "seed": cfg.seed,
            "rate": cfg.http_rate,
        }
        assert clients.stdin is not None and clients.stdout is not None
        started = time.perf_counter()
        try:
            clients.stdin.write(orjson.dumps(job) + b"\n")
            await clients.stdin.drain()
            clients.stdin.close()
            out = await asyncio.wait_for(clients.stdout.read(), timeout=seconds + REQUEST_TIMEOUT_S + 30)
        except (TimeoutError, ConnectionError):
            return {"error": f"the read load did not finish (see {self.tmp / 'http_load.log'})", "requests": []}
        if await clients.wait() != 0 or not out.strip():
            return {"error": f"the read load failed (see {self.tmp / 'http_load.log'})", "requests": []}
        answer = orjson.loads(out)
        window = (started - loop.t0, started - loop.t0 + answer["elapsed_s"])
        return {
            **answer,
            "window": window,
            "viewers": len(viewers),
            "workers": len(urls),
            "stream_latencies": _sent_in(loop.latencies, loop.latency_sent_s, *window),
        }

    # -- phase 3: learning in a closed loop -------------------------------------------

    async def closed_loop(self, pop: Population) -> dict[str, Any]:
        cfg = self.cfg
        settings = self.settings("learning")
        await self.prepare(settings, pop)
        procs = self.start_workers(settings, cfg.workers)
        rng = random.Random(cfg.seed + 2)
        viewers = pop.viewers[: cfg.learn_viewers]
        for v in viewers:
            v.tried.clear()
            v.sent = 0
        loop = _ClosedLoop(pop, viewers, rng, settings.topic(EVENTS))
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=2)
        await producer.start()
        consumer = await _tail(self.bootstrap, settings.topic(RECOMMENDATIONS), from_start=True)
        t0 = time.monotonic()
        try:
            while time.monotonic() - t0 < cfg.learn_seconds:
                idle = [v for v in viewers if v.user_id not in loop.waiting and v.sent < cfg.learn_events]
                if not idle and not loop.waiting:
                    break
                await loop.start_sessions(producer, idle)
                loop.refresh_popular()
                batches = await consumer.getmany(timeout_ms=50, max_records=5000)
                for records in batches.values():
                    for r in records:
                        loop.on_snapshot(orjson.loads(r.value))
                done = sum(min(v.sent, cfg.learn_events) for v in viewers) / (cfg.learn_events * len(viewers))
                self.progress("learning", done)
            await loop.settle(consumer, timeout_s=15)
        finally:
            await producer.stop()
            await consumer.stop()
            for proc in procs:
                stop_process(proc)
        return {
            "viewers": len(viewers),
            "events_sent": loop.sent,
            "events_applied": sum(loop.applied.values()),
            "measures": loop.measures,
            **_learning_summary(loop.measures),
        }


class _OpenLoop:
    """One open-loop phase (:meth:`Run.open_loop`): what it offers, on what schedule, and what came back.

    The clock starts when it is made. A ramp (``ramp``: ``schedule`` holds one rate per step) stops
    offering after the first step whose lag grew; then every phase waits (up to ``grace`` s) until
    all it sent is applied, so every event is accounted for.
    """

    def __init__(
        self,
        pop: Population,
        topic: str,
        schedule: list[float],
        duration: float,
        ramp: bool,
        rng: random.Random,
        sampler: ProcSampler,
    ) -> None:
        self.pop, self.topic, self.rng, self.sampler = pop, topic, rng, sampler
        self.schedule = schedule
        self.duration = duration
        self.step_s = duration / len(schedule)
        self.ramp = ramp
        self.sent_at: dict[str, float] = {}
        self.latencies: list[float] = []
        self.latency_sent_s: list[float] = []  # when each of ``latencies``' events was sent (s from t0)
        self.made: list[float] = []
        self.per_second: list[dict[str, Any]] = []
        self.applied_by_user: dict[str, int] = {}
        self.sent = self.applied = self.snapshots = 0
        self.queue: list[dict[str, Any]] = []
        self.t0 = time.perf_counter()
        # The first seconds include the worker's own start (assignment, table recovery): they
        # stay in the timeline, but the latency percentiles are those of the steady state.
        self.warmup = min(5.0, duration / 4)
        self.steady_from = self.t0 + self.warmup
        self.grace = 60.0 if ramp else 5.0
        self.producing_done = False
        self.steps_offered = len(schedule)

    def offered(self, elapsed: float) -> float:
        """Events due by ``elapsed`` seconds."""
        schedule, step_s = self.schedule, self.step_s
        done = min(int(elapsed // step_s), len(schedule))
        return sum(schedule[:done]) * step_s + (
            schedule[done] * (elapsed - done * step_s) if done < len(schedule) else 0
        )

    async def produce(self, producer: AIOKafkaProducer) -> None:
        tick = 0.01
        step, lag_at_step = 0, 0
        while (elapsed := time.perf_counter() - self.t0) < self.duration:
            if self.ramp and int(elapsed // self.step_s) > step:
                lag = self.sent - self.applied
                if lag > max(lag_at_step, self.schedule[step] * 0.5):
                    self.steps_offered = step + 1
                    break  # this step was more than the worker can take: the ramp is over
                step, lag_at_step = int(elapsed // self.step_s), lag
            # due from the clock, not from counted ticks: a slow tick must not lower the offered rate
            await self._send_due(producer, self.offered(elapsed) - self.sent)
            await asyncio.sleep(tick)
        self.producing_done = True

    async def _send_due(self, producer: AIOKafkaProducer, due: float) -> None:
        """Send ``due`` events (the whole ones): viewers' sessions, each event stamped as it goes."""
        pop, rng = self.pop, self.rng
        while due >= 1:
            if not self.queue:
                viewer = pop.viewers[rng.randrange(len(pop.viewers))]
                self.queue.extend(pop.session(viewer, rng.randrange(len(pop.catalog)), rng, _now_ms()))
            doc = self.queue.pop(0)
            doc["ts"] = _now_ms()
            self.sent_at[doc["event_id"]] = time.perf_counter()
            await producer.send(self.topic, key=doc["user_id"].encode(), value=orjson.dumps(doc))
            self.sent += 1
            due -= 1

    async def consume(
        self, consumer: AIOKafkaConsumer, probe: AIOKafkaConsumer, progress: Callable[[float], None]
    ) -> None:
        bucket: list[float] = []
        second = 0
        fetch_ms: float | None = None
        self.sampler.sample()
        while time.perf_counter() - self.t0 < self.duration + self.grace:
            batches = await consumer.getmany(timeout_ms=20, max_records=5000)
            now = time.perf_counter()
            for records in batches.values():
                for r in records:
                    self._on_snapshot(orjson.loads(r.value), now, bucket)
            if now - self.t0 >= second + 1:
                second += 1
                self.sampler.sample()
                if second % 2 == 0:
                    fetch_ms = await _probe_tail(probe)
                self._close_second(second, bucket, fetch_ms)
                bucket = []
                progress(min(1.0, (now - self.t0) / self.duration))
            if self.producing_done and self.applied >= self.sent:
                break

    def _on_snapshot(self, snap: dict[str, Any], now: float, bucket: list[float]) -> None:
        """Count what ``snap`` applied; time it when its trigger was sent here (into ``bucket``, this second's)."""
        self.snapshots += 1
        user = snap["user_id"]
        n = snap["events_applied"]
        if n > self.applied_by_user.get(user, 0):
            self.applied += n - self.applied_by_user.get(user, 0)
            self.applied_by_user[user] = n
        sent = self.sent_at.pop(snap["trigger"]["event_id"], None)
        if sent is not None:
            ms = (now - sent) * 1000
            bucket.append(ms)
            if sent >= self.steady_from:
                self.latencies.append(ms)
                self.latency_sent_s.append(sent - self.t0)
                # the worker's share: its snapshot's time minus the event's (both wall clocks)
                self.made.append(snap["generated_at"] - snap["trigger"]["ts"])

    def _close_second(self, second: int, bucket: list[float], fetch_ms: float | None) -> None:
        """The timeline's entry for ``second``: counts so far, this second's latencies, the worker, the probe."""
        cpu = self.sampler.samples[-1] if self.sampler.samples else {}
        self.per_second.append(
            {
                "t": second,
                "warmup": second <= self.warmup,
                "sent": self.sent,
                "applied": self.applied,
                "lag": self.sent - self.applied,
                "snapshots": self.snapshots,
                "latency_ms": percentiles(bucket),
                "cpu_percent": cpu.get("cpu_percent"),
                "rss_mb": cpu.get("rss_mb"),
                "tail_fetch_ms": fetch_ms,
            }
        )

    def result(self, rate: float) -> dict[str, Any]:
        sampler, per_second, duration = self.sampler, self.per_second, self.duration
        steady = [s for s in per_second if not s["warmup"]]
        p50s = [s["latency_ms"]["p50"] for s in steady if s["latency_ms"]["p50"] is not None]
        fetches = [s["tail_fetch_ms"] for s in steady if s["tail_fetch_ms"] is not None]
        latency_trend, fetch_trend = trend(p50s), trend(fetches)
        lag_series = [s["lag"] for s in per_second]
        return {
            "rate": rate,
            "steps": self.schedule,
            "steps_offered": self.steps_offered,
            "step_s": self.step_s,
            "duration_s": duration,
            "warmup_s": self.warmup,
            "sent": self.sent,
            "applied": self.applied,
            "snapshots": self.snapshots,
            "achieved_eps": self.applied / duration,
            "sent_eps": self.sent / duration,
            "latency_ms": percentiles(self.latencies),
            "to_snapshot_ms": percentiles(self.made),
            "latencies": self.latencies,
            "latency_sent_s": self.latency_sent_s,
            "timeline": per_second,
            "worker": sampler.summary(),
            "lag_max": max(lag_series, default=0),
            "broker_degradation": {
                "latency_p50_trend": latency_trend,
                "tail_fetch_ms_trend": fetch_trend,
                "tail_fetch_ms_last": fetches[-1] if fetches else None,
                "suspected": bool(
                    (latency_trend or 0) > 2
                    and (fetch_trend or 0) > 2
                    and sampler.summary()["cpu_percent_mean"]
                    and (sampler.summary()["cpu_percent_mean"] or 0) < 90
                ),
            },
        }


class _ClosedLoop:
    """The learning phase's viewers (:meth:`Run.closed_loop`): what they were sent, shown and scored."""

    def __init__(self, pop: Population, viewers: list[SimViewer], rng: random.Random, topic: str) -> None:
        self.pop, self.viewers, self.rng, self.topic = pop, viewers, rng, topic
        self.by_user = {v.user_id: v for v in viewers}
        #: per viewer with a session out: the last event of it, whose list it waits for
        self.waiting: dict[str, str] = {}
        self.latest: dict[str, list[str]] = {}
        self.plays: Counter[int] = Counter()
        self.measures: list[dict[str, Any]] = []
        self.sent = 0
        self.applied: dict[str, int] = {}
        self.popular: list[int] = []

    async def start_sessions(self, producer: AIOKafkaProducer, idle: list[SimViewer]) -> None:
        """Each idle viewer picks a title from its latest list and sends a whole session of it."""
        for v in idle:
            title = self.pop.pick(v, self.latest.get(v.user_id, []), self.rng)
            events = self.pop.session(v, title, self.rng, _now_ms())
            self.plays[title] += 1
            for doc in events:
                await producer.send(self.topic, key=v.user_id.encode(), value=orjson.dumps(doc))
            self.sent += len(events)
            self.waiting[v.user_id] = events[-1]["event_id"]

    def refresh_popular(self) -> None:
        """The popularity baseline: the most played titles, recounted every 50 events sent."""
        if len(self.plays) and (not self.popular or self.sent % 50 == 0):
            self.popular = [t for t, _ in self.plays.most_common(200)]

    def on_snapshot(self, snap: dict[str, Any]) -> None:
        viewer = self.by_user.get(snap["user_id"])
        if viewer is None:
            return
        self.applied[viewer.user_id] = max(self.applied.get(viewer.user_id, 0), snap["events_applied"])
        items = [i["item_id"] for i in snap["items"]]
        self.latest[viewer.user_id] = items
        if self.waiting.get(viewer.user_id) == snap["trigger"]["event_id"]:
            del self.waiting[viewer.user_id]
            self._score(viewer, snap["events_applied"], items)

    def _score(self, viewer: SimViewer, events: int, items: list[str]) -> None:
        """The list a session ended with, beside a popularity list and a random list of as many titles."""
        pop = self.pop
        k = len(items) or 10
        pop_list = [f"t{t:06d}" for t in self.popular if t not in viewer.tried][:k]
        untried = [t for t in range(len(pop.catalog)) if t not in viewer.tried]
        rand_list = [f"t{t:06d}" for t in self.rng.sample(untried, min(k, len(untried)))]
        self.measures.append(
            {
                "events": events,
                "model": pop.hit_rate(viewer, items),
                "popularity": pop.hit_rate(viewer, pop_list),
                "random": pop.hit_rate(viewer, rand_list),
            }
        )

    async def settle(self, consumer: AIOKafkaConsumer, timeout_s: float) -> None:
        """Let the last sessions land (up to ``timeout_s``), so every event is accounted for."""
        deadline = time.monotonic() + timeout_s
        while sum(self.applied.values()) < self.sent and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=100, max_records=5000)
            for records in batches.values():
                for r in records:
                    snap = orjson.loads(r.value)
                    user = snap["user_id"]
                    self.applied[user] = max(self.applied.get(user, 0), snap["events_applied"])


def _learning_summary(measures: list[dict[str, Any]], at: int = 30) -> dict[str, Any]:
    curve = []
    for low in range(0, 40, 5):
        window = [m for m in measures if low < m["events"] <= low + 5]
        if window:
            curve.append(
                {
                    "events": low + 5,
                    **{k: float(np.mean([m[k] for m in window])) for k in ("model", "popularity", "random")},
                }
            )
    near = [m for m in measures if at - 3 <= m["events"] <= at + 5]
    after = {k: (float(np.mean([m[k] for m in near])) if near else None) for k in ("model", "popularity", "random")}
    return {"curve": curve, "after_events": at, "after": after, "samples_after": len(near)}


def state_bytes(pop: Population, samples: int = 2000, events_each: int = 30) -> dict[str, Any]:
    """Serialised and in-memory bytes of viewer state, for 10,000 and 100,000 viewers.

    ``samples`` profiles are built by the real code from ``events_each`` events
    each; the table (key bytes -> value bytes, as the worker's store holds it)
    is then filled with 10k and 100k of them under distinct keys and measured.
    """
    rng = random.Random(11)
    titles = {e["item_id"]: decode_catalog(e["item_id"].encode(), orjson.dumps(e)) for e in pop.catalog}
    values = []
    for v in pop.viewers[:samples]:
        profile = Profile(v.user_id)
        n = 0
        while profile.applied < events_each:
            for doc in pop.session(v, rng.randrange(len(pop.catalog)), rng, _now_ms()):
                ev = decode_event(doc["user_id"].encode(), orjson.dumps(doc))
                profile.apply(ev, interpret(ev, profile.paused), titles[ev.item_id], offset=n)  # type: ignore[arg-type]
                n += 1
        values.append(profile.dumps())
    sizes = [len(v) for v in values]
    out: dict[str, Any] = {"serialised_mean": float(np.mean(sizes)), "serialised_max": max(sizes)}
    for count in (10_000, 100_000):
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        table = {f"u{i:07d}".encode(): bytes(bytearray(values[i % len(values)])) for i in range(count)}  # own copies
        used = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        out[str(count)] = used / count
        del table
    return out


def _sent_in(latencies: list[float], sent_s: list[float], start: float, end: float) -> list[float]:
    """Those of ``latencies`` whose events were sent (``sent_s``, s from the phase's start) in [start, end]."""
    return [ms for ms, sent in zip(latencies, sent_s, strict=True) if start <= sent <= end]


async def _end(child: asyncio.subprocess.Process | None) -> None:
    """Stop ``child`` if it still runs (the read load, when its phase ends early)."""
    if child is None or child.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        child.kill()
    await child.wait()


async def _tail(bootstrap: str, topic: str, from_start: bool, partitions: list[int] | None = None) -> AIOKafkaConsumer:
    # A short fetch wait (5 ms measured no different at 1,800 ev/s): the harness times the pipeline, not its polling.
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=TAIL_WAIT_MS)
    await consumer.start()
    tps = await partitions_of(consumer, topic, timeout_s=5.0)
    if partitions is not None:
        tps = [tp for tp in tps if tp.partition in partitions]
    consumer.assign(tps)
    if from_start:
        await consumer.seek_to_beginning(*tps)
    else:
        await consumer.seek_to_end(*tps)
    return consumer


async def _probe_tail(consumer: AIOKafkaConsumer) -> float | None:
    """Milliseconds to fetch the newest record of one events partition: grows as the broker degrades."""
    tp = next(iter(consumer.assignment()))
    try:
        end = (await consumer.end_offsets([tp]))[tp]
        if end == 0:
            return None
        consumer.seek(tp, max(0, end - 1))
        start = time.perf_counter()
        await consumer.getmany(tp, timeout_ms=1000, max_records=1)
        return (time.perf_counter() - start) * 1000
    except Exception:
        return None


def _now_ms() -> int:
    return int(time.time() * 1000)


def drain_events(pop: Population, n: int, seed: int) -> list[tuple[bytes, bytes]]:
    """``n`` realistic events (whole sessions of random viewers and titles), encoded."""
    rng = random.Random(seed)
    out: list[tuple[bytes, bytes]] = []
    saved = [(v.sent, set(v.tried)) for v in pop.viewers]
    while len(out) < n:
        viewer = pop.viewers[rng.randrange(len(pop.viewers))]
        for doc in pop.session(viewer, rng.randrange(len(pop.catalog)), rng, _now_ms()):
            out.append((doc["user_id"].encode(), orjson.dumps(doc)))
    for viewer, (sent, tried) in zip(pop.viewers, saved, strict=True):
        viewer.sent, viewer.tried = sent, tried
    return out[:n]


def http_figures(phase: dict[str, Any], latency: dict[str, Any], cfg: Config) -> dict[str, Any]:
    """The ``http`` phase's report: the reads' figures, and the stream's latency with and without them.

    ``phase`` is :meth:`Run.open_loop`'s result with ``reads``; ``latency`` the latency phase's.
    The two phases offer the same events on the same schedule, so the stream's latency under
    the reads is set beside the latency phase's over the same seconds of its run (the reads
    may end early, at ``max_requests``, and the embedded broker slows down as a phase goes on).
    The reads' latency counts answered requests (any status); ``statuses`` counts every
    request, ``"error"`` for those that got no answer.
    """
    reads = phase.get("reads") or {}
    requests = reads.get("requests") or []
    elapsed = reads.get("elapsed_s") or 0.0
    stream = percentiles(reads.get("stream_latencies") or [])
    window = reads.get("window")
    without = percentiles(_sent_in(latency["latencies"], latency["latency_sent_s"], *window) if window else [])
    base_p99 = without["p99"]
    rise = 100.0 * (stream["p99"] / base_p99 - 1) if stream["p99"] is not None and base_p99 else None
    http_ms = percentiles([ms for _, ms, status in requests if status])
    goals_met = {
        "http_p99": None if http_ms["p99"] is None else http_ms["p99"] <= HTTP_GOALS["http_p99_ms"],
        "stream_p99_rise": None if rise is None else rise <= HTTP_GOALS["stream_p99_rise_pct"],
    }
    return {
        "requests": len(requests),
        "rps": len(requests) / elapsed if elapsed > 0 else None,
        "latency_ms": http_ms,
        "statuses": dict(sorted(Counter(str(status) if status else "error" for _, _, status in requests).items())),
        "concurrency": cfg.http_concurrency,
        "rate_offered": cfg.http_rate,
        "max_requests": cfg.http_max_requests,
        "capped": len(requests) >= cfg.http_max_requests,
        "window_s": elapsed,
        "window": window,
        "viewers": reads.get("viewers"),
        "workers": reads.get("workers"),
        "stream_latency_ms": stream,
        "stream_latency_ms_without": without,
        "stream_p99_rise_pct": rise,
        "goals": dict(HTTP_GOALS),
        "goals_met": goals_met,
        "error": reads.get("error"),
        "stream": {k: phase[k] for k in ("rate", "sent", "applied", "sent_eps", "latency_ms", "worker", "timeline")},
    }


def ramp_verdict(result: dict[str, Any]) -> dict[str, Any]:
    """Per ramp step: lag at its start and end; sustainable if lag ended within half a second of events.

    The highest rate whose step kept the lag bounded, with every lower step bounded too, is the
    open-loop sustainable rate (None if even the first step was not).
    """
    timeline, step_s = result["timeline"], result["step_s"]
    steps, best = [], None
    for i, rate in enumerate(result["steps"][: result["steps_offered"]]):
        inside = [s for s in timeline if i * step_s < s["t"] <= (i + 1) * step_s]
        if not inside:
            break
        start, end = inside[0]["lag"], inside[-1]["lag"]
        bounded = end <= max(start, rate * 0.5)
        steps.append({"rate": rate, "lag_start": start, "lag_end": end, "bounded": bounded})
        if not bounded:
            break
        best = rate
    return {"sustainable_eps": best, "steps": steps}


async def run(cfg: Config, progress: Progress) -> dict[str, Any]:
    """All phases; returns the report (see loadtest/README or the module docstring)."""
    started = time.time()
    progress("building population", 0.0)
    pop = Population(cfg.viewers, cfg.titles, cfg.seed)
    events = drain_events(pop, cfg.drain_events, cfg.seed)
    report: dict[str, Any] = {"schema_version": 1, "config": {k: str(v) for k, v in asdict(cfg).items()}}
    with Run(cfg, progress) as run_:
        pipeline = await run_.drain_pipeline("drain", pop, events)
        report["drain"] = pipeline
        sustainable = pipeline["eps"]
        report["sustainable_eps"] = sustainable
        baselines: dict[str, Any] = {}
        if cfg.baselines:
            base_events = events[: cfg.baseline_events]
            faust = await run_.drain_baseline("faust", base_events)
            raw = await run_.drain_baseline("aiokafka", base_events)
            baselines = {"faust_eps": faust["eps"], "aiokafka_eps": raw["eps"], "faust": faust, "aiokafka": raw}
            baselines["ratio_to_faust"] = sustainable / faust["eps"] if faust["eps"] else None
            baselines["ratio_to_aiokafka"] = sustainable / raw["eps"] if raw["eps"] else None
        report["baselines"] = baselines
        scaling = {str(cfg.titles): sustainable}
        if cfg.scaling:
            large = Population(min(cfg.viewers, 10_000), cfg.titles_large, cfg.seed)
            big = await run_.drain_pipeline("large", large, drain_events(large, cfg.drain_events, cfg.seed))
            scaling[str(cfg.titles_large)] = big["eps"]
            scaling["ratio"] = big["eps"] / sustainable if sustainable else None
        report["catalog_scaling"] = scaling
        ramp: dict[str, Any] = {}
        if cfg.ramp:
            fractions = (0.25, 0.4, 0.55, 0.7, 0.85, 1.0)
            result = await run_.open_loop(
                pop,
                0.0,
                cfg.ramp_step_s * len(fractions),
                steps=[round(f * sustainable) for f in fractions],
                tag="ramp",
            )
            ramp = {**ramp_verdict(result), "sent": result["sent"], "applied": result["applied"]}
        report["ramp"] = ramp
        # half the open-loop sustainable rate when the ramp found one, else half the drained rate
        rate = cfg.rate or max(50.0, round((ramp.get("sustainable_eps") or sustainable) / 2))
        latency = await run_.open_loop(pop, rate, cfg.duration)
        report["latency_ms"] = {**latency["latency_ms"], "rate": rate, "sent_eps": latency["sent_eps"]}
        report["latency"] = latency
        http: dict[str, Any] = {}
        if cfg.http:
            reads = await run_.open_loop(pop, rate, cfg.duration, tag="http", reads=True)
            http = http_figures(reads, latency, cfg)
        report["http"] = http
        learning = await run_.closed_loop(pop)
        report["learning"] = {"model": learning["after"]["model"], "popularity": learning["after"]["popularity"],
                              "random": learning["after"]["random"], **learning}  # fmt: skip
    http_stream = http.get("stream") or {}
    for kind, drained in (("sent", pipeline["events"]), ("applied", pipeline["applied"])):
        # every phase's events: the drain, the latency phase, the learning phase, the ramp, the reads' stream
        report[f"events_{kind}"] = (
            drained + latency[kind] + learning[f"events_{kind}"] + ramp.get(kind, 0) + http_stream.get(kind, 0)
        )
    report["bytes_per_viewer"] = state_bytes(pop)
    report["elapsed_s"] = time.time() - started
    return report
