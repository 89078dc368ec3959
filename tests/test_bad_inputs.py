"""Bad inputs fed to the whole kit: damaged DICOM files through index, cache,
training and prediction; label files; image IDs that could leave the data
folder; bad configs; model files that carry code."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import cv2
import keras
import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import MPEG2MPML, RLELossless

from competition.cli import main
from competition.data.dicom import load_hu
from competition.data.labels import read_labels
from competition.data.preprocess import load_windowed
from competition.errors import KitError
from competition.inference.submission import read_sample, validate_file
from competition.pipeline.predict import predict_and_submit

from conftest import small_config
from helpers import REPO, cli, last_json, reencode, run_checked, write_dataset

# --- damaged DICOM files through every stage --------------------------------


def truncate(path):
    path.write_bytes(path.read_bytes()[:-1000])


def corrupt_compressed(path):
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.PixelData = encapsulate([b"\x01\x00\x00\x00" + b"\xff" * 60])
    write_dataset(ds, path)


def not_dicom(path):
    path.write_text("ID,Label\nID_1_any,0\n")


def no_pixel_data(path):
    ds = pydicom.dcmread(path)
    del ds.PixelData
    write_dataset(ds, path)


def compressed_without_decoder(path):
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    ds.PixelData = encapsulate([b"\x00" * 64])
    write_dataset(ds, path)


def empty(path):
    path.write_bytes(b"")


def integer_hu(path) -> np.ndarray:
    """The file's HU, floored at air (-1000): every window starts above it, so
    the model input is unchanged, and the 12-bit fix is exact from -1000 up."""
    hu = load_hu(path)
    assert np.array_equal(hu, hu.round()), "the synthetic HU are whole numbers"
    return np.maximum(hu, -1000)


def monochrome1(path):
    """Same HU, shown inverted: the kit keeps HU (see README, Reading DICOM)."""
    raw = (integer_hu(path) + 1024).astype(np.uint16)
    reencode(path, raw, photometric="MONOCHROME1")


def twelve_bit_intercept(path):
    """The competition's known bad encoding: 12 bits, intercept > -100."""
    raw = np.mod(integer_hu(path), 4096).astype(np.uint16)
    reencode(path, raw, intercept=1)


def other_size(path):
    hu = cv2.resize(integer_hu(path), (160, 200), interpolation=cv2.INTER_LINEAR).round()
    reencode(path, (hu + 1024).astype(np.uint16))


UNREADABLE = {  # damage -> (stage that finds it, words of the reason)
    truncate: ("index", "truncated"),
    not_dicom: ("index", "not a DICOM file"),
    no_pixel_data: ("index", "no pixel data"),
    compressed_without_decoder: ("index", "no decoder installed"),
    empty: ("index", "not a DICOM file"),
    corrupt_compressed: ("cache", "corrupt pixel data"),
}
SAME_IMAGE = (monochrome1, twelve_bit_intercept)  # read to the identical model input


@pytest.fixture(scope="module")
def damaged(small_competition, tmp_path_factory):
    """A copy of the small competition with every kind of bad file planted
    among the train and test images, run through cache, train and predict."""
    source = small_competition.layout
    root = tmp_path_factory.mktemp("damaged") / "competition"
    keep = shutil.ignore_patterns("cache", "index*", "folds*")
    shutil.copytree(source.root, root, ignore=keep)
    overrides = [
        "synth.generate=false",
        "train.epochs=1",
        f"runs_dir={root.parent / 'runs'}",
        f"predict.submissions_dir={root.parent / 'subs'}",
    ]
    config = small_config(root, *overrides)
    layout = config.layout
    train_ids = read_labels(config.task, layout.train_csv).index.tolist()
    test_ids = read_sample(config.task, layout.sample_submission).images()
    damage = {}  # (split, image ID) -> damage
    for offset, harm in enumerate([*UNREADABLE, *SAME_IMAGE, other_size]):
        damage["train", train_ids[5 * offset + 3]] = harm
    for offset, harm in enumerate([truncate, corrupt_compressed, empty, monochrome1]):
        damage["test", test_ids[7 * offset + 2]] = harm
    windows, size = config.preprocess.windows, config.preprocess.image_size
    expected = {}
    for (split, image_id), harm in damage.items():
        path = layout.image_path(split, image_id)
        expected[split, image_id] = load_windowed(path, windows, size)
        harm(path)
    gone = train_ids[1]  # a labelled image whose file is missing
    layout.image_path("train", gone).unlink()
    shutil.copy(
        layout.image_path("train", train_ids[2]), layout.image_path("train", "ID_0nolabel9")
    )
    args = ["--config", "configs/small.yaml", f"--set=data.root={root}"]
    args += [f"--set={o}" for o in overrides]
    runs = {command: cli(command, *args, timeout=600) for command in ("cache", "train", "predict")}
    return config, damage, expected, gone, runs


def test_every_stage_goes_on_past_bad_files(damaged):
    _, _, _, _, runs = damaged
    for command, result in runs.items():
        assert result.returncode == 0, f"{command}: {result.stderr[-3000:]}"
    assert "images left out of the folds" in runs["train"].stdout  # the label warning
    for command in ("train", "predict"):
        assert "Data report (" in runs[command].stdout
    assert "unreadable test images were given the training mean" in runs["predict"].stdout


