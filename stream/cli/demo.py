"""``stream demo``: the whole loop on one machine, in one command.

Starts the embedded broker, creates run-scoped topics, starts a worker,
publishes a small catalog and lets three simulated viewers with hidden tastes
react to the recommendations they receive. Each event and the list it produced
are printed as they happen; after ``--duration`` seconds (or Ctrl-C) everything
it started is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stream.cli.signals import Terminated, signals_ignored, sigterm_interrupts
from stream.cli.watch import render
from stream.contracts.topics import CATALOG, EVENTS, RECOMMENDATIONS
from stream.runtime.broker import EmbeddedBroker, free_port
from stream.runtime.kafka import create_topics
from stream.runtime.lifetime import die_with_parent
from stream.settings import VARIABLES, Settings

__all__ = ["Viewer", "demo_catalog", "run_demo", "start_worker", "wait_ready", "worker_env"]

DAY_MS = 86_400_000

_TITLES = {
    "drama": ["Night Shift", "Ward Nine", "The Long Winter", "Paper Houses", "Quiet Harbour"],
    "comedy": ["Laugh Lines", "Giggles", "Office Hours", "Wrong Number", "Best Man Down"],
    "documentary": ["Deep Blue", "Desert Kings", "The Last Glacier", "Inside the Hive", "Night Sky"],
    "crime": ["Cold Case", "The Fence", "Dead Drop", "Harbour Lights", "Low Tide"],
    "animation": ["Paper Moon", "Robo Pals", "Cloud Castle", "Tiny Giants", "Pixel Quest"],
    "scifi": ["Orbit", "Signal Lost", "Red Dust", "The Ninth Moon", "Event Horizon Blues"],
}
_TAGS = {
    "drama": ["hospital", "family", "slow-burn"],
    "comedy": ["sitcom", "standup", "romcom"],
    "documentary": ["nature", "ocean", "space"],
    "crime": ["detective", "heist", "noir"],
    "animation": ["family", "robots", "fantasy"],
    "scifi": ["space", "robots", "dystopia"],
}


def demo_catalog(now_ms: int, seed: int = 7) -> list[dict[str, object]]:
    """Thirty titles across six genres; a few released this week."""
    rng = random.Random(seed)
    entries = []
    n = 0
    for genre, names in _TITLES.items():
        for name in names:
            n += 1
            tags = rng.sample(_TAGS[genre], 2)
            age_days = rng.choice([2, 5, 40, 200, 400, 900])
            entries.append(
                {
                    "item_id": f"t{n:02d}",
                    "title": name,
                    "genres": [genre],
                    "tags": tags,
                    "duration_s": rng.choice([1500, 2700, 3000, 5400]),
                    "release_ts": now_ms - age_days * DAY_MS,
                    "artwork": [f"t{n:02d}-a", f"t{n:02d}-b"],
                }
            )
    return entries


@dataclass
class Viewer:
    """A simulated viewer whose taste the system does not know."""

    user_id: str
    loves: set[str]
    hates: set[str]
    device: str
    rewinds: bool = False
    tried: set[str] = field(default_factory=set)
    pending: list[dict[str, object]] = field(default_factory=list)
    n: int = 0

    def next_title(
        self, snapshot: dict[str, Any] | None, catalog: list[dict[str, Any]], rng: random.Random
    ) -> dict[str, Any]:
        by_id = {str(e["item_id"]): e for e in catalog}
        items: list[dict[str, Any]] = snapshot.get("items", []) if snapshot else []
        for item in items:
            if item["item_id"] not in self.tried:
                return by_id[item["item_id"]]
        return rng.choice([e for e in catalog if e["item_id"] not in self.tried] or catalog)

    def session(self, title: dict[str, Any], rng: random.Random, now_ms: int) -> list[dict[str, object]]:
        """What this viewer does with ``title``: a short sequence of events."""
        self.tried.add(str(title["item_id"]))
        genre = str(title["genres"][0])
        dur = float(title["duration_s"])
        steps: list[tuple[str, float, float | None]] = [("play", 0.0, None)]
        if genre in self.hates:
            steps.append(("skip", rng.uniform(0.01, 0.06) * dur, None))
        elif genre in self.loves:
            if rng.random() < 0.5:
                steps += [("pause", 0.3 * dur, None), ("resume", 0.3 * dur, None)]
            if self.rewinds:
                steps.append(("rewind", 0.5 * dur, -30.0))
            steps.append(("complete", dur, None))
        else:
            steps += [("pause", 0.2 * dur, None), ("stop", 0.2 * dur, None)]
        events = []
        for kind, pos, offset in steps:
            self.n += 1
            event: dict[str, object] = {
                "event_id": f"{self.user_id}-{self.n}",
                "user_id": self.user_id,
                "item_id": title["item_id"],
                "type": kind,
                "ts": now_ms,
                "position_s": round(pos, 1),
                "duration_s": dur,
                "device": self.device,
            }
            if offset is not None:
                event["offset_s"] = offset
            events.append(event)
        return events


def _viewers() -> list[Viewer]:
    return [
        Viewer("ana", loves={"drama", "crime"}, hates={"comedy"}, device="tv"),
        Viewer("ben", loves={"comedy", "animation"}, hates={"documentary"}, device="mobile"),
        Viewer("cho", loves={"documentary", "scifi"}, hates={"crime"}, device="tablet", rewinds=True),
    ]


_SAY = {
    "play": "started",
    "pause": "paused",
    "resume": "resumed",
    "skip": "skipped early",
    "rewind": "rewound",
    "complete": "finished",
    "stop": "stopped",
}


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a worker subprocess exactly ``settings``."""
    env = dict(os.environ)
    for name, var in VARIABLES.items():
        env[var] = str(getattr(settings, name))
    return env


