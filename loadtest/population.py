"""A simulated population, deterministic from a seed: a catalog, and viewers with
hidden tastes who react to the recommendations they receive.

A viewer's appeal for a title is a fixed function of the title's genres and
tags, the viewer's hidden taste, and a per-pair jitter. Its "would finish" set
is the titles whose appeal clears the viewer's threshold: the ground truth
that learning is measured against.

>>> pop = Population(viewers=50, titles=200, seed=1)
>>> pop.catalog[0]["item_id"], len(pop.viewers)
('t000000', 50)
>>> v = pop.viewers[0]
>>> 0 < sum(pop.would_finish(v, t) for t in range(200)) < 200
True
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["DEVICES", "Population", "SimViewer"]

DEVICES = ("tv", "mobile", "tablet", "web")
DAY_MS = 86_400_000
GENRES = 20
TAGS = 200


@dataclass
class SimViewer:
    index: int
    user_id: str
    genre_taste: np.ndarray  # (GENRES,) hidden
    tag_taste: np.ndarray  # (TAGS,) hidden
    device: str
    hour: int
    threshold: float = 0.0
    tried: set[int] = field(default_factory=set)
    sent: int = 0
    session: int = 0


class Population:
    def __init__(self, viewers: int = 10_000, titles: int = 5_000, seed: int = 7, now_ms: int = 1_767_225_600_000):
        self.seed = seed
        self.now_ms = now_ms
        rng = np.random.default_rng(seed)
        self.genre_names = [f"genre{g:02d}" for g in range(GENRES)]
        self.tag_names = [f"tag{t:03d}" for t in range(TAGS)]
        # titles: 1-3 genres, 2-6 tags; tags lean towards their genre's block of tags
        self.title_genres = np.zeros((titles, GENRES), dtype=np.float32)
        self.title_tags = np.zeros((titles, TAGS), dtype=np.float32)
        self.catalog: list[dict[str, Any]] = []
        for t in range(titles):
            genres = rng.choice(GENRES, size=int(rng.integers(1, 4)), replace=False)
            home = int(genres[0]) * (TAGS // GENRES)
            tags = {int(home + rng.integers(0, TAGS // GENRES)) for _ in range(int(rng.integers(1, 4)))}
            tags |= {int(rng.integers(0, TAGS)) for _ in range(int(rng.integers(1, 3)))}
            self.title_genres[t, genres] = 1.0
            self.title_tags[t, sorted(tags)] = 1.0
            age_days = float(rng.exponential(400.0))
            self.catalog.append(
                {
                    "item_id": f"t{t:06d}",
                    "title": f"Title {t}",
                    "genres": [self.genre_names[g] for g in genres],
                    "tags": [self.tag_names[x] for x in sorted(tags)],
                    "duration_s": float(rng.choice([1320, 2700, 3000, 5400, 7200])),
                    "release_ts": int(now_ms - age_days * DAY_MS),
                    "artwork": [f"t{t:06d}-a{a}" for a in range(int(rng.integers(1, 4)))],
                }
            )
        # the threshold of each viewer is estimated on a fixed sample of titles (cheap at 100k titles)
        self._sample = np.sort(rng.choice(titles, size=min(titles, 2000), replace=False))
        self.viewers: list[SimViewer] = []
        for v in range(viewers):
            taste = np.full(GENRES, -0.3, dtype=np.float32)
            loved = rng.choice(GENRES, size=2, replace=False)
            taste[loved] = (1.0, 0.7)
            taste[rng.choice(GENRES, size=3, replace=False)] -= 0.4
            tag_taste = np.zeros(TAGS, dtype=np.float32)
            tag_taste[rng.choice(TAGS, size=8, replace=False)] = 0.5
            viewer = SimViewer(v, f"u{v:07d}", taste, tag_taste, str(rng.choice(DEVICES)), int(rng.integers(0, 24)))
            appeal = self.appeal_all(viewer, self._sample)
            viewer.threshold = float(np.quantile(appeal, 0.85))  # finishes ~15 % of the catalog
            self.viewers.append(viewer)

    def appeal_all(self, viewer: SimViewer, titles: np.ndarray) -> np.ndarray:
        g = self.title_genres[titles]
        norm = np.maximum(1.0, g.sum(axis=1))
        base = (g @ viewer.genre_taste) / np.sqrt(norm) + self.title_tags[titles] @ viewer.tag_taste
        return base + 0.15 * self._jitter(viewer.index, titles)

    def appeal(self, viewer: SimViewer, title: int) -> float:
        g = self.title_genres[title]
        base = float(g @ viewer.genre_taste) / float(np.sqrt(max(1.0, g.sum()))) + float(
            self.title_tags[title] @ viewer.tag_taste
        )
        return base + 0.15 * float(self._jitter(viewer.index, np.array([title]))[0])

    def _jitter(self, viewer: int, titles: np.ndarray) -> np.ndarray:
        # a fixed pseudo-random number per (viewer, title), uniform in [-1, 1)
        h = (titles.astype(np.uint64) * np.uint64(2654435761) + np.uint64(viewer * 40503 + self.seed)) % np.uint64(
            1_000_003
        )
        return (h.astype(np.float64) / 1_000_003) * 2 - 1

    def would_finish(self, viewer: SimViewer, title: int) -> bool:
        return self.appeal(viewer, title) >= viewer.threshold

    def title_index(self, item_id: str) -> int:
        return int(item_id[1:])

    def session(self, viewer: SimViewer, title: int, rng: random.Random, ts: int) -> list[dict[str, Any]]:
        """What the viewer does with a title it picked: a few events, decided by its hidden taste."""
        viewer.tried.add(title)
        viewer.session += 1
        entry = self.catalog[title]
        dur = float(entry["duration_s"])
        finish = self.would_finish(viewer, title)
        appeal = self.appeal(viewer, title)
        steps: list[tuple[str, float, float | None]] = [("play", 0.0, None)]
        if finish:
            if rng.random() < 0.3:
                steps += [("pause", 0.4 * dur, None), ("resume", 0.4 * dur, None)]
            if rng.random() < 0.3:
                steps.append(("rewind", 0.6 * dur, -30.0))
            steps.append(("complete", dur, None))
        elif appeal < viewer.threshold - 0.5:
            steps.append(("skip", rng.uniform(0.01, 0.08) * dur, None))
        else:
            steps += [("pause", 0.3 * dur, None), ("stop", 0.3 * dur, None)]
        events = []
        for kind, pos, offset in steps:
            viewer.sent += 1
            event: dict[str, Any] = {
                "event_id": f"{viewer.user_id}-{viewer.sent}",
                "user_id": viewer.user_id,
                "item_id": entry["item_id"],
                "type": kind,
                "ts": ts,
                "position_s": round(pos, 1),
                "duration_s": dur,
                "device": viewer.device,
            }
            if offset is not None:
                event["offset_s"] = offset
            events.append(event)
        return events

    def pick(self, viewer: SimViewer, items: list[str], rng: random.Random) -> int:
        """Choose from the top of the latest list (or at random before the first one)."""
        fresh = [self.title_index(i) for i in items if self.title_index(i) not in viewer.tried]
        if fresh:
            return fresh[min(len(fresh) - 1, int(rng.random() ** 2 * 3))]
        while True:
            t = rng.randrange(len(self.catalog))
            if t not in viewer.tried:
                return t

    def hit_rate(self, viewer: SimViewer, items: list[str]) -> float:
        """Share of a list's titles this viewer would finish."""
        if not items:
            return 0.0
        return sum(self.would_finish(viewer, self.title_index(i)) for i in items) / len(items)
