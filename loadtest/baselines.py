"""The two baselines the pipeline is measured against, run as separate processes.

- ``faust``: a bare Faust agent: consume each event, count it in a changelog
  table, send a small record per event. Same Faust settings as the worker.
- ``aiokafka``: a raw consume-transform-produce loop: decode, count, encode, send.

Each drains ``--expect`` events from ``--source`` into ``--sink`` and exits.

    python -m loadtest.baselines aiokafka --bootstrap 127.0.0.1:9092 --source x --sink y --expect 20000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

import orjson

__all__ = ["faust_app", "run_aiokafka"]


async def run_aiokafka(bootstrap: str, source: str, sink: str, group: str, expect: int) -> float:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=10,
        max_poll_records=1000,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)
    await consumer.start()
    await producer.start()
    counts: dict[bytes, int] = {}
    done = 0
    start = None
    try:
        while done < expect:
            batches = await consumer.getmany(timeout_ms=100, max_records=1000)
            for records in batches.values():
                for r in records:
                    if start is None:
                        start = time.perf_counter()
                    doc = orjson.loads(r.value)
                    n = counts[r.key] = counts.get(r.key, 0) + 1
                    await producer.send(sink, key=r.key, value=orjson.dumps({"e": doc.get("event_id"), "n": n}))
                    done += 1
            if batches:
                await producer.flush()
                await consumer.commit()
        return time.perf_counter() - (start or time.perf_counter())
    finally:
        await producer.stop()
        await consumer.stop()


def faust_app(bootstrap: str, app_id: str, source: str, sink: str, partitions: int) -> object:
    import faust

    from stream.runtime import _faust

    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        web_enabled=False,
        topic_partitions=partitions,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=10.0,
        consumer_auto_offset_reset="earliest",
        producer_linger_ms=1,
        datadir=os.environ.get("LOADTEST_DATA", "/tmp/loadtest-faust"),
    )
    _faust.install(app, fetch_wait_ms=10)  # the worker's fetch wait: the two are compared alike
    raw: faust.Schema[bytes, bytes] = faust.Schema(key_serializer="raw", value_serializer="raw")
    events = app.topic(source, schema=raw, partitions=partitions)
    out = app.topic(sink, schema=raw, partitions=partitions)
    counts = app.Table("counts", default=int, partitions=partitions)

    @app.agent(events)
    async def count(stream: faust.StreamT) -> None:
        async for event in stream.events():
            doc = orjson.loads(event.value)
            counts[event.key] += 1
            await out.send(key=event.key, value=orjson.dumps({"e": doc.get("event_id"), "n": counts[event.key]}))

    return app


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["faust", "aiokafka"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--group", default="loadtest-aiokafka")
    parser.add_argument("--expect", type=int, default=0)
    parser.add_argument("--partitions", type=int, default=8)
    args = parser.parse_args()
    if args.kind == "aiokafka":
        elapsed = asyncio.run(run_aiokafka(args.bootstrap, args.source, args.sink, args.group, args.expect))
        print(orjson.dumps({"elapsed_s": elapsed, "events": args.expect}).decode(), flush=True)
        return 0
    from faust import Worker

    app = faust_app(args.bootstrap, args.group, args.source, args.sink, args.partitions)
    sys.argv = sys.argv[:1]
    worker = Worker(app, loglevel="warn", quiet=True)  # type: ignore[arg-type]
    worker.spinner = None  # as the stream worker does: the spinner turns on every debug record
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
