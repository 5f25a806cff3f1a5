"""Interaction logs the replay evaluator reads, and how a rating becomes viewing.

Four formats, each read into one :class:`ReplayLog` (a catalog and the
interactions in timestamp order, each already turned into playback events):

- ``jsonl``: the project's own JSON lines, as ``stream produce`` reads them. A
  line with ``event_id`` is a playback event; a line with ``title`` or
  ``genres`` and no ``type`` is a catalog entry. A viewer's consecutive events
  on one title form one interaction (a new ``play`` of the same title starts
  another). Events keep their fields; a repeated ``event_id`` is dropped.
- ``movielens``: MovieLens-100k ``u.data`` (user, item, rating, unix seconds,
  whitespace-separated) with an optional ``u.item`` (pipe-separated, latin-1:
  id, title, release date, video release, url, then 19 genre flags).
- ``movietweetings``: MovieTweetings' ``ratings.dat`` (``user::movie::rating::unix
  seconds``, ratings 0-10) with ``movies.dat`` beside it (``movie::Title
  (Year)::Genre|Genre``, UTF-8). Titles are kept without the year; a movie
  without genres gets ``unknown``. The year is not made a ``release_ts``: a
  year is not a date, and a 1 January date would tell freshness a release
  months too early, so release dates are left out.
- ``csv``: a header and a column mapping such as
  ``user=uid,item=movie,rating=stars,ts=time,genres=tags`` (``rating``,
  ``genres`` and ``title`` optional; ``genres`` split on ``|``). Without a
  rating column every row counts as a finish.

A rating becomes behaviour deterministically (:func:`behaviour`), on its
format's own scale (:class:`RatingScale`; ``SCALES`` by format):

============================  =========  ===========  ==================================================
behaviour                     1-5 scale  0-10 scale   events
============================  =========  ===========  ==================================================
a finish (+1), *positive*     4 or more  8 or more    ``play``, then ``complete`` at the end
engaged, then gave up         3 up to 4  5 up to 8    ``play``, ``pause`` at 25 %, ``resume``, ``stop`` at 50 %
an early skip (-1)            under 3    under 5      ``play``, then ``skip`` at 3 %
============================  =========  ===========  ==================================================

MovieLens and CSV ratings are on the 1-5 scale; MovieTweetings' on 0-10
(8-10 read as 4-5 stars, 5-7 as 3, 0-4 as 1-2). An interaction is *positive*
when it is a finish on its scale; for JSONL, when it holds a ``complete``,
``thumbs_up`` or ``add_to_list``. The events of one interaction are 1 ms apart
from the log's time stamp (positions say how far the viewer got; event time is
the log's). Titles the log does not describe get a minimal entry (genre
``unknown``, the events' duration or 90 minutes).

Time: ``compress`` divides every gap from the log's first time stamp. The
pipeline accepts event times from 2000 to 2100, so a log that starts earlier
(MovieLens-100k is 1997-98) is moved forward by whole days to start on
2026-01-01, release dates with it; the shift is reported. MovieTweetings
(2013) needs no shift.

>>> [kind for kind, _ in behaviour(5, 3000.0)]
['play', 'complete']
>>> behaviour(3, 3000.0)[-1]
('stop', 1500.0)
>>> behaviour(1, 3000.0)
[('play', 0.0), ('skip', 90.0)]
>>> [TEN_POINTS.kind(r) for r in (10, 8, 7, 5, 4, 0)]
['finish', 'finish', 'gave up', 'gave up', 'skip', 'skip']
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from stream.contracts.validation import MAX_TS, MIN_TS, InvalidMessage, decode_catalog, decode_event

__all__ = [
    "FIVE_STARS",
    "FORMATS",
    "ML_GENRES",
    "SCALES",
    "TEN_POINTS",
    "Interaction",
    "RatingScale",
    "ReplayLog",
    "behaviour",
    "guess_format",
    "parse_columns",
    "read_csv",
    "read_jsonl",
    "read_log",
    "read_movielens",
    "read_movietweetings",
]

FORMATS = ("jsonl", "movielens", "movietweetings", "csv")
#: The 19 genre flags of MovieLens-100k's ``u.item``, in their column order.
ML_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip
#: Length of a title the log does not describe (MovieLens titles are films).
DEFAULT_DURATION_S = 5400.0
#: Where a log older than the pipeline accepts is moved to: 2026-01-01.
START_MS = 1_767_225_600_000
DAY_MS = 86_400_000
POSITIVE_TYPES = frozenset(("complete", "thumbs_up", "add_to_list"))


@dataclass(frozen=True)
class RatingScale:
    """How a format's ratings read as viewing: ``finish`` or more is a finish (the positive), ``engaged``
    up to ``finish`` engaged then gave up, under ``engaged`` an early skip."""

    name: str
    finish: float
    engaged: float

    def kind(self, rating: float) -> str:
        """``finish``, ``gave up`` or ``skip``."""
        if rating >= self.finish:
            return "finish"
        return "gave up" if rating >= self.engaged else "skip"

    def is_positive(self, rating: float) -> bool:
        return rating >= self.finish


#: MovieLens' and a CSV's stars: 4-5 a finish, 3 engaged then gave up, 1-2 an early skip.
FIVE_STARS = RatingScale("1-5", finish=4.0, engaged=3.0)
#: MovieTweetings' 0-10: 8-10 a finish (as 4-5 stars), 5-7 engaged then gave up (as 3), 0-4 an early skip (as 1-2).
TEN_POINTS = RatingScale("0-10", finish=8.0, engaged=5.0)
#: The scale of each format with ratings.
SCALES = {"movielens": FIVE_STARS, "movietweetings": TEN_POINTS, "csv": FIVE_STARS}


@dataclass
class Interaction:
    """One viewer's dealings with one title: the events to publish, in order."""

    index: int
    user_id: str
    item_id: str
    ts: int
    events: list[dict[str, Any]]
    rating: float | None = None
    positive: bool = False


