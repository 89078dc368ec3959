"""Stage 2 at prediction: per fold, the test images' features through that
fold's CNN, then that fold's sequence model over each test series (the
same functions as its validation), and the folds' outputs combined as
`predict.ensemble` says. Folds are combined after the sequence model:
embeddings of separately trained CNNs do not share a basis, their outputs do."""

from __future__ import annotations

import numpy as np

from competition.config import Config
from competition.errors import KitError
from competition.inference.ensemble import combine_folds
from competition.layout import fold_dir
from competition.runs import has_sequence, sequence_dir
from competition.sequence import features as feats
from competition.sequence.series import series_table
from competition.sequence.train import predict_with_sequence


def stage_for(config: Config, folds: list[int]) -> int:
    """predict.stage resolved: auto is 2 when every fold has a sequence model."""
    wanted = config.predict.stage
    ready = [f for f in folds if has_sequence(config, f)]
    if wanted == 2 and len(ready) < len(folds):
        missing = sorted(set(folds) - set(ready))
        raise KitError(
            f"predict.stage=2 but fold(s) {missing} have no trained sequence stage "
            f"({sequence_dir(config, missing[0])}). Run make train-seq FOLD={missing[0]}, "
            "or predict with predict.stage=1."
        )
    if wanted == "auto":
        return 2 if folds and len(ready) == len(folds) else 1
    return int(wanted)


def predict_sequence(
    config: Config, folds: list[int], image_ids: list[str], fields, source
) -> tuple[np.ndarray, dict[str, str]]:
    """(N, outputs) combined over the folds, and the images that could not be read."""
    from competition.training.model import load_checkpoint

    headers = series_table(config, "test")
    per_fold, unreadable = [], {}
    for fold in folds:
        found = feats.fold_features(config, fold_dir(config, fold), "test", image_ids, source)
        unreadable.update(found.unreadable)
        model = load_checkpoint(sequence_dir(config, fold) / "best.keras", config.model.safe_mode)
        per_fold.append(predict_with_sequence(model, config, found, headers))
    return combine_folds(np.stack(per_fold, axis=1), config.predict.ensemble), unreadable
