"""Kaggle submission kernel, written by `make kaggle` (the kit's
competition/kernel_script.py with the dataset named).

Runs offline: installs the kit's wheels from the bundle dataset with
`pip install --no-index --no-deps`, runs Keras on the backend the bundle
names, finds the competition files under the input folder, predicts with the
bundled folds, writes and validates <root>/working/submission.csv. The root
is $KAGGLE_ROOT, default /kaggle.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

DATASET_SLUG = "<dataset-slug>"
MANIFEST = "kit-bundle.json"


def find_bundle(inputs: Path) -> Path:
    """The bundle dataset's folder: wherever Kaggle mounted it under input/."""
    found = sorted(p.parent for p in inputs.rglob(MANIFEST))
    named = [p for p in found if DATASET_SLUG in p.parts] or found
    if not named:
        raise SystemExit(
            f"error: no {MANIFEST} under {inputs}: add the dataset {DATASET_SLUG!r} "
            "to the kernel's inputs (kernel-metadata.json dataset_sources)."
        )
    return named[0]


def install_wheels(bundle: Path) -> None:
    wheels = sorted(str(p) for p in bundle.rglob("*.whl"))
    command = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "-q", *wheels]
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def main() -> int:
    os.environ["KIT_KERNEL_STARTED"] = str(time.time())  # the run time, beside its projection
    root = Path(os.environ.get("KAGGLE_ROOT", "/kaggle"))
    bundle = find_bundle(root / "input")
    install_wheels(bundle)
    # The Keras backend the bundle names, set before Keras is first imported.
    os.environ["KERAS_BACKEND"] = json.loads((bundle / MANIFEST).read_text())["backend"]
    from competition.kaggle.kernel import run  # installed just above

    return run(bundle, root / "input", root / "working")


if __name__ == "__main__":
    sys.exit(main())
