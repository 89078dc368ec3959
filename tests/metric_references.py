"""Second implementations of the recent competitions' metrics, written from
their official definitions in the form the hosts scored them: a solution
and a submission table, pandas and scikit-learn. The kit's NumPy versions
(competition.evaluation.weighted_losses and .ranking) are tested against
these.

- Cervical Spine 2022: the weighted multi-label log loss of the evaluation
  page (per study: weights 7/14 for patient_overall and 1/2 for C1-C7 by the
  true label, normalised by the study's weight sum), from melted rows
  `<study>_<label>`.
- Abdominal Trauma 2023: the host's metric notebook: per label group, the
  submission's rows renormalised and sklearn.metrics.log_loss with the
  solution's `<group>_weight`; `any_injury` from max(1 - healthy) with weight
  6 if injured, else 1; the mean of the six.
- Lumbar Spine 2024: the host's metric notebook: rows
  `<study>_<condition>_<level>`, sklearn log_loss per condition (spinal,
  foraminal, subarticular) with sample_weight 1/2/4, plus `any_severe_spinal`
  (max severe per study, weighted by the study's largest spinal sample
  weight); the mean of the four.
- Aneurysm 2025: sklearn roc_auc_score per column, averaged 13:1.
- ISIC 2024: the ISIC-Research metric: labels and scores flipped, the ROC
  curve's partial area below FPR 0.2 with sklearn's auc.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import sklearn.metrics

CERVICAL = ["patient_overall", "C1", "C2", "C3", "C4", "C5", "C6", "C7"]


def cervical(solution: pd.DataFrame, submission: pd.DataFrame) -> float:
    """solution: row_id, fractured (0/1); submission: row_id, fractured (p)."""
    table = solution.merge(submission, on="row_id", suffixes=("_true", "_pred"))
    parts = table["row_id"].str.split("_", n=1, expand=True)
    table["study"], table["label"] = parts[0], parts[1]
    total = 0.0
    studies = table.groupby("study")
    for _, rows in studies:
        y = rows["fractured_true"].to_numpy(float)
        p = np.clip(rows["fractured_pred"].to_numpy(float), 1e-15, 1 - 1e-15)
        overall = (rows["label"] == "patient_overall").to_numpy()
        w = np.where(overall, np.where(y == 1, 14, 7), np.where(y == 1, 2, 1))
        loss = -(y * np.log(p) + (1 - y) * np.log(1 - p))
        total += (w * loss).sum() / w.sum()
    return total / studies.ngroups


ABDOMINAL_BINARY = ["bowel", "extravasation"]
ABDOMINAL_TRIPLE = ["kidney", "liver", "spleen"]


def abdominal_columns(organ: str) -> list[str]:
    kinds = ["healthy", "injury"] if organ in ABDOMINAL_BINARY else ["healthy", "low", "high"]
    return [f"{organ}_{k}" for k in kinds]


def abdominal_solution(labels: pd.DataFrame) -> pd.DataFrame:
    """The host's weight columns added to one-hot labels."""
    solution = labels.copy()
    solution["bowel_weight"] = np.where(solution["bowel_injury"] == 1, 2, 1)
    solution["extravasation_weight"] = np.where(solution["extravasation_injury"] == 1, 6, 1)
    for organ in ABDOMINAL_TRIPLE:
        solution[f"{organ}_weight"] = np.where(
            solution[f"{organ}_low"] == 1, 2, np.where(solution[f"{organ}_high"] == 1, 4, 1)
        )
    injured = (1 - solution[[f"{o}_healthy" for o in ABDOMINAL_BINARY + ABDOMINAL_TRIPLE]]).max(
        axis=1
    )
    solution["any_injury_weight"] = np.where(injured == 1, 6, 1)
    return solution


def abdominal(solution: pd.DataFrame, submission: pd.DataFrame) -> float:
    solution, submission = solution.copy(), submission.copy()
    losses = []
    for organ in ABDOMINAL_BINARY + ABDOMINAL_TRIPLE:
        columns = abdominal_columns(organ)
        submission[columns] = submission[columns].div(submission[columns].sum(axis=1), axis=0)
        losses.append(
            sklearn.metrics.log_loss(
                solution[columns].to_numpy(),
                submission[columns].to_numpy(),
                sample_weight=solution[f"{organ}_weight"].to_numpy(),
            )
        )
    healthy = [f"{o}_healthy" for o in ABDOMINAL_BINARY + ABDOMINAL_TRIPLE]
    losses.append(
        sklearn.metrics.log_loss(
            (1 - solution[healthy]).max(axis=1).to_numpy(),
            (1 - submission[healthy]).max(axis=1).to_numpy(),
            sample_weight=solution["any_injury_weight"].to_numpy(),
            labels=[0, 1],
        )
    )
    return float(np.mean(losses))


LUMBAR_CONDITIONS = [
    "spinal_canal_stenosis",
    "left_neural_foraminal_narrowing",
    "right_neural_foraminal_narrowing",
    "left_subarticular_stenosis",
    "right_subarticular_stenosis",
]
LUMBAR_LEVELS = ["l1_l2", "l2_l3", "l3_l4", "l4_l5", "l5_s1"]
SEVERITIES = ["normal_mild", "moderate", "severe"]


def lumbar(solution: pd.DataFrame, submission: pd.DataFrame) -> float:
    """solution: row_id, normal_mild, moderate, severe (one-hot), sample_weight;
    submission: row_id and the three probabilities, same rows and order."""
    solution, submission = solution.copy(), submission.copy()
    solution["study"] = solution["row_id"].str.split("_").str[0]
    solution["condition"] = [
        next(c for c in ("spinal", "foraminal", "subarticular") if c in r)
        for r in solution["row_id"]
    ]
    submission["study"], submission["condition"] = solution["study"], solution["condition"]
    losses = []
    for condition in ("spinal", "foraminal", "subarticular"):
        rows = solution["condition"] == condition
        losses.append(
            sklearn.metrics.log_loss(
                solution.loc[rows, SEVERITIES].to_numpy(),
                submission.loc[rows, SEVERITIES].to_numpy(),
                sample_weight=solution.loc[rows, "sample_weight"].to_numpy(),
            )
        )
    spinal = solution["condition"] == "spinal"
    labels = solution[spinal].groupby("study")["severe"].max()
    weights = solution[spinal].groupby("study")["sample_weight"].max()
    predictions = submission[spinal].groupby("study")["severe"].max()
    losses.append(
        sklearn.metrics.log_loss(labels, predictions, sample_weight=weights, labels=[0, 1])
    )
    return float(np.mean(losses))


def aneurysm(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Columns: 13 locations, then Aneurysm Present."""
    aucs = [sklearn.metrics.roc_auc_score(y_true[:, k], y_pred[:, k]) for k in range(14)]
    return float(np.average(aucs, weights=[1] * 13 + [13]))


def isic_partial_auc(y_true: np.ndarray, y_pred: np.ndarray, min_tpr: float = 0.8) -> float:
    v_gt = np.abs(np.asarray(y_true) - 1)
    v_pred = -1.0 * np.asarray(y_pred)
    max_fpr = abs(1 - min_tpr)
    fpr, tpr, _ = sklearn.metrics.roc_curve(v_gt, v_pred)
    stop = np.searchsorted(fpr, max_fpr, "right")
    tpr = np.append(
        tpr[:stop], np.interp(max_fpr, fpr[stop - 1 : stop + 1], tpr[stop - 1 : stop + 1])
    )
    fpr = np.append(fpr[:stop], max_fpr)
    return float(sklearn.metrics.auc(fpr, tpr))
