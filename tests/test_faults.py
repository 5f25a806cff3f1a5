"""Fault injection: workers are SIGKILLed at random moments while events flow, and events are
published twice on purpose; afterwards every viewer must have had each event applied exactly once.

The oracle is an offline replay of the same unique events, in each viewer's order, through
:class:`stream.processing.step.Processor` (no Kafka): the expected ``events_applied`` of every viewer
and the expected content of its row in the ``profiles`` table (read back from the table's
changelog topic). Only black-box surfaces of the worker are used: its topics, its log (to know
which partitions a killed worker held) and its process.

The counts of each run (events, duplicates, kills, lost, doubled, time from each kill until the
killed worker's partitions produce snapshots again) are printed and written as JSON to
``tmp_path/faults-summary.json``, and merged into the file ``$STREAM_FAULTS_REPORT`` when set.
``STREAM_FAULTS_SEED`` changes the seed (events and the moments of the kills).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from stream.contracts.topics import CATALOG, COMMANDS, EVENTS, RECOMMENDATIONS
from stream.contracts.validation import DEVICES, EVENT_TYPES, decode_catalog
from stream.learning.catalog import Catalog
from stream.learning.model import PartitionModel
from stream.learning.profile import Profile
from stream.processing.step import Processor, RawMessage
from stream.settings import Settings

from .catalog_fixture import TITLES, catalog_messages
from .helpers import Workers, consume_until, encode, event, publish

pytestmark = pytest.mark.faults

SEED = int(os.environ.get("STREAM_FAULTS_SEED", "20261128"))
VIEWERS = 300
#: Events per viewer. Kept under the 12 event ids a profile remembers (README, "Delivery and state"),
#: so that a duplicate published rounds later is still recognised: beyond that window a producer's
#: duplicate is applied again by design, which would not be a fault of the worker.
ROUNDS = 10
#: Seconds between rounds of events.
GAP_S = 2.0
KILLS = 2
#: Share of each round's events published a second time right after the original.
DUP_NOW = 0.08
#: Share of earlier events published again rounds later, and again once all kills and restarts are over.
DUP_LATE = 0.05
T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC: event times are fixed so the offline replay is exact
#: Bounded waits.
CONVERGE_S = 60.0
CHANGELOG_S = 20.0
#: Profile fields that depend on offsets, batching or rankings (the artwork shown, the title
#: explored, the titles listed and those passed over for a started one), not on the events alone:
#: left out of the comparison.
UNDETERMINED = ("o", "v", "dx", "sh", "xp", "l", "pa", "vd", "co")
#: Viewers who ask to be forgotten (``forget``), each after a random round among the kills; half of
#: them come back with new events afterwards (a fresh profile), the others are never heard of again.
FORGETTERS = 12
#: Profiles are rounded to 4 decimals each time they are stored, and the worker stores them once per
#: batch where the replay stores nothing: affinities may differ by a few rounding steps.
TOLERANCE = 2e-3


# -- the events ------------------------------------------------------------------------------------


@dataclass
class Sent:
    """Every message published, and what the test knows of each event id."""

    at: dict[str, float] = field(default_factory=dict)  # event id -> wall time of its first publication
    partition: dict[str, int] = field(default_factory=dict)  # viewer -> events partition
    unique: list[tuple[bytes, bytes]] = field(default_factory=list)  # first publications, in order
    forgotten_ids: set[str] = field(default_factory=set)  # events published before their viewer's forget
    messages: int = 0
    duplicates: int = 0


def make_rounds(rng: random.Random) -> list[list[dict[str, Any]]]:
    """ROUNDS rounds of one event per viewer: every type, every title, varied positions and devices."""
    items = [t["item_id"] for t in TITLES]
    rounds = []
    for r in range(ROUNDS):
        docs = []
        for v in range(VIEWERS):
            kind = rng.choice(EVENT_TYPES)
            doc = event(r, f"v{v}", rng.choice(items), kind, ts=T0 + r * 3_600_000 + rng.randrange(3_000_000))
            if "position_s" in doc:
                doc["position_s"] = round(rng.uniform(0.0, 3000.0), 1)
            if "offset_s" in doc:
                doc["offset_s"] = rng.choice([-120.0, -30.0, 45.0, 300.0])
            device = rng.choice([*DEVICES, None])
            if device is not None:
                doc["device"] = device
            docs.append(doc)
        rounds.append(docs)
    return rounds


async def send(producer: AIOKafkaProducer, topic: str, docs: list[dict[str, Any]], sent: Sent) -> None:
    """Publish ``docs`` in order; note each new event id's publication time and each viewer's partition."""
    futures = []
    for doc in docs:
        key, value = encode(doc)
        if doc["event_id"] in sent.at:
            sent.duplicates += 1
        else:
            sent.at[doc["event_id"]] = time.time()
            sent.unique.append((key, value))
        futures.append((doc, await producer.send(topic, key=key, value=value)))
        sent.messages += 1
    await producer.flush()
    for doc, future in futures:
        metadata = await future
        sent.partition[doc["user_id"]] = metadata.partition


# -- the offline replay -----------------------------------------------------------------------------


@dataclass
class Forgetting:
    """Who forgets after which round, and who comes back."""

    after_round: dict[str, int]
    returns: set[str]

    @classmethod
    def draw(cls, rng: random.Random) -> Forgetting:
        viewers = [f"v{v}" for v in rng.sample(range(VIEWERS), FORGETTERS)]
        return cls({v: rng.randrange(1, ROUNDS - 3) for v in viewers}, set(viewers[::2]))

    def keeps(self, doc: dict[str, Any], round_: int) -> bool:
        """Whether a viewer publishes this round's event: a forgotten one only if it comes back."""
        after = self.after_round.get(doc["user_id"])
        return after is None or round_ <= after or doc["user_id"] in self.returns

    async def forget_after(self, producer: AIOKafkaProducer, topic: str, round_: int, sent: Sent) -> None:
        """Publish ``forget`` for the viewers forgetting after this round (their events are out already)."""
        for user, after in self.after_round.items():
            if after == round_:
                doc = {"command": "forget", "ts": T0 + round_ * 3_600_000 + 3_500_000}
                await producer.send_and_wait(topic, key=user.encode(), value=orjson.dumps(doc))
                sent.forgotten_ids |= {i for i in sent.at if i.startswith(f"{user}-")}


