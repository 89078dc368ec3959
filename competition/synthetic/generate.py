"""The kit's synthetic competitions: a stand-in (`synth.kind`) written in a
preset's real on-disk format, plus `synthetic_test_labels.csv`, the test
set's answers in the label CSV's format, which a real competition keeps
hidden. Each stand-in module has `plan(synth)` (units of work, each with a
`size` in images), `write(unit, synth, layout)` (one unit's files, returning
its rows), `write_tables(rows, layout)` (the CSVs; returns the test labels)
and `check(task)` (the task is the competition it stands in for).

The folder is built under a temporary name and renamed when done; a marker
records the settings, so an up-to-date folder is not written again, and a
folder the generator did not write is never overwritten.
"""

from __future__ import annotations

import importlib
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from types import ModuleType

from competition.errors import KitError
from competition.fileio import write_csv_atomic, write_text_atomic
from competition.layout import SPLITS, Layout
from competition.progress import Progress
from competition.synthetic.settings import SynthConfig
from competition.workers import worker_count, worker_pool

GENERATOR_VERSION = 8  # 5: the cervical stand-in; 6: aneurysm; 7: its localizers; 8: lumbar
MARKER = "synthetic.json"
TEST_LABELS = "synthetic_test_labels.csv"


def _marker(synth: SynthConfig) -> dict:
    return {"generator_version": GENERATOR_VERSION, "synth": asdict(synth)}


def is_up_to_date(root: Path, synth: SynthConfig) -> bool:
    marker = root / MARKER
    return marker.exists() and json.loads(marker.read_text()) == json.loads(
        json.dumps(_marker(synth))
    )


def _refuse_foreign(root: Path) -> None:
    """A folder the generator did not write is someone's data: never overwritten."""
    if root.exists() and not (root / MARKER).exists():
        raise KitError(
            f"{root} exists and was not written by the synthetic generator (no {MARKER}); "
            "refusing to overwrite it. This config generates a synthetic competition "
            "(synth.generate: true). If the folder is a real competition download, use its "
            "preset instead (CONFIG=configs/rsna_ich.yaml DATA_DIR=<folder>) or add "
            '--set synth.generate=false (make ... ARGS="--set synth.generate=false"); '
            "otherwise choose another data.root."
        )


def stand_in(synth: SynthConfig) -> ModuleType:
    return importlib.import_module(f"competition.synthetic.{synth.kind}")


def generate(synth: SynthConfig, layout: Layout, workers: int = 0, force: bool = False) -> Path:
    """Write the synthetic competition `synth` describes at the layout's root
    (idempotent: an up-to-date folder is left as it is)."""
    root = layout.root
    if not force and is_up_to_date(root, synth):
        print(f"Synthetic competition up to date: {root}")
        return root
    _refuse_foreign(root)
    module = stand_in(synth)
    module.check(layout.task)
    plans = module.plan(synth)
    staging = Layout(root.with_name(f".{root.name}.partial"), layout.task)
    shutil.rmtree(staging.root, ignore_errors=True)
    for split in SPLITS:  # an HDF5 file of images is written whole by write_tables
        folder = staging.image_dir(split)
        (folder.parent if layout.task.in_hdf5 else folder).mkdir(parents=True, exist_ok=True)
    rows = _render_all(module, plans, synth, staging, worker_count(workers))
    test_labels = module.write_tables(rows, staging)
    write_csv_atomic(staging.root / TEST_LABELS, test_labels)
    write_text_atomic(staging.root / MARKER, json.dumps(_marker(synth), indent=2))
    shutil.rmtree(root, ignore_errors=True)
    staging.root.rename(root)
    return root


def _render_all(
    module: ModuleType, plans: list, synth: SynthConfig, layout: Layout, workers: int
) -> list:
    total = sum(p.size for p in plans)
    progress = Progress(total, f"synth {synth.kind}", unit="images")
    rows: list = []
    started = time.perf_counter()
    if workers <= 1:
        for plan in plans:
            rows += module.write(plan, synth, layout)
            progress.advance(plan.size)
    else:
        with worker_pool(workers) as pool:
            jobs = [pool.submit(module.write, plan, synth, layout) for plan in plans]
            for plan, job in zip(plans, jobs, strict=True):
                rows += job.result()
                progress.advance(plan.size)
    progress.close()
    rate = total / max(time.perf_counter() - started, 1e-9)
    done = f"{total} images in {len(plans)} {module.UNIT}"
    print(f"Wrote {done} ({rate:.0f} images/s, {workers} process(es))")
    return rows
