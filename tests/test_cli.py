"""The command line and the README's promises, across a real broker where they need one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from stream.cli.demo import worker_env
from stream.contracts.topics import CATALOG, EVENTS, RECOMMENDATIONS, load_specs
from stream.settings import VARIABLES, Settings

from .catalog_fixture import catalog_messages
from .helpers import Workers, consume_until, encode, event, publish, snapshots

ROOT = Path(__file__).resolve().parent.parent


def run_cli(
    settings: Settings, *args: str, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream", *args],
        env=worker_env(settings),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_the_readme_documents_every_setting_with_its_default() -> None:
    readme = (ROOT / "README.md").read_text()
    for field, var in VARIABLES.items():
        row = re.search(rf"^\| `{var}` \| ([^|]*) \|", readme, re.MULTILINE)
        assert row, f"README has no settings row for {var}"
        shown = row.group(1).strip().strip("`")
        parsed = Settings.from_env({var: "" if shown == "(empty)" else shown})
        assert getattr(parsed, field) == getattr(Settings, field), f"{var}: README says {shown!r}"


def test_the_readme_quick_start_is_the_two_make_targets() -> None:
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("##", 1)[0]
    assert "make demo" in quick and "make test" in quick
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_topics_create_is_idempotent(settings: Settings) -> None:
    first = run_cli(settings, "topics", "create")
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("created ") == len(load_specs(settings))
    second = run_cli(settings, "topics", "create")
    assert second.returncode == 0, second.stderr
    assert "created " not in second.stdout and second.stdout.count("exists ") == len(load_specs(settings))


async def test_produce_routes_lines_and_reports_rejections(topics: Settings) -> None:
    lines = [
        orjson.dumps(event(1, "ana", "d1", "play")).decode(),
        '{"item_id": "z1", "title": "Z", "genres": ["drama"], "duration_s": 60}',
        '{"retire": "z1"}',
        '{"command": "opt_out", "user_id": "ana", "ts": 1767225600000}',
        "not json",
        orjson.dumps(event(2, "ana", "d1", "jump")).decode(),
    ]
    done = run_cli(topics, "produce", stdin="\n".join(lines) + "\n")
    assert done.returncode == 1
    assert "line 5: rejected: expected one JSON object per line" in done.stderr
    assert "line 6: rejected: type: expected one of" in done.stderr
    assert f"1 to {topics.topic(EVENTS)}" in done.stdout and f"2 to {topics.topic(CATALOG)}" in done.stdout
    records = await consume_until(topics, topics.topic(CATALOG), lambda r: len(r) >= 2, timeout_s=10)
    assert [(r.key, r.value) for r in records if r.key == b"z1"][-1] == (b"z1", None)


async def test_watch_prints_a_viewers_snapshots(
    settings: Settings, workers: Workers, producer: AIOKafkaProducer
) -> None:
    await publish(producer, settings.topic(CATALOG), catalog_messages())
    workers.start()
    await publish(
        producer,
        settings.topic(EVENTS),
        [encode(event(1, "eve", "d1", "complete")), encode(event(1, "max", "c1", "play"))],
    )
    await consume_until(settings, settings.topic(RECOMMENDATIONS), lambda r: len(r) >= 2)
    shown = run_cli(settings, "watch", "--user", "eve", "--from-beginning", "--limit", "1")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("eve · v1 · 1 events · after complete (eve-e1)")
    assert "because you finished Drama 1" in shown.stdout and "max" not in shown.stdout


async def test_group_lists_what_every_member_can_watch(
    settings: Settings, workers: Workers, producer: AIOKafkaProducer
) -> None:
    await publish(producer, settings.topic(CATALOG), catalog_messages())
    workers.start()
    early = {"position_s": 60.0}
    await publish(
        producer,
        settings.topic(EVENTS),
        [
            encode(event(1, "eve", "d1", "complete")),
            encode(event(2, "eve", "c2", "skip", **early)),  # eve cannot stand comedy
            encode(event(1, "max", "c1", "complete")),
            encode(event(2, "max", "d2", "complete")),
        ],
    )

    def applied(records: list[Any]) -> bool:
        last = {s["user_id"]: s["events_applied"] for s in snapshots(records)}
        return last.get("eve") == 2 and last.get("max") == 2

    await consume_until(settings, settings.topic(RECOMMENDATIONS), applied)
    shown = run_cli(settings, "group", "eve", "max", "--top", "3")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == "for eve, max watching together:"
    assert "Comedy" not in shown.stdout, "a title one member strongly dislikes is left out"
    assert "Drama 1" not in shown.stdout and "Drama 2" not in shown.stdout, "nor one a member finished"
    assert "Drama 3" in lines[1] or "Drama 4" in lines[1], lines
    assert "good for everyone: eve likes drama, max likes drama" in lines[1]
    missing = run_cli(settings, "group", "eve", "nobody")
    assert missing.returncode == 1 and "no profile yet for: nobody" in missing.stderr


@pytest.mark.broker
def test_demo_runs_by_itself_and_leaves_nothing_running(tmp_path: Path) -> None:
    env = dict(os.environ, TMPDIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "stream", "demo", "--duration", "6"],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "worker ready after" in done.stdout
    assert re.search(r"→ (ana|ben|cho) (started|finished|skipped early)", done.stdout)
    assert re.search(r"\d+ snapshots; event to snapshot p50 \d+ ms", done.stdout)
    assert re.search(r"top \d unchanged|out of the top|  (new|↑\d|↓\d) ", done.stdout), "no change was shown"
    pids = [int(pid) for pid in re.findall(r"\(pid (\d+)[;)]", done.stdout)]
    assert len(pids) == 2, done.stdout  # the broker and the worker it started
    running = [pid for pid in pids if Path(f"/proc/{pid}").exists() and _state(pid) != "Z"]
    assert running == [], f"demo left processes running: {running}"
    assert list(tmp_path.glob("stream-demo-*")) == [], "a clean demo removes its directory"


def _state(pid: int) -> str:
    """A process's state letter (Z: a zombie, already ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return "Z"
