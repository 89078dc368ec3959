"""Blending experiments on their out-of-fold predictions (NumPy, SciPy).

- Weights: one per experiment, non-negative and summing to 1 (a softmax of
  free parameters, searched with Nelder-Mead from equal weights and from
  each experiment alone), chosen for the task's own metric.
- Rank-based metrics (the AUCs): each experiment's predictions are turned
  into ranks in [0, 1] per output before they are weighted, so a model whose
  scores are on another scale does not dominate.
- The metric's post-processing is fitted on the blend too: a temperature
  and a clip for the log losses, a binarising threshold for pF1, an ordinal
  head's class cuts for quadratic kappa.
- The honest CV: for each fold, weights and post-processing are fitted on
  the other folds' rows and applied to that fold's; the pooled result is
  scored. The optimistic one fits and scores on all rows (what the weights
  are finally fitted on, for the test set), and flatters the blend.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.stats import rankdata

from competition.evaluation import thresholds
from competition.evaluation.scores import reduce_rows
from competition.task import TaskSpec

RANK_BASED = frozenset({"roc_auc", "mean_column_auc", "weighted_column_auc", "partial_auc"})
LOG_LOSSES = frozenset(
    {"weighted_log_loss", "log_loss", "label_weighted_log_loss", "grouped_log_loss"}
)
CLIPS = (0.0, 1e-4, 1e-3, 3e-3, 1e-2, 2e-2)
EPS = 1e-7
POST_KEYS = ("kind", "temperature", "clip", "threshold", "cuts")


@dataclass
class Fitted:
    """A blend fitted on some rows: the weights and the post-processing."""

    weights: np.ndarray
    post: dict = field(default_factory=lambda: {"kind": "none"})

    def to_dict(self, names: list[str]) -> dict:
        return {"weights": dict(zip(names, map(float, self.weights), strict=True)), **self.post}

    def cuts_by_head(self, task: TaskSpec) -> dict | None:
        """Fitted ordinal cuts as the submission's decoding takes them ({head: cuts})."""
        cuts = self.post.get("cuts")
        return None if cuts is None else {task.metric_head.name: cuts}

    @classmethod
    def from_record(cls, record: dict) -> Fitted:
        """The fitted blend make blend recorded (blend.json)."""
        post = {k: v for k, v in record.items() if k in POST_KEYS}
        return cls(np.array([record["weights"][n] for n in record["experiments"]]), post)


def ranks(values: np.ndarray) -> np.ndarray:
    """Each column's average ranks scaled to [0, 1]."""
    values = np.asarray(values, np.float64)
    if len(values) < 2:
        return np.full_like(values, 0.5)
    return (rankdata(values, axis=0) - 1) / (len(values) - 1)


