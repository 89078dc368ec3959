"""The optimizer every stage trains with: AdamW on a schedule stepped per
update: `cosine` (the default), a linear warmup to the learning rate, then
cosine decay to `min_lr_ratio` of it (Keras' CosineDecay with warmup), or
`onecycle`, a cosine rise from learning_rate / 25 over the warmup, then a
cosine fall to `min_lr_ratio` of it (the one-cycle policy's learning rate;
its momentum cycle is left out: AdamW's beta_1 stays 0.9); where the section has them
(train:), gradient accumulation over `accumulate` batches per update
(Keras' gradient_accumulation_steps; Keras evaluates the schedule at the
batch count, so the curve is laid out in batches and an update takes its
value at the update's last batch: the same curve, stepped per update) and
an exponential moving average of the weights
(`ema`, Keras' use_ema; updated at every batch, so over an accumulated
update it decays by ema ** accumulate)."""

from __future__ import annotations

from typing import Protocol

import keras
import numpy as np


class Schedule(Protocol):
    """The keys a settings section (train:, sequence:) gives the schedule."""

    epochs: int
    learning_rate: float
    weight_decay: float
    warmup_epochs: float
    min_lr_ratio: float


ONE_CYCLE_START = 25.0  # the one-cycle policy's usual div_factor


@keras.saving.register_keras_serializable(package="competition")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine from peak / start_div up to peak over `warmup` steps, then
    cosine down to peak * end_ratio at `total` (held after)."""

    def __init__(self, peak, total, warmup, end_ratio, start_div=ONE_CYCLE_START):
        self.peak, self.total, self.warmup = float(peak), int(total), int(warmup)
        self.end_ratio, self.start_div = float(end_ratio), float(start_div)

    def __call__(self, step):
        ops = keras.ops
        step = ops.cast(step, "float32")
        start, end = self.peak / self.start_div, self.peak * self.end_ratio
        rise = ops.clip(step / max(self.warmup, 1), 0.0, 1.0)
        fall = ops.clip((step - self.warmup) / max(self.total - self.warmup, 1), 0.0, 1.0)
        up = start + (self.peak - start) * (1 - ops.cos(np.pi * rise)) / 2
        down = end + (self.peak - end) * (1 + ops.cos(np.pi * fall)) / 2
        return ops.where(step < self.warmup, up, down)

    def get_config(self):
        return {
            "peak": self.peak,
            "total": self.total,
            "warmup": self.warmup,
            "end_ratio": self.end_ratio,
            "start_div": self.start_div,
        }


def learning_rate_schedule(schedule: Schedule, steps_per_epoch: int):
    """The section's schedule over its epochs, in batches (see the module)."""
    total = max(1, schedule.epochs * steps_per_epoch)
    warmup = min(total - 1, round(schedule.warmup_epochs * steps_per_epoch))
    if getattr(schedule, "schedule", "cosine") == "onecycle":
        return OneCycle(schedule.learning_rate, total, warmup, schedule.min_lr_ratio)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=schedule.learning_rate * (0.0 if warmup else 1.0),
        decay_steps=max(1, total - warmup),
        alpha=schedule.min_lr_ratio,
        warmup_target=schedule.learning_rate if warmup else None,
        warmup_steps=warmup,
    )


def make_optimizer(schedule: Schedule, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    learning_rate = learning_rate_schedule(schedule, steps_per_epoch)
    accumulate, ema = getattr(schedule, "accumulate", 1), getattr(schedule, "ema", 0.0)
    return keras.optimizers.AdamW(
        learning_rate=learning_rate,
        weight_decay=schedule.weight_decay,
        gradient_accumulation_steps=accumulate if accumulate > 1 else None,
        use_ema=ema > 0,
        ema_momentum=ema if ema > 0 else 0.99,
    )