@dataclass
class ReplayLog:
    catalog: list[dict[str, Any]]
    interactions: list[Interaction]
    has_ratings: bool
    #: (line number, reason) of each line left out.
    skipped: list[tuple[int, str]] = field(default_factory=list)
    #: Milliseconds added to every time stamp (0 unless the log started before 2000).
    shift_ms: int = 0
    #: The scale its ratings were read on (None for JSONL, which has no ratings).
    scale: RatingScale | None = None

    @property
    def viewers(self) -> int:
        return len({i.user_id for i in self.interactions})

    @property
    def events(self) -> int:
        return sum(len(i.events) for i in self.interactions)


def behaviour(rating: float, duration_s: float, scale: RatingScale = FIVE_STARS) -> list[tuple[str, float]]:
    """(event type, position in seconds) of what a viewer who gave ``rating`` on ``scale`` did."""
    kind = scale.kind(rating)
    if kind == "finish":
        return [("play", 0.0), ("complete", duration_s)]
    if kind == "gave up":
        quarter = round(0.25 * duration_s, 1)
        return [("play", 0.0), ("pause", quarter), ("resume", quarter), ("stop", round(0.5 * duration_s, 1))]
    return [("play", 0.0), ("skip", round(0.03 * duration_s, 1))]


def guess_format(path: Path) -> str:
    """The format a file name suggests; raises ValueError when it says nothing."""
    name = path.name.lower()
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith(".csv"):
        return "csv"
    if name == "u.data" or name.endswith((".data", ".tsv")):
        return "movielens"
    if name.endswith(".dat"):  # MovieTweetings' ratings.dat
        return "movietweetings"
    raise ValueError(f"--format: expected one of {', '.join(FORMATS)} (the name {path.name!r} does not say which)")


def parse_columns(spec: str) -> dict[str, str]:
    """``user=uid,item=movie,...`` as {field: column}; user, item and ts are required.

    >>> parse_columns("user=uid,item=movie,ts=time")
    {'user': 'uid', 'item': 'movie', 'ts': 'time'}
    """
    allowed = ("user", "item", "ts", "rating", "genres", "title")
    mapping: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, column = part.partition("=")
        if not sep or name.strip() not in allowed or not column.strip():
            raise ValueError(f"--columns: expected field=column with a field among {', '.join(allowed)}; got {part!r}")
        mapping[name.strip()] = column.strip()
    missing = [f for f in ("user", "item", "ts") if f not in mapping]
    if missing:
        raise ValueError(f"--columns: expected user, item and ts to be mapped; {', '.join(missing)} missing")
    return mapping


# -- reading ------------------------------------------------------------------------


@dataclass
class _Row:
    user_id: str
    item_id: str
    ts: int
    rating: float | None


def _minimal_entry(item_id: str, duration_s: float | None = None) -> dict[str, Any]:
    return {"item_id": item_id, "title": item_id, "genres": ["unknown"], "duration_s": duration_s or DEFAULT_DURATION_S}