def start_worker(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``stream worker`` with ``settings``; it dies with this process if started from the main thread."""
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed with it
    return subprocess.Popen(
        [sys.executable, "-m", "stream", "worker"],
        env=worker_env(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent(),  # only a prctl between fork and exec
    )


def wait_ready(
    settings: Settings, proc: subprocess.Popen[bytes], timeout_s: float = 60.0, ready: str = "catalog_ready"
) -> float:
    """Poll the worker's /health until ``ready`` holds (by default: its catalog is loaded); return seconds
    waited."""
    start = time.monotonic()
    url = f"http://{settings.web_host}:{settings.web_port}/health"
    while time.monotonic() - start < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with code {proc.returncode} before it was ready")
        with contextlib.suppress(OSError, ValueError), urllib.request.urlopen(url, timeout=1) as response:
            if orjson.loads(response.read()).get(ready):
                return time.monotonic() - start
        time.sleep(0.2)
    raise TimeoutError(f"worker not ready after {timeout_s:.0f}s")


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def _simulate(settings: Settings, duration: float, out: list[str]) -> dict[str, float]:
    rng = random.Random(42)
    now = int(time.time() * 1000)
    catalog = demo_catalog(now)
    titles = {str(e["item_id"]): str(e["title"]) for e in catalog}
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, linger_ms=2)
    consumer = AIOKafkaConsumer(
        settings.topic(RECOMMENDATIONS),
        bootstrap_servers=settings.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
    )
    await producer.start()
    await consumer.start()
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    snapshots = 0
    try:
        viewers = _viewers()
        latest: dict[str, dict[str, object] | None] = {v.user_id: None for v in viewers}
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            for viewer in viewers:
                if not viewer.pending:
                    title = viewer.next_title(latest[viewer.user_id], catalog, rng)
                    viewer.pending = viewer.session(title, rng, int(time.time() * 1000))
            # each viewer sends its next event, then waits for the list that reflects it
            waiting = await _send_next_events(producer, settings, viewers, titles, sent_at, out)
            snapshots += await _await_lists(consumer, waiting, latest, titles, sent_at, latencies, out)
            await asyncio.sleep(0.6)
    finally:
        await consumer.stop()
        await producer.stop()
    stats = {"snapshots": float(snapshots)}
    if latencies:
        stats["p50_ms"] = statistics.median(latencies)
        stats["max_ms"] = max(latencies)
    return stats


async def _send_next_events(
    producer: AIOKafkaProducer,
    settings: Settings,
    viewers: list[Viewer],
    titles: dict[str, str],
    sent_at: dict[str, float],
    out: list[str],
) -> dict[str, str]:
    """Each viewer sends (and prints) its next pending event; returns the event each now waits on, by viewer."""
    waiting: dict[str, str] = {}
    for viewer in viewers:
        event = viewer.pending.pop(0)
        event["ts"] = int(time.time() * 1000)
        sent_at[str(event["event_id"])] = time.perf_counter()
        await producer.send_and_wait(settings.topic(EVENTS), key=viewer.user_id.encode(), value=orjson.dumps(event))
        waiting[viewer.user_id] = str(event["event_id"])
        what = f"{_SAY[str(event['type'])]} “{titles[str(event['item_id'])]}”"
        out.append(f"→ {viewer.user_id} {what}")
        print(out[-1], flush=True)
    return waiting


async def _await_lists(
    consumer: AIOKafkaConsumer,
    waiting: dict[str, str],
    latest: dict[str, dict[str, object] | None],
    titles: dict[str, str],
    sent_at: dict[str, float],
    latencies: list[float],
    out: list[str],
) -> int:
    """Read snapshots until every waiting viewer's list is in (10 s at most), printing those lists.

    Every snapshot read updates ``latest`` and, for an event sent here, ``latencies``; returns how
    many were read. ``waiting`` is emptied of the viewers whose list came.
    """
    snapshots = 0
    limit = time.monotonic() + 10.0
    while waiting and time.monotonic() < limit:
        batches = await consumer.getmany(timeout_ms=200)
        for records in batches.values():
            for record in records:
                snap = orjson.loads(record.value)
                user = snap["user_id"]
                previous, latest[user] = latest[user], snap
                snapshots += 1
                trigger = snap["trigger"]["event_id"]
                if trigger in sent_at:
                    latencies.append((time.perf_counter() - sent_at.pop(trigger)) * 1000)
                if waiting.get(user) == trigger:
                    del waiting[user]
                    out.append(render(snap, titles, previous=previous))
                    print(out[-1], flush=True)
    return snapshots


async def _publish_catalog(settings: Settings) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap)
    await producer.start()
    try:
        for entry in demo_catalog(int(time.time() * 1000)):
            await producer.send(settings.topic(CATALOG), key=str(entry["item_id"]).encode(), value=orjson.dumps(entry))
        await producer.flush()
    finally:
        await producer.stop()


def run_demo(settings: Settings, duration: float = 60.0, port: int = 0) -> int:
    # SIGTERM unwinds like Ctrl-C, so the broker and worker this demo started are stopped
    with sigterm_interrupts():
        return _run_demo(settings, duration, port)


def _run_demo(settings: Settings, duration: float, port: int) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="stream-demo-"))
    broker = EmbeddedBroker(port=port or None, log_path=workdir / "broker.log")
    worker: subprocess.Popen[bytes] | None = None
    clean = False  # the logs are kept when something failed
    try:
        broker.start()
        settings = replace(
            settings,
            bootstrap=broker.bootstrap,
            topic_prefix=f"demo-{int(time.time())}.",
            web_port=free_port(),
            data_dir=workdir / "data",
            partitions=min(settings.partitions, 4),
        )
        print(
            f"embedded broker (pid {broker.pid}) on {broker.bootstrap}; "
            f"logs in {workdir} (removed at the end unless something fails)",
            flush=True,
        )
        asyncio.run(create_topics(settings))
        asyncio.run(_publish_catalog(settings))
        worker = start_worker(settings, workdir / "worker.log")
        print(f"starting a worker (pid {worker.pid}; it joins the group and loads the catalog)...", flush=True)
        ready = wait_ready(settings, worker)
        print(f"worker ready after {ready:.1f}s; three viewers start watching for {duration:.0f}s\n", flush=True)
        stats = asyncio.run(_simulate(settings, duration, []))
        p50 = stats.get("p50_ms")
        print(
            f"\n{int(stats['snapshots'])} snapshots; event to snapshot "
            + (f"p50 {p50:.0f} ms, max {stats['max_ms']:.0f} ms" if p50 is not None else "not measured"),
            flush=True,
        )
        clean = True
        return 0
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated)
        print("\ninterrupted; stopping", flush=True)
        clean = True
        return 143 if isinstance(exc, Terminated) else 130
    finally:
        with signals_ignored():  # bounded: 25 s for the worker at most, 10 s for the broker
            if worker is not None:
                stop_process(worker)
            broker.stop()
        if clean:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"something failed; the broker's and worker's logs are in {workdir}", flush=True)
