"""Synthetic interaction logs to replay: a harness population, or a MovieLens-style pair of files.

Both are deterministic from their seed.

- :func:`write_population_log` writes the project's JSONL (catalog lines, then
  events in time order) for viewers of :class:`~loadtest.population.Population`:
  each picks titles by its hidden taste with noise and reacts as
  :meth:`Population.session` says (finish, pause and stop, or skip early).
- :func:`write_movielens` writes ``u.data`` and ``u.item`` in the MovieLens-100k
  layout (1997 time stamps, latin-1) for viewers who love two genres and dislike
  three, and whose ratings follow that taste with noise.

And one derived from a real log: :func:`write_sessions` keeps a MovieTweetings log's most rated
titles and the viewers who rated enough of them, and (unless told to keep the times) gives each
viewer's ratings, in their order, one session of its own, the viewers one after another in a
random order: the week's releases no longer tell what comes next, only what the viewer rated
before and what other viewers rated with it (as on a log like MovieLens-100k, where viewers
rated most of what they rated in one sitting).
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections import Counter, defaultdict
from pathlib import Path

import orjson

from .population import Population
from .replay_formats import ML_GENRES

__all__ = ["write_movielens", "write_population_log", "write_sessions"]

DAY_MS = 86_400_000


def write_population_log(
    path: Path, viewers: int = 300, interactions: int = 20, titles: int = 1000, seed: int = 7, explore: float = 0.3
) -> dict[str, int]:
    """Write a JSONL log of ``viewers`` x ``interactions`` sessions; returns its counts.

    A viewer picks a random untried title with probability ``explore``; otherwise
    the title that appeals most to it (plus noise) among 30 random untried ones.
    Sessions are spread over four weeks of event time.
    """
    pop = Population(viewers, titles, seed)
    rng = random.Random(seed)
    start = pop.now_ms
    lines: list[tuple[int, int, bytes]] = []
    events = 0
    for viewer in pop.viewers:
        stamps = sorted(start + rng.randrange(28 * DAY_MS) for _ in range(interactions))
        for ts in stamps:
            untried = [t for t in (rng.randrange(titles) for _ in range(30)) if t not in viewer.tried]
            if not untried:
                continue
            if rng.random() < explore:
                title = untried[0]
            else:
                title = max(untried, key=lambda t: pop.appeal(viewer, t) + rng.gauss(0.0, 0.25))
            for k, doc in enumerate(pop.session(viewer, title, rng, ts)):
                doc["ts"] = ts + k  # a session's events in order, a millisecond apart
                doc["session_id"] = f"{viewer.user_id}-s{viewer.session}"  # session() counted it
                lines.append((doc["ts"], len(lines), orjson.dumps(doc)))
                events += 1
    lines.sort()
    with path.open("wb") as f:
        for entry in pop.catalog:
            f.write(orjson.dumps(entry) + b"\n")
        for _, _, line in lines:
            f.write(line + b"\n")
    return {"titles": titles, "viewers": viewers, "events": events}


def write_movielens(
    directory: Path, viewers: int = 300, titles: int = 800, interactions: int = 30, seed: int = 7
) -> dict[str, int]:
    """Write ``u.data`` and ``u.item`` (MovieLens-100k layout) into ``directory``; returns counts.

    Titles have one to three genres and a long-tailed popularity; a viewer loves
    two genres, dislikes three, chooses titles by popularity and taste, and rates
    each from its taste for the title's genres plus noise (1-5).
    """
    rng = random.Random(seed)
    genres = list(range(1, len(ML_GENRES)))  # leave out "unknown"
    item_genres = [rng.sample(genres, rng.choice((1, 1, 2, 2, 3))) for _ in range(titles)]
    appeal_of_rank = [1.0 / (r + 1) ** 0.7 for r in range(titles)]
    rng.shuffle(appeal_of_rank)
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "u.item").open("w", encoding="latin-1") as f:
        for t in range(titles):
            day = dt.date(1980, 1, 1) + dt.timedelta(days=rng.randrange(17 * 365))
            flags = ["1" if g in item_genres[t] else "0" for g in range(len(ML_GENRES))]
            name = f"Film {t + 1} ({day.year})"
            f.write(
                "|".join([str(t + 1), name, day.strftime("%d-%b-%Y"), "", "http://example.invalid/", *flags]) + "\n"
            )
    base_s = 874_724_710  # 1997-09-20, where MovieLens-100k begins
    rows = []
    for u in range(viewers):
        taste = {g: 0.0 for g in genres}
        loved = rng.sample(genres, 2)
        taste[loved[0]], taste[loved[1]] = 1.0, 0.7
        for g in rng.sample([g for g in genres if g not in loved], 3):
            taste[g] = -0.8
        match = [sum(taste[g] for g in item_genres[t]) / math.sqrt(len(item_genres[t])) for t in range(titles)]
        weights = [appeal_of_rank[t] * math.exp(2.0 * match[t]) for t in range(titles)]
        chosen: set[int] = set()
        while len(chosen) < min(interactions, titles):
            chosen.add(rng.choices(range(titles), weights)[0])
        start = base_s + rng.randrange(150 * 86_400)
        stamps = sorted(start + rng.randrange(60 * 86_400) for _ in chosen)
        order = sorted(chosen, key=lambda _: rng.random())
        for t, ts in zip(order, stamps, strict=True):
            rating = min(5, max(1, round(3.2 + 1.6 * match[t] + rng.gauss(0.0, 0.8))))
            rows.append((ts, u + 1, t + 1, rating))
    rows.sort()
    with (directory / "u.data").open("w", encoding="latin-1") as f:
        for ts, user, item, rating in rows:
            f.write(f"{user}\t{item}\t{rating}\t{ts}\n")
    return {"titles": titles, "viewers": viewers, "interactions": len(rows)}


def write_sessions(
    ratings: Path, out: Path, top_titles: int = 0, min_ratings: int = 15, seed: int = 7, keep_times: bool = False
) -> dict[str, int]:
    """Write ``out/ratings.dat`` and ``out/movies.dat`` (MovieTweetings' layout) from the log ``ratings``
    (``movies.dat`` beside it): its ``top_titles`` most rated titles (0: all) and the viewers with at
    least ``min_ratings`` ratings of them. Unless ``keep_times``, each viewer's ratings (in their
    order) become one session a minute apart, viewers two hours apart in an order drawn from ``seed``.
    Returns its counts."""
    rows = [line.split("::") for line in ratings.read_text(encoding="utf-8").splitlines() if line.strip()]
    if top_titles > 0:
        kept = {title for title, _ in Counter(r[1] for r in rows).most_common(top_titles)}
        rows = [r for r in rows if r[1] in kept]
    by_viewer: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
    for user, title, rating, ts in rows:
        by_viewer[user].append((int(ts), title, rating))
    viewers = sorted(u for u, rated in by_viewer.items() if len(rated) >= min_ratings)
    if keep_times:
        chosen = set(viewers)
        lines = ["::".join(r) for r in rows if r[0] in chosen]
    else:
        random.Random(seed).shuffle(viewers)
        start = min((t for rated in by_viewer.values() for t, _, _ in rated), default=0)
        lines = [
            f"{user}::{title}::{rating}::{start + k * 7200 + i * 60}"
            for k, user in enumerate(viewers)
            for i, (_, title, rating) in enumerate(sorted(by_viewer[user]))
        ]
    out.mkdir(parents=True, exist_ok=True)
    (out / "ratings.dat").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    (out / "movies.dat").write_text((ratings.parent / "movies.dat").read_text(encoding="utf-8"), encoding="utf-8")
    return {"viewers": len(viewers), "ratings": len(lines)}
