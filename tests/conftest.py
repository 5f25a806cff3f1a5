"""Fixtures: a real embedded broker per test session, run-scoped topics per test,
and a factory that starts real worker processes against them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from stream.runtime.broker import EmbeddedBroker, free_port
from stream.runtime.kafka import create_topics
from stream.settings import Settings

from .helpers import Workers


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "broker" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.broker)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    with EmbeddedBroker(log_path=log) as running:
        yield running


@pytest.fixture
def settings(broker: EmbeddedBroker, tmp_path: Path) -> Settings:
    """Settings for one test: its own topics, group, data dir and web port."""
    run = uuid.uuid4().hex[:8]
    return Settings(
        bootstrap=broker.bootstrap,
        topic_prefix=f"t{run}.",
        partitions=4,
        web_port=free_port(),
        data_dir=tmp_path / "data",
        log_level="info",
    )


@pytest.fixture
async def topics(settings: Settings) -> Settings:
    await create_topics(settings)
    return settings


@pytest.fixture
def workers(topics: Settings, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(topics, tmp_path)
    try:
        yield pool
    finally:
        pool.stop_all()


@pytest.fixture
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, linger_ms=2)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()
