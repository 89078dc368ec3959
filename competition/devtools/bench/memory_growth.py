"""Training's memory against the dataset's size: peak RssAnon of a fit over
the cache and over a cache ten times larger, for the same number of steps."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

MEMORY_RUN = r"""
import json, sys
import numpy as np, keras
from competition.config import load_config
from competition.data.cache.source import CacheSource
from competition.data.sources import image_source
from competition.devtools.memory import rss_anon_bytes
from competition.pipeline.generators import generator
from competition.training.losses import compile_args
from competition.training.model import build_model

folder, config_path, overrides = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
epochs = int(sys.argv[4])
config = load_config(config_path, overrides)
source = CacheSource(folder, image_source(config.inputs, "train"), files_for_missing=False)
ids = source.index.tolist()
outputs = len(config.task.outputs)
labels = np.random.default_rng(0).integers(0, 2, (len(ids), outputs)).astype(np.float32)
gen = generator(config, ids, source, labels, shuffle=True)
model = build_model(config.model, source.shape, config.task)
model.compile("adam", compile_args(config.task)["loss"])
peak = [rss_anon_bytes()]
watch = keras.callbacks.LambdaCallback(on_batch_end=lambda b, logs: peak.append(rss_anon_bytes()))
model.fit(gen, epochs=epochs, verbose=0, callbacks=[watch])
print(json.dumps({"images": len(ids), "epochs": epochs, "peak_rss_anon": max(peak)}))
"""


def tiled_cache(folder: Path, out: Path, copies: int) -> Path:
    """A finished cache holding `copies` copies of `folder`'s rows (new IDs)."""
    import pandas as pd

    from competition.data.cache.spec import DONE

    images = np.load(folder / "images.npy", mmap_mode="r")
    ids = pd.read_csv(folder / "ids.csv", dtype=str)["image_id"].tolist()
    out.mkdir(parents=True)
    big = np.lib.format.open_memmap(
        out / "images.npy", "w+", np.uint8, (len(ids) * copies, *images.shape[1:])
    )
    for k in range(copies):
        big[k * len(ids) : (k + 1) * len(ids)] = images
    big.flush()
    pd.DataFrame({"image_id": [f"{i}x{k}" for k in range(copies) for i in ids]}).to_csv(
        out / "ids.csv", index=False
    )
    np.save(out / "state.npy", np.full(len(ids) * copies, DONE, np.uint8))
    np.save(out / "crc.npy", np.tile(np.load(folder / "crc.npy"), copies))
    shutil.copyfile(folder / "source.json", out / "source.json")  # the store it describes
    return out


def memory_growth(config_path: str | None, overrides: list[str], folder: Path) -> dict:
    """Peak RssAnon of training over the cache, 1x and 10x the images, for
    the same number of steps (the 1x run takes 10 epochs, the 10x run one):
    TensorFlow's heap warms up over the first few hundred steps whatever the
    data, so only equal steps isolate what the dataset's size costs."""
    with tempfile.TemporaryDirectory() as scratch:
        result = {}
        for copies in (1, 10):
            data = folder if copies == 1 else tiled_cache(folder, Path(scratch) / "x10", copies)
            epochs = 10 // copies
            args = [str(data), config_path or "configs/default.yaml", json.dumps(overrides)]
            args.append(str(epochs))
            run = subprocess.run(
                [sys.executable, "-c", MEMORY_RUN, *args],
                capture_output=True,
                text=True,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            )
            if run.returncode:
                raise RuntimeError(f"the memory run failed:\n{run.stderr[-3000:]}")
            result[f"x{copies}"] = json.loads(run.stdout.strip().splitlines()[-1])
    return result
