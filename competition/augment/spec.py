"""The augmentation's spec: the `augment:` list of Keras 3 image
augmentation layers with their arguments,

    augment:
      - RandomFlip: {mode: horizontal}
      - RandomRotation: {factor: 0.03}
      - MixUp: {alpha: 0.2}

checked here, without TensorFlow, when the config loads (`check_augment`),
and split by where each step runs (`placement`):

- `RandomFlip` on the host, on the uint8 batch (the same flips as Keras'
  layer: measured free there, while in the graph it costs a tiny model's
  step rate; see docs/benchmarks.md);
- the other image layers in the training model's graph, in front of the
  network (on the accelerator; the host keeps yielding uint8);
- the label-mixing layers (`MixUp`, `CutMix`) in the training step, where
  the labels are.

`competition.augment.flips` runs the host flips, `competition.augment.layers`
builds and runs the Keras layers.

The layers' arguments are Keras' own; `seed`, `value_range` (0..255, what
the kit feeds) and `data_format` are set by the kit. A test checks this
table against the installed Keras' signatures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from competition.errors import ConfigError

# Head CT (RSNA ICH winners: a horizontal flip, a small shift-scale-rotate,
# brightness and contrast); the presets choose their own (configs/*.yaml).
DEFAULT_AUGMENT = [
    {"RandomFlip": {"mode": "horizontal"}},
    {"RandomRotation": {"factor": 0.03, "fill_mode": "constant"}},
    {"RandomZoom": {"height_factor": 0.1, "fill_mode": "constant"}},
    {"RandomBrightness": {"factor": 0.1}},
    {"RandomContrast": {"factor": 0.1}},
]
REQUIRED = object()  # an argument Keras' layer needs
KIT_ARGUMENTS = ("seed", "value_range", "data_format", "name", "dtype")

FILL_MODES = ("reflect", "wrap", "constant", "nearest")
INTERPOLATIONS = ("nearest", "bilinear")
CHOICES = {
    "mode": ("horizontal", "vertical", "horizontal_and_vertical"),
    "fill_mode": FILL_MODES,
    "interpolation": INTERPOLATIONS,
}


@dataclass(frozen=True)
class LayerSpec:
    """What the kit knows of one Keras augmentation layer."""

    arguments: dict[str, Any]  # name -> Keras' default, or REQUIRED
    colour: bool = False  # needs 3 channels (RGB)
    mixes_labels: bool = False
    heads: tuple[str, ...] = field(default=("multilabel", "binary", "multiclass", "ordinal"))


_AFFINE = {"fill_mode": "reflect", "interpolation": "bilinear", "fill_value": 0.0}
_SOFT_TARGET_HEADS = ("multilabel", "binary", "multiclass")

LAYERS: dict[str, LayerSpec] = {
    "RandomFlip": LayerSpec({"mode": "horizontal_and_vertical"}),
    "RandomRotation": LayerSpec({"factor": REQUIRED, **_AFFINE}),
    "RandomZoom": LayerSpec({"height_factor": REQUIRED, "width_factor": None, **_AFFINE}),
    "RandomTranslation": LayerSpec(
        {"height_factor": REQUIRED, "width_factor": REQUIRED, **_AFFINE}
    ),
    "RandomShear": LayerSpec({"x_factor": 0.0, "y_factor": 0.0, **_AFFINE}),
    "RandomBrightness": LayerSpec({"factor": REQUIRED}),
    "RandomContrast": LayerSpec({"factor": REQUIRED}),
    "RandomGaussianBlur": LayerSpec({"factor": 1.0, "kernel_size": 3, "sigma": 1.0}),
    "RandomErasing": LayerSpec({"factor": 1.0, "scale": (0.02, 0.33), "fill_value": None}),
    "RandomElasticTransform": LayerSpec({"factor": 1.0, "scale": 1.0, **_AFFINE}),
    "RandomPerspective": LayerSpec(
        {"factor": 1.0, "scale": 1.0, "interpolation": "bilinear", "fill_value": 0.0}
    ),
    "RandomSharpness": LayerSpec({"factor": REQUIRED}),
    "RandomPosterization": LayerSpec({"factor": REQUIRED}),
    "RandomInvert": LayerSpec({"factor": 1.0}),
    "Solarization": LayerSpec({"addition_factor": 0.0, "threshold_factor": 0.0}),
    "RandomColorJitter": LayerSpec(
        {
            "brightness_factor": None,
            "contrast_factor": None,
            "saturation_factor": None,
            "hue_factor": None,
        },
        colour=True,
    ),
    "RandomHue": LayerSpec({"factor": REQUIRED}, colour=True),
    "RandomSaturation": LayerSpec({"factor": REQUIRED}, colour=True),
    "RandomGrayscale": LayerSpec({"factor": 0.5}, colour=True),
    "RandomColorDegeneration": LayerSpec({"factor": REQUIRED}, colour=True),
    "RandAugment": LayerSpec(
        {"num_ops": 2, "factor": 0.5, "interpolation": "bilinear"}, colour=True
    ),
    "AugMix": LayerSpec(
        {
            "num_chains": 3,
            "chain_depth": 3,
            "factor": 0.3,
            "alpha": 1.0,
            "all_ops": True,
            "interpolation": "bilinear",
        },
        colour=True,
    ),
    # Mixed labels: soft targets for sigmoid and softmax heads; for an ordinal
    # (regression) head MixUp mixes the grade values as it mixes the images.
    "MixUp": LayerSpec({"alpha": 0.2}, mixes_labels=True),
    # CutMix weights labels by pasted area: a grade is set by the worst lesion
    # anywhere in the image, not by area, so an ordinal head is refused.
    "CutMix": LayerSpec({"factor": 1.0}, mixes_labels=True, heads=_SOFT_TARGET_HEADS),
}

# Layers Keras has that the kit leaves out, and the way on.
NOT_AUGMENTATION = {
    "RandomCrop": "it changes the image size, and at inference it crops the centre; use "
    "RandomZoom with a negative height_factor (a random crop resized back) or preprocess.crop",
    "CenterCrop": "it is preprocessing, not augmentation; use preprocess.crop",
    "Resizing": "the size is preprocess.image_size",
    "AutoContrast": "it is not random: it would change the training images only; it is "
    "preprocessing",
    "Equalization": "it is not random: it would change the training images only; it is "
    "preprocessing",
}


@dataclass(frozen=True)
class Step:
    """One configured layer: its Keras name and the arguments given."""

    name: str
    arguments: dict[str, Any]

    @property
    def spec(self) -> LayerSpec:
        return LAYERS[self.name]


@dataclass(frozen=True)
class Placement:
    """Where each step runs (see the module)."""

    host_flips: tuple[float, float]  # P(horizontal), P(vertical) flip on the host
    in_graph: tuple[Step, ...]
    mixing: tuple[Step, ...]


FLIP_PROBABILITIES = {
    "horizontal": (0.5, 0.0),
    "vertical": (0.0, 0.5),
    "horizontal_and_vertical": (0.5, 0.5),
}


def steps(augment: list[dict]) -> list[Step]:
    """The config's list as Steps (already checked by check_augment)."""
    return [Step(name, dict(args or {})) for item in augment for name, args in item.items()]


