"""`make bench-gpu`: the kit on the machine's accelerator (the CPU when there
is none), on each installed Keras backend, in one run, sized by flags:

- `fit` fed by the kit's real pipeline (cache -> DataGenerator ->
  augmentation placed as train.augment_on places it on this device) against
  the same compiled model fed one in-memory uint8 batch repeated, and
  `predict` likewise: the share of the device's speed the pipeline keeps;
- the first step's compile time (XLA's is long on JAX);
- the host pipeline's images per core (per CPU-second), with and without the
  augmentation's image layers, and so the cores it takes to feed the fit;
- the backends' speeds side by side on the same machine.

Measured for a headline setup (default: EfficientNetB0, 256 px, batch 128,
bf16, the config's augmentation) and a preset at its own settings (default
rsna_ich), each on its synthetic stand-in, on one device.

    setups.py    the options and the setups they make
    measure.py   one backend's measurements (a process of its own)
    report.py    the data, a process per backend, the ratios and targets, the table
"""

from competition.devtools.accelerator.report import run, table
from competition.devtools.accelerator.setups import Options

__all__ = ["Options", "run", "table"]
