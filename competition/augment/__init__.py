"""The training augmentation, spec and execution: the `augment:` list and
where each step runs (`spec.py`), the flips on the host's uint8 batch
(`flips.py`), and the Keras layers in the graph, on the host or in the
training step (`layers.py`)."""
