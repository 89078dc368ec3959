"""The auxiliary per-slice head of a series model (series.slice_labels):
trained beside the unit's heads where a competition labels single slices,
never part of the saved network (checkpoints and predictions are the
unit's heads alone).

The network's per-slice features (its `dropout` layer: (B, T, F)) feed a
Dense of one logit per column of the sigmoid head; its loss, binary
cross-entropy over the known slice targets (NaN: unknown, masked), weighs
`weight` beside the unit loss. The targets ride in the training batches'
labels after the unit's outputs, T x C of them (validation batches carry
the unit's alone): `split` takes them apart.
"""

from __future__ import annotations

import keras
from keras import ops

FEATURES = "dropout"  # the series model's per-slice features (competition.training.series)


class SliceHead(keras.layers.Layer):
    """network -> (unit outputs, per-slice logits (B, T, C)) in training."""

    def __init__(self, network: keras.Model, columns: int, weight: float, **kwargs):
        super().__init__(**kwargs)
        self.outputs_count = int(network.output_shape[-1])
        self.slices = int(network.input_shape[1])
        self.columns, self.weight = int(columns), float(weight)
        features = network.get_layer(FEATURES).output
        self.trunk = keras.Model(network.inputs, [network.output, features], name="trunk")
        self.dense = keras.layers.Dense(self.columns, dtype="float32", name="slice_logits")
        self.dense.build(features.shape)

    def call(self, x, training=None):
        outputs, features = self.trunk(x, training=training)
        return outputs, self.dense(features)

    def split(self, y):
        """(unit targets, slice targets (B, T, C) or None) of a batch's labels."""
        if y is None or y.shape[-1] == self.outputs_count:
            return y, None
        slices = ops.reshape(y[:, self.outputs_count :], (-1, self.slices, self.columns))
        return y[:, : self.outputs_count], slices

    def loss(self, targets, logits):
        """Masked binary cross-entropy of the slice logits, times `weight`."""
        known = ops.logical_not(ops.isnan(targets))
        truth = ops.where(known, targets, ops.zeros_like(targets))
        each = ops.maximum(logits, 0) - logits * truth + ops.log1p(ops.exp(-ops.abs(logits)))
        mask = ops.cast(known, "float32")
        return self.weight * ops.sum(each * mask) / ops.maximum(ops.sum(mask), 1.0)