def placement(augment: list[dict] | None) -> Placement:
    """Host flips, in-graph layers and label mixing, each in the config's order."""
    found = steps(augment or [])
    h = v = 0.0
    for step in (s for s in found if s.name == "RandomFlip"):
        ph, pv = FLIP_PROBABILITIES[step.arguments.get("mode", "horizontal_and_vertical")]
        h, v = 1 - (1 - h) * (1 - ph), 1 - (1 - v) * (1 - pv)  # two flips compose
    return Placement(
        (h, v),
        tuple(s for s in found if s.name != "RandomFlip" and not s.spec.mixes_labels),
        tuple(s for s in found if s.spec.mixes_labels),
    )


def _value_error(argument: str, value: Any, default: Any) -> str | None:
    """What is wrong with one argument's value, judged by Keras' default for it."""
    if argument in CHOICES:
        if value not in CHOICES[argument]:
            return f"one of {', '.join(CHOICES[argument])}"
        return None
    number = isinstance(value, int | float) and not isinstance(value, bool)
    pair = (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    )
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "true or false"
    if default is REQUIRED or default is None or isinstance(default, int | float | tuple):
        if value is None and default is None:
            return None
        return None if number or pair else "a number or a [low, high] pair"
    return None


def _check_step(key: str, item: Any) -> Step:
    if not isinstance(item, dict) or len(item) != 1:
        raise ConfigError(
            f"Config key '{key}' expects one mapping of a Keras layer name to its arguments, "
            f"e.g. {{RandomRotation: {{factor: 0.03}}}}. Received: {item!r}"
        )
    [(name, args)] = item.items()
    if name in NOT_AUGMENTATION:
        raise ConfigError(f"Config key '{key}': {name} is not offered: {NOT_AUGMENTATION[name]}")
    if name not in LAYERS:
        raise ConfigError(
            f"Config key '{key}' names an unknown augmentation layer {name!r}. "
            f"Known: {', '.join(LAYERS)}"
        )
    args = {} if args is None else args
    if not isinstance(args, dict):
        raise ConfigError(
            f"Config key '{key}.{name}' expects a mapping of arguments. Received: {args!r}"
        )
    known = LAYERS[name].arguments
    for argument, value in args.items():
        if argument in KIT_ARGUMENTS:
            raise ConfigError(
                f"Config key '{key}.{name}.{argument}' is set by the kit (seed from the "
                "config's seed, value_range 0..255, channels last); leave it out"
            )
        if argument not in known:
            raise ConfigError(
                f"Config key '{key}.{name}' has an unknown argument {argument!r}. "
                f"Known: {', '.join(known) or '(none)'}"
            )
        expected = _value_error(argument, value, known[argument])
        if expected:
            raise ConfigError(
                f"Config key '{key}.{name}.{argument}' expects {expected}. Received: {value!r}"
            )
    missing = [a for a, d in known.items() if d is REQUIRED and a not in args]
    if missing:
        raise ConfigError(f"Config key '{key}.{name}' needs {', '.join(missing)}")
    return Step(name, args)


def check_augment(augment: list, channels: int, head_kinds: dict[str, str]) -> None:
    """Every step a known layer with known arguments that fits the input's
    channels and every head of the task (`head_kinds`: head name -> kind)."""
    for i, item in enumerate(augment):
        step = _check_step(f"augment[{i}]", item)
        if step.spec.colour and channels != 3:
            raise ConfigError(
                f"Config key 'augment[{i}]': {step.name} changes colour and needs 3 (RGB) "
                f"channels; the model input has {channels} (from preprocess). Remove it, or "
                "use RandomBrightness / RandomContrast, which work on every channel count."
            )
        unfit = [h for h, kind in head_kinds.items() if kind not in step.spec.heads]
        if unfit:
            raise ConfigError(
                f"Config key 'augment[{i}]': {step.name} does not fit the "
                f"{head_kinds[unfit[0]]} head {unfit[0]!r} (it fits "
                f"{', '.join(step.spec.heads)} heads); use MixUp or remove it."
            )
