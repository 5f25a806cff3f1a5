"""Viewers' commands (opt_out, opt_in, forget, set_preferences), acted on in order with events; no broker."""

from __future__ import annotations

import time
from typing import Any

import orjson
from jsonschema import Draft202012Validator

from stream.contracts.topics import load_schema
from stream.learning.model import PartitionModel
from stream.learning.profile import Profile
from stream.processing.step import BatchResult, Processor, RawMessage, split_held
from stream.ranking.explain import PERSONALISATION_OFF
from stream.ranking.group import rank_group
from stream.runtime.app import StreamApp
from stream.settings import Settings
from tests.test_ranking import T0, make_catalog, rows

SNAPSHOT = Draft202012Validator(load_schema("schemas/recommendation-snapshot.json"))


class Log:
    """One partition's two topics, as a worker reads them: events and commands, each with its offsets."""

    def __init__(self) -> None:
        self.events = 0
        self.commands = 0
        self.n = 0

    def event(self, user: str, item: str, kind: str = "play", ts: int | None = None) -> RawMessage:
        """An event at ``ts`` (default: a millisecond after the log's previous record)."""
        self.n += 1
        at = T0 + self.n if ts is None else ts
        doc = {
            "event_id": f"{user}-{self.n}", "user_id": user, "item_id": item, "type": kind, "ts": at,
            "position_s": 3000.0 if kind == "complete" else 30.0, "duration_s": 3000.0,
        }  # fmt: skip
        self.events += 1
        return RawMessage(user.encode(), orjson.dumps(doc), "playback-events", 0, self.events - 1, at)

    def command(self, user: str, command: str, **extra: Any) -> RawMessage:
        self.n += 1
        self.commands += 1
        doc = {"command": command, "ts": T0 + self.n, **extra}
        return RawMessage(user.encode(), orjson.dumps(doc), "user-commands", 0, self.commands - 1, T0 + self.n)


class Worker:
    """The pure step with a store of rows and forget markers, as the runtime keeps them."""

    def __init__(self, top_k: int = 5) -> None:
        self.catalog = make_catalog()
        self.processor = Processor(self.catalog, top_k=top_k)
        self.model = PartitionModel()
        self.store: dict[str, bytes] = {}
        self.forgotten: dict[str, tuple[int, int]] = {}
        self.position = -1

    def run(self, messages: list[RawMessage]) -> BatchResult:
        plan = self.processor.plan([(0, messages)])
        positions = {0: self.position}
        [result] = self.processor.step(plan, self.store, {0: self.model}, T0 + 10**6, positions, self.forgotten)
        for user, mark in result.erased.items():
            self.store.pop(user, None)
            self.forgotten[user] = mark
        self.store.update(rows(result.profiles))
        events = [m.offset for m in messages if m.topic == "playback-events"]
        self.position = max([self.position, *events])
        return result

    def state(self) -> bytes:
        return orjson.dumps(self.model.to_state())


def _snapshots(result: BatchResult) -> dict[str, dict[str, Any]]:
    out = {user: orjson.loads(raw) for user, raw in result.snapshots}
    for snap in out.values():
        SNAPSHOT.validate(snap)
    return out


