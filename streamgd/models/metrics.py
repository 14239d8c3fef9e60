"""Streaming evaluation metrics: each one is updated chunk by chunk, merges with another of its kind, and keeps a
fixed amount of state whatever the number of rows.

Every update is vectorised over the chunk (``np.bincount``, reductions); nothing loops over rows in Python.
Losses are computed from margins (decision values), not from probabilities, so they stay exact where a
probability would round to 0 or 1.

>>> import numpy as np
>>> metrics = RegressionMetrics()
>>> metrics.update(np.array([1.0, 2.0]), np.array([1.0, 3.0]))
>>> metrics.update(np.array([3.0]), np.array([3.0]))
>>> {name: round(value, 6) for name, value in metrics.result().items()}
{'rows': 3, 'rmse': 0.57735, 'mae': 0.333333, 'r2': 0.5}
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..features.stats import ColumnStats, array_stats

AUC_BINS = 1 << 16
AUC_LIMIT = 40.0
AUC_MAX_COUNTERS = 1 << 23  # 64 MB of int64 counts at most, whatever the number of classes


def _log_loss(y: np.ndarray, margins: np.ndarray) -> np.ndarray:
    """Cross-entropy of class indices ``y``: binary from one margin per row (logit of class 1), multinomial from
    one margin per class."""
    if margins.ndim == 1:
        return np.logaddexp(0.0, margins) - y * margins
    top = margins.max(axis=1)
    log_norm = top + np.log(np.exp(margins - top[:, None]).sum(axis=1))
    return log_norm - np.take_along_axis(margins, y.astype(np.int64)[:, None], axis=1)[:, 0]


def _binary_hinges(y: np.ndarray, margins: np.ndarray) -> np.ndarray:
    """``max(0, 1 - s m)`` with s = +-1 for class indices 1 and 0, shape (n, 1); beyond two classes (one margin
    per class, one-vs-rest) class k's binary hinge of "y == k", shape (n, K)."""
    if margins.ndim == 1:
        return np.maximum(0.0, 1.0 - (2.0 * y - 1.0) * margins)[:, None]
    signs = np.where(y.astype(np.int64)[:, None] == np.arange(margins.shape[1]), 1.0, -1.0)
    return np.maximum(0.0, 1.0 - signs * margins)


def _hinge(y: np.ndarray, margins: np.ndarray) -> np.ndarray:
    return _binary_hinges(y, margins).sum(axis=1)


def _squared_hinge(y: np.ndarray, margins: np.ndarray) -> np.ndarray:
    return (_binary_hinges(y, margins) ** 2).sum(axis=1)


def _poisson_deviance(y: np.ndarray, margins: np.ndarray) -> np.ndarray:
    """Unit Poisson deviance ``2 (y log(y / mu) - y + mu)`` with ``log mu`` = the margin (log link)."""
    y_log_y = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0)), 0.0)
    return 2.0 * (y_log_y - y * margins - y + np.exp(margins))


LOSSES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "log_loss": _log_loss,
    "hinge_loss": _hinge,
    "squared_hinge_loss": _squared_hinge,
    "mean_poisson_deviance": _poisson_deviance,
}


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator / denominator) if denominator else None


class MeanLoss:
    """The mean of one of ``LOSSES`` over every row seen.

    >>> loss = MeanLoss("hinge_loss")
    >>> loss.update(np.array([1.0, 0.0]), np.array([0.5, -2.0]))
    >>> loss.result()
    {'hinge_loss': 0.25}
    """

    def __init__(self, name: str):
        if name not in LOSSES:
            raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(LOSSES)}")
        self.name = name
        self.total = 0.0
        self.rows = 0

    def update(self, y: np.ndarray, margins: np.ndarray) -> None:
        self.total += float(LOSSES[self.name](y, margins).sum())
        self.rows += len(y)

    def merge(self, other: MeanLoss) -> None:
        self.total += other.total
        self.rows += other.rows

    def result(self) -> dict[str, float | None]:
        return {self.name: _ratio(self.total, self.rows)}


