"""The four presets beyond RSNA ICH (SIIM-ISIC 2020, APTOS 2019, RSNA
Screening Mammography 2023, RANZCR CLiP 2021) on their stand-ins, written in
each download's real layout: the layout itself, determinism, the CLI end to
end, the cache, and bad inputs of the new formats."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pydicom
import pytest

from competition.data.cache.build import build_split
from competition.data.sources import image_source

from conftest import PRESETS, preset_args, preset_config
from helpers import cli, digest, synthesize

RANZCR = ["ETT - Abnormal", "ETT - Borderline", "ETT - Normal", "NGT - Abnormal",
          "NGT - Borderline", "NGT - Incompletely Imaged", "NGT - Normal", "CVC - Abnormal",
          "CVC - Borderline", "CVC - Normal", "Swan Ganz Catheter Present"]  # fmt: skip
# The real downloads' files and columns (COMPETITIONS.md; the mle-bench preparations).
LAYOUT = {
    "siim_isic_2020": {
        "train.csv": [
            "image_name",
            "patient_id",
            "sex",
            "age_approx",
            "anatom_site_general_challenge",
            "diagnosis",
            "benign_malignant",
            "target",
        ],
        "test.csv": [
            "image_name",
            "patient_id",
            "sex",
            "age_approx",
            "anatom_site_general_challenge",
        ],
        "sample_submission.csv": ["image_name", "target"],
        "images": ("jpeg/train/*.jpg", "jpeg/test/*.jpg"),
        "id": r"ISIC_\d{7}",
    },
    "aptos_2019": {
        "train.csv": ["id_code", "diagnosis"],
        "test.csv": ["id_code"],
        "sample_submission.csv": ["id_code", "diagnosis"],
        "images": ("train_images/*.png", "test_images/*.png"),
        "id": r"[0-9a-f]{12}",
    },
    "rsna_breast_2023": {
        "train.csv": [
            "site_id",
            "patient_id",
            "image_id",
            "laterality",
            "view",
            "age",
            "cancer",
            "biopsy",
            "invasive",
            "BIRADS",
            "implant",
            "density",
            "machine_id",
            "difficult_negative_case",
        ],
        "test.csv": [
            "site_id",
            "patient_id",
            "image_id",
            "laterality",
            "view",
            "age",
            "implant",
            "machine_id",
            "prediction_id",
        ],
        "sample_submission.csv": ["prediction_id", "cancer"],
        "images": ("train_images/*/*.dcm", "test_images/*/*.dcm"),
        "id": r"\d{7,10}",
    },
    "ranzcr_clip_2021": {
        "train.csv": ["StudyInstanceUID", *RANZCR, "PatientID"],
        "train_annotations.csv": ["StudyInstanceUID", "label", "data"],
        "sample_submission.csv": ["StudyInstanceUID", *RANZCR],
        "images": ("train/*.jpg", "test/*.jpg"),
        "id": r"1\.2\.826\.0\.1\.3680043\.8\.498\.\d+",
    },
}


@pytest.mark.parametrize("name", PRESETS)
def test_the_stand_in_is_written_in_the_downloads_layout(presets, name):
    root, _ = presets(name)
    expected = LAYOUT[name]
    for table in [t for t in expected if t.endswith(".csv")]:
        assert pd.read_csv(root / table, nrows=1).columns.tolist() == expected[table], table
    train = pd.read_csv(root / "train.csv", dtype=str)
    for split, pattern in zip(("train", "test"), expected["images"], strict=True):
        files = sorted(root.glob(pattern))
        assert files, pattern
        assert all(re.fullmatch(expected["id"], f.stem) for f in files)
        if split == "train":
            id_column = train.columns[2] if name == "rsna_breast_2023" else train.columns[0]
            assert set(train[id_column]) == {f.stem for f in files}
    if name == "rsna_breast_2023":  # nested by patient; one sample row per breast
        image = next(root.glob("train_images/*/*.dcm"))
        assert pydicom.dcmread(image).PatientID == image.parent.name
        test = pd.read_csv(root / "test.csv", dtype=str)
        assert (test.prediction_id == test.patient_id + "_" + test.laterality).all()
        sample = pd.read_csv(root / "sample_submission.csv", dtype=str)
        assert sorted(sample.prediction_id) == sorted(test.prediction_id.unique())
    if name == "ranzcr_clip_2021":
        uids = pd.read_csv(root / "sample_submission.csv", dtype=str).StudyInstanceUID
        assert uids.str.len().max() <= 64  # a DICOM UID
    if name == "siim_isic_2020":
        assert train.patient_id.str.fullmatch(r"IP_\d{7}").all()


def test_the_mammograms_are_compressed_both_ways_with_both_photometrics(tmp_path):
    config = preset_config("rsna_breast_2023", tmp_path / "m", "synth.patients=40")
    root = synthesize(config, workers=2)
    found = set()
    for path in root.glob("*_images/*/*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        found.add((ds.file_meta.TransferSyntaxUID, ds.PhotometricInterpretation,
                   ds.get("VOILUTFunction", "LINEAR"), ds.Rows > ds.Columns))  # fmt: skip
    syntaxes = {f[0] for f in found}
    assert syntaxes == {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.70"}
    assert {f[1] for f in found} == {"MONOCHROME1", "MONOCHROME2"}
    assert {f[2] for f in found} == {"LINEAR", "SIGMOID"}
    assert all(f[3] for f in found)  # portrait


@pytest.mark.parametrize("name", PRESETS)
def test_the_stand_in_is_the_same_for_a_seed_whatever_the_processes(tmp_path, name):
    small = ["synth.patients=6", "synth.image_size=64"]
    one = synthesize(preset_config(name, tmp_path / "a", *small), workers=1)
    two = synthesize(preset_config(name, tmp_path / "b", *small), workers=2)
    other = synthesize(preset_config(name, tmp_path / "c", *small, "synth.seed=1"))
    assert digest(one) == digest(two) != digest(other)


@pytest.mark.slow
@pytest.mark.parametrize("name", PRESETS)
def test_predict_and_validate_through_the_cli(presets, name, tmp_path):
    root, runs = presets(name)
    args = preset_args(name, root, f"runs_dir={runs}", f"predict.submissions_dir={tmp_path}")
    predicted = cli("predict", *args, timeout=600)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert "Predicted" in predicted.stdout and "Score on" in predicted.stdout
    checked = cli("validate", str(tmp_path / "submission.csv"), *args, timeout=120)
    assert checked.returncode == 0 and checked.stdout.startswith("ok: "), (
        checked.stdout + checked.stderr
    )
    submission = pd.read_csv(tmp_path / "submission.csv", dtype=str)
    sample = pd.read_csv(root / "sample_submission.csv", dtype=str)
    assert submission.columns.tolist() == sample.columns.tolist()
    assert (
        submission.iloc[:, 0].tolist() == sample.iloc[:, 0].tolist()
    )  # the sample's rows, in order
    summary = json.loads((runs / f"{name}_synthetic" / "predict.json").read_text())
    if name == "aptos_2019":  # integer grades, cut where fold 0 tuned them
        assert set(submission.diagnosis) <= set("01234")
        cuts = json.loads((runs / "aptos_2019_synthetic" / "fold0" / "thresholds.json").read_text())
        assert summary["cuts"] == cuts and len(cuts["grade"]) == 4
    if name == "rsna_breast_2023":  # images reduced to one row per breast
        test = pd.read_csv(root / "test.csv", dtype=str)
        assert summary["images"] == len(test) and len(submission) == test.prediction_id.nunique()
    if name == "ranzcr_clip_2021":
        assert submission.columns[1:].tolist() == RANZCR


@pytest.mark.parametrize("name", PRESETS)
def test_the_cache_serves_exactly_what_the_files_read(presets, name, tmp_path):
    root, _ = presets(name)
    config = preset_config(name, root, f"data.cache_dir={tmp_path / 'cache'}")
    result = build_split(config.cache, "test", workers=2)
    assert result["status"] == "built" and result["unreadable"] == 0
    images = np.load(config.cache.split_folder("test") / "images.npy")
    ids = pd.read_csv(config.cache.split_folder("test") / "ids.csv", dtype=str).image_id
    fields = None
    if name == "rsna_breast_2023":
        fields = pd.read_csv(root / "test.csv", dtype=str).set_index("image_id")
    files = image_source(config.inputs, "test", fields)
    assert images.shape[1:] == files.shape
    for row, image_id in list(enumerate(ids))[::3]:
        np.testing.assert_array_equal(images[row], files.load(image_id))


# --- bad inputs of the new formats --------------------------------------------------------------


def damaged_copy(presets, name, tmp_path):
    root, _ = presets(name)
    copy = tmp_path / name
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("cache", "index*", "folds*"))
    return copy


@pytest.mark.slow
def test_bad_images_and_rows_are_left_out_with_the_file_and_the_reason(presets, tmp_path):
    skin = damaged_copy(presets, "siim_isic_2020", tmp_path)
    train = pd.read_csv(skin / "train.csv", dtype=str)
    cut = skin / "jpeg" / "train" / f"{train.image_name[0]}.jpg"
    cut.write_bytes(cut.read_bytes()[:-300])  # a truncated JPEG
    (
        skin / "jpeg" / "train" / f"{train.image_name[1]}.jpg"
    ).unlink()  # a row whose image is missing
    fundus = damaged_copy(presets, "aptos_2019", tmp_path)
    aptos = pd.read_csv(fundus / "train.csv", dtype=str)
    (fundus / "train_images" / f"{aptos.id_code[0]}.png").write_text("not a picture")
    for name, root in (("siim_isic_2020", skin), ("aptos_2019", fundus)):
        args = preset_args(name, root, "synth.generate=false", f"runs_dir={tmp_path / 'runs'}")
        result = cli("train", "--fold", "0", *args, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        report = json.loads(
            (tmp_path / "runs" / f"{name}_synthetic" / "data_report.json").read_text()
        )
        stages = {
            s: {i["image_id"]: i["reason"] for i in v["images"]}
            for s, v in report["stages"].items()
        }
        if name == "siim_isic_2020":
            assert "truncated JPEG" in stages["index"][train.image_name[0]]
            assert stages["labels"][train.image_name[1]] == "labelled but no image file"
        else:
            assert "not a PNG file" in stages["index"][aptos.id_code[0]]


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        (
            "aptos_2019",
            ("diagnosis", "7"),
            "diagnosis must be one of 0, 1, 2, 3, 4. Received: line 2",
        ),
        ("siim_isic_2020", ("image_name", "jpeg/ISIC_0000001"), "plain file names"),
        (
            "siim_isic_2020",
            ("target", "yes"),
            "labels of target must be one of 0, 1. Received: line 2",
        ),
    ],
)
def test_rows_the_task_cannot_use_stop_the_command_naming_the_file_and_line(
    presets, tmp_path, name, change, message
):
    root = damaged_copy(presets, name, tmp_path)
    train = pd.read_csv(root / "train.csv", dtype=str)
    train.loc[0, change[0]] = change[1]
    train.to_csv(root / "train.csv", index=False)
    args = preset_args(name, root, "synth.generate=false", f"runs_dir={tmp_path / 'runs'}")
    result = cli("train", "--fold", "0", *args, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr and str(root / "train.csv") in result.stderr
    assert not (tmp_path / "runs").exists()


def test_make_data_on_a_real_data_preset_refuses_and_names_the_stand_in(tmp_path):
    result = cli("synth", "--config", "configs/siim_isic_2020.yaml", "--set",
                 f"data.root={tmp_path / 'download'}", timeout=60)  # fmt: skip
    assert result.returncode == 2 and "synth.generate: false" in result.stderr
    assert "configs/synthetic/siim_isic_2020.yaml" in result.stderr
    assert not (tmp_path / "download").exists()
