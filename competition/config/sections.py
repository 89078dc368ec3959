"""The whole configuration: every stage's settings section side by side,
each section defined (with its choices) by the stage that reads it, and
the values the stages are given, resolved from it once (the data folder's
layout, the run folders, the pixel and cache settings, the model input).

The stages never see this object: they take their own section or these
resolved values; only the commands and `competition.pipeline` hold it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from competition.augment.spec import DEFAULT_AUGMENT
from competition.data.pixelspec import PixelSpec, PreprocessConfig, model_input_shape
from competition.data.settings import DataConfig, FoldsConfig
from competition.fileio import write_text_atomic
from competition.inference.settings import PredictConfig
from competition.kaggle.settings import KaggleConfig
from competition.knobs import knob
from competition.layout import Layout, RunLayout
from competition.localise.settings import LocaliseConfig
from competition.sequence.settings import SequenceConfig
from competition.stacking.settings import StackConfig
from competition.synthetic.settings import SynthConfig
from competition.task import TaskSpec
from competition.training.settings import ModelConfig, SeriesConfig, TrainConfig

if TYPE_CHECKING:
    from competition.data.cache.spec import CacheSpec
    from competition.data.sources import InputSpec


@dataclass(frozen=True)
class Config:
    experiment: str = "base"
    seed: int = 42
    runs_dir: str = "runs"
    task: TaskSpec = field(default_factory=TaskSpec)
    data: DataConfig = field(default_factory=DataConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    folds: FoldsConfig = field(default_factory=FoldsConfig)
    augment: list[dict] = knob(DEFAULT_AUGMENT)  # Keras layers in order: competition.augment
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sequence: SequenceConfig = field(default_factory=SequenceConfig)
    series: SeriesConfig = field(default_factory=SeriesConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    stack: StackConfig = field(default_factory=StackConfig)
    localise: LocaliseConfig = field(default_factory=LocaliseConfig)
    kaggle: KaggleConfig = field(default_factory=KaggleConfig)

    # --- the file -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> Path:
        """Write the resolved config (atomically) next to what it produced."""
        return write_text_atomic(path, self.to_yaml())

    # --- what the stages are given ------------------------------------------------------

    @property
    def layout(self) -> Layout:
        """The competition's folder: the download and the tables derived beside it."""
        return Layout(Path(self.data.root), self.task)

    @property
    def runs(self) -> RunLayout:
        """runs/<experiment>/ and its fold folders."""
        return RunLayout(Path(self.runs_dir), self.experiment)

    @property
    def pixels(self) -> PixelSpec:
        """How one image file becomes a slice of model input."""
        return PixelSpec.of(self.preprocess, self.task.image_format)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The model's input: a slice, or its 2.5D stack; for a series- or
        study-level task, series.slices of them."""
        shape = model_input_shape(self.preprocess, self.task.image_format)
        return (self.series.slices, *shape) if self.task.per_unit else shape

    @property
    def cache(self) -> CacheSpec:
        """Where the image cache of these settings is, and how it is stored."""
        from competition.data.cache.spec import CacheSpec

        return CacheSpec.of(self.layout, self.pixels, self.data)

    @property
    def inputs(self) -> InputSpec:
        """Everything that turns an image ID into model input."""
        from competition.data.sources import InputSpec

        series = self.series
        return InputSpec.of(self.cache, self.data, self.preprocess, series.slices, series.spacing)
