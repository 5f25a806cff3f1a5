"""How much memory a worker's replica of the deployment-wide model takes at full size.

Fills a :class:`~stream.learning.shared.SharedModel` with deltas over ``--titles`` titles (a start
and a finish of each, with a history of 10 titles drawn from a long-tailed popularity, as viewers'
histories are, and 16 competitors drawn the same way, for the item factors),
until every title's neighbour list is as full as pruning lets it be, and reports the process's
resident memory before and after, and per title. Bounded: at most ``--deltas`` deltas.

Then what a snapshot of that replica costs (:mod:`stream.contracts.snapshots`): reading and
packing it (the writer's thread, while its deltas wait), its size and chunks, and what a worker
that starts spends to take it (reassemble, check, unpack, rebuild); the rebuilt replica is
checked equal to the one snapshotted.

    python -m loadtest.replica_memory --titles 100000
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import orjson

from stream.contracts import snapshots
from stream.learning.choice import SAMPLED
from stream.learning.cowatch import HISTORY, KEEP
from stream.learning.shared import SharedModel

__all__ = ["fill", "resident_bytes", "snapshot_cost"]


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])

    return pages * os.sysconf("SC_PAGE_SIZE")


def fill(titles: int, most: int, seed: int = 7) -> tuple[SharedModel, int]:
    """A replica fed finishes (each after its start) over ``titles`` titles until every title's neighbour
    list is as full as pruning lets it be, or ``most`` finishes; and the finishes fed."""
    rng = np.random.default_rng(seed)
    ids = [f"tt{n:07d}" for n in range(titles)]
    weights = 1.0 / np.arange(1, titles + 1) ** 0.5
    weights /= weights.sum()
    shared = SharedModel()
    batch = 100_000
    done = 0
    while done < most:
        draws = rng.choice(titles, size=(batch, 1 + HISTORY + SAMPLED), p=weights)
        for row in draws.tolist()[: most - done]:  # the viewer's start, then its finish
            shared.apply(done % 64, 2 * done, ids[row[0]], start=True)
            history = [ids[r] for r in row[1 : 1 + HISTORY]]
            drawn = [ids[r] for r in dict.fromkeys(row[1 + HISTORY :]) if r != row[0]]  # each once, as drawn
            shared.apply(done % 64, 2 * done + 1, ids[row[0]], history, competitors=(drawn, [-3.0] * len(drawn)))
            done += 1
        full = sum(1 for nb in shared.cowatch.co.values() if len(nb) >= KEEP)
        if full >= 0.99 * titles:
            break
    return shared, done


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--titles", type=int, default=100_000)
    p.add_argument("--deltas", type=int, default=3_000_000, help="most finishes to apply (each after its start)")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    before = resident_bytes()
    t0 = time.monotonic()
    shared, done = fill(args.titles, args.deltas, args.seed)
    after = resident_bytes()
    co = shared.cowatch.co
    entries = sum(map(len, co.values()))
    print(
        f"{args.titles:,} titles, {done:,} finishes and their starts ({2 * done:,} deltas) in"
        f" {time.monotonic() - t0:.0f} s: {entries:,} neighbour entries"
        f" ({entries / max(1, len(co)):.0f} per title), {len(shared.factors.index):,} titles' factors"
        f" ({shared.factors.nbytes() / 2**20:.0f} MiB of arrays); resident memory {before / 2**20:.0f} MiB ->"
        f" {after / 2**20:.0f} MiB, the replica {(after - before) / 2**20:.0f} MiB"
        f" ({(after - before) / args.titles:.0f} bytes per title)"
    )
    snapshot_cost(shared)
    return 0


def _exact(shared: SharedModel) -> bytes:
    return orjson.dumps(shared.to_state(), option=orjson.OPT_SERIALIZE_NUMPY)


def snapshot_cost(shared: SharedModel) -> None:
    """Time a snapshot of ``shared`` written and taken, as the workers do it; check it is exact."""
    t0 = time.perf_counter()
    payload = snapshots.pack(shared.to_state())
    t1 = time.perf_counter()
    records, manifest = snapshots.encode(payload, shared.position, "bench", 0)
    t2 = time.perf_counter()
    found = snapshots.latest([*records, (snapshots.MANIFEST, manifest)])
    assert found is not None
    state = snapshots.unpack(found.payload)
    t3 = time.perf_counter()
    taken = SharedModel.from_state(state)
    t4 = time.perf_counter()
    exact = _exact(taken) == _exact(shared)
    packed = sum(len(v) for _, v in records)
    print(
        f"snapshot: {packed / 2**20:.0f} MiB in {len(records)} chunks; reading and packing the replica took"
        f" {1000 * (t1 - t0):.0f} ms (a thread; the deltas wait), its digest and chunks {1000 * (t2 - t1):.0f} ms;"
        f" taking it: {1000 * (t3 - t2):.0f} ms to reassemble, check and unpack, {1000 * (t4 - t3):.0f} ms to"
        f" rebuild the replica; exact: {exact}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
