"""`make errors`: where a fold's model is wrong, to look at before the next
experiment.

- worst.png: for each probability output (a sigmoid column, or a softmax
  class), the k validation images of fold FOLD with the largest log loss on
  it: the image as the model saw it (windowed, resized, no augmentation),
  its Grad-CAM for that output beside it, the image ID, label and
  prediction;
- reliability.png: a reliability diagram per head over every finished
  fold's out-of-fold predictions (10 equal-width bins of the predicted
  probability against the observed frequency, with the expected
  calibration error);
- errors.json: the worst images' IDs, labels and predictions, and each
  head's calibration error.

Written to runs/<experiment>/errors/. Series- and study-level tasks get the
reliability diagrams (their unit is a stack of slices, not one picture)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from competition.config import Config
from competition.errors import KitError
from competition.evaluation.cv import read_oof
from competition.evaluation.scores import probability_outputs
from competition.fileio import atomic_path, write_text_atomic

BINS = 10
EPS = 1e-7


def column_losses(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Binary log loss per row of one output (NaN where the label is missing)."""
    p = np.clip(predicted, EPS, 1 - EPS)
    return -(truth * np.log(p) + (1 - truth) * np.log(1 - p))


def worst_rows(oof: pd.DataFrame, outputs: list[str], k: int) -> list[dict]:
    """The k rows with the largest loss on each output."""
    found = []
    for index, name in enumerate(outputs):
        truth, predicted = oof[f"label_{name}"].to_numpy(float), oof[f"pred_{name}"].to_numpy(float)
        losses = column_losses(truth, predicted)
        order = np.argsort(-np.nan_to_num(losses, nan=-1.0))[:k]
        for row in order[~np.isnan(losses[order])]:
            found.append({
                "output": name, "output_index": index, "image_id": str(oof["image_id"].iloc[row]),
                "label": float(truth[row]), "prediction": float(predicted[row]),
                "log_loss": float(losses[row]),
            })  # fmt: skip
    return found


def reliability(truth: np.ndarray, predicted: np.ndarray) -> dict:
    """Per bin: mean prediction, observed frequency, count; and the expected
    calibration error (the count-weighted gap)."""
    known = ~np.isnan(truth)
    truth, predicted = truth[known], predicted[known]
    bins = np.minimum((predicted * BINS).astype(int), BINS - 1)
    rows = []
    for b in range(BINS):
        inside = bins == b
        if inside.any():
            rows.append(
                (float(predicted[inside].mean()), float(truth[inside].mean()), int(inside.sum()))
            )
    total = max(len(truth), 1)
    ece = sum(n * abs(mean - freq) for mean, freq, n in rows) / total
    return {"bins": rows, "ece": float(ece), "count": len(truth)}


def head_calibration(config: Config, oof: pd.DataFrame) -> dict[str, dict]:
    """Each probability head's reliability over its columns' (prediction, label) pairs."""
    outputs, probabilities = config.task.outputs, set(probability_outputs(config.task))
    found = {}
    for head, part in config.task.head_slices():
        columns = [outputs[i] for i in range(part.start, part.stop) if i in probabilities]
        if columns:
            truth = oof[[f"label_{c}" for c in columns]].to_numpy(float).ravel()
            predicted = oof[[f"pred_{c}" for c in columns]].to_numpy(float).ravel()
            found[head.name] = reliability(truth, predicted)
    return found


def save_reliability(calibration: dict[str, dict], path: Path) -> Path:
    figure, axes = plt.subplots(
        1, len(calibration), figsize=(4 * len(calibration), 4), squeeze=False
    )
    for ax, (head, found) in zip(axes[0], calibration.items(), strict=True):
        means, freqs, counts = zip(*found["bins"], strict=True) if found["bins"] else ((), (), ())
        ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1)
        ax.plot(means, freqs, marker="o")
        for x, y, n in zip(means, freqs, counts, strict=True):
            ax.annotate(str(n), (x, y), fontsize=7, textcoords="offset points", xytext=(3, -9))
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted", ylabel="observed frequency",
               title=f"{head}: ECE {found['ece']:.4f} ({found['count']} labels)")  # fmt: skip
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=90, format="png")
    plt.close(figure)
    return path


