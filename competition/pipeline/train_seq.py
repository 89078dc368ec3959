"""Stage 2 of one fold (`make train-seq FOLD=k`): the sequence model over
each series' slice features from the fold's CNN (a series- or study-level
task: the pooled model over every slice of each unit, from the fold's
series model's frozen slice encoder, competition.sequence.units), in
`runs/<exp>/fold<k>/sequence/`, through the same fold lifecycle as stage 1
(reuse, one writer, resume after a kill, metrics).

No leakage: fold k's sequence model trains on the series of fold k's
training images only, through fold k's CNN (which trained on the same
images), and is scored on fold k's validation images, which neither model
saw. `train_ids.csv` records the images it trained on; `check_no_leak`
stops the run if one of them is a validation image.
"""

from __future__ import annotations

from pathlib import Path

import keras
import pandas as pd
import yaml

from competition.augment.layers import augmenter
from competition.config import Config
from competition.errors import KitError
from competition.evaluation.scores import score, score_groups
from competition.fileio import write_csv_atomic
from competition.pipeline.generators import embedding_generator
from competition.pipeline.inputs import FoldData, Inputs, fold_data
from competition.pipeline.train import oof_table, train_folds
from competition.sequence import features as feats
from competition.sequence import units as unit_stage
from competition.sequence.network import compiled_sequence_model
from competition.sequence.series import batches_for, predict_with_sequence, series_table
from competition.training import lifecycle, records
from competition.training.model import load_checkpoint


def check_no_leak(train_ids, valid_ids, fold: int) -> None:
    """No image is both trained on and scored."""
    both = set(train_ids) & set(valid_ids)
    if both:
        raise KitError(
            f"fold {fold}: {len(both)} validation images are also training images of the "
            f"sequence stage (e.g. {sorted(both)[:3]}): its score would not be honest"
        )


def fold_features(
    config: Config,
    fold: int,
    split: str,
    image_ids: list[str],
    source,
    augmented: list[str] = (),
    model: keras.Model | None = None,
) -> feats.Features:
    """The features of `image_ids` through fold `fold`'s CNN (those in
    `augmented` under the training augmentation), from the features file
    when it holds them for the same checkpoint, else computed and saved."""
    folder = config.runs.fold(fold)
    checkpoint, path = folder / "best.keras", feats.features_path(folder, split)
    made_from = feats.made_from(checkpoint, config.predict.tta, list(augmented), image_ids)
    found = feats.load(path, made_from)
    if found is not None:
        return found
    model = model or load_checkpoint(checkpoint, config.model.safe_mode)
    chosen = set(augmented)
    passes = []
    for ids, augment in (([i for i in image_ids if i not in chosen], False), (augmented, True)):
        if ids:
            layers = augmenter(config.augment, config.seed) if augment else None
            extractor = feats.feature_model(model, config.predict.tta, layers)
            passes.append((extractor, embedding_generator(config, ids, source, augmented=augment)))
    features = feats.compute(config.task, passes, image_ids)
    feats.save(path, features, made_from)
    return features


def headers_of(config: Config, split: str) -> pd.DataFrame:
    """series_id and z of the split's images (see series.series_table)."""
    return series_table(config.layout, split, config.data.workers)


def _saved_sequence_settings(folder: Path) -> dict | None:
    path = folder / "config.yaml"
    if not path.is_file():
        return None
    return (yaml.safe_load(path.read_text()) or {}).get("sequence")


def finished_sequence(config: Config, fold: int) -> dict | None:
    """The metrics of the fold's finished sequence stage with the same
    settings; None when it has not finished; an error naming what differs."""
    folder = config.runs.sequence(fold)
    saved = _saved_sequence_settings(folder)
    now = config.to_dict()["sequence"]
    if saved is not None and saved != now:
        changed = sorted(k for k in now if saved.get(k) != now[k])
        raise KitError(
            f"{folder} was trained with other sequence settings ({', '.join(changed)}). "
            f"Train it again with --force (make train-seq FOLD={fold} ARGS=--force), or use "
            "another experiment name."
        )
    return lifecycle.finished_metrics(folder, f"Fold {fold}'s sequence stage")


def _check_can_train(config: Config, fold: int) -> None:
    if config.model.metadata_numeric or config.model.metadata_categorical:
        raise KitError(
            "The sequence stage embeds images with the fold's CNN alone; this experiment's CNN "
            "has a metadata branch (model.metadata_*). Train the sequence stage on an image-only "
            "experiment."
        )
    if config.task.image_format != "dicom":
        raise KitError(
            f"The sequence stage reads each series in z order; the task's images are "
            f"{config.task.image_format} files, which do not form series."
        )
    stage1 = config.runs.fold(fold)
    if not (stage1 / records.METRICS).is_file():
        raise KitError(
            f"Fold {fold}'s CNN is not trained ({stage1 / records.METRICS} missing): the "
            f"sequence stage reads its features. Run make train FOLD={fold} first."
        )


def train_sequence_fold(config: Config, inputs: Inputs, fold: int, force: bool = False) -> dict:
    """Stage 2 of one fold: features, fit, out-of-fold predictions and scores."""
    _check_can_train(config, fold)
    data = fold_data(config, inputs, fold)
    finished = None if force else finished_sequence(config, fold)
    if finished is not None:
        return finished
    out = config.runs.sequence(fold)
    what = f"fold {fold}'s sequence stage of experiment {config.experiment!r}"
    with lifecycle.writing(out, what, force) as started:
        config.save(out / "config.yaml")
        fit = _fit_and_evaluate_units if config.task.per_unit else _fit_and_evaluate
        metrics = fit(config, inputs, data, out)
        return lifecycle.finish(out, metrics, started, config.task)