def replay(unique: list[tuple[bytes, bytes]], topic: str) -> dict[str, Profile]:
    """Each viewer's profile after its unique events, in publication order, without Kafka."""
    catalog = Catalog()
    for key, value in catalog_messages():
        entry = decode_catalog(key, value)
        assert entry is not None
        catalog.upsert(entry)
    messages = [RawMessage(key, value, topic, 0, offset) for offset, (key, value) in enumerate(unique)]
    result = Processor(catalog).process(messages, {}, PartitionModel(), now_ms=T0)
    assert result.duplicates == 0 and not result.dead_letters, "the replay's events must all be new and valid"
    return result.profiles


def differences(actual: Any, expected: Any, path: str = "") -> list[str]:
    """Where two decoded profiles differ beyond the rounding tolerance."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = []
        for key in sorted(set(expected) | set(actual)):
            if path == "" and key in UNDETERMINED:
                continue
            if key not in actual or key not in expected:
                # a decayed affinity that rounds to 0 in one and not the other is within tolerance
                value = actual.get(key, expected.get(key))
                if not (isinstance(value, float) and abs(value) <= TOLERANCE):
                    out.append(f"{path}{key}: only in {'expected' if key in expected else 'actual'}")
                continue
            out += differences(actual[key], expected[key], f"{path}{key}.")
        return out
    if isinstance(expected, list) and isinstance(actual, list) and len(actual) == len(expected):
        return [
            d for i, (a, e) in enumerate(zip(actual, expected, strict=True)) for d in differences(a, e, f"{path}{i}.")
        ]
    if isinstance(expected, float | int) and isinstance(actual, float | int) and not isinstance(expected, bool):
        return [] if math.isclose(actual, expected, abs_tol=TOLERANCE) else [f"{path[:-1]}: {actual} != {expected}"]
    return [] if actual == expected else [f"{path[:-1]}: {actual!r} != {expected!r}"]


# -- reading the worker's output --------------------------------------------------------------------


def latest_by_key(records: list[Any]) -> dict[str, Any]:
    """The newest record of each key, a tombstone included (one key lives in one partition, read in offset order)."""
    out: dict[str, Any] = {}
    for record in records:
        if record.key is not None:
            out[record.key.decode()] = record
    return out


_ASSIGNED = re.compile(r"Setting newly assigned partitions(.*?)for group", re.S)


def assigned_partitions(log: str, topic: str) -> list[int] | None:
    """The partitions of ``topic`` a worker last logged as assigned to it (None: nothing logged)."""
    blocks = _ASSIGNED.findall(log)
    if not blocks:
        return None
    for line in blocks[-1].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0] == topic:
            parts: list[int] = []
            for span in cells[1].strip("{}").split(","):
                low, _, high = span.strip().partition("-")
                parts += range(int(low), int(high or low) + 1)
            return parts
    return []


@dataclass
class Kill:
    worker: int  # index of the worker (its log is worker-<index>.log)
    pid: int
    at: float  # wall time of the SIGKILL
    partitions: list[int] | None  # events partitions it held, from its log
    restart_ready_s: float = 0.0


class Chaos:
    """Kills workers at random moments and restarts them; also restarts, like a process supervisor
    would, any worker that exits on its own (recorded: that is a fault of the worker, not of the test)."""

    def __init__(self, workers: Workers, rng: random.Random, overrides: dict[str, Any], began: float) -> None:
        self.workers = workers
        self.rng = rng
        self.overrides = overrides
        self.began = began
        self.kills: list[Kill] = []
        self.all_killed = asyncio.Event()
        self.unexpected_exits: list[dict[str, Any]] = []
        self._killed: set[int] = set()
        self._lock = asyncio.Lock()  # one worker starts at a time (log names, and never kill a starting one)
        self._stop = asyncio.Event()

    async def _restart(self) -> float:
        started = time.monotonic()
        await asyncio.to_thread(self.workers.start, **self.overrides)
        return round(time.monotonic() - started, 2)

    async def kill_at_random(self) -> None:
        """KILLS times: wait a random while, SIGKILL a random live worker, start a new one (until ready)."""
        topic = self.workers.settings.topic(EVENTS)
        for n in range(KILLS):
            await asyncio.sleep(self.rng.uniform(1.0, 3 * GAP_S) if n == 0 else self.rng.uniform(0.5, 2 * GAP_S))
            async with self._lock:
                victim = self.rng.choice([p for p in self.workers.procs if p.poll() is None])
                kill = Kill(self.workers.procs.index(victim), victim.pid, 0.0, None)
                kill.partitions = assigned_partitions(self.workers.log_path(victim).read_text(), topic)
                self._killed.add(victim.pid)
                kill.at = time.time()
                os.kill(victim.pid, signal.SIGKILL)
                victim.wait(10)
                self.kills.append(kill)
                if n == KILLS - 1:
                    self.all_killed.set()
                kill.restart_ready_s = await self._restart()

    async def supervise(self, max_restarts: int = 4) -> None:
        """Until stopped: restart (at most ``max_restarts`` times) workers that exited without being killed."""
        seen: set[int] = set()
        while not self._stop.is_set():
            async with self._lock:
                for index, proc in enumerate(list(self.workers.procs)):
                    if proc.poll() is None or proc.pid in self._killed or proc.pid in seen:
                        continue
                    seen.add(proc.pid)
                    log = self.workers.log_path(proc).read_text()
                    self.unexpected_exits.append(
                        {
                            "worker": index,
                            "exit_code": proc.returncode,
                            "noticed_at_s": round(time.monotonic() - self.began, 1),
                            "crashes": sorted({f"{who}: {why}" for who, why in _CRASHED.findall(log)}),
                        }
                    )
                    if len(self.unexpected_exits) <= max_restarts:
                        await self._restart()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 0.5)

    def stop(self) -> None:
        self._stop.set()


_CRASHED = re.compile(r"\[ERROR\] \[([^\]]*)\]: Crashed reason=(.{0,120})")


def log_findings(workers: Workers) -> dict[str, Any]:
    """Per worker log: the errors a healthy run never shows."""
    out = {}
    for index, proc in enumerate(workers.procs):
        log = workers.log_path(proc).read_text()
        found = {
            "crashed": sorted({f"{who}: {why}" for who, why in _CRASHED.findall(log)}),
            "error_in_recovery": log.count("Error in recovery"),
            "worker_crash": "We experienced a crash" in log,
            # stream.runtime._faust's check that reading never jumps forward within a generation
            "records_skipped": log.count("records skipped on"),
        }
        if found["crashed"] or found["error_in_recovery"] or found["worker_crash"] or found["records_skipped"]:
            out[f"worker-{index}"] = found
    return out


def serving_again(kill: Kill, snapshots: list[Any], sent: Sent) -> dict[int, float | None]:
    """Per partition: seconds from the SIGKILL to the first snapshot of an event published after it."""
    first: dict[int, float] = {}
    for record in snapshots:
        if record.value is None:
            continue  # a forgotten viewer's tombstone
        snap = orjson.loads(record.value)
        published = sent.at.get(snap["trigger"]["event_id"], 0.0)
        if published > kill.at:
            p = sent.partition[snap["user_id"]]
            delay = record.timestamp / 1000.0 - kill.at
            first[p] = min(first.get(p, delay), delay)
    parts = sorted(set(sent.partition.values()))
    return {p: round(first[p], 2) if p in first else None for p in parts}


def write_report(summary: dict[str, Any], tmp_path: Path, name: str) -> None:
    text = json.dumps(summary, indent=2, sort_keys=True)
    print(f"\nfault-injection summary ({name}):\n{text}")
    (tmp_path / "faults-summary.json").write_text(text + "\n")
    target = os.environ.get("STREAM_FAULTS_REPORT")
    if target:
        path = Path(target)
        merged = json.loads(path.read_text()) if path.exists() and path.stat().st_size else {}
        merged[name] = summary
        path.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")


# -- the test ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_workers", [1, 3], ids=["1-worker", "3-workers"])
async def test_workers_killed_at_random_lose_nothing_and_apply_nothing_twice(
    n_workers: int, settings: Settings, workers: Workers, producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    began, wall0 = time.monotonic(), time.time()
    rng = random.Random(SEED)
    overrides: dict[str, Any] = {}
    topic = settings.topic(EVENTS)
    rounds = make_rounds(rng)
    sent = Sent()

    await publish(producer, settings.topic(CATALOG), catalog_messages())
    await asyncio.to_thread(workers.start_many, n_workers, **overrides)
    started_s = time.monotonic() - began

    forgetting = Forgetting.draw(random.Random(SEED * 7))
    chaos = Chaos(workers, random.Random(SEED * 31 + n_workers), overrides, began)
    killing = asyncio.create_task(chaos.kill_at_random())
    supervising = asyncio.create_task(chaos.supervise())
    try:
        published: list[dict[str, Any]] = []
        for r, docs in enumerate(rounds):
            if r >= ROUNDS - 2:
                await chaos.all_killed.wait()  # the last rounds are published after the last kill
            batch = []
            docs = [doc for doc in docs if forgetting.keeps(doc, r)]
            for doc in docs:
                batch.append(doc)
                if rng.random() < DUP_NOW:
                    batch.append(doc)  # a producer's retry: the same event right after the original
            if r == ROUNDS // 2:
                batch += rng.sample(published, int(len(published) * DUP_LATE))  # rounds later
            await send(producer, topic, batch, sent)
            await forgetting.forget_after(producer, settings.topic(COMMANDS), r, sent)
            # a producer publishing a forgotten viewer's old event again would publish a new event: not here
            published += [doc for doc in docs if doc["user_id"] not in forgetting.after_round]
            await asyncio.sleep(GAP_S)
        await killing
        # much later: after every kill and restart, duplicates of events the restarted workers never saw
        await send(producer, topic, rng.sample(published, int(len(published) * DUP_LATE)), sent)
        published_s = time.monotonic() - began

        # what the viewers published, less what forgotten viewers published before their forget
        expected = replay(
            [(k, v) for k, v in sent.unique if orjson.loads(v)["event_id"] not in sent.forgotten_ids], topic
        )
        gone = sorted(set(forgetting.after_round) - forgetting.returns)
        want = {user: p.applied for user, p in expected.items()}
        assert not set(gone) & set(want) and forgetting.returns <= set(want)
        last_id = {user: p.trigger[0] for user, p in expected.items() if p.trigger}

        def converged(records: list[Any]) -> bool:
            latest = latest_by_key(records)
            if len(latest) < len(want) or any(latest.get(u) is None or latest[u].value is not None for u in gone):
                return False
            snaps = {user: orjson.loads(r.value) for user, r in latest.items() if r.value is not None}
            return all(snaps.get(u, {}).get("events_applied", -1) >= n for u, n in want.items())

        records = await consume_until(settings, settings.topic(RECOMMENDATIONS), converged, timeout_s=CONVERGE_S)
        converged_s = time.monotonic() - began
    finally:
        chaos.stop()
        # a worker being started in a thread must be known to the fixture's teardown
        await asyncio.gather(killing, supervising, return_exceptions=True)

    by_key = latest_by_key(records)
    # a forgotten viewer's latest snapshot is a tombstone, its profile row too: nothing reappeared
    reappeared = sorted(u for u in gone if u not in by_key or by_key[u].value is not None)
    latest = {user: orjson.loads(r.value) for user, r in by_key.items() if r.value is not None}
    applied = {user: latest[user]["events_applied"] if user in latest else 0 for user in want}
    lost = {u: want[u] - applied[u] for u in want if applied[u] < want[u]}
    doubled = {u: applied[u] - want[u] for u in want if applied[u] > want[u]}
    stale = sorted(u for u in want if u in latest and latest[u]["trigger"]["event_id"] != last_id[u])

    changelog = f"{settings.faust_id}-profiles-changelog"

    def complete(rows: list[Any]) -> bool:
        got = latest_by_key(rows)
        if any(u not in got or got[u].value is not None for u in gone):
            return False
        return all(
            u in got and got[u].value is not None and orjson.loads(got[u].value)["n"] >= n for u, n in want.items()
        )

    rows = latest_by_key(await consume_until(settings, changelog, complete, timeout_s=CHANGELOG_S))
    reappeared += sorted(f"{u} (profile row)" for u in gone if u not in rows or rows[u].value is not None)
    mismatched = {}
    for user, profile in expected.items():
        if user not in rows or rows[user].value is None:
            mismatched[user] = ["no row in the changelog"]
            continue
        diff = differences(orjson.loads(rows[user].value), orjson.loads(profile.dumps()))
        if diff:
            mismatched[user] = diff

    kill_report = []
    for kill in chaos.kills:
        per_partition = serving_again(kill, records, sent)
        held = [per_partition.get(p) for p in kill.partitions or ()]
        every = list(per_partition.values())
        kill_report.append(
            {
                "worker": kill.worker,
                "at_s": round(kill.at - wall0, 2),
                # the events partitions the killed worker held (from its log): it may hold none
                "partitions": kill.partitions,
                "serving_again_s": per_partition,
                # None: the killed worker held no events partition, or one never served again
                "killed_partitions_serving_again_s": max(held) if held and None not in held else None,
                # an eager rebalance pauses every partition, so this is the outage the kill caused
                "all_partitions_serving_again_s": max(every) if every and None not in every else None,
                "restart_ready_s": kill.restart_ready_s,
            }
        )
    by_partition: dict[int, int] = {}
    for user in lost:
        by_partition[sent.partition[user]] = by_partition.get(sent.partition[user], 0) + 1
    summary = {
        "workers": n_workers,
        "seed": SEED,
        "viewers": VIEWERS,
        "events_sent": len(sent.unique),
        "duplicates_sent": sent.duplicates,
        "messages_sent": sent.messages,
        "kills": len(chaos.kills),
        "kill_details": kill_report,
        "unexpected_worker_exits": chaos.unexpected_exits,
        "worker_log_errors": log_findings(workers),
        "lost_events": sum(lost.values()),
        "viewers_with_lost_events": len(lost),
        "viewers_with_lost_events_by_partition": by_partition,
        "double_applied_events": sum(doubled.values()),
        "viewers_with_double_applied_events": len(doubled),
        "viewers_with_a_stale_trigger": len(stale),
        "viewers_forgotten": len(forgetting.after_round),
        "viewers_forgotten_and_back": len(forgetting.returns),
        "forgotten_viewers_reappearing": reappeared,
        "profiles_differing_from_replay": len(mismatched),
        "snapshots_read": len(records),
        "workers_ready_s": round(started_s, 1),
        "publishing_done_s": round(published_s, 1),
        "converged_s": round(converged_s, 1),
        "logs": str(tmp_path),
    }
    write_report(summary, tmp_path, f"faults-{n_workers}-workers")
    if lost or doubled or mismatched:
        diagnose(tmp_path, records, rows, want, sent, wall0, {**lost, **doubled})

    assert len(chaos.kills) == KILLS
    assert not lost, f"lost events (viewer: missing) by partition {by_partition}: {dict(list(lost.items())[:20])}"
    assert not doubled, f"events applied twice (viewer: extra): {dict(list(doubled.items())[:20])}"
    assert not stale, f"latest snapshots not triggered by the viewer's last event: {stale[:20]}"
    assert not reappeared, f"forgotten viewers with a row or snapshot again: {reappeared}"
    assert not mismatched, f"profiles differing from the offline replay: {dict(list(mismatched.items())[:5])}"
    assert not chaos.unexpected_exits, f"workers exited without being killed: {chaos.unexpected_exits}"
    skipped = {w: f["records_skipped"] for w, f in summary["worker_log_errors"].items() if f["records_skipped"]}
    assert not skipped, f"a worker's reading jumped forward (records skipped): {skipped}"


def diagnose(
    tmp_path: Path,
    records: list[Any],
    rows: dict[str, Any],
    want: dict[str, int],
    sent: Sent,
    wall0: float,
    wrong: dict[str, int],
) -> None:
    """Write what a failure needs explained to ``tmp_path/faults-diagnosis.json``."""
    per_partition: dict[int, dict[str, Any]] = {}
    for record in records:
        if record.value is None:
            continue
        snap = orjson.loads(record.value)
        p = sent.partition[snap["user_id"]]
        info = per_partition.setdefault(p, {"snapshots": 0, "first_s": None, "last_s": None, "seconds": {}})
        at = round(record.timestamp / 1000.0 - wall0, 1)
        info["snapshots"] += 1
        info["first_s"] = at if info["first_s"] is None else min(info["first_s"], at)
        info["last_s"] = at if info["last_s"] is None else max(info["last_s"], at)
        second = str(int(at))
        info["seconds"][second] = info["seconds"].get(second, 0) + 1
    latest = {user: orjson.loads(r.value) for user, r in latest_by_key(records).items() if r.value is not None}
    viewers = {}
    for user in sorted(wrong, key=lambda u: int(u[1:]))[:50]:
        snap = latest.get(user, {})
        row = orjson.loads(rows[user].value) if user in rows and rows[user].value is not None else {}
        viewers[user] = {
            "partition": sent.partition[user],
            "expected": want[user],
            "snapshot_events_applied": snap.get("events_applied"),
            "snapshot_trigger": snap.get("trigger", {}).get("event_id"),
            "changelog_n": row.get("n"),
            "changelog_offset": row.get("o"),
        }
    published = {p: 0 for p in per_partition}
    for user, p in sent.partition.items():  # a viewer forgotten at the end is expected to hold nothing: not in want
        published[p] = published.get(p, 0) + want.get(user, 0)
    (tmp_path / "faults-diagnosis.json").write_text(
        json.dumps({"partitions": per_partition, "events_per_partition": published, "viewers": viewers}, indent=1)
    )
