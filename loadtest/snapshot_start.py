"""How long a worker that starts takes to load the deployment-wide model: ``python -m loadtest.snapshot_start``.

Fills a replica of ``--titles`` titles as :mod:`loadtest.replica_memory` does, writes its
snapshot to the ``model-snapshots`` topic of an embedded broker (or ``--bootstrap``) as a worker
does (:mod:`stream.contracts.snapshots`), starts a worker, and times it from its start until its
``/health`` says its replica is loaded (``model_ready``); then the same for a worker with nothing
to load (fresh topics: the floor of a start). Prints both, and whether the loaded replica learned
as many deltas as the one snapshotted. Bounded: one fill (at most ``--deltas``), two worker
starts of at most ``--timeout`` seconds each.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from loadtest.replica_memory import fill
from stream.cli.demo import start_worker, stop_process, wait_ready
from stream.contracts import snapshots
from stream.contracts.topics import MODEL_SNAPSHOTS
from stream.learning.shared import SharedModel
from stream.runtime.broker import EmbeddedBroker, free_port
from stream.runtime.kafka import create_topics
from stream.settings import Settings


def _health(settings: Settings) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{settings.web_host}:{settings.web_port}/health", timeout=5) as response:
        return dict(orjson.loads(response.read()))


async def _write(settings: Settings, shared: SharedModel) -> dict[str, Any]:
    began = time.perf_counter()
    payload = snapshots.pack(shared.to_state())
    records, manifest = snapshots.encode(payload, shared.position, uuid.uuid4().hex[:16], int(time.time() * 1000))
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, linger_ms=5)
    await producer.start()
    try:
        for key, value in records:
            await producer.send(settings.topic(MODEL_SNAPSHOTS), key=key, value=value, partition=0)
        await producer.send_and_wait(settings.topic(MODEL_SNAPSHOTS), key=snapshots.MANIFEST, value=manifest)
    finally:
        await producer.stop()
    return {"bytes": len(payload), "chunks": len(records), "written_s": round(time.perf_counter() - began, 2)}


def _start(settings: Settings, log: Path, timeout_s: float) -> dict[str, Any]:
    """Start a worker; seconds until its replica is loaded, and its /health then."""
    proc = start_worker(settings, log)
    try:
        ready_s = wait_ready(settings, proc, timeout_s, ready="model_ready")
        return {"ready_s": round(ready_s, 2), "health": _health(settings)}
    finally:
        stop_process(proc)


async def _prepare(settings: Settings, shared: SharedModel | None) -> dict[str, Any]:
    await create_topics(settings)
    return {} if shared is None else await _write(settings, shared)


def measure(args: argparse.Namespace, bootstrap: str, tmp: Path) -> dict[str, Any]:
    began = time.monotonic()
    shared, finishes = fill(args.titles, args.deltas)
    filled_s = time.monotonic() - began
    out: dict[str, Any] = {"titles": args.titles, "finishes": finishes, "fill_s": round(filled_s), "starts": {}}
    for name, model in (("snapshot", shared), ("nothing to load", None)):
        slug = name.replace(" ", "-")
        settings = Settings(
            bootstrap=bootstrap, topic_prefix=f"ss{uuid.uuid4().hex[:6]}.", data_dir=tmp / f"data-{slug}",
            web_port=free_port(), log_level="info", model_snapshot_s=0,
        )  # fmt: skip
        written = asyncio.run(_prepare(settings, model))
        started = _start(settings, tmp / f"{slug}.log", args.timeout)
        health = started.pop("health")
        out["starts"][name] = {
            **written,
            **started,
            "snapshot_loaded": health["model_snapshot_loaded"],
            "deltas_learned": health["model_learned"],
        }
    out["same_deltas_as_the_snapshot"] = out["starts"]["snapshot"]["deltas_learned"] == shared.learned
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.snapshot_start", description=__doc__.splitlines()[0])
    parser.add_argument("--titles", type=int, default=100_000)
    parser.add_argument("--deltas", type=int, default=3_000_000, help="most finishes to fill the replica with")
    parser.add_argument("--timeout", type=float, default=300.0, help="most seconds a worker may take to load")
    parser.add_argument("--bootstrap", default=None)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="stream-snapshot-start-"))
    if args.bootstrap:
        result = measure(args, args.bootstrap, tmp)
    else:
        with EmbeddedBroker(log_path=tmp / "broker.log") as broker:
            result = measure(args, broker.bootstrap, tmp)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