class ConfusionMatrix:
    """Counts of (true class, predicted class) pairs; accuracy is its trace over its total.

    >>> matrix = ConfusionMatrix(2)
    >>> matrix.update(np.array([0, 1, 1]), np.array([0, 0, 1]))
    >>> matrix.counts.tolist(), matrix.accuracy()
    ([[1, 0], [1, 1]], 0.6666666666666666)
    """

    def __init__(self, n_classes: int):
        self.n_classes = n_classes
        self.counts = np.zeros((n_classes, n_classes), dtype=np.int64)

    def update(self, y: np.ndarray, predicted: np.ndarray) -> None:
        pairs = y.astype(np.int64) * self.n_classes + predicted.astype(np.int64)
        self.counts += np.bincount(pairs, minlength=self.n_classes ** 2).reshape(self.n_classes, self.n_classes)

    def merge(self, other: ConfusionMatrix) -> None:
        self.counts += other.counts

    def accuracy(self) -> float | None:
        return _ratio(np.trace(self.counts), self.counts.sum())


class HistogramAUC:
    """ROC AUC of ``n_scores`` scores in fixed memory: a histogram per score of its positive and negative rows.

    Approximation: scores are clipped to [-limit, limit] and cut into ``bins`` equal bins; a positive and a
    negative in the same bin count as half a correctly ordered pair, exactly as a tie does. The exact AUC is
    therefore within ``0.5 * (pairs sharing a bin) / (positives * negatives)`` of the result (``max_error()``):
    with 2^16 bins over margins in [-40, 40] (width 0.0012) that is far below 1e-3 unless the scores pile up
    beyond the limits. Large numbers of scores get fewer bins, so the counts never exceed ``AUC_MAX_COUNTERS``.

    >>> auc = HistogramAUC(1)
    >>> auc.update(np.array([[1.0], [0.0], [0.0]]), np.array([[2.0], [-1.0], [3.0]]))
    >>> auc.result()
    [0.5]
    """

    def __init__(self, n_scores: int, bins: int = AUC_BINS, limit: float = AUC_LIMIT):
        self.n_scores = n_scores
        self.bins = int(max(1 << 10, min(bins, AUC_MAX_COUNTERS // (2 * n_scores))))
        self.limit = float(limit)
        self.counts = np.zeros((n_scores, 2, self.bins), dtype=np.int64)  # [score, is positive, bin]

    def update(self, positive: np.ndarray, scores: np.ndarray) -> None:
        """``positive`` and ``scores`` have shape (n_rows, n_scores): row i is a positive of score k or not."""
        width = 2.0 * self.limit / self.bins
        bin_index = np.floor((np.clip(scores, -self.limit, self.limit) + self.limit) / width).astype(np.int64)
        np.minimum(bin_index, self.bins - 1, out=bin_index)
        flat = (np.arange(self.n_scores, dtype=np.int64) * 2 + (positive != 0)) * self.bins + bin_index
        self.counts += np.bincount(flat.ravel(), minlength=self.counts.size).reshape(self.counts.shape)

    def merge(self, other: HistogramAUC) -> None:
        self.counts += other.counts

    def _pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per score: correctly ordered pairs (ties as half), pairs sharing a bin, and all pairs."""
        negative = self.counts[:, 0].astype(np.float64)
        positive = self.counts[:, 1].astype(np.float64)
        negatives_below = np.cumsum(negative, axis=1) - negative
        shared = (positive * negative).sum(axis=1)
        ordered = (positive * negatives_below).sum(axis=1) + 0.5 * shared
        return ordered, shared, positive.sum(axis=1) * negative.sum(axis=1)

    def result(self) -> list[float | None]:
        """The AUC of each score (None where it has no positives or no negatives)."""
        ordered, _, pairs = self._pairs()
        return [_ratio(o, p) for o, p in zip(ordered, pairs)]

    def max_error(self) -> list[float | None]:
        """The most each AUC can differ from the exact one, from the pairs that share a bin."""
        _, shared, pairs = self._pairs()
        return [_ratio(0.5 * s, p) for s, p in zip(shared, pairs)]


def class_scores(margins: np.ndarray, one_vs_rest: bool = False) -> np.ndarray:
    """Scores that rank rows by each class's probability, shape (n, 1) for a binary model, (n, K) otherwise.
    One-vs-rest margins (SVMs over K classes) are each class's score as they are.

    A binary model's score is the logit of class 1 (its margin). A multinomial one's score for class k is the
    logit ``log p_k - log(1 - p_k)`` of its softmax probability, a monotone function of ``p_k``, so the one-vs-rest
    AUC equals that of the probabilities while keeping resolution where ``p_k`` is close to 0.
    """
    if margins.ndim == 1:
        return margins[:, None]
    if one_vs_rest:
        return margins
    if margins.shape[1] == 2:
        return (margins[:, 1] - margins[:, 0])[:, None]
    top = margins.max(axis=1, keepdims=True)
    log_p = margins - top - np.log(np.exp(margins - top).sum(axis=1, keepdims=True))
    with np.errstate(divide="ignore"):  # p_k rounding to 1 gives +inf, which the AUC histogram clips
        return log_p - np.log1p(-np.exp(log_p))


def predicted_classes(margins: np.ndarray) -> np.ndarray:
    """Class indices a linear classifier predicts: margin > 0 for one margin, the largest margin otherwise."""
    return (margins > 0).astype(np.int64) if margins.ndim == 1 else margins.argmax(axis=1)


class ClassificationMetrics:
    """Accuracy, ROC AUC (one-vs-rest macro average beyond two classes) and the confusion matrix, from class
    indices and margins (one column per class, or one for a binary model).

    >>> metrics = ClassificationMetrics(2)
    >>> metrics.update(np.array([0.0, 1.0, 1.0, 0.0]), np.array([-2.0, 1.0, -0.5, 0.3]))
    >>> metrics.result()
    {'rows': 4, 'accuracy': 0.5, 'roc_auc': 0.75}
    """

    def __init__(self, n_classes: int, bins: int = AUC_BINS, limit: float = AUC_LIMIT, one_vs_rest: bool = False):
        self.n_classes = n_classes
        self.one_vs_rest = one_vs_rest  # margins are one-vs-rest scores (SVMs), not softmax logits
        self.confusion = ConfusionMatrix(n_classes)
        self.auc = HistogramAUC(1 if n_classes == 2 else n_classes, bins, limit)

    def update(self, y: np.ndarray, margins: np.ndarray) -> None:
        y = y.astype(np.int64)
        self.confusion.update(y, predicted_classes(margins))
        if self.n_classes == 2:
            positive = (y == 1)[:, None]
        else:
            positive = y[:, None] == np.arange(self.n_classes)
        self.auc.update(positive, class_scores(margins, self.one_vs_rest))

    def merge(self, other: ClassificationMetrics) -> None:
        self.confusion.merge(other.confusion)
        self.auc.merge(other.auc)

    def result(self) -> dict[str, int | float | None]:
        per_class = self.auc.result()
        auc = None if any(a is None for a in per_class) else float(np.mean(per_class))
        return {"rows": int(self.confusion.counts.sum()), "accuracy": self.confusion.accuracy(), "roc_auc": auc}


class RegressionMetrics:
    """RMSE, MAE and R² of predictions; the target's mean and spread are merged chunk by chunk as the statistics
    pass merges columns (``ColumnStats.merge``: Chan et al.'s parallel update), never as a sum of squares minus
    a squared sum.
    """

    def __init__(self) -> None:
        self.target = ColumnStats()
        self.squared_error = 0.0
        self.absolute_error = 0.0

    @property
    def rows(self) -> int:
        return self.target.count

    def update(self, y: np.ndarray, predicted: np.ndarray) -> None:
        if len(y) == 0:
            return
        residual = predicted - y
        self.target = self.target.merge(array_stats(y))
        self.squared_error += float((residual ** 2).sum())
        self.absolute_error += float(np.abs(residual).sum())

    def merge(self, other: RegressionMetrics) -> None:
        self.target = self.target.merge(other.target)
        self.squared_error += other.squared_error
        self.absolute_error += other.absolute_error

    def r2(self) -> float | None:
        """1 - SSE / SST; as scikit-learn's ``r2_score``, 1 for a perfect fit of a constant target, else 0 there."""
        if self.rows == 0:
            return None
        total = self.target.var * self.rows
        if total == 0.0:
            return 1.0 if self.squared_error == 0.0 else 0.0
        return 1.0 - self.squared_error / total

    def result(self) -> dict[str, int | float | None]:
        mse = _ratio(self.squared_error, self.rows)
        return {"rows": self.rows, "rmse": None if mse is None else float(np.sqrt(mse)),
                "mae": _ratio(self.absolute_error, self.rows), "r2": self.r2()}
