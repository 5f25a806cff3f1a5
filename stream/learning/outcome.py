"""How a title would go: the outcome regression, one for the whole deployment.

A River linear regression learns, from every event's outcome (predict, then learn: a finish
1.0, an early skip -1.0, see :mod:`stream.learning.signals`) and the pair's features
(:mod:`stream.learning.features`), the correction to sensible prior weights (:data:`PRIOR`, which
are also the ranking's starting weights), and predicts how a title would go for a viewer (the
replay's rating error reads the prediction). It does not move the ranking weights (see
:attr:`stream.learning.model.PartitionModel.weights`). It is part of the deployment-wide model
(:mod:`stream.learning.shared`): every event's features and outcome are a delta every replica
learns, in the model topic's one order.

>>> o = Outcome()
>>> x = {"genre": 0.9, "tag": 0.2, "context": 0.0, "cohort": 0.0, "popularity": 0.1, "trending": 0.0, "freshness": 0.0}
>>> round(o.predict_one(x), 3)  # the prior alone
1.045
>>> for _ in range(200):  # viewers keep skipping titles like this
...     o.learn_one(x, -1.0)
>>> o.predict_one(x) < 0
True
"""

from __future__ import annotations

from typing import Any

from river import linear_model, metrics, optim, utils

__all__ = ["PRIOR", "Outcome"]

#: What a title's features are worth before anything is learned.
PRIOR = {
    "genre": 1.0,
    "tag": 0.6,
    "context": 1.0,
    "cohort": 0.4,
    "cowatch": 1.0,
    "factor": 0.5,
    "popularity": 0.25,
    "trending": 0.4,
    "trend": 0.4,
    "freshness": 0.1,
}


def _prior(x: dict[str, float]) -> float:
    """What the prior weights give a pair with features ``x``."""
    return sum(PRIOR[k] * v for k, v in x.items() if k in PRIOR)


class Outcome:
    """The outcome regression, River's protocol: ``x`` a pair's features by name, ``y`` the event's signal."""

    def __init__(self, learning_rate: float = 0.02, l2: float = 1e-4) -> None:
        self.learning_rate = learning_rate
        self.l2 = l2
        self.linear = linear_model.LinearRegression(
            optimizer=optim.SGD(learning_rate), l2=l2, intercept_lr=learning_rate
        )
        #: How far the predictions were from the outcomes they were then taught (predict, then learn).
        self.mae = metrics.MAE()
        #: Outcomes learned.
        self.learned = 0

    def predict_one(self, x: dict[str, float]) -> float:
        return _prior(x) + float(self.linear.predict_one(x))

    def learn_one(self, x: dict[str, float], y: float) -> None:
        prior = _prior(x)
        self.mae.update(y, prior + float(self.linear.predict_one(x)))
        self.linear.learn_one(x, y - prior)
        self.learned += 1

    @property
    def weights(self) -> dict[str, float]:
        """The learned correction to each feature's prior weight."""
        return dict(self.linear.weights)

    def to_state(self) -> dict[str, Any]:
        return {
            "lr": self.learning_rate,
            "l2": self.l2,
            "w": self.linear.weights,
            "b": self.linear.intercept,
            "n": self.learned,
            "mae": [self.mae.get(), self.mae._mean.n],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Outcome:
        outcome = cls(state["lr"], state["l2"])
        # River has no public setter for learned weights; the round-trip test pins this.
        outcome.linear._weights = utils.VectorDict(dict(state["w"]))
        outcome.linear.intercept = state["b"]
        outcome.learned = outcome.linear.optimizer.n_iterations = state["n"]
        mean, n = state["mae"]
        if n:
            outcome.mae._mean.update(mean, n)
        return outcome
