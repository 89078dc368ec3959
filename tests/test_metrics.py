from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from competition.config import load_config
from competition.evaluation.metrics import METRICS, mean_column_auc, roc_auc, weighted_log_loss
from competition.evaluation.scores import score
from competition.training.losses import HeadAUC, TaskLoss, head_specs, metric_twin

from helpers import REPO

RSNA = load_config(REPO / "configs" / "rsna_ich.yaml").task
WEIGHTS = RSNA.metric_weights


def random_case(seed=0, n=500):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 6)) < [0.01, 0.05, 0.04, 0.05, 0.06, 0.14]).astype(np.float32)
    y[:3] = 1  # every column has both classes
    p = np.clip(rng.beta(0.5, 3, (n, 6)), 0, 1)
    p[0, 0] = 0.0  # clipping matters
    return y, p


def test_rsna_metric_weights_come_from_the_preset():
    assert WEIGHTS == [1, 1, 1, 1, 1, 2] and RSNA.metric.name == "weighted_log_loss"


def test_matches_sklearn_per_column_weighted_average():
    for seed in range(5):
        y, p = random_case(seed)
        expected = np.average(
            [log_loss(y[:, k], np.clip(p[:, k], 1e-7, 1 - 1e-7), labels=[0, 1]) for k in range(6)],
            weights=WEIGHTS,
        )
        assert abs(weighted_log_loss(y, p, WEIGHTS) - expected) < 1e-6
        assert abs(RSNA.score(y, p) - expected) < 1e-6


def test_keras_loss_and_metric_equal_the_numpy_metric():
    y, p = random_case(1, n=64)
    metric = metric_twin(RSNA)
    assert metric.name == "weighted_log_loss"
    for start in range(0, 64, 16):  # accumulated over batches
        metric.update_state(y[start : start + 16], p[start : start + 16])
    assert abs(float(metric.result()) - weighted_log_loss(y, p, WEIGHTS)) < 1e-5
    loss = TaskLoss(head_specs(RSNA))
    assert abs(float(loss(y, p)) - weighted_log_loss(y, p, WEIGHTS)) < 1e-5


def test_perfect_and_prevalence_predictions():
    y, _ = random_case(2)
    assert weighted_log_loss(y, y, WEIGHTS) < 1e-5
    baseline = weighted_log_loss(y, np.broadcast_to(y.mean(0), y.shape), WEIGHTS)
    assert weighted_log_loss(y, np.full_like(y, 0.5), WEIGHTS) > baseline
    found = score(RSNA, y, y)
    assert found["score"] < 1e-5 and abs(found["baseline_score"] - baseline) < 1e-9


def test_auc_metrics_equal_sklearn_and_refuse_a_single_class():
    y, p = random_case(3)
    assert roc_auc(y[:, [5]], p[:, [5]]) == pytest.approx(
        roc_auc_score(y[:, 5], p[:, 5]), abs=1e-12
    )
    expected = np.mean([roc_auc_score(y[:, k], p[:, k]) for k in range(6)])
    assert mean_column_auc(y, p) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match=r"undefined for column\(s\) \[0\]"):
        mean_column_auc(np.array([[0, 0], [0, 1], [0, 0], [0, 1]]), np.full((4, 2), 0.5))


def test_keras_auc_twin_is_close_to_sklearn():
    y, p = random_case(4, n=2000)
    twin = HeadAUC(5, 6, name="roc_auc")
    twin.update_state(y, p)
    assert abs(float(twin.result()) - roc_auc_score(y[:, 5], p[:, 5])) < 0.01


def test_registry_says_direction_and_kinds():
    assert METRICS["weighted_log_loss"].lower_is_better
    assert not METRICS["roc_auc"].lower_is_better and METRICS["roc_auc"].kinds == {"binary"}
