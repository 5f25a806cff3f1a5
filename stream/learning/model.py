"""What a partition learned: what is about its viewers.

A title's score for a viewer is the weighted sum of the features of
:mod:`stream.learning.features`, with weights learned online for the whole deployment by the
choice learner of :mod:`stream.learning.choice` (the outcome regression of
:mod:`stream.learning.outcome` predicts how a title would go; it does not move them). Everything
learned about titles is in the deployment-wide model of :mod:`stream.learning.shared`, which
every partition model reads but does not hold: with the taste cohorts' centres and counts and
the exploration budgets. A partition's model holds what is about its viewers: which cohort each
is in, and which artwork they respond to. Every change to it goes through its own methods
(:meth:`PartitionModel.learn_event`, :meth:`~PartitionModel.learn_viewer`).

>>> m = PartitionModel()
>>> x = {"genre": 0.9, "tag": 0.2, "context": 0.0, "cohort": 0.0, "popularity": 0.1, "trending": 0.0, "freshness": 0.0}
>>> round(m.predict_one(x), 3)  # the prior alone
1.045
>>> for _ in range(200):  # viewers keep skipping titles like this (learned in the shared model)
...     m.learn_one(x, -1.0)
>>> m.predict_one(x) < 0
True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from stream.contracts.validation import PlaybackEvent
from stream.learning.artwork import ArtworkBandit, Context
from stream.learning.choice import Choice
from stream.learning.cohorts import Cohorts, ViewerCohorts
from stream.learning.features import FEATURES
from stream.learning.outcome import PRIOR
from stream.learning.profile import daypart
from stream.learning.shared import Pairs, SharedModel
from stream.learning.signals import Signal, liked
from stream.learning.velocity import Exploration, Trending

__all__ = ["FEATURES", "PRIOR", "PartitionModel", "liked"]


class PartitionModel:
    """What one partition of viewers has taught the system.

    Kept per input partition so that it moves with its partition when workers
    join or leave, and checkpointed to that partition's changelog.
    """

    def __init__(self) -> None:
        #: Events of its partition whose outcome it learned (into the shared regression).
        self.learned = 0
        #: Offset (in its input partition) of the newest event this model reflects.
        self.offset = -1
        #: What the whole deployment learned (its trend, what its viewers watch together, the score's
        #: weights): shared by every partition (the processor hands each model its deployment's
        #: replica); not part of this model's state.
        self.shared = SharedModel()
        #: Offsets at or below ``offset`` whose events are not learned yet (see :meth:`hold`).
        self.pending: set[int] = set()
        #: Which cohort each of its viewers is in (the cohorts themselves are the deployment's).
        self.viewers = ViewerCohorts()
        #: Which artwork of each title to show, by context (see :mod:`stream.learning.artwork`).
        self.artwork = ArtworkBandit()

    # -- what ranking needs --------------------------------------------------

    def predict_one(self, x: dict[str, float]) -> float:
        """The outcome the deployment's regression expects of a pair with features ``x``."""
        return self.shared.outcome.predict_one(x)

    def learn_one(self, x: dict[str, float], y: float) -> None:
        """The deployment's regression learns one outcome at once (for in-process use: a worker's
        learns from the model topic)."""
        self.shared.outcome.learn_one(x, y)

    @property
    def trending(self) -> Trending:
        """What the deployment's viewers did with each title in the last hour (see
        :mod:`stream.learning.velocity`): in the shared model."""
        return self.shared.trending

    @property
    def cohorts(self) -> Cohorts:
        """Viewers' taste cohorts, their centres and what each finished or liked (see
        :mod:`stream.learning.cohorts`): in the shared model."""
        return self.shared.cohorts

    @property
    def exploration(self) -> Exploration:
        """The exploration impressions each new release had per cohort: in the shared model."""
        return self.shared.exploration

    @property
    def choice(self) -> Choice:
        """Which titles viewers choose over those they pass (see :mod:`stream.learning.choice`): one
        learner for the whole deployment, in the shared model."""
        return self.shared.choice

    @property
    def weights(self) -> dict[str, float]:
        """The ranking weight of each feature: its prior, plus what the choices taught.

        The outcome regression (:attr:`SharedModel.outcome`) predicts how a title would go; it does not
        move the ranking weights. Learned from the titles viewers were shown and started, it corrects
        the prior towards each outcome's size, not towards what gets chosen: once one regression
        learned from the whole deployment, the load test's lists lost their viewers' tastes (0.78 of a
        list the viewer would finish after 30 events without it, 0.15 with it).

        These are the weights of a viewer in the middle of a visit; :meth:`weights_for` also gives those
        of a viewer back after a while."""
        return self.weights_for(away=False)

    def weights_for(self, away: bool) -> dict[str, float]:
        """The ranking weights for a viewer in the middle of a visit, or (``away``) back after a while (see
        :mod:`stream.learning.choice`)."""
        return {f: PRIOR[f] + c for f, c in zip(FEATURES, self.shared.choice.total(away).tolist(), strict=True)}

    def choice_pairs(self, chosen: np.ndarray, passed: np.ndarray, corrections: Sequence[float]) -> Pairs:
        """What a viewer finishing or liking a title (``chosen``: its features) over titles it competed with
        (``passed``: theirs, a row each; FEATURES order; ``corrections``: each one's sampling correction, see
        :func:`stream.learning.choice.competitors`) teaches the shared choice learner: the differences, and
        what the rest of the score (the prior) gives each plus its correction."""
        rest = np.asarray([PRIOR[f] for f in FEATURES])
        diffs = chosen[None, :] - passed
        return diffs, diffs @ rest + np.asarray(corrections, dtype=np.float64)

    @property
    def unit(self) -> float:
        """What one finish or like adds to a cohort's count now: see :attr:`SharedModel.unit`."""
        return self.shared.unit

    def learn_event(
        self,
        x: dict[str, float] | None,
        event: PlaybackEvent,
        signal: Signal,
        shown: list[list[str]],
        device: str | None,
        cohort: int | None,
    ) -> None:
        """Learn from one playback event what a partition's model takes from it.

        ``x``: the pair's features before the event (:func:`stream.learning.features.features`),
        when the signal teaches an outcome (None otherwise: counted here, learned by the shared
        regression from the event's delta, as its trending count and what a finish or a like
        teaches the choice learner: :meth:`choice_pairs`); ``shown``: the artwork impressions of
        the viewer's last list, which a ``play`` rewards or not. What a finish or like adds to its
        cohort's counts is learned by the deployment from the event's delta, as its start's popularity.
        """
        if x is not None and signal.learns:
            self.learned += 1
        if event.type == "play":
            # the artwork bandit: which of the titles last shown was played, with which artwork
            self.artwork.feedback(
                [(i, a) for i, a in shown], event.item_id, event.artwork_id, Context(device, daypart(event.ts), cohort)
            )

    def learned_through(self, offset: int) -> None:
        """Everything of the model's input partition up to ``offset`` is learned (checkpoints carry it),
        but for the events held back (:meth:`hold`)."""
        self.offset = max(self.offset, offset)

    def hold(self, offsets: Iterable[int]) -> None:
        """Events at these offsets are applied later than the events after them (they wait for the
        catalog): until :meth:`settle`, the model does not count them as learned."""
        self.pending.update(offsets)

    def settle(self, offsets: Iterable[int]) -> None:
        """These events were processed (learned, or found to teach nothing)."""
        self.pending.difference_update(offsets)

    def knows(self, offset: int) -> bool:
        """Whether the event at ``offset`` of the input partition is in the model already."""
        return offset <= self.offset and offset not in self.pending

    def learn_viewer(
        self, user_id: str, genres: dict[str, float], applied: int
    ) -> tuple[int | None, dict[str, float] | None]:
        """Place a changed taste by the deployment's cohorts (see :meth:`ViewerCohorts.learn`): the viewer's
        cohort, and the taste for the deployment to learn (None: not due)."""
        return self.viewers.learn(user_id, genres, applied, self.shared.cohorts)

    def cohort_of(self, user_id: str, genres: dict[str, float]) -> int | None:
        """The viewer's cohort as last placed (None: no taste yet)."""
        return self.viewers.of(user_id, genres, self.shared.cohorts)

    def forget_viewer(self, user_id: str) -> None:
        """Drop what is held about one viewer (its remembered cohort); the aggregates it fed stay."""
        self.viewers.forget(user_id)

    # -- checkpoint ------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {"n": self.learned, "o": self.offset, "hold": sorted(self.pending), "aw": self.artwork.to_state()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PartitionModel:
        """A model from its checkpoint. Checkpoints written before the outcome regression, the trending
        windows, the cohorts and the exploration budgets moved to the shared model carry them too ("w",
        "tr", "co", "ex"): the shared model learns them again from the model topic, so they are left unread."""
        model = cls()
        model.learned = state["n"]
        model.offset = state.get("o", -1)
        model.pending = set(state.get("hold", []))
        if "aw" in state:
            model.artwork = ArtworkBandit.from_state(state["aw"])
        return model