def shown(image: np.ndarray) -> np.ndarray:
    """A model input (H, W, C) in 0..255 as an RGB or gray picture: RGB as
    is; more channels (windows, 2.5D neighbours): the middle three."""
    image = np.asarray(image, np.float32) / 255.0
    channels = image.shape[-1]
    if channels == 1:
        return image[..., 0]
    middle = max(0, channels // 2 - 1)
    return image[..., middle : middle + 3] if channels >= 3 else image.mean(axis=-1)


def save_gallery(picks: list[dict], images: np.ndarray, cams: np.ndarray, path: Path) -> Path:
    columns = 4  # (image, Grad-CAM) pairs: two picks a row
    rows = max(1, -(-len(picks) // 2))
    figure, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.9 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, (pick, image, cam) in enumerate(zip(picks, images, cams, strict=True)):
        left, right = axes[i // 2, 2 * (i % 2)], axes[i // 2, 2 * (i % 2) + 1]
        picture = shown(image)
        left.imshow(picture, cmap="gray" if picture.ndim == 2 else None)
        left.set_title(f"{pick['image_id'][:18]}\n{pick['output']}", fontsize=7)
        right.imshow(picture, cmap="gray" if picture.ndim == 2 else None)
        right.imshow(cam, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        right.set_title(f"label {pick['label']:g}  pred {pick['prediction']:.3g}", fontsize=7)
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=80, format="png")
    plt.close(figure)
    return path


def model_inputs(config: Config, fold: int, image_ids: list[str]) -> np.ndarray:
    """The images as the fold's model saw them in validation (no augmentation)."""
    from competition.pipeline.generators import prediction_generator
    from competition.pipeline.inputs import fold_data, read_inputs

    data = fold_data(config, read_inputs(config), fold)
    gen = prediction_generator(config, data, pd.DataFrame({"image_id": image_ids}))
    batches = [gen[i] for i in range(len(gen))]
    return np.concatenate([b[0] if isinstance(b, tuple) else b for b in batches])


def analyse(config: Config, fold: int, k: int) -> dict:
    """worst.png, reliability.png and errors.json under runs/<experiment>/errors/."""
    from competition.evaluation.gradcam import grad_cam
    from competition.training.model import load_checkpoint

    folds = read_oof(config.runs)
    if fold not in folds:
        raise KitError(
            f"Fold {fold} of experiment {config.experiment!r} has no out-of-fold predictions "
            f"({config.runs.fold(fold)}/oof.csv); finished folds: {sorted(folds)}. Train it: "
            f"make train FOLD={fold}"
        )
    out = config.runs.root / "errors"
    calibration = head_calibration(config, pd.concat(folds.values(), ignore_index=True))
    report = {"fold": fold, "calibration": calibration, "worst": []}
    if calibration:
        report["reliability"] = str(save_reliability(calibration, out / "reliability.png"))
    outputs = [config.task.outputs[i] for i in probability_outputs(config.task)]
    image_only = not (config.model.metadata_numeric or config.model.metadata_categorical)
    if not config.task.per_unit and outputs and image_only:  # Grad-CAM: one image input
        picks = worst_rows(folds[fold], outputs, k)
        network = load_checkpoint(config.runs.fold(fold) / "best.keras", config.model.safe_mode)
        images = model_inputs(config, fold, [p["image_id"] for p in picks])
        index = {name: config.task.outputs.index(name) for name in outputs}
        cams = grad_cam(network, images, [index[p["output"]] for p in picks])
        report["worst"] = picks
        report["gallery"] = str(save_gallery(picks, images, cams, out / f"fold{fold}_worst.png"))
    write_text_atomic(out / "errors.json", json.dumps(report, indent=2))
    return report
