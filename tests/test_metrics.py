"""GET /metrics on a real worker: Prometheus' own parser reads it, and its counters agree with what was sent."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from stream.contracts.topics import CATALOG, COMMANDS, EVENTS, RECOMMENDATIONS
from stream.settings import Settings

from .catalog_fixture import TITLES, catalog_messages
from .helpers import Workers, consume_until, encode, event, publish, snapshots


def scrape(settings: Settings) -> tuple[str, dict[str, Any]]:
    url = f"http://{settings.web_host}:{settings.web_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return text, {f.name: f for f in text_string_to_metric_families(text)}


def value(families: dict[str, Any], name: str, sample: str, **labels: str) -> float:
    return sum(
        s.value
        for s in families[name].samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def test_the_metrics_count_what_the_worker_did_and_name_no_viewer_or_title(
    settings: Settings, workers: Workers, producer: AIOKafkaProducer
) -> None:
    await publish(producer, settings.topic(CATALOG), catalog_messages())
    workers.start()
    viewers = [f"mv{n}" for n in range(6)]
    good = [encode(event(n, v, f"d{1 + n % 4}", "play")) for n in range(3) for v in viewers]
    bad = [
        (b"mv0", b"{not json"),
        (b"mv1", orjson.dumps(event(9, "mv1", "nope", "play"))),
        (b"mv2", orjson.dumps(event(10, "mv2", "d1", "jump"))),
    ]
    await publish(producer, settings.topic(EVENTS), [*good, *bad])
    await publish(
        producer,
        settings.topic(COMMANDS),
        [
            (b"mv0", orjson.dumps({"user_id": "mv0", "command": "opt_out", "ts": 1_767_225_600_000})),
            (b"mv1", b'{"command": "delete_everything", "ts": 1}'),
        ],
    )

    def done(records: list[Any]) -> bool:
        last = {s["user_id"]: s["events_applied"] for s in snapshots(records)}
        return len(last) == len(viewers) and min(last.values()) == 3

    found = snapshots(await consume_until(settings, settings.topic(RECOMMENDATIONS), done))
    await consume_until(settings, settings.topic(EVENTS) + "-dlq", lambda r: len(r) >= len(bad))
    await consume_until(settings, settings.topic(COMMANDS) + "-dlq", lambda r: len(r) >= 1)
    cfg = workers.configs[0]
    for _ in range(50):  # the command may be counted a moment after its dead letter is read
        text, families = scrape(cfg)
        if value(families, "stream_commands", "stream_commands_total") >= 1:
            break
        await asyncio.sleep(0.1)

    assert value(families, "stream_events_applied", "stream_events_applied_total") == len(good)
    # each counted snapshot is on the topic (the command's may follow the events' in a batch of its own)
    counted = value(families, "stream_snapshots", "stream_snapshots_total")
    sent = await consume_until(settings, settings.topic(RECOMMENDATIONS), lambda r: len(r) >= counted, timeout_s=10)
    assert counted >= len(found) and len(sent) == counted
    events_dlq = settings.topic(EVENTS)
    assert value(families, "stream_dead_letters", "stream_dead_letters_total", topic=events_dlq) == len(bad)
    reasons = {
        s.labels["reason"]: s.value
        for s in families["stream_dead_letters"].samples
        if s.name == "stream_dead_letters_total" and s.labels["topic"] == events_dlq
    }
    assert reasons == {"value": 1.0, "item_id": 1.0, "type": 1.0}, reasons
    assert value(families, "stream_dead_letters", "stream_dead_letters_total", topic=settings.topic(COMMANDS)) == 1
    assert value(families, "stream_commands", "stream_commands_total", kind="opt_out") == 1
    batches = value(families, "stream_batch_events", "stream_batch_events_count")
    messages = len(good) + len(bad) + 2  # the commands are read in the same batches
    assert batches >= 1 and value(families, "stream_batch_events", "stream_batch_events_sum") == messages
    assert value(families, "stream_event_to_snapshot_seconds", "stream_event_to_snapshot_seconds_count") == counted
    held = {s.labels["partition"] for s in families["stream_consumer_lag"].samples}
    assert held == {str(p) for p in range(settings.partitions)}
    assert value(families, "stream_consumer_lag", "stream_consumer_lag") == 0, "everything published was read"
    assert value(families, "stream_model_learned", "stream_model_learned") >= 0
    for kind in ("commands", "events"):
        waiting = {s.labels["partition"]: s.value for s in families[f"stream_{kind}_waiting"].samples}
        assert set(waiting) <= held and sum(waiting.values()) == 0, f"every one of the {kind} read was applied"
    assert value(families, "stream_http_requests", "stream_http_requests_total", route="/metrics", status="200") >= 1

    # no label value is a viewer id or a title id
    private = {*viewers, *(t["item_id"] for t in TITLES), "nope"}
    labels = {v for f in families.values() for s in f.samples for v in s.labels.values()}
    assert not labels & private, labels & private
    assert not any(name in text for name in viewers)


def test_fausts_built_in_views_serve_no_table_and_no_partition_map(settings: Settings, workers: Workers) -> None:
    workers.start()
    cfg = workers.configs[0]
    base = f"http://{cfg.web_host}:{cfg.web_port}"
    for path in ("/", "/router/", "/router/profiles/", "/table/", "/table/profiles/", "/table/profiles/u1/", "/graph/",
                 "/stats/", "/performance/", "/assignment/", "/signal/"):  # fmt: skip
        try:
            with urllib.request.urlopen(base + path, timeout=5) as response:
                raise AssertionError(f"{path} answered {response.status}: {response.read()[:200]!r}")
        except urllib.error.HTTPError as exc:
            assert exc.code == 404, (path, exc.code)
