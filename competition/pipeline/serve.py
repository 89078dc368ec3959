"""Kaggle's evaluation API (RSNA 2025 Aneurysm's form): an inference server
calls `predict(series_path)` once per test series and builds the submission
itself. `SeriesPredictor` is that `predict` for a series- or study-level
task: each call reads the folder's DICOM headers, checks them as a volume
(competition.data.volumes: odd slices left out, levels of a series without
HU), orders the slices along the body axis, stacks T of them exactly as
training did (windows, 2.5D, the unit's picks), and returns one row of the
task's labels through every fold and TTA view (or, where predict.stage
resolves to 2, every slice through each fold's frozen slice encoder and
pooled model), post-processed and decoded as `make predict` would.
A series with no readable slice gets the folds' mean training target, and
a line saying so. It keeps the seconds each call took: `report` projects
them against the kernel's time limit.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from competition.config import Config
from competition.data.index import COLUMNS, TEXT_COLUMNS, path_entries, scan_file
from competition.data.neighbors import NeighborSource, positions_by_series
from competition.data.sources import EntrySource
from competition.data.units import UnitSource, slices_by_unit
from competition.data.volumes import check_volumes
from competition.errors import ImageReadError
from competition.inference import submission as sub
from competition.inference.ensemble import combine_folds
from competition.pipeline import runs
from competition.pipeline.assemble import fold_cuts, folds_training_mean
from competition.pipeline.predict import load_ensemble, stage_for
from competition.sequence import units as unit_stage
from competition.training.model import load_checkpoint

UNIT = "series"  # the one unit of a call


class SeriesPredictor:
    """predict(series_path) -> one row of the task's labels (see the module)."""

    def __init__(self, config: Config, folds: list[int] | None = None):
        self.config = config
        self.folds = runs.select_folds(config, folds)
        self.stage = stage_for(config, self.folds)
        self.model = load_ensemble(config, self.folds) if self.stage == 1 else None
        self.pooled = [] if self.stage == 1 else [self._stage2(fold) for fold in self.folds]
        self.mean = folds_training_mean(config, self.folds)
        self.cuts = fold_cuts(config, self.folds)
        self.seconds: list[float] = []
        self.unreadable: dict[str, str] = {}

    def source(self, folder: Path) -> UnitSource:
        """The folder's slices as one unit, as the training split's were."""
        files = sorted(p for p in folder.rglob("*.dcm") if p.is_file())
        found = [
            row
            for i, p in enumerate(files)
            for row in scan_file(
                folder, "test", f"s{i:05d}", p.relative_to(folder).as_posix(), True
            )
        ]
        rows = pd.DataFrame(found).reindex(columns=COLUMNS).assign(unit=UNIT)
        rows[TEXT_COLUMNS] = rows[TEXT_COLUMNS].fillna("")
        rows = check_volumes(rows, folder, workers=1)
        inputs = self.config.inputs
        entries = dict(zip(rows.image_id, path_entries(rows), strict=True))
        inner = EntrySource(folder, entries, inputs.pixels, "test")
        if inputs.neighbors and len(rows):
            table = positions_by_series(rows, "test")
            inner = NeighborSource(inner, table, inputs.neighbors, inputs.neighbor_windows)
        return UnitSource(inner, slices_by_unit(rows), inputs.slices, inputs.spacing)

    def _stage2(self, fold: int) -> tuple:
        """Fold `fold`'s frozen slice encoder and pooled model."""
        safe = self.config.model.safe_mode
        series_model = load_checkpoint(self.config.runs.fold(fold) / "best.keras", safe)
        pooled = load_checkpoint(self.config.runs.sequence(fold) / "best.keras", safe)
        return unit_stage.slice_encoder_of(series_model), pooled

    def outputs(self, folder: Path) -> np.ndarray:
        """(outputs,) for one series: the folds and views combined."""
        try:
            found = self._per_fold(self.source(folder))  # (1, folds, outputs)
        except ImageReadError as exc:
            self.unreadable[folder.name] = exc.cause
            print(f"Series {folder.name}: {exc.cause}; given the folds' mean training target")
            return np.asarray(self.mean, dtype=np.float64)
        return combine_folds(found, self.config.predict.ensemble)[0]

    def _per_fold(self, source: UnitSource) -> np.ndarray:
        if self.stage == 1:
            stack = source.load(UNIT)
            return self.model.predict(stack[None], verbose=0).mean(axis=2)  # views averaged
        per_fold = []
        for encoder, pooled in self.pooled:
            features = unit_stage.embed_units(encoder, source, [UNIT])
            if features.unreadable:
                raise ImageReadError(f"series {UNIT}", features.unreadable[UNIT])
            per_fold.append(unit_stage.predict_pooled(pooled, features, self.config.sequence))
        return np.stack(per_fold, axis=1)

    def __call__(self, series_path: str) -> pd.DataFrame:
        started = time.perf_counter()
        folder = Path(series_path)
        task = self.config.task
        final = sub.postprocess(task, self.outputs(folder)[None])
        row = sub.decode(task, final, [folder.name], self.cuts).reset_index(drop=True)
        self.seconds.append(time.perf_counter() - started)
        return row

    def report(self) -> str:
        """Seconds per series, and how many series the kernel's limit holds."""
        if not self.seconds:
            return "No series predicted."
        per = float(np.mean(self.seconds))
        limit = self.config.kaggle.time_limit_hours
        holds = int(limit * 3600 / max(per, 1e-9))
        return (
            f"Predicted {len(self.seconds)} series at {per:.2f} s per series (the first "
            f"{self.seconds[0]:.2f} s): the {limit:g}-hour limit holds about {holds:,} series"
            + (f"; {len(self.unreadable)} had no readable slice" if self.unreadable else "")
        )
