"""How stale each worker's replica of the deployment-wide trend is: ``python -m loadtest.staleness``.

Starts an embedded broker (or uses ``--bootstrap``) and ``--workers`` workers, publishes
finishes at ``--rate`` per second for ``--seconds`` (each one a model delta), waits a moment,
then reads every worker's ``stream_model_staleness_seconds`` histogram (from a delta's
publication to its application in that worker's replica) and its count of deltas applied.
Prints, per worker, the deltas it applied against the finishes sent and the histogram's p50
and p99 as bucket bounds. Bounded by ``--seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import urllib.request
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from stream.cli.demo import start_worker, stop_process, wait_ready
from stream.contracts.topics import CATALOG, EVENTS
from stream.runtime.broker import EmbeddedBroker, free_port
from stream.runtime.kafka import create_topics
from stream.settings import Settings

TITLES = 200


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return bytes(response.read())


def quantile_bound(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The upper bound of the histogram bucket holding quantile ``q`` (cumulative ``(le, count)`` pairs).

    >>> quantile_bound([(0.005, 1.0), (0.01, 9.0), (float("inf"), 10.0)], 0.5)
    0.01
    """
    total = buckets[-1][1] if buckets else 0.0
    return next((le for le, count in buckets if count >= q * total), None) if total else None


def scrape(base: str) -> dict[str, Any]:
    families = {f.name: f for f in text_string_to_metric_families(_get(base + "/metrics").decode())}
    family = families["stream_model_staleness_seconds"]
    buckets = [(float(s.labels["le"]), s.value) for s in family.samples if s.name.endswith("_bucket")]
    p50, p99 = quantile_bound(buckets, 0.5), quantile_bound(buckets, 0.99)
    return {
        "deltas_applied": orjson.loads(_get(base + "/health"))["deltas_applied"],
        "observed": int(buckets[-1][1]) if buckets else 0,
        "p50_ms_at_most": None if p50 is None else p50 * 1000,
        "p99_ms_at_most": None if p99 is None else p99 * 1000,
    }


async def measure(args: argparse.Namespace, bootstrap: str, tmp: Path) -> dict[str, Any]:
    settings = Settings(
        bootstrap=bootstrap, topic_prefix=f"st{uuid.uuid4().hex[:6]}.", partitions=args.partitions,
        data_dir=tmp / "data", log_level="warn",
    )  # fmt: skip
    await create_topics(settings)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)
    await producer.start()
    configs = [replace(settings, web_port=free_port()) for _ in range(args.workers)]
    procs = []
    try:
        for i in range(TITLES):
            doc = {"item_id": f"t{i}", "title": f"Title {i}", "genres": ["drama"], "duration_s": 3000.0}
            await producer.send(settings.topic(CATALOG), key=f"t{i}".encode(), value=orjson.dumps(doc))
        await producer.flush()
        procs = [start_worker(c, tmp / f"worker{i}.log") for i, c in enumerate(configs)]
        for c, proc in zip(configs, procs, strict=True):
            wait_ready(c, proc, timeout_s=120)
        sent, start = 0, time.monotonic()
        while time.monotonic() - start < args.seconds:
            while sent < int((time.monotonic() - start) * args.rate):
                sent += 1
                doc = {
                    "event_id": f"e{sent}", "user_id": f"v{sent % 500}", "item_id": f"t{sent % TITLES}",
                    "type": "complete", "ts": int(time.time() * 1000), "position_s": 3000.0, "duration_s": 3000.0,
                }  # fmt: skip
                await producer.send(settings.topic(EVENTS), key=str(doc["user_id"]).encode(), value=orjson.dumps(doc))
            await asyncio.sleep(0.005)
        await producer.flush()
        await asyncio.sleep(3.0)
        workers = [scrape(f"http://{c.web_host}:{c.web_port}") for c in configs]
        return {"finishes_sent": sent, "rate": args.rate, "workers": workers}
    finally:
        await producer.stop()
        for proc in procs:
            stop_process(proc)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.staleness", description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rate", type=float, default=200.0, help="finishes per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--bootstrap", default=None)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="stream-staleness-"))
    if args.bootstrap:
        result = asyncio.run(measure(args, args.bootstrap, tmp))
    else:
        with EmbeddedBroker(log_path=tmp / "broker.log") as broker:
            result = asyncio.run(measure(args, broker.bootstrap, tmp))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
