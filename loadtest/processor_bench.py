"""CPU per event of the processor alone: no broker, no Faust, the load test's events.

``python loadtest/processor_bench.py`` (by path, so that ``PYTHONPATH`` can point it
at another checkout of ``stream`` to compare versions) builds the load-test
population, makes ``--events`` events of whole viewing sessions, spreads them
over ``--partitions`` partitions as Kafka would by viewer, and feeds them to
:meth:`stream.processing.step.Processor.step` ``--per-call`` events per
partition at a time, as a worker does with one fetch. It prints the CPU time
per event, the mean and largest serialised profile, and the size of a model
checkpoint. Bounded by the number of events; it stops by itself.
"""

from __future__ import annotations

import argparse
import inspect
import random
import time
import zlib
from typing import Any

import orjson

from loadtest.population import Population
from stream.learning.catalog import Catalog
from stream.learning.model import PartitionModel
from stream.learning.profile import Profile
from stream.processing import one_blas_thread
from stream.processing.step import Processor, RawMessage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=10_000)
    parser.add_argument("--titles", type=int, default=5_000)
    parser.add_argument("--events", type=int, default=30_000, help="about this many (whole sessions)")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--per-call", type=int, default=25, help="events per partition per call")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    one_blas_thread()  # as a worker runs

    pop = Population(viewers=args.viewers, titles=args.titles, seed=7)
    catalog = Catalog()
    for title in pop.catalog:
        catalog.apply(title["item_id"].encode(), orjson.dumps(title))
    rng = random.Random(args.seed)
    by_partition: list[list[RawMessage]] = [[] for _ in range(args.partitions)]
    ts, made = pop.now_ms, 0
    while made < args.events:
        viewer = pop.viewers[rng.randrange(len(pop.viewers))]
        for event in pop.session(viewer, rng.randrange(len(pop.catalog)), rng, ts):
            p = zlib.crc32(event["user_id"].encode()) % args.partitions
            key = event["user_id"].encode()
            by_partition[p].append(RawMessage(key, orjson.dumps(event), "playback-events", p, len(by_partition[p])))
            made += 1
        ts += 500

    # the same settings as a worker's defaults, on either version of Processor; Any, since
    # which of them this Processor takes is known only at run time (from its signature)
    options: dict[str, Any] = {"diversity": 0.3, "exploration": 30}
    accepted = inspect.signature(Processor).parameters
    processor = Processor(catalog, top_k=10, **{k: v for k, v in options.items() if k in accepted})
    models = [PartitionModel() for _ in range(args.partitions)]
    profiles: dict[str, Profile] = {}
    rows: dict[str, bytes] = {}  # what the worker's table holds: the batch step reads stored rows
    position = [0] * args.partitions
    cpu, applied = 0.0, 0
    while any(position[p] < len(by_partition[p]) for p in range(args.partitions)):
        batches = []
        for p in range(args.partitions):
            chunk = by_partition[p][position[p] : position[p] + args.per_call]
            position[p] += args.per_call
            if chunk:
                batches.append((p, chunk))
                applied += len(chunk)
        started = time.process_time()
        results = _step(processor, batches, models, profiles, rows)
        cpu += time.process_time() - started
        for result in results:  # serialising for the table is the runtime's work, not the step's
            profiles.update(result.profiles)
            rows.update((user, profile.dumps()) for user, profile in result.profiles.items())
    sizes = [len(p.dumps()) for p in profiles.values()]
    checkpoint = len(orjson.dumps(models[0].to_state()))
    print(f"{applied} events, {cpu * 1e6 / applied:.0f} us of CPU per event")
    mean = sum(sizes) / len(sizes)
    print(f"profiles: {len(sizes)}, mean {mean:.0f} B, max {max(sizes)} B; a model checkpoint {checkpoint} B")
    if hasattr(processor, "refresh"):
        _refresh(processor, rows, models, ts + 86_400_000)


def _refresh(processor: Any, rows: dict[str, bytes], models: list[Any], at_ms: int) -> None:
    """CPU per list re-ranked because it aged: every viewer, a day later, as many at a time as a worker does."""
    from stream.processing.refresh import REFRESH_PASS  # here: checkouts before it have no refresh

    by_partition: dict[int, list[str]] = {}
    for user in rows:
        by_partition.setdefault(zlib.crc32(user.encode()) % len(models), []).append(user)
    cpu, lists = 0.0, 0
    for p, users in by_partition.items():
        for i in range(0, len(users), REFRESH_PASS):
            due = {u: rows[u] for u in users[i : i + REFRESH_PASS]}
            started = time.process_time()
            result = processor.refresh(due, models[p], at_ms, at_ms)
            cpu += time.process_time() - started
            lists += len(result.snapshots)
    print(f"{lists} lists refreshed, {cpu * 1e6 / max(1, lists):.0f} us of CPU per list")


def _step(
    processor: Any, batches: list[tuple[int, list[RawMessage]]], models: list[Any], profiles: Any, rows: Any
) -> Any:
    if hasattr(processor, "plan"):  # the pure batch step: stored rows in
        return processor.step(processor.plan(batches), rows, {p: models[p] for p, _ in batches})
    # checkouts before it: Processor.process_many with a profile loader
    return processor.process_many([(chunk, models[p]) for p, chunk in batches], profiles.get)


if __name__ == "__main__":
    main()
