"""An experiment's out-of-fold store: its pooled out-of-fold predictions
(`runs/<experiment>/oof.csv`: image or unit ID, fold, pred_*, label_*) and
its test predictions (`test_preds.csv`), described by `store.json`: the
outputs, the stage they come from, the folds, the digest of the data they
learned from (the label CSV and folds.csv) and a digest of which ID lies in
which fold. Blends and stacks combine experiments only when those agree;
anything else is an error naming the experiments and what differs.

Training and prediction rewrite the store when they finish; a reader
rebuilds it from the fold folders when a fold's oof.csv is newer."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from competition.errors import KitError
from competition.evaluation.cv import read_oof
from competition.fileio import write_csv_atomic, write_text_atomic
from competition.layout import RunLayout

STORE = "store.json"
POOLED = "oof.csv"
TEST = "test_preds.csv"


@dataclass
class Stored:
    """One experiment's predictions as a blend or a stack takes them."""

    experiment: str
    record: dict  # store.json
    oof: pd.DataFrame  # image_id, fold, [group], pred_*, label_*; sorted by image_id
    test: pd.DataFrame | None  # index image_id, one column per output

    @property
    def outputs(self) -> list[str]:
        return self.record["outputs"]

    def predictions(self) -> np.ndarray:
        return self.oof[[f"pred_{o}" for o in self.outputs]].to_numpy(np.float64)

    def truth(self) -> np.ndarray:
        return self.oof[[f"label_{o}" for o in self.outputs]].to_numpy(np.float64)


def _fold_stage(runs: RunLayout) -> tuple[int, dict[int, pd.DataFrame]]:
    """The stage predict would use (2 when every fold has a sequence stage) and its oofs."""
    first = read_oof(runs)
    second = read_oof(runs, stage=2)
    if second and set(second) == set(first):
        return 2, second
    return 1, first


def folds_digest(oof: pd.DataFrame) -> str:
    """Which ID lies in which fold, as one hash."""
    pairs = oof[["image_id", "fold"]].sort_values("image_id")
    text = "\n".join(f"{i}\t{f}" for i, f in zip(pairs["image_id"], pairs["fold"], strict=True))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def write_store(runs: RunLayout, outputs: list[str], fingerprint: str | None) -> dict:
    """Pool the finished folds' out-of-fold predictions into oof.csv and
    describe them (and test_preds.csv, when there is one) in store.json."""
    stage, folds = _fold_stage(runs)
    pooled = pd.concat(
        [frame.assign(fold=k) for k, frame in folds.items()], ignore_index=True
    ).sort_values("image_id", kind="stable")
    front = ["image_id", "fold", *(["group"] if "group" in pooled else [])]
    pooled = pooled[front + [c for c in pooled.columns if c not in front]]
    write_csv_atomic(runs.root / POOLED, pooled, float_format="%.7g")
    test = runs.root / TEST
    predict = runs.root / "predict.json"
    record = {
        "experiment": runs.experiment,
        "stage": stage,
        "outputs": list(outputs),
        "folds": sorted(folds),
        "rows": len(pooled),
        "data_fingerprint": fingerprint,
        "folds_digest": folds_digest(pooled),
        "test": TEST if test.is_file() else None,
        "test_folds": json.loads(predict.read_text()).get("folds") if predict.is_file() else None,
    }
    write_text_atomic(runs.root / STORE, json.dumps(record, indent=2))
    return record


def _stale(runs: RunLayout) -> bool:
    store = runs.root / STORE
    if not store.is_file() or not (runs.root / POOLED).is_file():
        return True
    found = list(runs.root.glob("fold*/oof.csv"))
    if not found:  # a blend's folder: written whole, with its store
        return False
    record = json.loads(store.read_text())
    if sorted(int(p.parent.name.removeprefix("fold")) for p in found) != record["folds"]:
        return True
    newest = [p.stat().st_mtime for p in runs.root.glob("fold*/**/oof.csv")]
    test = runs.root / TEST
    if test.is_file():
        newest.append(test.stat().st_mtime)
    return max(newest, default=0) > store.stat().st_mtime


def open_store(
    runs: RunLayout, outputs: list[str], fingerprint: str | None, need_test: bool = False
) -> Stored:
    """The experiment's store, rebuilt first when a fold or the test
    predictions are newer than it; `need_test`: its test predictions too."""
    if not runs.root.is_dir():
        raise KitError(f"No experiment {runs.experiment!r} in {runs.runs_dir} ({runs.root})")
    record = (
        write_store(runs, outputs, fingerprint)
        if _stale(runs)
        else json.loads((runs.root / STORE).read_text())
    )
    oof = pd.read_csv(runs.root / POOLED, dtype={"image_id": str})
    test = None
    if record["test"]:
        test = pd.read_csv(runs.root / TEST, dtype={"image_id": str}).set_index("image_id")
    elif need_test:
        raise KitError(
            f"Experiment {runs.experiment!r} has no test predictions ({runs.root / TEST}). "
            f"Predict them first: make predict EXPERIMENT={runs.experiment}"
        )
    return Stored(runs.experiment, record, oof, test)


def check_combinable(stores: list[Stored]) -> None:
    """The experiments predict the same outputs for the same IDs in the same
    folds of the same data: otherwise an error naming them and what differs."""
    first = stores[0]
    for other in stores[1:]:
        pair = f"{first.experiment!r} and {other.experiment!r}"
        problems = []
        if other.outputs != first.outputs:
            problems.append(f"outputs {first.outputs} vs {other.outputs}")
        a, b = first.record["data_fingerprint"], other.record["data_fingerprint"]
        if a and b and a != b:
            problems.append(
                "data: they learned from different label CSVs or folds.csv "
                f"(fingerprints {a} vs {b})"
            )
        if first.record["folds"] != other.record["folds"]:
            problems.append(f"trained folds {first.record['folds']} vs {other.record['folds']}")
        elif first.record["folds_digest"] != other.record["folds_digest"]:
            problems.append(
                f"the same folds hold different IDs ({first.record['rows']} vs "
                f"{other.record['rows']} out-of-fold rows)"
            )
        if problems:
            raise KitError(
                f"Experiments {pair} cannot be combined: " + "; ".join(problems) + ". Train "
                "them on the same data and folds (make folds once; every fold of each), "
                "or leave one out."
            )