def _time_map(stamps: Iterable[int], compress: float) -> tuple[int, int, float]:
    """(first time stamp, shift in ms, compression): ``t -> first + (t - first) / compress + shift``."""
    if compress <= 0 or not math.isfinite(compress):
        raise ValueError(f"--compress: expected a positive factor; got {compress}")
    first = min(stamps, default=START_MS)
    shift = 0
    if first < MIN_TS:
        shift = -(-(START_MS - first) // DAY_MS) * DAY_MS  # whole days keep the time of day
    return first, shift, compress


def _retime(ts: int, mapping: tuple[int, int, float]) -> int:
    first, shift, compress = mapping
    return int(first + (ts - first) / compress) + shift


def _check_range(interactions: Sequence[Interaction]) -> None:
    if interactions and interactions[-1].events[-1]["ts"] > MAX_TS:
        raise ValueError("time stamps: expected the log to end before 2100 after --compress; it does not")


def _from_rows(
    rows: list[_Row],
    catalog: dict[str, dict[str, Any]],
    compress: float,
    skipped: list[tuple[int, str]],
    scale: RatingScale = FIVE_STARS,
) -> ReplayLog:
    """Order rows by time (the file's order breaks ties), map time, and turn ratings into events."""
    rows = sorted(rows, key=lambda r: r.ts)
    mapping = _time_map((r.ts for r in rows), compress)
    shift = mapping[1]
    for entry in catalog.values():
        if "release_ts" in entry:
            moved = entry["release_ts"] + shift
            if moved < 0:
                del entry["release_ts"]
            else:
                entry["release_ts"] = moved
    interactions: list[Interaction] = []
    for n, row in enumerate(rows):
        entry = catalog.setdefault(row.item_id, _minimal_entry(row.item_id))
        duration = float(entry["duration_s"])
        ts = _retime(row.ts, mapping)
        rating = row.rating if row.rating is not None else scale.finish  # a log without ratings: each row a finish
        events = []
        for k, (kind, position) in enumerate(behaviour(rating, duration, scale)):
            events.append(
                {
                    "event_id": f"r{n}.{k}",
                    "user_id": row.user_id,
                    "item_id": row.item_id,
                    "type": kind,
                    "ts": ts + k,
                    "position_s": position,
                    "duration_s": duration,
                    "session_id": f"r{n}",
                }
            )
        interactions.append(Interaction(n, row.user_id, row.item_id, ts, events, row.rating, scale.is_positive(rating)))
    _check_range(interactions)
    has_ratings = any(r.rating is not None for r in rows)
    return ReplayLog(_valid_catalog(catalog, skipped), interactions, has_ratings, skipped, shift, scale)


def _valid_catalog(catalog: dict[str, dict[str, Any]], skipped: list[tuple[int, str]]) -> list[dict[str, Any]]:
    out = []
    for item_id, entry in catalog.items():
        try:
            decode_catalog(item_id.encode(), orjson.dumps(entry))
        except InvalidMessage as exc:
            raise ValueError(f"catalog entry {item_id!r}: {exc}") from None
        out.append(entry)
    return out


def read_movielens(data: Path, items: Path | None = None, compress: float = 1.0) -> ReplayLog:
    """``u.data`` and optionally ``u.item`` (MovieLens-100k layout)."""
    skipped: list[tuple[int, str]] = []
    catalog = _read_items(items, "latin-1", _ml_item, "id|title|date|video|url|19 flags", skipped)
    rows: list[_Row] = []
    with data.open(encoding="latin-1") as f:
        for number, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            try:
                user, item, rating, seconds = parts[:4]
                rows.append(_Row(user, item, int(float(seconds) * 1000), float(rating)))
            except ValueError:
                skipped.append((number, f"expected user, item, rating and unix seconds; got {line.strip()[:60]!r}"))
    return _from_rows(rows, catalog, compress, skipped, SCALES["movielens"])


def _read_items(
    path: Path | None,
    encoding: str,
    parse: Callable[[str], dict[str, Any] | None],
    expected: str,
    skipped: list[tuple[int, str]],
) -> dict[str, dict[str, Any]]:
    """A titles file, one title a line (``parse`` gives its catalog entry, or None for a bad line)."""
    catalog: dict[str, dict[str, Any]] = {}
    if path is None:
        return catalog
    with path.open(encoding=encoding) as f:
        for number, line in enumerate(f, 1):
            entry = parse(line.rstrip("\r\n"))
            if entry is None:
                if line.strip():
                    skipped.append((number, f"{path.name}: expected {expected}"))
                continue
            catalog[entry["item_id"]] = entry
    return catalog


def _ml_item(line: str) -> dict[str, Any] | None:
    parts = line.split("|")
    if len(parts) < 5 + len(ML_GENRES) or not parts[0].strip():
        return None
    item_id, title, released = parts[0].strip(), parts[1].strip(), parts[2].strip()
    flags = parts[5 : 5 + len(ML_GENRES)]
    genres = [name for name, flag in zip(ML_GENRES, flags, strict=True) if flag.strip() == "1"]
    entry: dict[str, Any] = {
        "item_id": item_id,
        "title": (title or item_id)[:512],
        "genres": genres or ["unknown"],
        "duration_s": DEFAULT_DURATION_S,
    }
    if released:
        try:
            day = dt.datetime.strptime(released, "%d-%b-%Y").replace(tzinfo=dt.UTC)
            entry["release_ts"] = int(day.timestamp() * 1000)
        except ValueError:
            pass  # an unreadable release date is left out, as it is optional
    return entry


def read_movietweetings(data: Path, items: Path | None = None, compress: float = 1.0) -> ReplayLog:
    """``ratings.dat`` and ``movies.dat`` (MovieTweetings layout; ``movies.dat`` beside it unless ``items``)."""
    if items is None and (data.parent / "movies.dat").is_file():
        items = data.parent / "movies.dat"
    skipped: list[tuple[int, str]] = []
    catalog = _read_items(items, "utf-8", _mt_movie, "movie::Title (Year)::Genre|Genre", skipped)
    rows: list[_Row] = []
    with data.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            row = _mt_rating(line.strip())
            if isinstance(row, str):
                skipped.append((number, row))
            elif row is not None:
                rows.append(row)
    return _from_rows(rows, catalog, compress, skipped, SCALES["movietweetings"])


#: A title's trailing year in ``movies.dat``: ``Title (2013)``.
_YEAR = re.compile(r"\s*\((\d{4})\)$")


def _mt_movie(line: str) -> dict[str, Any] | None:
    parts = line.split("::")
    if len(parts) != 3 or not parts[0].strip():
        return None
    item_id, full_title, genre_field = (p.strip() for p in parts)
    title = _YEAR.sub("", full_title).strip() or full_title or item_id  # the year is not a release date
    genres = list(dict.fromkeys(g.strip() for g in genre_field.split("|") if g.strip()))
    return {
        "item_id": item_id,
        "title": title[:512],
        "genres": genres[:16] or ["unknown"],
        "duration_s": DEFAULT_DURATION_S,
    }


def _mt_rating(line: str) -> _Row | str | None:
    """One ``ratings.dat`` line as a row, or why it is left out (None for a blank line)."""
    if not line:
        return None
    parts = line.split("::")
    try:
        user, item, rating, seconds = (p.strip() for p in parts)
        value = float(rating)
        row = _Row(user, item, int(float(seconds) * 1000), value)
    except ValueError:
        return f"expected user::movie::rating::unix seconds; got {line[:60]!r}"
    if not 0.0 <= value <= 10.0 or not user or not item:
        return f"expected a user, a movie and a rating from 0 to 10; got {line[:60]!r}"
    return row


def read_csv(path: Path, columns: dict[str, str], ts_unit: str = "s", compress: float = 1.0) -> ReplayLog:
    """A CSV file with a header; ``columns`` maps user, item, ts (and rating, genres, title) to its columns."""
    if ts_unit not in ("s", "ms"):
        raise ValueError(f"--ts-unit: expected s or ms; got {ts_unit!r}")
    scale = 1000 if ts_unit == "s" else 1
    skipped: list[tuple[int, str]] = []
    catalog: dict[str, dict[str, Any]] = {}
    rows: list[_Row] = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        absent = [c for c in columns.values() if c not in (reader.fieldnames or [])]
        if absent:
            raise ValueError(f"--columns: expected columns of the header {reader.fieldnames}; {absent} not there")
        for number, record in enumerate(reader, 2):
            user, item = record[columns["user"]].strip(), record[columns["item"]].strip()
            try:
                ts = int(float(record[columns["ts"]]) * scale)
                rating = float(record[columns["rating"]]) if "rating" in columns else None
            except ValueError:
                skipped.append((number, f"expected numbers in {columns['ts']!r} and the rating column"))
                continue
            if not user or not item:
                skipped.append((number, "expected a user and an item"))
                continue
            rows.append(_Row(user, item, ts, rating))
            if item not in catalog:
                genres = [g.strip() for g in record.get(columns.get("genres", ""), "").split("|") if g.strip()]
                title = record.get(columns.get("title", ""), "").strip()
                catalog[item] = {
                    "item_id": item,
                    "title": (title or item)[:512],
                    "genres": genres[:16] or ["unknown"],
                    "duration_s": DEFAULT_DURATION_S,
                }
    return _from_rows(rows, catalog, compress, skipped, SCALES["csv"])


def read_jsonl(path: Path, compress: float = 1.0) -> ReplayLog:
    """The project's JSON lines: playback events and catalog entries (other lines are skipped)."""
    skipped: list[tuple[int, str]] = []
    catalog: dict[str, dict[str, Any]] = {}
    events: list[dict[str, Any]] = []
    seen: set[str] = set()
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            doc = _json_object(line)
            reason = doc if isinstance(doc, str) else _file_jsonl_doc(doc, catalog, events, seen)
            if reason is not None:
                skipped.append((number, reason))
    events.sort(key=lambda e: e["ts"])  # stable: the file's order breaks ties
    mapping = _time_map((e["ts"] for e in events), compress)
    interactions = _jsonl_interactions(_viewings(events, mapping), catalog)
    _check_range(interactions)
    return ReplayLog(_valid_catalog(catalog, skipped), interactions, False, skipped, mapping[1])


def _json_object(line: bytes) -> dict[str, Any] | str:
    """The JSON object on ``line``, or why there is none."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return f"expected a JSON object; got invalid JSON ({exc})"
    if not isinstance(doc, dict):
        return f"expected a JSON object; got {type(doc).__name__}"
    return doc


def _file_jsonl_doc(
    doc: dict[str, Any], catalog: dict[str, dict[str, Any]], events: list[dict[str, Any]], seen: set[str]
) -> str | None:
    """Add ``doc`` to ``events`` or ``catalog`` if it is a valid one of them; else return why it is skipped."""
    try:
        if "event_id" in doc:
            decode_event(str(doc.get("user_id", "")).encode(), orjson.dumps(doc))
            if doc["event_id"] in seen:
                return f"event_id {doc['event_id']!r} repeated; the first is kept"
            seen.add(doc["event_id"])
            events.append(doc)
        elif ("title" in doc or "genres" in doc) and "type" not in doc:
            decode_catalog(str(doc.get("item_id", "")).encode(), orjson.dumps(doc))
            catalog[doc["item_id"]] = doc
        else:
            return "expected a playback event or a catalog entry; got neither"
    except InvalidMessage as exc:
        return str(exc)
    return None


def _viewings(events: list[dict[str, Any]], mapping: tuple[int, int, float]) -> list[list[dict[str, Any]]]:
    """Retime ``events`` (in time order) and group them: a viewer's consecutive events on one title.

    A new ``play`` of the same title after a play starts another group.
    """
    groups: list[list[dict[str, Any]]] = []
    open_group: dict[str, list[dict[str, Any]]] = {}
    for doc in events:
        doc["ts"] = _retime(doc["ts"], mapping)
        current = open_group.get(doc["user_id"])
        starts_again = doc["type"] == "play" and current is not None and any(e["type"] == "play" for e in current)
        if current is None or current[0]["item_id"] != doc["item_id"] or starts_again:
            current = open_group[doc["user_id"]] = []
            groups.append(current)
        current.append(doc)
    return groups


def _jsonl_interactions(groups: list[list[dict[str, Any]]], catalog: dict[str, dict[str, Any]]) -> list[Interaction]:
    """One interaction per group; a title the catalog lacks gets a minimal entry in it."""
    interactions = []
    for n, group in enumerate(groups):
        first = group[0]
        if first["item_id"] not in catalog:
            catalog[first["item_id"]] = _minimal_entry(first["item_id"], first.get("duration_s"))
        positive = any(e["type"] in POSITIVE_TYPES for e in group)
        interactions.append(Interaction(n, first["user_id"], first["item_id"], first["ts"], group, None, positive))
    return interactions


def read_log(
    path: Path,
    fmt: str | None = None,
    items: Path | None = None,
    columns: str | None = None,
    ts_unit: str = "s",
    compress: float = 1.0,
) -> ReplayLog:
    """Read ``path`` in ``fmt`` (guessed from its name when None)."""
    fmt = fmt or guess_format(path)
    if fmt == "jsonl":
        return read_jsonl(path, compress)
    if fmt == "movielens":
        return read_movielens(path, items, compress)
    if fmt == "movietweetings":
        return read_movietweetings(path, items, compress)
    if fmt == "csv":
        if not columns:
            raise ValueError("--columns: expected a mapping such as user=uid,item=movie,rating=stars,ts=time for csv")
        return read_csv(path, parse_columns(columns), ts_unit, compress)
    raise ValueError(f"--format: expected one of {', '.join(FORMATS)}; got {fmt!r}")
