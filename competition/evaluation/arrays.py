"""Labels and predictions as the metrics take them: float64 (rows, columns)
of the same shape, or an error naming both shapes."""

from __future__ import annotations

import numpy as np


def paired(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    y_true, y_pred = y_true.reshape(len(y_true), -1), y_pred.reshape(len(y_pred), -1)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            "expected labels and predictions of the same shape (rows, columns). "
            f"Received: {y_true.shape} and {y_pred.shape}"
        )
    return y_true, y_pred