def test_opted_out_events_change_no_profile_and_no_model_and_lists_say_so() -> None:
    log, w = Log(), Worker()
    w.run([log.event("u1", "d1", "complete"), log.event("u1", "d2", "play"), log.event("u2", "c1", "complete")])
    w.run([log.command("u1", "opt_out")])
    row, model = w.store["u1"], w.state()
    assert Profile.loads(row).opted_out == 2  # from after the events read so far (offsets 0-2)
    kinds = (("c", "complete"), ("m", "play"), ("d", "skip"), ("c", "pause"))
    out = [w.run([log.event("u1", f"{g}{n % 4 + 1}", kind)]) for n in range(50) for g, kind in kinds]
    assert sum(r.ignored for r in out) == 200 and sum(r.applied for r in out) == 0
    assert w.store["u1"] == row, "an opted-out viewer's events must leave its row as it was"
    assert w.state() == model, "an opted-out viewer's events must teach the model nothing"
    snap = _snapshots(out[-1])["u1"]
    assert snap["personalised"] is False
    assert all(item["reasons"][0] == PERSONALISATION_OFF for item in snap["items"])
    assert snap["trigger"]["type"] == "pause"  # the event it answers
    # opt_in: the next event is learned; the opted-out period is not, even when read again
    w.run([log.command("u1", "opt_in")])
    learned = w.model.learned
    back = w.run([log.event("u1", "m1", "complete")])
    assert back.applied == 1 and w.model.learned == learned + 1
    assert _snapshots(back)["u1"]["personalised"] is True
    profile = Profile.loads(w.store["u1"])
    assert profile.applied == 3 and profile.void == [[2, 202]]
    w.position = 2  # a crash: the opted-out period is read again
    again = w.run([m for r in range(3, 203) for m in [RawMessage(b"u1", orjson.dumps({
        "event_id": f"again-{r}", "user_id": "u1", "item_id": "c1", "type": "complete", "ts": T0 + r,
        "position_s": 3000.0, "duration_s": 3000.0}), "playback-events", 0, r, None)]])  # fmt: skip
    assert again.ignored == 200 and again.applied == 0 and w.model.learned == learned + 1


def test_a_command_takes_effect_between_the_events_around_it() -> None:
    log, w = Log(), Worker()
    result = w.run([log.event("u1", "d1", "complete"), log.command("u1", "opt_out"), log.event("u1", "c1", "complete")])
    assert result.applied == 1 and result.ignored == 1 and result.commands == {"opt_out": 1}
    profile = Profile.loads(w.store["u1"])
    assert profile.applied == 1 and profile.history[0][0] == "d1" and profile.opted_out == 0
    assert _snapshots(result)["u1"]["personalised"] is False


def test_a_redelivered_command_is_applied_once() -> None:
    log, w = Log(), Worker()
    out, back = log.command("u1", "opt_out"), log.command("u1", "opt_in")
    w.run([out, back])
    again = w.run([out, log.event("u1", "d1", "complete")])  # the opt_out read again after a crash
    assert again.duplicates == 1 and again.applied == 1 and Profile.loads(w.store["u1"]).personalised


def test_forget_erases_the_viewer_and_its_earlier_events_are_never_applied_again() -> None:
    log, w = Log(), Worker()
    earlier = [log.event("u1", "d1", "complete"), log.event("u1", "d2", "play"), log.event("u2", "c1", "play")]
    w.run(earlier)
    w.model.learn_viewer("u1", {"drama": 1.0}, 10)
    assert "u1" in w.model.viewers.recent
    forget = log.command("u1", "forget")
    result = w.run([forget])
    assert result.erased == {"u1": (2, 0)} and "u1" not in result.profiles and not result.snapshots
    assert "u1" not in w.store and "u2" in w.store
    assert "u1" not in w.model.viewers.recent
    # a crash: everything is read again, the forget too
    w.position = -1
    replay = w.run([*earlier, forget])
    assert "u1" not in replay.profiles and replay.applied == 0 and replay.ignored == 2
    assert "u1" not in w.store
    # the next event starts a fresh profile
    fresh = w.run([log.event("u1", "m1", "complete")])
    assert fresh.applied == 1
    profile = Profile.loads(w.store["u1"])
    assert profile.applied == 1 and [h[0] for h in profile.history] == ["m1"] and profile.version == 1


def test_forget_then_events_in_one_batch_start_afresh() -> None:
    log, w = Log(), Worker()
    result = w.run([log.event("u1", "d1", "complete"), log.command("u1", "forget"), log.event("u1", "c1", "play")])
    assert result.erased == {"u1": (0, 0)}
    profile = result.profiles["u1"]
    assert profile.applied == 1 and profile.genres.keys() == {"comedy"}
    assert _snapshots(result)["u1"]["events_applied"] == 1


