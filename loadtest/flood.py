"""One producer's unknown titles against everyone else's latency: ``python -m loadtest.flood``.

An independent client drives one worker on the embedded broker (or ``--bootstrap``):

1. ``quiet``: valid events at ``--rate`` per second, round robin over ``--viewers`` viewers,
   for ``--seconds``; each event's latency is from its publication to the arrival of the
   snapshot it triggered (read from the ``recommendations`` topic);
2. ``flood``: the same, while a second producer adds ``--flood-rate`` events per second
   naming titles the catalog never published.

It prints and writes (``--out``) p50/p99 of the valid events' latency in each phase, their
ratio, and how many flooded events reached the dead-letter topic. Bounded: each phase
stops after its seconds, and the wait for stragglers after ``--settle`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream.cli.demo import start_worker, stop_process, wait_ready
from stream.contracts.topics import CATALOG, EVENTS, RECOMMENDATIONS
from stream.runtime.broker import EmbeddedBroker, free_port
from stream.runtime.kafka import create_topics, read_to_end
from stream.settings import Settings

from .measure import percentiles

GENRES = ("drama", "comedy", "documentary", "crime", "horror")


def _catalog(n: int) -> list[tuple[bytes, bytes]]:
    return [
        (
            f"t{i}".encode(),
            orjson.dumps(
                {"item_id": f"t{i}", "title": f"Title {i}", "genres": [GENRES[i % len(GENRES)]], "duration_s": 3000.0}
            ),
        )
        for i in range(n)
    ]


class Probe:
    """Publishes valid events (and optionally a flood) and times each valid event's snapshot."""

    def __init__(self, settings: Settings, viewers: int, titles: int) -> None:
        self.s = settings
        self.viewers = viewers
        self.titles = titles
        self.sent: dict[str, float] = {}  # event id -> publication time
        self.arrived: dict[str, float] = {}
        self.n = 0
        self.flooded = 0

    async def follow(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=50)
            now = time.monotonic()
            for records in batches.values():
                for r in records:
                    if r.value is None:
                        continue
                    trigger = orjson.loads(r.value)["trigger"]["event_id"]
                    if trigger in self.sent and trigger not in self.arrived:
                        self.arrived[trigger] = now

    async def valid(self, producer: AIOKafkaProducer, rate: float, seconds: float, phase: str) -> list[str]:
        ids: list[str] = []
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            due = int(elapsed * rate) + 1
            while len(ids) < due:
                self.n += 1
                viewer, event_id = f"v{self.n % self.viewers}", f"{phase}-{self.n}"
                doc = {
                    "event_id": event_id, "user_id": viewer, "item_id": f"t{self.n % self.titles}",
                    "type": "play", "ts": int(time.time() * 1000), "position_s": 5.0, "duration_s": 3000.0,
                }  # fmt: skip
                self.sent[event_id] = time.monotonic()
                await producer.send(self.s.topic(EVENTS), key=viewer.encode(), value=orjson.dumps(doc))
                ids.append(event_id)
            await asyncio.sleep(0.002)
        return ids

    async def flood(self, producer: AIOKafkaProducer, rate: float, seconds: float) -> None:
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            while self.flooded < int(elapsed * rate) + 1:
                self.flooded += 1
                viewer = f"flood{self.flooded % 50}"
                doc = {
                    "event_id": f"flood-{self.flooded}", "user_id": viewer, "item_id": f"missing-{self.flooded}",
                    "type": "play", "ts": int(time.time() * 1000), "position_s": 5.0, "duration_s": 3000.0,
                }  # fmt: skip
                await producer.send(self.s.topic(EVENTS), key=viewer.encode(), value=orjson.dumps(doc))
            await asyncio.sleep(0.002)

    def latency(self, ids: list[str]) -> dict[str, Any]:
        ms = [(self.arrived[i] - self.sent[i]) * 1000 for i in ids if i in self.arrived]
        return {**percentiles(ms), "sent": len(ids), "missing": sum(1 for i in ids if i not in self.arrived)}


async def measure(args: argparse.Namespace, settings: Settings, tmp: Path) -> dict[str, Any]:
    await create_topics(settings)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, linger_ms=1)
    await producer.start()
    proc = None
    try:
        for key, value in _catalog(args.titles):
            await producer.send(settings.topic(CATALOG), key=key, value=value)
        await producer.flush()
        proc = start_worker(settings, tmp / "worker.log")
        wait_ready(settings, proc, timeout_s=120)
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, fetch_max_wait_ms=5, enable_auto_commit=False)
        await consumer.start()
        topic = settings.topic(RECOMMENDATIONS)
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        probe = Probe(settings, args.viewers, args.titles)
        stop = asyncio.Event()
        follower = asyncio.create_task(probe.follow(consumer, stop))
        try:
            await probe.valid(producer, args.rate, args.warmup, "warmup")
            quiet = await probe.valid(producer, args.rate, args.seconds, "quiet")
            flooding = asyncio.create_task(probe.flood(producer, args.flood_rate, args.seconds))
            loud = await probe.valid(producer, args.rate, args.seconds, "flood")
            await flooding
            await producer.flush()
            deadline = time.monotonic() + args.settle
            while time.monotonic() < deadline and any(i not in probe.arrived for i in quiet + loud):
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await follower
            await consumer.stop()
        dlq = await read_to_end(settings.bootstrap, settings.topic(EVENTS) + "-dlq", timeout_s=30)
        flooded_letters = sum(1 for r in dlq if b"missing-" in (r.value or b""))
        q, f = probe.latency(quiet), probe.latency(loud)
        return {
            "viewers": args.viewers,
            "rate": args.rate,
            "flood_rate": args.flood_rate,
            "seconds": args.seconds,
            "quiet_ms": q,
            "flood_ms": f,
            "p50_ratio": f["p50"] / q["p50"] if q["p50"] and f["p50"] else None,
            "p99_ratio": f["p99"] / q["p99"] if q["p99"] and f["p99"] else None,
            "flood_events": probe.flooded,
            "flood_dead_letters": flooded_letters,
        }
    finally:
        await producer.stop()
        if proc is not None:
            stop_process(proc)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.flood", description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", type=int, default=200)
    parser.add_argument("--titles", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50.0, help="valid events per second")
    parser.add_argument("--flood-rate", type=float, default=200.0, help="unknown-title events per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="of each phase")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--settle", type=float, default=15.0)
    parser.add_argument("--bootstrap", default=None, help="a running broker (default: start the embedded one)")
    parser.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="stream-flood-"))

    async def run(bootstrap: str) -> dict[str, Any]:
        settings = Settings(
            bootstrap=bootstrap, topic_prefix=f"flood{uuid.uuid4().hex[:6]}.", partitions=4,
            web_port=free_port(), data_dir=tmp / "data", log_level="warn",
        )  # fmt: skip
        return await measure(args, replace(settings), tmp)

    if args.bootstrap:
        result = asyncio.run(run(args.bootstrap))
    else:
        with EmbeddedBroker(log_path=tmp / "broker.log") as broker:
            result = asyncio.run(run(broker.bootstrap))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
