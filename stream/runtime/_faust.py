"""Whole-fetch delivery: a topic's records reach their handler a partition batch at a time.

Faust hands records to agents one event at a time: each record becomes an
event, goes through a queue, a stream iterator and per-event acknowledgement,
and the consumer's fetch loop waits on two tasks per record. That costs about
half a millisecond of CPU per record here, more than the whole recommendation
pipeline spends on it. For a topic registered with :func:`register`, the
worker's fetch loop instead gathers every record one fetch returned, by
partition, and awaits one call of the handler with them; every other topic
keeps Faust's per-event path.

Everything else stays Faust's: the consumer group, partition assignment,
table recovery, and offset commits. A handler applies a batch and returns an
awaitable that completes when everything the batch produced has been delivered
to the broker; the loop acknowledges the batch's records (making their offsets
committable) only then, and fetches the next batch meanwhile. So no offset is
ever committed ahead of the state and output it caused. If a delivery fails
the worker crashes without acknowledging, and the records are read again.

A batch that a rebalance makes stale (the generation changed or the partition
left the assignment while it was being fetched) is dropped unacknowledged; the
partition's next owner reads it again from the committed offset. A handler
call is shielded from cancellation (Faust stops the fetch loop to recover
tables), so a batch is never left half applied.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from faust.transport import consumer as faust_consumer
from faust.types import TP

__all__ = ["BatchHandler", "install", "register"]

log = logging.getLogger(__name__)

#: ``await handler({tp: records})`` applies one fetch's records of the topic, by partition, and
#: returns what completes once everything they caused is delivered.
BatchHandler = Callable[[dict[TP, list[Any]]], Awaitable[Awaitable[Any]]]
#: Handlers per Faust app id, then per topic name (several apps may share a process, as in tests).
_HANDLERS: dict[str, dict[str, BatchHandler]] = {}
_crashes: set[asyncio.Future[Any]] = set()


def register(app_id: str, topic: str, handler: BatchHandler) -> None:
    """Deliver ``topic``'s records to ``handler`` in per-partition batches, in the app ``app_id``."""
    install()
    _HANDLERS.setdefault(app_id, {})[topic] = handler


async def _drain_in_batches(self: Any, fetcher: Any) -> None:  # pragma: no cover - run inside workers
    handlers = _HANDLERS.get(self.app.conf.id)
    if not handlers:
        return await _faust_drain(self, fetcher)
    callback = self.callback
    consumer_stopped = self._stopped.is_set
    fetcher_stopped = fetcher._stopped.is_set
    read_offset = self._read_offset
    next_offset: dict[TP, int] = {}  # where each partition's next batch should start, this generation
    seen_generation = None
    acks_enabled_for = self.app.topics.acks_enabled_for
    try:
        while not (consumer_stopped() or fetcher_stopped()):
            self.diag.set_flag(faust_consumer.CONSUMER_FETCHING)
            generation = self.app.consumer_generation_id
            batches: dict[TP, list[Any]] = {}
            await self.sleep(0)
            if self.should_stop:
                break
            async for tp, message in self.getmany(timeout=1.0):
                offset = message.offset
                last = read_offset[tp]
                if last is not None and offset < last:
                    continue  # read before (after a seek back); Faust drops these too
                if last and offset - last > 1 and acks_enabled_for(message.topic):
                    await self._add_gap(tp, last + 1, offset)  # e.g. compacted away: commit past it
                read_offset[tp] = offset
                if tp.topic in handlers:
                    batches.setdefault(tp, []).append(message)
                else:
                    await self.wait_first(callback(message), self.suspend_flow.wait())
            by_topic: dict[str, dict[TP, list[Any]]] = {}
            assignment = self.assignment()
            if generation != seen_generation:
                next_offset.clear()  # a rebalance may legitimately move a partition forward (its new commit)
                seen_generation = generation
            for tp, messages in batches.items():
                expected = next_offset.get(tp)
                if expected is not None and messages[0].offset > expected:
                    # within one generation, reading never jumps forward: this would be records skipped
                    log.error(
                        "records skipped on %s: expected offset %d, the batch starts at %d (committed %s)",
                        tp, expected, messages[0].offset, self._committed_offset.get(tp),
                    )  # fmt: skip
                next_offset[tp] = messages[-1].offset + 1
                if self.app.consumer_generation_id != generation or tp not in assignment:
                    log.info("dropped a stale batch of %d records of %s (rebalance)", len(messages), tp)
                    continue
                by_topic.setdefault(tp.topic, {})[tp] = messages
            for topic, fetched in by_topic.items():
                delivered = asyncio.ensure_future(await asyncio.shield(handlers[topic](fetched)))
                delivered.add_done_callback(partial(_acknowledge, self, [m for ms in fetched.values() for m in ms]))
            self.diag.unset_flag(faust_consumer.CONSUMER_FETCHING)
    except self.consumer_stopped_errors:
        if not self.transport.app.should_stop:
            raise
    except asyncio.CancelledError:
        if not self.transport.app.should_stop:
            raise
    finally:
        self.diag.unset_flag(faust_consumer.CONSUMER_FETCHING)


def _acknowledge(consumer: Any, messages: list[Any], delivered: asyncio.Future[Any]) -> None:
    if delivered.cancelled():
        return  # the worker is stopping: the records will be read again
    exc = delivered.exception()
    if exc is not None:
        log.error("delivery failed; stopping without acknowledging %d records: %r", len(messages), exc)
        crash = asyncio.ensure_future(consumer.crash(exc))
        _crashes.add(crash)  # keep a reference until it has run
        crash.add_done_callback(_crashes.discard)
        return
    for message in messages:
        consumer.ack(message)


_faust_drain = faust_consumer.Consumer._drain_messages


def install() -> None:
    """Patch Faust's consumer fetch loop once per process; apps without handlers keep Faust's loop."""
    if faust_consumer.Consumer._drain_messages is not _drain_in_batches:
        faust_consumer.Consumer._drain_messages = _drain_in_batches  # type: ignore[method-assign]