def test_disliked_genres_never_appear_and_liked_ones_rise_with_a_reason() -> None:
    log, w = Log(), Worker(top_k=8)
    w.run([log.event("u1", "d1", "complete"), log.event("u1", "d2", "complete"), log.event("u1", "c1", "play")])
    prefs = w.run([log.command("u1", "set_preferences", dislikes=["Drama"], likes=["documentary"])])
    snap = _snapshots(prefs)["u1"]  # a command refreshes the list at once
    genres = [w.catalog.entry(w.catalog.index_of(i["item_id"]) or 0).genres[0] for i in snap["items"]]
    assert "drama" not in genres and genres[0] == "documentary"
    assert snap["items"][0]["reasons"][0] == "you asked for more documentary"
    # a later command replaces it; an empty one clears
    later = _snapshots(w.run([log.command("u1", "set_preferences", dislikes=["comedy"])]))["u1"]
    assert not any(i["item_id"].startswith("c") for i in later["items"])
    assert any(i["item_id"].startswith("d") for i in later["items"])
    cleared = _snapshots(w.run([log.command("u1", "set_preferences")]))["u1"]
    assert any(i["item_id"].startswith("c") for i in cleared["items"])
    assert Profile.loads(w.store["u1"]).likes == []


def test_a_disliked_genre_is_left_out_of_a_group_list() -> None:
    catalog = make_catalog()
    ann = Profile("ann", genres={"drama": 2.0, "comedy": 1.0})
    bob = Profile("bob", genres={"drama": 1.0}, dislikes=["drama"])
    items = rank_group([ann, bob], catalog, PartitionModel(), top_k=12)
    assert items and not any(i.item_id.startswith("d") for i in items)


def test_events_naming_unknown_titles_hold_only_their_viewers() -> None:
    log, w = Log(), Worker()
    batch = [
        log.event("u1", "d1"),
        log.event("flood", "nope-1"),  # an unknown title: held
        log.event("u2", "c1"),
        log.event("flood", "d2"),  # the same viewer's later event: held behind it
        log.command("flood", "opt_out"),  # and its command
        RawMessage(b"x", b"not json", "playback-events", 99, None),  # malformed: dead-lettered now
        log.event("u1", "d3"),
    ]
    plan = w.processor.plan([(0, batch)])
    held: set[str] = set()
    now, later = split_held(plan, w.catalog, held)
    assert [m.key for _, ms, _ in now.batches for m in ms] == [b"u1", b"u2", b"x", b"u1"]
    assert [(m.key, m.topic) for _, ms, _ in later.batches for m in ms] == [
        (b"flood", "playback-events"), (b"flood", "playback-events"), (b"flood", "user-commands"),
    ]  # fmt: skip
    assert held == {"flood"}
    # the next fetch: the held viewer's events wait behind the held ones, even naming known titles
    _, again = split_held(w.processor.plan([(0, [log.event("flood", "c2"), log.event("u3", "m1")])]), w.catalog, held)
    assert [m.key for _, ms, _ in again.batches for m in ms] == [b"flood"]


def test_a_held_event_is_not_counted_as_learned_until_it_is() -> None:
    """Events applied after later ones (held for the catalog): the model's checkpoint must not claim them."""
    log, w = Log(), Worker()
    first, held, after = log.event("u1", "d1", "complete"), log.event("u2", "d2", "complete"), log.event("u3", "c1")
    w.model.hold([held.offset])
    w.run([first, after])
    checkpoint = orjson.dumps(w.model.to_state())  # offset 2, with 1 still pending
    assert w.model.offset == 2 and w.model.knows(0) and w.model.knows(2) and not w.model.knows(held.offset)
    w.run([held])
    assert w.model.knows(held.offset) and w.model.pending == set()
    learned = w.model.learned
    # a crash after u2's row was written, before the next checkpoint: u2's event is learned again, once
    w.model = PartitionModel.from_state(orjson.loads(checkpoint))
    before = w.model.learned
    w.position = -1
    again = w.run([first, held, after])
    assert again.applied == 0 and w.model.learned == before + 1 and learned == before + 1


