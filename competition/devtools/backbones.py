"""`make backbones`: every backbone the kit builds, with its parameters, the
input range its first layer sees, and a measured training step on this
machine's CPU at 128 px (random weights, batch 8, one sigmoid output, XLA
as train.jit_compile auto gives it: the step after the first, so
compilation is not counted)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from competition.errors import KitError
from competition.fileio import write_text_atomic
from competition.training.backbones import APPLICATIONS, MIN_SIZE, builder, preprocessing_of

SIZE, BATCH = 128, 8


def measure(name: str, size: int = SIZE, timed: bool = True) -> dict:
    """Parameters and (timed) seconds per training step of one backbone."""
    import keras

    keras.backend.clear_session()
    side = max(size, MIN_SIZE.get(name, 0))
    inputs = keras.Input((side, side, 3))
    backbone = builder(name)(inputs, None)
    pooled = keras.layers.GlobalAveragePooling2D()(backbone.output)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(pooled))
    found = {
        "backbone": name,
        "parameters": int(backbone.count_params()),
        "input": preprocessing_of(name).expects,
        "size": side,
    }
    if timed:
        from competition.training.devices import jit_compile

        model.compile("adam", "binary_crossentropy", jit_compile=jit_compile("auto"))
        rng = np.random.default_rng(0)
        x = rng.uniform(0, 255, (BATCH, side, side, 3)).astype("float32")
        y = rng.integers(0, 2, (BATCH, 1)).astype("float32")
        model.train_on_batch(x, y)  # compiles
        start = time.perf_counter()
        model.train_on_batch(x, y)
        found["step_seconds"] = round(time.perf_counter() - start, 3)
    return found


def table(rows: list[dict]) -> str:
    step = f"CPU step at {SIZE} px, batch {BATCH}"
    lines = [
        f"| backbone | parameters | input the weights expect | {step} |",
        "|---|---:|---|---:|",
    ]
    for row in rows:
        step = f"{row['step_seconds']:.2f} s" if "step_seconds" in row else "-"
        size = "" if row["size"] == SIZE else f" (at {row['size']} px: its minimum)"
        millions = f"{row['parameters'] / 1e6:.1f} M"
        lines.append(f"| {row['backbone']} | {millions} | {row['input']} | {step}{size} |")
    return "\n".join(lines)


# One backbone measured in a process of its own: memory (the large ones hold
# gigabytes) is given back between them, and one that fails is reported.
PROBE = r"""
import json, sys
from competition.devtools.backbones import measure
print(json.dumps(measure(sys.argv[1], timed=sys.argv[2] == "1")))
"""


def measured_apart(name: str, timed: bool) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, name, "1" if timed else "0"],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise KitError(f"make backbones: {name} failed ({tail[0]})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(names: list[str] | None, timed: bool, out: Path | None) -> list[dict]:
    rows = []
    for name in names or APPLICATIONS:
        rows.append(measured_apart(name, timed))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    if out is not None:
        write_text_atomic(out, json.dumps(rows, indent=2))
    return rows