def test_data_report_lists_each_bad_file_with_its_stage_and_reason(damaged):
    config, damage, _, gone, _ = damaged
    report = json.loads((Path(config.runs_dir) / "small" / "data_report.json").read_text())
    stages = {
        name: {(i["split"], i["image_id"]): i["reason"] for i in stage["images"]}
        for name, stage in report["stages"].items()
    }
    for key, harm in damage.items():
        if harm in UNREADABLE:
            stage, words = UNREADABLE[harm]
            assert words in stages[stage].get(key, ""), (harm.__name__, key, stages[stage])
        else:  # read correctly: listed nowhere
            assert all(key not in found for found in stages.values()), harm.__name__
    assert stages["labels"] == {
        ("train", gone): "labelled but no image file",
        ("train", "ID_0nolabel9"): "image file without labels",
    }
    corrupt_train = next(
        k for k, h in damage.items() if h is corrupt_compressed and k[0] == "train"
    )
    assert "corrupt pixel data" in stages["training"][corrupt_train]  # skipped by training
    bad_test = {k for k, h in damage.items() if k[0] == "test" and h in UNREADABLE}
    assert set(stages["prediction"]) == bad_test  # given the training mean
    for name, stage in report["stages"].items():
        assert stage["count"] == len(stage["images"]) == sum(stage["reasons"].values()), name
    unique = {key for found in stages.values() for key in found}
    assert report["images_excluded"] == len(unique)


def test_readable_variants_give_the_same_model_input(damaged):
    from competition.data.sources import open_source

    config, damage, expected, _, _ = damaged
    sources = {split: open_source(config.inputs, split) for split in ("train", "test")}
    for (split, image_id), harm in damage.items():
        if harm in SAME_IMAGE:
            np.testing.assert_array_equal(sources[split].load(image_id), expected[split, image_id])
        elif harm is other_size:
            image = sources[split].load(image_id)
            assert image.shape == sources[split].shape and image.std() > 0


def test_bad_test_images_get_the_training_mean_in_a_valid_submission(damaged):
    config, damage, _, _, _ = damaged
    layout = config.layout
    summary = json.loads((Path(config.runs_dir) / "small" / "predict.json").read_text())
    problems, rows = validate_file(config.task, summary["submission"], layout.sample_submission)
    assert problems == [] and rows == len(read_sample(config.task, layout.sample_submission).ids)
    preds = pd.read_csv(summary["test_preds"], index_col="image_id")
    training_mean = list(summary["training_mean"].values())
    for (split, image_id), harm in damage.items():
        if split == "test" and harm in UNREADABLE:
            np.testing.assert_allclose(preds.loc[image_id].to_numpy(), training_mean, rtol=1e-5)


# --- label files ---------------------------------------------------------------


def test_label_rows_that_do_not_fit_stop_train_naming_the_line(small_competition, tmp_path):
    root = tmp_path / "competition"
    shutil.copytree(small_competition.data.root, root, ignore=shutil.ignore_patterns("cache"))
    labels = root / "stage_2_train.csv"
    lines = labels.read_text().splitlines()
    lines[7] = lines[7].rsplit(",", 1)[0] + ",0.5"
    labels.write_text("\n".join(lines) + "\n")
    result = cli(
        "train",
        "--config",
        "configs/small.yaml",
        "--set",
        f"data.root={root}",
        "--set",
        f"runs_dir={tmp_path / 'runs'}",
        timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{labels}: labels of " in result.stderr
    assert "must be one of 0, 1. Received: line 8" in result.stderr
    assert not (tmp_path / "runs").exists()


# --- image IDs that could leave the data folder ----------------------------------

ESCAPES = r"""
import json, sys
from pathlib import Path
root, secret = Path(sys.argv[1]), sys.argv[2]
opened = []
sys.addaudithook(lambda event, args: opened.append(str(args[0]))
                 if event == "open" and secret in str(args[0]) else None)

from competition.config import load_config
from competition.data.folds import read_folds
from competition.data.generator import DataGenerator
from competition.data.pixelspec import PixelSpec
from competition.data.sources import ImageSource
from competition.inference.submission import read_sample
from competition.layout import ImagePaths, Layout

task = load_config("configs/rsna_ich.yaml").task
layout = Layout(root / "data", task)
spec = PixelSpec("dicom", "ct_windows", ((40, 80),), (32, 32))
source = ImageSource(ImagePaths(layout, "train"), spec)
ids = ["../secret/ID_secret1", str(root / "secret" / "ID_secret1"), "secret/ID_secret1",
       "..", ".ID_secret1", "ID_secret1\0", "ID_sec\\ret1", ""]
outcomes = []
def attempt(what, action):
    try:
        action()
        outcomes.append([what, "no error"])
    except Exception as exc:
        outcomes.append([what, f"{type(exc).__name__}: {exc}"])
for image_id in ids:
    attempt(f"load {image_id!r}", lambda: source.load(image_id))
    attempt(f"generator {image_id!r}", lambda: DataGenerator([image_id], source)[0])
    if "\0" not in image_id:  # pandas ends a CSV field at a NUL: no escape left to test
        folds = layout.root / "folds.csv"
        folds.write_text(f"image_id,patient_id,fold\nID_ok1,ID_p,0\n{image_id},ID_p,1\n")
        attempt(f"folds {image_id!r}", lambda: read_folds(layout))
sample = layout.root / "sample.csv"
sample.write_text("ID,Label\nID_../secret/ID_secret1_any,0.5\n")
attempt("sample", lambda: read_sample(task, sample))
print(json.dumps({"opened": opened, "outcomes": outcomes}))
"""


def test_image_ids_that_could_leave_the_data_folder_are_never_opened(tmp_path):
    (tmp_path / "data" / "stage_2_train").mkdir(parents=True)
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "ID_secret1.dcm").write_bytes(b"not to be read")
    report = last_json(
        run_checked([sys.executable, "-c", ESCAPES, str(tmp_path), str(secret)], 120)
    )
    assert report["opened"] == []  # the audit hook saw no open of the outside file
    for what, outcome in report["outcomes"]:
        if what == "sample":
            assert "expected IDs matching" in outcome and "Malformed: line 2" in outcome
        else:
            assert outcome.startswith("UnsafeIdError: ") and "plain file names" in outcome, what
            if what.startswith("folds"):
                assert "folds.csv" in outcome
    assert len(report["outcomes"]) == 3 * 8 - 1 + 1


