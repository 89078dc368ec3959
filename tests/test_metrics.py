from __future__ import annotations

import numpy as np
from sklearn.metrics import log_loss

from competition.labels import WEIGHTS
from competition.metrics import WeightedBCE, WeightedLogLoss, weighted_log_loss


def random_case(seed=0, n=500):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 6)) < [0.01, 0.05, 0.04, 0.05, 0.06, 0.14]).astype(np.float32)
    y[:3] = 1  # every column has both classes
    p = np.clip(rng.beta(0.5, 3, (n, 6)), 0, 1)
    p[0, 0] = 0.0  # clipping matters
    return y, p


def test_matches_sklearn_per_column_weighted_average():
    for seed in range(5):
        y, p = random_case(seed)
        expected = np.average(
            [log_loss(y[:, k], np.clip(p[:, k], 1e-7, 1 - 1e-7), labels=[0, 1]) for k in range(6)],
            weights=WEIGHTS,
        )
        assert abs(weighted_log_loss(y, p) - expected) < 1e-6


def test_keras_loss_and_metric_equal_the_numpy_metric():
    y, p = random_case(1, n=64)
    metric = WeightedLogLoss()
    for start in range(0, 64, 16):  # accumulated over batches
        metric.update_state(y[start : start + 16], p[start : start + 16])
    assert abs(float(metric.result()) - weighted_log_loss(y, p)) < 1e-5
    assert abs(float(WeightedBCE()(y, p)) - weighted_log_loss(y, p)) < 1e-5


def test_perfect_and_prevalence_predictions():
    y, _ = random_case(2)
    assert weighted_log_loss(y, y) < 1e-5
    baseline = weighted_log_loss(y, np.broadcast_to(y.mean(0), y.shape))
    assert weighted_log_loss(y, np.full_like(y, 0.5)) > baseline
