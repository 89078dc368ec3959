"""Abdominal Trauma 2023 through localise-then-classify: organ masks as
NIfTI (any axis order and flips the affine states; a shifted, rescaled or
resized one refused with its numbers) and as per-slice PNGs, placed on the
series of the stand-in in its real layout; series routed by Modality; both
stages and the whole-series baseline end to end, with soft slice labels
and the heads no mask marks taken from the baseline."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import nibabel
import numpy as np
import pandas as pd
import pytest

from competition.config import load_config
from competition.errors import KitError
from competition.localise import masks
from competition.localise.series import route_series, volumes
from competition.localise.settings import MasksSpec
from competition.synthetic.abdominal_ct import HU, MASK_VALUES

from helpers import REPO, TINY_TWO_STAGE, cli, hooked, overrides

CONFIG = REPO / "configs/synthetic/rsna_abdominal_2023.yaml"
TINY = [
    "synth.patients=24",
    "synth.image_size=64",
    "synth.slices_per_series=[12,14]",
    "synth.test_fraction=0.25",
    *TINY_TWO_STAGE,
    "localise.crop.slices=2",
]


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    """The tiny stand-in written by the kit, its config and every series' volume."""
    from competition.data.index import read_index
    from competition.pipeline.prepare import ensure_data

    base = tmp_path_factory.mktemp("abdominal")
    config = load_config(CONFIG, [f"data.root={base / 'competition'}", *TINY])
    layout = ensure_data(config)
    found = volumes(
        config.task,
        config.localise.series,
        read_index(layout),
        layout.root,
        config.preprocess.windows,
        "instance_number",
    )
    return config, layout.root, found


def _level(hu: float) -> float:
    """HU -> the slice's 0..255 under the preset's soft-tissue window."""
    return float(np.clip((hu - (40 - 200)) * 255 / 400, 0, 255))


def test_the_stand_in_masks_lie_on_their_organs_whatever_their_axis_order(stand_in):
    """Every segmentation file (their axes flipped as the affines state) put
    on its series: inside each uninjured organ's mask the slices are that
    organ's HU (the median past half-way from the soft tissue around it)."""
    config, root, found = stand_in
    spec = config.localise.masks
    files = sorted((root / "segmentations").glob("*.nii"))
    assert len(files) >= 5
    flips = {tuple(np.sign(np.diag(nibabel.load(str(f)).affine)[:3])) for f in files}
    assert len(flips) >= 2  # more than one axis order among them
    labels = pd.read_csv(root / "train.csv", dtype={"patient_id": str}).set_index("patient_id")
    checked = 0
    for path in files:
        volume = found[path.name.removesuffix(".nii")]
        mask = masks.read_mask(spec, root, volume)
        pixels = np.stack([volume.slice(s) for s in range(len(volume))])
        healthy = labels.loc[volume.paths[0].parts[-3]]
        for organ in ("liver", "spleen", "kidney_left", "kidney_right"):
            if not healthy[f"{organ.split('_')[0]}_healthy"]:
                continue
            checked += 1
            inside = mask == MASK_VALUES[organ]
            wanted, around = _level(HU[organ.split("_")[0]]), _level(HU["body"])
            assert np.median(pixels[inside]) > (wanted + around) / 2, (path.name, organ)
    assert checked >= 10


def _variants(volume, mask: np.ndarray):
    """The series' mask written as NIfTI arrays of other axis orders and flips."""
    affine = masks.series_affine(volume)
    data = np.transpose(mask, (2, 1, 0))  # (columns, rows, slices)
    yield data, affine
    swap = np.eye(4)[[1, 0, 2, 3]]  # (rows, columns, slices)
    yield np.transpose(data, (1, 0, 2)), affine @ swap
    flip = np.eye(4)
    flip[2, 2], flip[2, 3] = -1, data.shape[2] - 1
    yield data[:, :, ::-1], affine @ flip


