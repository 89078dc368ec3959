"""The task spec: checked when the config loads (errors name the key), read
by every stage (a second, toy task runs through the CLI with no code of its
own), and the only place besides the RSNA preset and the synthetic head
phantom that knows that competition."""

from __future__ import annotations

import io
import re
import sys
import tokenize
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from competition.config import ConfigError, load_config

from helpers import REPO, cli, last_json, run_checked, write_dicom

RSNA = REPO / "configs" / "rsna_ich.yaml"


# --- checked when the config loads --------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["task.heads=[]"], "'task.heads' needs at least one head"),
        (
            ["task.heads=[{name: a, kind: binary, columns: [epidural, any]}]"],
            "'task.heads[0].columns' of a binary head must hold exactly one column",
        ),
        (
            ["task.heads=[{name: a, kind: ordinal, columns: [any]}]"],
            "'task.heads[0].classes' of a ordinal head must list 2 or more",
        ),
        (
            ["task.heads=[{name: a, kind: multilabel, columns: [any], loss_weights: [1, 2]}]"],
            "'task.heads[0].loss_weights' must hold 1 positive numbers",
        ),
        (
            [
                "task.heads=[{name: a, kind: binary, columns: [any]}, {name: a, kind: binary, "
                "columns: [subdural]}]"
            ],
            "'task.heads[1].name' must differ",
        ),
        (
            [
                "task.heads=[{name: a, kind: multilabel, columns: [any]}, {name: b, kind: "
                "multilabel, columns: [any, subdural]}]"
            ],
            "'task.heads[1].columns' must not repeat another head's columns",
        ),
        (
            ["task.heads=[{name: a-b, kind: binary, columns: [any]}]"],
            "'task.heads[0].name' must be a name of letters, digits and _",
        ),
        (["task.heads[0].kind=x"], "'task.heads[0].kind' expects one of 'multilabel'"),
        (["task.heads[1].kind=binary"], "'task.heads' has 1 entries, so there is no [1]"),
        (["task.metric.name=roc_auc"], "roc_auc scores binary heads, but head 'subtypes' is"),
        (["task.metric.head=nothing"], "'task.metric.head' must name a head (subtypes)"),
        (["task.metric.weights=[1, 2]"], "'task.metric.weights' must hold 6 positive numbers"),
        (["task.labels.id_pattern=(?P<image>.+)"], "must have the named groups"),
        (["task.labels.derived=[{name: any, max_of: [bleed]}]"], "derived[0].max_of' must name"),
        (["task.images.path={image_id}.dcm"], "'task.images.path' must start with {split_dir}/"),
        (["task.images.path={split_dir}/{x}.dcm"], "must name the image ID field {image_id}"),
        (
            ["task.images.path={split_dir}/{patient}/{image_id}.dcm"],
            "can only name {split_dir} and {image_id} when the labels are long",
        ),
        (["task.images.path={split_dir}/{image_id}.nii"], "must end in a supported image type"),
        (["task.images.test_list=csv"], "'task.images.test_csv' must name the test CSV"),
        (["task.grouping.key=Name"], "'task.grouping.key' must be one of PatientID"),
        (["task.grouping.by=column", "task.grouping.key=site"], "cannot be column for long"),
        (["task.stratify=null"], "'task.stratify' must name the column folds are stratified on"),
        (["task.submission.postprocess=[derived]", "task.labels.derived=[]"], "lists derived"),
        (["task.submission.clip=0.5"], "'task.submission.clip' must be in (0, 0.1]"),
    ],
)
def test_a_spec_that_does_not_fit_names_the_key(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config(RSNA, overrides)
    assert message in str(info.value)


def toy_layout(root: Path) -> None:
    """CSV headers of a wide toy task (files only, no images)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "labels.csv").write_text("scan,tumour,calcified,cystic\ns_1,0,1,0\n")
    (root / "sample.csv").write_text("scan,cystic,tumour,calcified\nh_1,0.5,0.5,0.5\n")
    (root / "holdout.csv").write_text("scan\nh_1\n")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["task.heads[0].columns=[tumor]"], "'task.heads[0].columns' names the column 'tumor'"),
        (["task.stratify=grade"], "'task.stratify' names the column 'grade', which"),
        (
            [
                "task.heads=[{name: malignant, kind: binary, columns: [tumor]}]",
                "task.metric.head=null",
                "task.stratify=tumor",
            ],
            "'task.heads[0].columns' names the column 'tumor', which",
        ),
        (
            ["task.images.path={split_dir}/{site}/{scan}.dcm"],
            "'task.images.path' names the column 'site', which",
        ),
        (
            ["task.labels.id_column=image", "task.images.path={split_dir}/{image}.dcm"],
            "'task.labels.id_column' names the column 'image'",
        ),
        (
            ["task.submission.id_column=image"],
            "'task.submission.id_column' names the column 'image'",
        ),
    ],
)
def test_columns_the_spec_names_are_checked_against_the_csv_headers(tmp_path, overrides, message):
    toy_layout(tmp_path / "toy")
    config = write_toy_config(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config(config, overrides)
    assert message in str(info.value)
    if "which" in message:
        assert "lacks. Its columns:" in str(info.value)


# --- a second, toy task, end to end through the CLI -------------------------------------

TOY = """
extends: {base}
experiment: toy
data:
  root: {root}
  workers: 1
task:
  name: toy
  labels:
    csv: labels.csv
    format: wide
    id_column: scan
  images:
    path: '{{split_dir}}/{{scan}}.dcm'
    train_dir: scans
    test_dir: holdout
    test_list: csv
    test_csv: holdout.csv
  grouping:
    by: none
  stratify: tumour
  heads:
    - {{name: malignant, kind: binary, columns: [tumour]}}
    - {{name: findings, kind: multilabel, columns: [calcified, cystic]}}
  metric:
    name: log_loss
    head: findings
  submission:
    sample: sample.csv
    layout: wide
    id_column: scan
preprocess:
  windows: [[40, 400], [600, 2000]]
  image_size: 32
folds:
  k: 3
model:
  backbone: tiny_cnn
train:
  epochs: 4
  batch_size: 16
  learning_rate: 0.003
  workers: 1
predict:
  tta: [identity, vflip]
"""


def write_toy_config(tmp_path: Path) -> Path:
    path = tmp_path / "toy.yaml"
    path.write_text(TOY.format(base=REPO / "configs" / "base.yaml", root=tmp_path / "toy"))
    return path


def toy_image(rng: np.random.Generator, tumour: int, calcified: int, cystic: int) -> np.ndarray:
    """48 x 48 HU: soft tissue, a bright mass (tumour), dense dots (calcified),
    a dark region (cystic); stored with intercept -1024."""
    hu = rng.normal(30, 8, (48, 48))
    yy, xx = np.mgrid[:48, :48]
    if tumour:
        hu[(yy - 24) ** 2 + (xx - 24) ** 2 < 100] = 220
    if calcified:
        for y, x in rng.integers(4, 44, (6, 2)):
            hu[y - 1 : y + 2, x - 1 : x + 2] = 1200
    if cystic:
        hu[5:18, 28:44] = -120
    return np.clip(hu + 1024, 0, 4095).astype(np.uint16)


def write_toy_competition(root: Path, seed: int = 0) -> pd.DataFrame:
    """90 training and 24 test scans with labels the images show."""
    rng = np.random.default_rng(seed)
    rows = []
    for split, folder, count in (("train", "scans", 90), ("test", "holdout", 24)):
        (root / folder).mkdir(parents=True)
        for i in range(count):
            labels = rng.random(3) < [0.4, 0.3, 0.3]
            scan = f"{split}_{i:03d}"
            write_dicom(root / folder / f"{scan}.dcm", toy_image(rng, *labels), image_id=scan)
            rows.append([scan, split, *labels.astype(int)])
    table = pd.DataFrame(rows, columns=["scan", "split", "tumour", "calcified", "cystic"])
    train, test = table[table.split == "train"], table[table.split == "test"]
    train.drop(columns="split").to_csv(root / "labels.csv", index=False)
    test[["scan"]].to_csv(root / "holdout.csv", index=False)
    sample = test[["scan"]].assign(cystic=0.5, tumour=0.5, calcified=0.5)  # another column order
    sample.to_csv(root / "sample.csv", index=False)
    return test


@pytest.mark.slow
def test_a_toy_task_trains_predicts_and_validates_through_the_cli(tmp_path):
    truth = write_toy_competition(tmp_path / "toy")
    config = write_toy_config(tmp_path)
    common = ["--config", str(config), "--set", f"runs_dir={tmp_path / 'runs'}",
              "--set", f"predict.submissions_dir={tmp_path / 'subs'}"]  # fmt: skip
    train = cli("train", "--fold", "0", *common, timeout=600)
    assert train.returncode == 0, train.stderr[-3000:]
    assert "fold 0: validation log_loss" in train.stdout
    oof = pd.read_csv(tmp_path / "runs" / "toy" / "fold0" / "oof.csv")
    assert [c for c in oof.columns if c.startswith("pred_")] == [
        "pred_tumour", "pred_calcified", "pred_cystic"
    ]  # fmt: skip
    folds = pd.read_csv(tmp_path / "toy" / "folds.csv")
    assert (folds.group == folds.image_id).all()  # no grouping: each image its own group

    predict = cli("predict", *common, timeout=600)
    assert predict.returncode == 0, predict.stderr[-3000:]
    assert "Predicted 24 test images with folds [0] x 2 TTA views" in predict.stdout
    submission = pd.read_csv(tmp_path / "subs" / "toy-f0-tta2.csv")
    assert submission.columns.tolist() == ["scan", "cystic", "tumour", "calcified"]
    assert submission.scan.tolist() == truth.scan.tolist()
    values = submission[["tumour", "calcified", "cystic"]].to_numpy()
    assert ((values >= 1e-4) & (values <= 1 - 1e-4)).all() and len(np.unique(values)) > 3
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(truth.tumour, submission.tumour) > 0.8  # it learned the mass

    checked = cli("validate", str(tmp_path / "subs" / "submission.csv"), *common, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith("ok: 24 rows match")


# --- the competition lives in the task spec ----------------------------------------------

# Allowed to know RSNA Intracranial Hemorrhage: the task spec module, and the
# synthetic head phantom with its series writer (it draws each subtype).
KNOWS_RSNA = {"task/spec.py", "task/checks.py", "synthetic/phantom.py", "synthetic/head_ct.py"}
SUBTYPE = re.compile(r"epidural|intraparenchymal|intraventricular|subarachnoid|subdural")
RSNA_NAMES = re.compile(r"\bID_|stage_2")
ANY_LABEL = re.compile(r"\bany\b")
# Sixes that are not a label count, with the reason.
SIX_ALLOWED = {
    "kaggle/bundle.py": "SLUG_LENGTH",  # Kaggle's shortest dataset slug
    "devtools/gallery.py": "PER_ROW",  # pictures per row
    "data/dicom.py": "orientation",  # ImageOrientationPatient holds six numbers
    "localise/masks.py": "ORIENTATION_VALUES",  # ... and so it does there
    "synthetic/generate.py": "GENERATOR_VERSION",  # the stand-ins' format version
}
# The other competitions' stand-ins draw their own images: a 6 there cannot be RSNA's
# six outputs (their names of RSNA's labels and files are still checked).
OTHER_STAND_INS = ("synthetic/skin.py", "synthetic/fundus.py", "synthetic/mammography.py",
                   "synthetic/chest_xray.py", "synthetic/cervical_ct.py", "synthetic/aneurysm.py",
                   "synthetic/isic_2024.py", "synthetic/lumbar_mri.py",
                   "synthetic/abdominal_ct.py")  # fmt: skip


def rsna_knowledge(path: Path, relative: str) -> list[str]:
    found = []
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    for token in tokens:
        text, line = token.string, token.start[0]
        if SUBTYPE.search(text) or RSNA_NAMES.search(text):
            found.append(f"{relative}:{line}: {text.strip()[:60]}")
        elif token.type == tokenize.STRING and ANY_LABEL.search(text):
            found.append(f"{relative}:{line}: the label 'any' in {text[:60]}")
        elif (
            token.type == tokenize.NUMBER
            and text in ("6", "6.0")
            and relative not in OTHER_STAND_INS
        ):
            allowed = SIX_ALLOWED.get(relative)
            if not (allowed and allowed in token.line):
                found.append(f"{relative}:{line}: the number 6 in {token.line.strip()[:60]}")
    return found


def test_no_module_but_the_task_and_the_head_phantom_knows_the_rsna_competition():
    package = REPO / "competition"
    found = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package).as_posix()
        if relative not in KNOWS_RSNA:
            found += rsna_knowledge(path, relative)
    assert found == []
    # The check can fail: the allowed modules do know it.
    assert rsna_knowledge(package / "synthetic" / "phantom.py", "synthetic/phantom.py")


# --- commands that do not train or predict never load TensorFlow ---------------------------

LIGHT = r"""
import json, sys
from competition.cli import main
done = {}
for argv in json.loads(sys.argv[1]):
    code = main(argv)
    done[argv[0]] = [code, "tensorflow" in sys.modules, "keras" in sys.modules]
print(json.dumps(done))
"""


@pytest.mark.slow
def test_light_commands_do_not_import_tensorflow(small_competition, trained, tmp_path):
    import shutil

    from conftest import TRAINED_WITH

    root = tmp_path / "copy"
    shutil.copytree(small_competition.data.root, root, ignore=shutil.ignore_patterns("cache"))
    sample = root / "stage_2_sample_submission.csv"
    base = ["--config", "configs/small.yaml", "--set", f"data.root={root}", "--set",
            f"runs_dir={trained}", *(a for o in TRAINED_WITH for a in ("--set", o))]  # fmt: skip
    commands = [
        ["index", *base],
        ["folds", *base],
        ["report", *base],
        ["validate", str(sample), *base],
        ["data-report", *base],
        ["kaggle", *base, "--set", "kaggle.username=kit-tester", "--set", "kaggle.time_batches=0",
         "--set", f"kaggle.build_dir={tmp_path / 'kaggle'}",
         "--set", f"kaggle.python='{sys.version_info.major}.{sys.version_info.minor}'"],
    ]  # fmt: skip
    import json

    done = last_json(run_checked([sys.executable, "-c", LIGHT, json.dumps(commands)], 600))
    assert list(done) == ["index", "folds", "report", "validate", "data-report", "kaggle"]
    for command, (code, tensorflow, keras) in done.items():
        assert code == 0, command
        assert not tensorflow and not keras, f"{command} imported TensorFlow or Keras"


def test_importing_the_package_loads_nothing_heavy():
    probe = (
        "import sys, competition; assert competition.load_config; assert competition.TaskSpec; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'cv2', 'pydicom') if m in sys.modules))"
    )
    result = run_checked([sys.executable, "-c", probe], 60)
    assert result.stdout.strip() == "[]"


def test_the_public_api_resolves():
    import competition

    for name in competition.__all__:
        assert getattr(competition, name) is not None, name
    with pytest.raises(AttributeError):
        competition.no_such_name  # noqa: B018
