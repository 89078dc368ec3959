"""A kernel that submits more than one experiment's fold ensemble
(`kaggle.submit`): a stack (the experiment's `stack:` boosters over the
test CSV and stack.experiments' test predictions) or a blend (`kaggle.blend`:
make blend's weights and post-processing over its experiments' test
predictions).

make kaggle bundles every experiment the second level needs (each one's
folds and its own config under configs/<experiment>.yaml) and the second
level's files; the kernel predicts the test set with each experiment in
turn, then applies the second level and writes the one submission."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from competition.config import Config
from competition.errors import KitError
from competition.pipeline import assemble

BLEND_FILE = "blend.json"


def second_level_folder(config: Config) -> Path | None:
    """Where the second level's files are: runs/<experiment>/<stack.name>/ or runs/<blend>/."""
    submit = config.kaggle.submit
    if submit == "stack":
        return config.runs.root / config.stack.name
    if submit == "blend":
        if not config.kaggle.blend:
            raise KitError(
                "kaggle.submit blend needs kaggle.blend: the blend's folder under "
                f"{config.runs_dir} (make blend prints it, e.g. blend-a-b)"
            )
        return Path(config.runs_dir) / config.kaggle.blend
    return None


def experiments(config: Config) -> list[str]:
    """The experiments whose folds the kernel predicts with."""
    folder = second_level_folder(config)
    if folder is None:
        return [config.experiment]
    record = folder / ("features.json" if config.kaggle.submit == "stack" else BLEND_FILE)
    if not record.is_file():
        command = "make stack" if config.kaggle.submit == "stack" else "make blend"
        raise KitError(f"No {record}: run {command} first (kaggle.submit {config.kaggle.submit})")
    return list(json.loads(record.read_text())["experiments"])


def second_level_files(config: Config) -> dict[str, Path]:
    """Bundle path -> file: the stack's boosters and records, or the blend's record."""
    folder = second_level_folder(config)
    if folder is None:
        return {}
    if config.kaggle.submit == "blend":
        files = [folder / BLEND_FILE]
    else:
        files = [folder / "features.json", *sorted(folder.glob("[!.]*.txt"))]
    return {f"second_level/{path.name}": path for path in files}


# --- in the kernel --------------------------------------------------------------


def predict_experiments(bundle: Path, names: list[str], kernel_config, link_folds,
                        working: Path) -> dict[str, pd.DataFrame]:  # fmt: skip
    """Each experiment's test predictions (its folds, its own config), indexed by ID."""
    from competition.pipeline.predict import predict_and_submit

    found = {}
    for name in names:
        config = kernel_config(bundle / "configs" / f"{name}.yaml")
        config = replace(
            config, predict=replace(config.predict, submissions_dir=str(working / "runs" / name))
        )
        link_folds(bundle, Path(config.runs_dir), name)
        summary = predict_and_submit(config)
        print(f"experiment {name}: {summary['images']} test rows, folds {summary['folds']}")
        found[name] = pd.read_csv(summary["test_preds"], dtype={"image_id": str}).set_index(
            "image_id"
        )
    return found


def submit_second_level(config: Config, bundle: Path, tests: dict[str, pd.DataFrame]) -> Path:
    """The stack's or the blend's checked submission from the experiments' test predictions."""
    sample, image_ids, fields = assemble.test_set(config)
    folder = bundle / "second_level"
    if config.kaggle.submit == "stack":
        from competition.pipeline.stack import predict_test

        values = predict_test(config, folder, image_ids, tests)
        cuts = None
    else:
        values, cuts = _blended(config, json.loads((folder / BLEND_FILE).read_text()),
                                tests, image_ids)  # fmt: skip
    table = pd.DataFrame(
        values, index=pd.Index(image_ids, name="image_id"), columns=config.task.outputs
    )
    name = f"{config.experiment}-{config.kaggle.submit}.csv"
    _, path, _ = assemble.checked_submission(config, sample, table, fields, name, cuts)
    return path


def _blended(config: Config, record: dict, tests: dict, image_ids: list[str]):
    from competition.stacking.blend import Blender, Fitted

    fitted = Fitted.from_record(record)
    stack = np.stack(
        [tests[n].loc[image_ids, config.task.outputs].to_numpy(np.float64)
         for n in record["experiments"]]
    )  # fmt: skip
    values = Blender(config.task, rank=record["rank_average"]).apply(stack, fitted)
    return values, fitted.cuts_by_head(config.task)
