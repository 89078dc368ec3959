"""The winners' training recipe on Keras' own parts: the averaged weights
(train.ema: use_ema with the swap callback) seen by validation and the
checkpoints, and gradient accumulation (train.accumulate) with the
schedule stepped per update."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import keras
import numpy as np

from competition.training.callbacks import AveragedWeights
from competition.training.schedule import make_optimizer


@dataclass(frozen=True)
class Recipe:
    epochs: int = 2
    learning_rate: float = 0.05
    weight_decay: float = 0.0
    warmup_epochs: float = 0.0
    min_lr_ratio: float = 0.1
    ema: float = 0.0
    accumulate: int = 1


def tiny_problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0], "float32"))[:, None]
    return x, y


class Probe(keras.callbacks.Callback):
    """At each epoch's end (after the swap): the model's weights, the
    optimizer's average slots, and a fresh evaluation of the model."""

    def __init__(self, x, y):
        super().__init__()
        self.x, self.y, self.seen = x, y, []

    def on_epoch_end(self, epoch, logs=None):
        slots = self.model.optimizer._model_variables_moving_average
        weights = [keras.ops.convert_to_numpy(v) for v in self.model.trainable_variables]
        held = [keras.ops.convert_to_numpy(v) for v in slots]
        loss = float(np.mean((self.model(self.x).numpy() - self.y) ** 2))
        self.seen.append((weights, held, loss, logs["val_loss"]))


def test_validation_and_checkpoints_see_the_averaged_weights():
    x, y = tiny_problem()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=make_optimizer(Recipe(ema=0.8), 8), loss="mse")
    probe = Probe(x, y)
    model.fit(x, y, batch_size=8, epochs=2, validation_data=(x, y), verbose=0,
              callbacks=[AveragedWeights(), probe])  # fmt: skip
    for _, _, loss, val_loss in probe.seen:
        assert np.isclose(loss, val_loss, rtol=1e-4)  # validation scored what the model holds
    weights, held, _, _ = probe.seen[0]  # (at the last epoch Keras makes the two equal)
    assert not any(np.allclose(w, h) for w, h in zip(weights, held, strict=True))  # swapped


def test_accumulation_updates_every_other_batch_on_the_whole_schedule():
    """8 batches, accumulate 2: 4 updates, each at the curve's value of its
    last batch (the whole warmup-cosine curve over the run, per update)."""
    x, y = tiny_problem()
    optimizer = make_optimizer(Recipe(epochs=3, accumulate=2, warmup_epochs=0.5), 8)
    assert optimizer.gradient_accumulation_steps == 2
    schedule = optimizer._learning_rate
    assert schedule.decay_steps + schedule.warmup_steps == 3 * 8
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse")
    seen = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda b, logs: seen.append(keras.ops.convert_to_numpy(
            model.trainable_variables[0]).copy()))  # fmt: skip
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[record])
    assert int(optimizer.iterations) == 4  # 8 batches made 4 updates
    moved = [not np.allclose(a, b) for a, b in itertools.pairwise(seen)]
    assert moved == [True, False, True, False, True, False, True]  # on every second batch
    assert np.isclose(float(optimizer.learning_rate), float(schedule(8)))