def test_a_list_made_at_read_time_follows_what_others_did_since_and_changes_nothing() -> None:
    log, w = Log(), Worker(top_k=4)
    first = w.run([log.event("u1", "d1", "complete")])
    stored = _snapshots(first)["u1"]
    # since: many viewers finish a documentary
    w.run([log.event(f"o{n}", "m3", "complete") for n in range(30)])
    time.sleep(0.6)  # ranking reuses the partition's trending values for half a second (velocity.REFRESH_S)
    state, row = w.state(), w.store["u1"]
    fresh = orjson.loads(w.processor.read_list(row, w.model, T0 + 10**6))
    SNAPSHOT.validate(fresh)
    assert fresh["fresh"] is True and fresh["user_id"] == "u1" and fresh["events_applied"] == 1
    assert "m3" in [i["item_id"] for i in fresh["items"]] and "m3" not in [i["item_id"] for i in stored["items"]]
    assert w.state() == state and w.store["u1"] == row, "a read changed the model or the profile"
    assert "fresh" not in stored


async def test_events_and_commands_wait_for_the_other_topic_published_before_them_and_keep_their_records(
    tmp_path: Any,
) -> None:
    """The worker's bookkeeping (no broker: a consumer not started never shows a partition read to its end)."""
    app = StreamApp(Settings(data_dir=tmp_path, web_port=0, api_tokens_file=tmp_path / "tokens.json"))
    events, commands = app.events.get_topic_name(), app.commands.get_topic_name()

    def ev(offset: int, ts: int) -> tuple[RawMessage, str]:
        return RawMessage(b"u1", b"{}", events, 0, offset, ts), f"event {offset}"

    def cmd(offset: int, ts: int) -> tuple[RawMessage, str]:
        return RawMessage(b"u1", b"{}", commands, 0, offset, ts), f"command {offset}"

    def order(merged: dict[int, list[RawMessage]]) -> list[str]:
        return [f"{'event' if m.topic == events else 'command'} {m.offset}" for m in merged.get(0, [])]

    merged, released, kept = app._align({0: [ev(0, 10), ev(1, 20)]}, {0: [cmd(0, 15), cmd(1, 25), cmd(2, 26)]})
    assert order(merged) == ["event 0", "command 0", "event 1"], "due: a record of the other topic stamped later"
    assert (released, kept) == ([], ["command 1", "command 2"]), "the rest wait, their records kept"
    merged, released, kept = app._align({}, {0: [cmd(3, 40)]})
    assert (order(merged), released, kept) == ([], [], ["command 3"]), "a later command waits behind them"
    merged, released, kept = app._align({0: [ev(2, 24), ev(3, 30)]}, {})
    assert order(merged) == ["event 2", "command 1", "command 2", "event 3"]
    assert (released, kept) == (["command 1", "command 2"], []), "those that went are acknowledged once delivered"

    # the mirror: an event waits while a command published before it may be unread
    merged, released, kept = app._align({0: [ev(4, 50)]}, {0: [cmd(4, 45)]})
    assert order(merged) == ["command 3", "command 4"] and (released, kept) == (["command 3"], ["event 4"])
    merged, released, kept = app._align({0: [ev(5, 60)]}, {0: [cmd(5, 48)]})
    assert order(merged) == ["command 5"] and (released, kept) == ([], ["event 5"]), "a later event waits behind it"
    assert [m.offset for m, _, _ in app._waiting[0].events] == [4, 5] and not app._waiting[0].commands
    merged, released, kept = app._align({}, {0: [cmd(6, 60)]})
    assert order(merged) == ["event 4", "event 5"], "a command stamped the same goes after the event"
    assert (released, kept) == (["event 4", "event 5"], ["command 6"])
    merged, released, kept = app._align({0: [ev(6, 61)]}, {})
    assert order(merged) == ["command 6"] and (released, kept) == (["command 6"], ["event 6"])
    assert [m.offset for m, _, _ in app._waiting[0].events] == [6] and not app._waiting[0].commands