class Blender:
    """Blends (experiments, rows, outputs) predictions for one task's metric."""

    def __init__(self, task: TaskSpec, rank: bool | None = None, post: bool = True):
        self.task, self.with_post = task, post
        self.rank = task.metric.name in RANK_BASED if rank is None else rank
        self.lower = task.lower_is_better

    # --- the metric ---------------------------------------------------------

    def metric(self, truth, predictions, groups=None, cuts=None) -> float:
        if groups is not None:
            truth = reduce_rows(truth, groups, "max")
            predictions = reduce_rows(predictions, groups, self.task.submission.reduce.how)
        try:
            return float(self.task.score(truth, predictions, cuts))
        except ValueError:
            return np.nan

    def _loss(self, truth, predictions, groups=None, cuts=None) -> float:
        """The metric as something to minimise (nan: worst)."""
        value = self.metric(truth, predictions, groups, cuts)
        if not np.isfinite(value):
            return np.inf
        return value if self.lower else -value

    # --- combining ----------------------------------------------------------

    def inputs(self, stack: np.ndarray) -> np.ndarray:
        """What is weighted: the predictions, or their ranks per experiment."""
        stack = np.asarray(stack, np.float64)
        return np.stack([ranks(s) for s in stack]) if self.rank else stack

    @staticmethod
    def weighted(inputs: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return np.tensordot(weights, inputs, axes=1)

    def search_weights(self, truth, inputs, groups=None) -> np.ndarray:
        """Non-negative weights summing to 1 that minimise the metric's loss."""
        count = len(inputs)
        if count == 1:
            return np.ones(1)

        def loss(free):
            weights = np.exp(free - free.max())
            return self._loss(truth, self.weighted(inputs, weights / weights.sum()), groups)

        starts = [np.zeros(count)] + [
            np.where(np.arange(count) == k, 3.0, 0.0) for k in range(count)
        ]
        best = None
        for start in starts:
            found = minimize(
                loss,
                start,
                method="Nelder-Mead",
                options={"xatol": 1e-3, "fatol": 1e-7, "maxiter": 200 * count},
            )
            if best is None or found.fun < best.fun:
                best = found
        weights = np.exp(best.x - best.x.max())
        return weights / weights.sum()

    # --- the metric's post-processing ----------------------------------------

    def _tempered(self, predictions: np.ndarray, temperature: float, clip: float) -> np.ndarray:
        """Sigmoid outputs: logit / T, clipped to [clip, 1 - clip]; softmax
        heads: log p / T renormalised, clipped and renormalised."""
        out = np.array(predictions, np.float64)
        for head, part in self.task.head_slices():
            p = np.clip(out[:, part], EPS, 1 - EPS)
            if head.kind in ("multilabel", "binary"):
                p = 1 / (1 + np.exp(-np.log(p / (1 - p)) / temperature))
                out[:, part] = np.clip(p, clip, 1 - clip) if clip else p
            elif head.kind == "multiclass":
                p = np.exp(np.log(p) / temperature)
                p = p / p.sum(axis=1, keepdims=True)
                if clip:
                    p = np.clip(p, clip, 1 - clip)
                    p = p / p.sum(axis=1, keepdims=True)
                out[:, part] = p
        return out

    @property
    def metric_has_post(self) -> bool:
        """Whether the metric has a post-processing to fit (log losses, pF1, kappa)."""
        name = self.task.metric.name
        ordinal = name == "quadratic_kappa" and self.task.metric_head.kind == "ordinal"
        return name in LOG_LOSSES or name == "pf1" or ordinal

    def fit_post(self, truth, predictions, groups=None) -> dict:
        """The post-processing that suits the metric, fitted on these rows."""
        name = self.task.metric.name
        if not (self.with_post and self.metric_has_post):
            return {"kind": "none"}
        if name in LOG_LOSSES:
            temperature = minimize_scalar(
                lambda t: self._loss(truth, self._tempered(predictions, t, 0.0), groups),
                bounds=(0.3, 3.0),
                method="bounded",
                options={"xatol": 1e-3},
            ).x
            clip = min(
                CLIPS,
                key=lambda c: self._loss(
                    truth, self._tempered(predictions, temperature, c), groups
                ),
            )
            return {"kind": "temperature", "temperature": float(temperature), "clip": float(clip)}
        if name == "pf1":
            column = predictions[:, self.task.head_slice(self.task.metric_head.name)][:, 0]
            candidates = np.unique(np.quantile(column, np.linspace(0.5, 0.999, 60)))
            best = min(
                candidates, key=lambda t: self._loss(truth, self._binarised(predictions, t), groups)
            )
            return {"kind": "threshold", "threshold": float(best)}
        head = self.task.metric_head  # quadratic kappa on an ordinal head: its class cuts
        part = self.task.head_slice(head.name)
        cuts = thresholds.tune(truth[:, part.start], predictions[:, part.start], len(head.classes))
        return {"kind": "cuts", "cuts": cuts}

    def _binarised(self, predictions, threshold: float) -> np.ndarray:
        out = np.array(predictions, np.float64)
        part = self.task.head_slice(self.task.metric_head.name)
        out[:, part] = (out[:, part] >= threshold).astype(np.float64)
        return out

    def post(self, predictions: np.ndarray, post: dict) -> np.ndarray:
        """The post-processing applied (cuts are the metric's, not the values')."""
        if post["kind"] == "temperature":
            return self._tempered(predictions, post["temperature"], post["clip"])
        if post["kind"] == "threshold":
            return self._binarised(predictions, post["threshold"])
        return np.asarray(predictions, np.float64)

    # --- fitting and applying -------------------------------------------------

    def fit(self, truth, stack, groups=None) -> Fitted:
        inputs = self.inputs(stack)
        weights = self.search_weights(truth, inputs, groups)
        return Fitted(weights, self.fit_post(truth, self.weighted(inputs, weights), groups))

    def apply(self, stack, fitted: Fitted) -> np.ndarray:
        return self.post(self.weighted(self.inputs(stack), fitted.weights), fitted.post)

    def score_fitted(self, truth, blended, fitted: Fitted, groups=None) -> float:
        return self.metric(truth, blended, groups, fitted.post.get("cuts"))


def honest_cv(blender: Blender, truth, stack, folds, groups=None) -> dict:
    """Weights and post-processing fitted without each fold, applied to it
    (its rows ranked alone, as a test set is); the pooled rows scored (an
    ordinal head's rows cut by their own fold's cuts); the per-fold fits kept."""
    stack, folds = np.asarray(stack, np.float64), np.asarray(folds)
    groups = None if groups is None else np.asarray(groups)
    pooled = np.zeros(stack.shape[1:], np.float64)
    per_fold = {}
    for fold in np.unique(folds):
        inside, out = folds != fold, folds == fold
        fitted = blender.fit(truth[inside], stack[:, inside],
                             None if groups is None else groups[inside])  # fmt: skip
        pooled[out] = blender.apply(stack[:, out], fitted)
        per_fold[int(fold)] = fitted
    cuts = None
    if any("cuts" in f.post for f in per_fold.values()):
        pooled, cuts = _cut_per_fold(blender, pooled, folds, per_fold), _identity_cuts(blender)
    return {
        "predictions": pooled,
        "per_fold": per_fold,
        "score": blender.metric(truth, pooled, groups, cuts),
    }


def _cut_per_fold(blender: Blender, pooled, folds, per_fold) -> np.ndarray:
    """An ordinal head's values turned into class positions with their fold's cuts."""
    part = blender.task.head_slice(blender.task.metric_head.name)
    out = np.array(pooled)
    for fold, fitted in per_fold.items():
        rows = folds == fold
        out[rows, part.start] = np.searchsorted(fitted.post["cuts"], pooled[rows, part.start])
    return out


def _identity_cuts(blender: Blender) -> list[float]:
    """Cuts that keep class positions as they are (already cut per fold)."""
    classes = len(blender.task.metric_head.classes)
    return (np.arange(classes - 1) + 0.5).tolist()
