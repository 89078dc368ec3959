"""The winners' training recipe on Keras' own parts: the averaged weights
(train.ema: use_ema with the swap callback) seen by validation and the
checkpoints, gradient accumulation (train.accumulate) with the schedule
stepped per update, the one-cycle schedule, the frozen-backbone warm-up
(train.freeze_epochs) and label smoothing per head kind."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import keras
import numpy as np

from competition.training.callbacks import AveragedWeights, FrozenBackbone
from competition.training.layers import BackboneGate
from competition.training.losses import head_loss
from competition.training.schedule import OneCycle, make_optimizer


@dataclass(frozen=True)
class Recipe:
    epochs: int = 2
    learning_rate: float = 0.05
    weight_decay: float = 0.0
    warmup_epochs: float = 0.0
    min_lr_ratio: float = 0.1
    ema: float = 0.0
    accumulate: int = 1
    schedule: str = "cosine"


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
        loss = float(np.mean((keras.ops.convert_to_numpy(self.model(self.x)) - self.y) ** 2))
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


def test_one_cycle_rises_from_a_25th_to_the_peak_then_falls_to_the_floor():
    optimizer = make_optimizer(Recipe(epochs=4, schedule="onecycle", warmup_epochs=1.2), 10)
    schedule = optimizer._learning_rate
    assert isinstance(schedule, OneCycle)
    curve = np.array([float(schedule(step)) for step in range(41)])
    assert np.isclose(curve[0], 0.05 / 25) and np.isclose(curve[12], 0.05)
    assert np.isclose(curve[40], 0.05 * 0.1) and np.isclose(curve[26], (0.05 + 0.005) / 2)
    assert np.all(np.diff(curve[:13]) > 0) and np.all(np.diff(curve[12:]) < 0)
    restored = OneCycle.from_config(schedule.get_config())  # saved with the optimizer
    assert np.isclose(float(restored(7)), curve[7])


def gated_model():
    inputs = keras.Input((4,))
    backbone = keras.layers.Dense(3, name="backbone")
    features = BackboneGate(name="backbone_gate")(backbone(inputs))
    return keras.Model(inputs, keras.layers.Dense(1, name="head")(features)), backbone


def test_a_frozen_backbone_gets_no_gradient_until_its_epoch_then_trains():
    """train.freeze_epochs=1: in epoch 0 the backbone's weights do not move
    (weight decay off) while the head trains; in epoch 1 both train. The gate
    is a saved variable, so a fit resumed at epoch 1 starts open."""
    x, y = tiny_problem()
    keras.utils.set_random_seed(0)
    model, backbone = gated_model()
    model.compile(optimizer=make_optimizer(Recipe(epochs=2), 8), loss="mse")
    start = [w.numpy().copy() for w in backbone.weights]
    seen = []

    def record_epoch(epoch, logs):
        seen.append(
            ([w.numpy().copy() for w in backbone.weights], model.get_layer("head").get_weights())
        )

    record = keras.callbacks.LambdaCallback(on_epoch_end=record_epoch)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[FrozenBackbone(1), record])
    (after0, head0), (after1, _) = seen
    assert all(np.array_equal(a, b) for a, b in zip(start, after0, strict=True))  # frozen
    assert not np.allclose(head0[0], 0) and not all(
        np.allclose(a, b) for a, b in zip(after0, after1, strict=True))  # fmt: skip
    assert float(model.get_layer("backbone_gate").open) == 1.0
    assert np.allclose(
        *map(keras.ops.convert_to_numpy, (model(x), model.get_layer("head")(backbone(x))))
    )  # the identity forward


def test_label_smoothing_pulls_the_targets_towards_uniform_per_kind():
    truth = np.array([[1.0, 0.0, np.nan]], "float32")
    p = np.array([[0.9, 0.2, 0.5]], "float32")
    got = float(head_loss("multilabel", truth, p, [1.0, 1.0, 1.0], smoothing=0.1)[0])
    target = np.array([0.95, 0.05])
    want = -np.mean(target * np.log(p[0, :2]) + (1 - target) * np.log(1 - p[0, :2]))
    assert np.isclose(got, want, rtol=1e-5)  # the missing label is still left out
    onehot, q = np.array([[0, 1, 0]], "float32"), np.array([[0.2, 0.7, 0.1]], "float32")
    got = float(head_loss("multiclass", onehot, q, [1.0, 2.0, 1.0], smoothing=0.3)[0])
    smoothed = onehot[0] * 0.7 + 0.1
    assert np.isclose(got, -2.0 * np.sum(smoothed * np.log(q[0])), rtol=1e-5)


def test_the_series_model_gates_its_slice_encoder_too():
    """train.freeze_epochs on a series task: the gate sits behind the shared
    slice encoder, and FrozenBackbone finds it there."""
    from competition.config import load_config
    from competition.training.callbacks import gate_of
    from competition.training.series import build_network

    config = load_config("configs/synthetic/rsna_cervical_2022.yaml",
                         ["model.backbone=tiny_cnn", "series.slices=4"])  # fmt: skip
    network = build_network(config.model, (4, 32, 32, 3), config.task, series=config.series,
                            gate=True)  # fmt: skip
    gate = gate_of(network)
    assert gate is not None and network.layers.index(gate) == 2  # right after the slices
    assert (
        gate_of(build_network(config.model, (4, 32, 32, 3), config.task, series=config.series))
        is None
    )