def test_a_nifti_mask_in_any_axis_order_reads_back_the_same_and_a_misplaced_one_is_refused(
    stand_in, tmp_path
):
    config, root, found = stand_in
    spec = config.localise.masks
    series = next(p.name.removesuffix(".nii") for p in (root / "segmentations").glob("*.nii"))
    volume = found[series]
    truth = masks.read_mask(spec, root, volume)
    mine = MasksSpec(dir="masks", targets=spec.targets)
    for k, (data, affine) in enumerate(_variants(volume, truth)):
        path = tmp_path / f"v{k}" / "masks" / f"{series}.nii.gz"
        path.parent.mkdir(parents=True)
        nibabel.save(nibabel.Nifti1Image(np.ascontiguousarray(data), affine), str(path))
        np.testing.assert_array_equal(masks.read_mask(mine, tmp_path / f"v{k}", volume), truth)
    data, affine = next(_variants(volume, truth))
    shifted = affine.copy()
    shifted[:3, 3] += [3.0, 0, 0]
    scaled = affine @ np.diag([1.2, 1.2, 1.0, 1.0])
    for bad_data, bad_affine, says in (
        (data, shifted, "lie up to 3.00 mm"),
        (data, scaled, "mm from the series'"),
        (data[:, :, 1:], affine, "another grid size"),
    ):
        path = tmp_path / "bad" / f"{series}.nii"
        path.parent.mkdir(exist_ok=True)
        nibabel.save(nibabel.Nifti1Image(np.ascontiguousarray(bad_data), bad_affine), str(path))
        with pytest.raises(KitError) as refused:
            masks.read_nifti(path, volume, spec.tolerance_mm)
        text = str(refused.value)
        assert str(path) in text and says in text, text
        assert f"{volume.shape[1]} x {volume.shape[0]} x {len(volume)} voxels" in text
        assert f"shape {list(bad_data.shape)}" in text


def test_per_slice_png_masks_read_as_the_nifti_and_a_wrong_one_is_named(stand_in, tmp_path):
    config, root, found = stand_in
    spec = config.localise.masks
    series = next(p.name.removesuffix(".nii") for p in (root / "segmentations").glob("*.nii"))
    volume = found[series]
    truth = masks.read_mask(spec, root, volume)
    folder = tmp_path / "pngs" / series
    folder.mkdir(parents=True)
    for s, instance in enumerate(volume.instances):
        cv2.imwrite(str(folder / f"{instance}.png"), truth[s].astype(np.uint8))
    png = MasksSpec(dir="pngs", format="png", targets=spec.targets)
    np.testing.assert_array_equal(masks.read_mask(png, tmp_path, volume), truth)
    points, seen = masks.mask_points(png, tmp_path, {series: "p"}, found)
    liver = points.set_index("target").loc["liver"]
    s = volume.position_of(liver.instance)
    assert seen.set_index(["target", "slice"]).loc[("liver", s), "visibility"] == 1.0
    assert truth[s, round(liver.y), round(liver.x)] == MASK_VALUES["liver"]
    wrong = folder / f"{volume.instances[3]}.png"
    cv2.imwrite(str(wrong), np.zeros((10, 12), np.uint8))
    with pytest.raises(KitError, match=r"10 x 12 pixels; its slice .* is 64 x 64") as refused:
        masks.read_mask(png, tmp_path, volume)
    assert str(wrong) in str(refused.value)
    wrong.unlink()
    with pytest.raises(KitError, match="Received: no file"):
        masks.read_mask(png, tmp_path, volume)


def test_the_masks_points_are_read_once_until_a_mask_changes(stand_in, tmp_path, monkeypatch):
    config, root, found = stand_in
    spec = config.localise.masks
    units = {p.name.split(".")[0]: "u" for p in (root / "segmentations").glob("*.nii")}
    made = masks.cached_mask_points(spec, root, units, found, tmp_path)
    assert made[0].series.nunique() == len(units) and set(made[1].target) == set(spec.targets)

    def refuse(*args):
        raise AssertionError("a mask was read again")

    monkeypatch.setattr(masks, "read_mask", refuse)
    again = masks.cached_mask_points(spec, root, units, found, tmp_path)
    for mine, theirs in zip(made, again, strict=True):
        pd.testing.assert_frame_equal(mine, theirs, check_dtype=False)
    touched = next((root / "segmentations").glob("*.nii"))
    touched.write_bytes(touched.read_bytes())  # the same mask, written again: another time
    with pytest.raises(AssertionError, match="read again"):
        masks.cached_mask_points(spec, root, units, found, tmp_path)