def _fit_and_evaluate(config: Config, inputs: Inputs, data: FoldData, out: Path) -> dict:
    fold = data.fold
    cnn = load_checkpoint(config.runs.fold(fold) / "best.keras", config.model.safe_mode)
    train_ids = list(data.train["image_id"])
    ids = [*train_ids, *data.valid["image_id"]]
    found = fold_features(config, fold, "train", ids, inputs.source, train_ids, cnn)
    headers = headers_of(config, "train")
    train_ids = [i for i in train_ids if i not in found.unreadable]
    valid_ids = list(data.valid["image_id"])
    check_no_leak(train_ids, valid_ids, fold)
    write_csv_atomic(out / "train_ids.csv", pd.DataFrame({"image_id": train_ids}))
    y_train = config.task.targets(data.train.set_index("image_id").loc[train_ids])
    seq, seed = config.sequence, config.seed
    train = batches_for(seq, seed, found.select(train_ids), headers, y_train, training=True)
    valid = batches_for(seq, seed, found.select(valid_ids), headers, data.y_valid)
    keras.utils.set_random_seed(config.seed + fold)
    model = compiled_sequence_model(config.task, seq, train.feature_dim, len(train))
    lifecycle.fit_resumable(
        model,
        train,
        valid,
        out,
        f"fold {fold}'s sequence stage",
        task=config.task,
        epochs=seq.epochs,
        patience=seq.early_stopping_patience,
    )
    return evaluate_sequence(config, data, found.select(valid_ids), headers, out)


def evaluate_sequence(config: Config, data: FoldData, valid: feats.Features, headers, out) -> dict:
    """Out-of-fold predictions of the best sequence checkpoint, scored beside stage 1's."""
    model = load_checkpoint(out / "best.keras", config.model.safe_mode)
    predictions = predict_with_sequence(model, config.sequence, config.seed, valid, headers)
    failed = [i for i in valid.ids if i in valid.unreadable]
    return _scored(config, data, predictions, {i: valid.unreadable[i] for i in failed}, out)


def _scored(config: Config, data: FoldData, predictions, failed: dict, out: Path) -> dict:
    """oof.csv and the scores of stage 2's validation predictions (an
    unreadable sample given stage 1's training mean, as stage 1 does)."""
    task = config.task
    stage1 = records.read_metrics(config.runs.fold(data.fold))
    mean = records.training_mean(stage1, task.outputs)
    predictions[data.valid["image_id"].isin(list(failed)).to_numpy()] = mean
    write_csv_atomic(out / "oof.csv", oof_table(config, data.valid, data.y_valid, predictions))
    groups = score_groups(task, data.valid)
    scores = score(task, data.y_valid, predictions, constant=mean, groups=groups)
    return {
        "fold": data.fold,
        "stage": 2,
        **scores,
        "stage1_score": stage1.get("score"),
        "unreadable_in_validation": failed,
    }


def unit_features(config: Config, fold: int, split: str, unit_ids: list[str], source,
                  model: keras.Model | None = None) -> unit_stage.UnitFeatures:  # fmt: skip
    """Every slice of `unit_ids` through fold `fold`'s frozen slice encoder,
    from the features file when it holds them for the same checkpoint."""
    folder = config.runs.fold(fold)
    checkpoint = folder / "best.keras"
    path = unit_stage.features_path(folder, split)
    made = unit_stage.made_from(checkpoint, unit_ids)
    found = unit_stage.load(path, made)
    if found is None:
        model = model or load_checkpoint(checkpoint, config.model.safe_mode)
        found = unit_stage.embed_units(unit_stage.slice_encoder_of(model), source, unit_ids)
        unit_stage.save(path, found, made)
    return found


def _fit_and_evaluate_units(config: Config, inputs: Inputs, data: FoldData, out: Path) -> dict:
    """The pooled model over every slice of the fold's training units."""
    fold, seq = data.fold, config.sequence
    valid_ids = list(data.valid["image_id"])
    every = [*data.train["image_id"], *valid_ids]
    found = unit_features(config, fold, "train", every, inputs.source)
    train_ids = [u for u in data.train["image_id"] if u not in found.unreadable]
    check_no_leak(train_ids, valid_ids, fold)
    write_csv_atomic(out / "train_ids.csv", pd.DataFrame({"image_id": train_ids}))
    y_train = config.task.targets(data.train.set_index("image_id").loc[train_ids])
    x_train = found.select(train_ids).arrays(seq.max_slices)
    train = unit_stage.UnitBatches(*x_train, y_train, seq.batch_size, config.seed + fold, True)
    valid = unit_stage.UnitBatches(*found.select(valid_ids).arrays(seq.max_slices),
                                   data.y_valid, seq.batch_size)  # fmt: skip
    keras.utils.set_random_seed(config.seed + fold)
    width = x_train[0].shape[-1]
    model = unit_stage.compiled_pooled_model(config.task, seq, width, len(train),
                                             data.training_mean)  # fmt: skip
    lifecycle.fit_resumable(model, train, valid, out, f"fold {fold}'s pooled stage",
                            task=config.task, epochs=seq.epochs,
                            patience=seq.early_stopping_patience)  # fmt: skip
    best = load_checkpoint(out / "best.keras", config.model.safe_mode)
    predictions = unit_stage.predict_pooled(best, found.select(valid_ids), seq)
    failed = {u: found.unreadable[u] for u in valid_ids if u in found.unreadable}
    return _scored(config, data, predictions, failed, out)


def train_sequence_folds(config: Config, folds: list[int], force: bool = False) -> list[dict]:
    return train_folds(config, folds, force, train_one=train_sequence_fold)