# --- configs: refused before any work starts -------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--set", "train.learning_rate=-0.001"],
            "'train.learning_rate' must be > 0. Received: -0.001",
        ),
        (["--set", "train.learning_rate=.nan"], "'train.learning_rate' must be a finite number"),
        (["--set", "train.batch_size=0"], "'train.batch_size' must be >= 1. Received: 0"),
        (["--set", "preprocess.image_size=0"], "'preprocess.image_size' must be >= 8. Received: 0"),
        (["--set", "preprocess.image_size=-256"], "must be >= 8. Received: -256"),
        (["--set", "train.epochs=two"], "'train.epochs' expects int. Received: 'two'"),
        (["--set", "train.epochs=2.5"], "'train.epochs' expects int. Received: 2.5"),
        (["--set", "train.epoch=3"], "Unknown config key 'train.epoch'"),
        (["--set", "folds.k=1"], "'folds.k' must be >= 2. Received: 1"),
        (["--fold", "5"], "fold must be in 0..4 (folds.k=5). Received: fold=5"),
        (
            ["--fold", "0,9", "--set", "folds.k=3"],
            "fold must be in 0..2 (folds.k=3). Received: fold=9",
        ),
    ],
)
def test_bad_config_is_refused_before_any_work(tmp_path, capsys, args, message):
    root, runs = tmp_path / "data", tmp_path / "runs"
    code = main(["train", "--set", f"data.root={root}", "--set", f"runs_dir={runs}", *args])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not root.exists() and not runs.exists()  # no synthetic data, no run folder


def test_unknown_key_in_a_config_file_names_the_file_and_the_key(tmp_path, capsys):
    path = tmp_path / "mine.yaml"
    path.write_text(f"extends: {REPO / 'configs' / 'small.yaml'}\ntrain:\n  lr: 0.1\n")
    assert main(["train", "--config", str(path), "--set", f"data.root={tmp_path / 'd'}"]) == 2
    err = capsys.readouterr().err
    assert "Unknown config key 'train.lr'" in err and str(path) in err
    assert not (tmp_path / "d").exists()


# --- model files that carry code ------------------------------------------------


def lambda_fold(config, prevalence):
    """A fold whose checkpoint holds a Lambda layer (Python bytecode)."""
    inputs = keras.Input(config.pixels.input_shape)
    x = keras.layers.Lambda(lambda t: t / 255.0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(len(config.task.outputs), activation="sigmoid")(x)
    out = config.runs.fold(0)
    out.mkdir(parents=True)
    keras.Model(inputs, outputs).save(out / "best.keras")
    # `prevalence`: what folds trained before the task spec recorded (still read)
    (out / "metrics.json").write_text(json.dumps({"prevalence": prevalence}))
    return out / "best.keras"


def test_model_file_with_a_lambda_layer_is_refused_unless_trusted(small_competition, tmp_path):
    def config(*extra):
        return small_config(
            small_competition.data.root,
            f"runs_dir={tmp_path / 'runs'}",
            f"predict.submissions_dir={tmp_path / 'subs'}",
            *extra,
        )

    path = lambda_fold(config(), dict.fromkeys(config().task.outputs, 0.1))
    with pytest.raises(KitError) as info:
        predict_and_submit(config())
    message = str(info.value)
    assert str(path) in message and "Lambda" in message and "model.safe_mode=false" in message
    assert not (tmp_path / "subs").exists()
    summary = predict_and_submit(config("model.safe_mode=false"))  # the user trusts it
    sample = config().layout.sample_submission
    assert validate_file(config().task, summary["submission"], sample)[0] == []