def test_series_are_routed_by_their_modality_and_another_one_is_reported(stand_in):
    import pydicom

    from competition.data.index import build_index

    config, root, found = stand_in
    index = build_index(config.layout, 1, ("train",))
    first = index[index.split == "train"].iloc[0]
    other = Path(root) / first.path
    ds = pydicom.dcmread(other)
    ds.Modality = "MR"
    ds.save_as(other)
    series, report = route_series(config.task, config.localise.series, index, root, "train")
    train_series = index[index.split == "train"].path.str.split("/").str[2].nunique()
    assert set(series.kind) == {"ct"} and len(series) == train_series - 1
    assert len(report) == 1 and "'MR' is none of localise.series.kinds" in report[0]
    ds.Modality = "CT"
    ds.save_as(other)


def _kit(command: str, root, runs, env=None, expect: int = 0):
    done = cli(command, "--config", str(CONFIG), *overrides(
        f"data.root={root}", f"runs_dir={runs}", *TINY,
        f"predict.submissions_dir={Path(runs) / 'submissions'}"), timeout=600,
        more_env=env)  # fmt: skip
    assert done.returncode == expect, done.stdout[-2000:] + done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_both_stages_and_the_baseline_write_checked_submissions(tmp_path):
    """make whole-series, make localise, then make classify with soft slice
    labels, killed -9 while backing up its first classifier's second epoch
    and run again: the organs from the masks' points (masked series at them,
    the others at the out-of-fold ones), extravasation (no mask marks it)
    from the baseline."""
    root, runs = tmp_path / "competition", tmp_path / "runs"
    _kit("whole-series", root, runs)
    _kit("localise", root, runs)
    _kit("classify", root, runs, hooked(KIT_KILL_ON="rename:epoch-0002.weights.h5"), -9)
    done = _kit("classify", root, runs)
    assert "Resuming ct classifier, fold 0 at epoch 2" in done.stdout
    out = runs / "rsna_abdominal_2023_synthetic" / "localise"
    assert not list(out.rglob("backup/*.h5"))
    localised = json.loads((out / "localise.json").read_text())
    assert set(localised["accuracy"]["per_level"]) == {"bowel", "kidney", "liver", "spleen"}
    assert any(line.startswith("masks: ") for line in localised["report"])
    report = json.loads((out / "two_stage-both-soft" / "report.json").read_text())
    whole = json.loads((out / "whole_series" / "report.json").read_text())
    assert report["rows"] == whole["rows"] == 6 and Path(report["submission"]).is_file()
    assert any("from make whole-series" in line for line in report["report"])
    two = pd.read_csv(out / "two_stage-both-soft" / "oof.csv", dtype={"image_id": str})
    base = pd.read_csv(out / "whole_series" / "oof.csv", dtype={"image_id": str})
    extravasation = ["pred_extravasation_healthy", "pred_extravasation_injury"]
    np.testing.assert_allclose(two[extravasation], base[extravasation], atol=1e-5)
    assert not np.allclose(two["pred_liver_low"], base["pred_liver_low"], atol=1e-3)
    crops = pd.read_csv(out / "crops" / "ct-both.csv", dtype={"series": str})
    assert set(crops.source) == {"labelled", "predicted"}  # masked series, and the others
    fits = report["time"]["ct"]["fits"]
    # soft labels on each crop's 5 slices: the masks' visibility, the CSV's, the localiser's profile
    assert all(fits[f]["slice_targets"] == 5 * fits[f]["crops"] for f in ("0", "1"))
    points = pd.read_csv(out / "ct" / "fold0" / "points.csv", dtype={"series": str})
    profiles = [np.array(p.split(), float) for p in points.profile]
    assert all(p.max() == 1.0 and len(p) >= 12 for p in profiles)
    assert "Wrote" in done.stdout
