"""Runs the kit's writers on a filesystem that is full (see test_faults).

Started inside a user + mount namespace with a small tmpfs mounted at
argv[1]; argv[2] is the small competition's data root, argv[3] a runs folder
with a trained fold 0, argv[4] the JSON file to write the findings to (both
outside the tmpfs). For a checkpoint, a cache and a submission in turn: write
a good one while there is space, fill the filesystem, write again, record the
error and whether the good file is intact, then free the space.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from conftest import TRAINED_WITH, small_config

SMALL, DATA, RUNS, OUT = (Path(p) for p in sys.argv[1:5])
FILLER = SMALL / "filler"


def fill(leave: int = 0) -> None:
    """Take every free byte of the filesystem but `leave`."""
    fd = os.open(FILLER, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        if leave:
            stat = os.statvfs(SMALL)
            os.posix_fallocate(fd, 0, max(1, stat.f_bavail * stat.f_frsize - leave))
            return
        chunk = 1 << 20
        while chunk:  # down to the last byte
            try:
                os.write(fd, b"\0" * chunk)
            except OSError:
                chunk //= 2
    finally:
        os.close(fd)


def free() -> None:
    FILLER.unlink(missing_ok=True)


def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def error_of(action) -> str | None:
    try:
        action()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def checkpoint() -> dict:
    import keras
    import numpy as np

    from competition.training.callbacks import BestCheckpoint, EpochBackup
    from competition.training.model import load_checkpoint

    folder = SMALL / "fold0"
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6)])
    model.compile("adam", "mse")
    best, backup = BestCheckpoint(folder / "best.keras", "val"), EpochBackup(folder / "b")
    for callback in (best, backup):
        callback.set_model(model)
        callback.on_epoch_end(0, {"val": 1.0})
    good = [w.copy() for w in model.get_weights()]
    before = digests(folder)
    model.set_weights([w + 1 for w in good])
    fill()
    errors = {
        "best": error_of(lambda: best.on_epoch_end(1, {"val": 0.5})),
        "backup": error_of(lambda: backup.on_epoch_end(1, {"val": 0.5})),
    }
    free()
    reloaded = load_checkpoint(folder / "best.keras").get_weights()
    return {
        "errors": errors,
        "intact": digests(folder) == before,
        "best_loads_the_good_weights": all(
            np.array_equal(a, b) for a, b in zip(reloaded, good, strict=True)
        ),
    }


def training() -> dict:
    """The CLI: a fold trained with its run folder on the nearly full disk."""
    import contextlib
    import io

    from competition.cli import main

    fill(leave=48 * 1024)  # room for config and history, not for the checkpoint
    args = ["train", "--config", "configs/small.yaml", "--set", f"data.root={DATA}"]
    args += ["--set", f"runs_dir={SMALL / 'runs'}", "--set", "train.epochs=1"]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(args)
    free()
    fold = SMALL / "runs" / "small" / "fold0"
    return {
        "code": code,
        "stderr": err.getvalue()[-2000:],
        "files": sorted(p.name for p in fold.iterdir()),
    }


def cache() -> dict:
    from competition.data.cache import plan as cache_plan
    from competition.data.cache.build import build, verify
    from competition.data.cache.source import CacheSource
    from competition.data.sources import ImageSource, open_source

    config = small_config(DATA, f"data.cache_dir={SMALL / 'cache'}")
    cache = config.cache
    build(cache, ["test"])
    test_folder = config.cache.split_folder("test")
    before = digests(test_folder)
    fill()
    refused = error_of(lambda: build(cache, ["train"]))  # too small already: not started
    started = list((SMALL / "cache").rglob("train"))
    free()
    plan = cache_plan.plan_codec
    cache_plan.plan_codec = lambda *args: (plan(*args), fill())[0]  # full once it has started
    error = error_of(lambda: build(cache, ["train"]))
    cache_plan.plan_codec = plan
    served = open_source(config.inputs, "train")
    after = {
        "test_complete": cache.is_complete("test"),
        "test_intact": digests(test_folder) == before,
        "test_served_from_cache": isinstance(open_source(config.inputs, "test"), CacheSource),
        "train_complete": cache.is_complete("train"),
        "train_served_from_dicom": isinstance(served, ImageSource),
    }
    free()
    rebuilt = build(cache, ["train"])[0]
    return {
        "refused": refused,
        "refused_started": [str(p) for p in started],
        "error": error,
        **after,
        "rebuilt": rebuilt["status"],
        "rebuilt_complete": cache.is_complete("train"),
        "corrupt_after_rebuild": verify(config.cache.split_folder("train")),
    }


def submission() -> dict:
    from competition.pipeline.predict import predict_and_submit

    subs = SMALL / "subs"
    config = small_config(
        DATA, f"runs_dir={RUNS}", f"predict.submissions_dir={subs}", *TRAINED_WITH
    )
    predict_and_submit(config)
    before = digests(subs)
    fill()
    error = error_of(lambda: predict_and_submit(config))
    names = sorted(p.name for p in subs.iterdir())
    free()
    return {"error": error, "intact": digests(subs) == before, "names": names}


def main() -> None:
    found = {}
    for step in (checkpoint, training, cache, submission):
        try:
            found[step.__name__] = step()
        except Exception:
            found[step.__name__] = {"crashed": traceback.format_exc()}
        free()
    OUT.write_text(json.dumps(found, indent=2))


if __name__ == "__main__":
    main()
