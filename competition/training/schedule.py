"""The optimizer every stage trains with: AdamW, a linear warmup to the
learning rate, then cosine decay to `min_lr_ratio` of it, stepped per
update (Keras' CosineDecay with warmup); where the section has them
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


class Schedule(Protocol):
    """The keys a settings section (train:, sequence:) gives the schedule."""

    epochs: int
    learning_rate: float
    weight_decay: float
    warmup_epochs: float
    min_lr_ratio: float


def make_optimizer(schedule: Schedule, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    total = max(1, schedule.epochs * steps_per_epoch)
    warmup = min(total - 1, round(schedule.warmup_epochs * steps_per_epoch))
    learning_rate = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=schedule.learning_rate * (0.0 if warmup else 1.0),
        decay_steps=max(1, total - warmup),
        alpha=schedule.min_lr_ratio,
        warmup_target=schedule.learning_rate if warmup else None,
        warmup_steps=warmup,
    )
    accumulate, ema = getattr(schedule, "accumulate", 1), getattr(schedule, "ema", 0.0)
    return keras.optimizers.AdamW(
        learning_rate=learning_rate,
        weight_decay=schedule.weight_decay,
        gradient_accumulation_steps=accumulate if accumulate > 1 else None,
        use_ema=ema > 0,
        ema_momentum=ema if ema > 0 else 0.99,
    )
