from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pydicom
import pytest

from competition.data.dicom import load_hu, read_header
from competition.data.index import read_index
from competition.data.labels import read_labels
from competition.errors import KitError
from competition.synthetic import generate as synthetic
from competition.synthetic import phantom
from competition.synthetic.phantom import LESION_SUBTYPES

from conftest import small_config
from helpers import digest, synthesize


def read_long_csv(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_layout_is_the_competitions(small_competition):
    layout = small_competition.layout
    train = sorted(layout.image_dir("train").glob("*.dcm"))
    test = sorted(layout.image_dir("test").glob("*.dcm"))
    assert train and test
    assert all(p.stem.startswith("ID_") and len(p.stem) == 12 for p in train + test)
    long = read_long_csv(layout.train_csv)
    columns = small_competition.task.label_columns
    assert len(long) == 6 * len(train) and list(long.columns) == ["ID", "Label"]
    assert long["ID"].str.rsplit("_", n=1).str[1].tolist()[:6] == columns
    sample = read_long_csv(layout.sample_submission)
    assert len(sample) == 6 * len(test) and set(sample["Label"]) == {"0.5"}


def test_round_trip_every_image_reads_back(small_competition):
    layout = small_competition.layout
    labels = read_labels(small_competition.task, layout.train_csv)
    assert (labels["any"] == labels[list(LESION_SUBTYPES)].max(axis=1)).all()
    for path in layout.image_dir("train").glob("*.dcm"):
        hu = load_hu(path)
        assert hu.shape == (128, 128)
        assert hu.min() >= -1030 and hu.max() > 600  # air and skull
    assert set(labels.index) == {p.stem for p in layout.image_dir("train").glob("*.dcm")}


def test_headers_look_like_the_real_ones(small_competition, real_series):
    layout = small_competition.layout
    path = next(layout.image_dir("train").glob("*.dcm"))
    ds = pydicom.dcmread(path)
    real = pydicom.dcmread(next((real_series / "stage_2_test").glob("*.dcm")))
    shared = {"Modality", "PhotometricInterpretation", "BitsAllocated", "SamplesPerPixel"}
    assert all(ds[k].value == real[k].value for k in shared)
    assert ds.file_meta.TransferSyntaxUID == real.file_meta.TransferSyntaxUID
    assert set(real.dir()) <= set(ds.dir()), set(real.dir()) - set(ds.dir())
    assert len(ds.WindowCenter) == 2 and ds.ImageOrientationPatient[5] <= 0
    assert str(ds.SOPInstanceUID) == path.stem


def test_encodings_include_the_real_variants(tmp_path):
    config = small_config(
        tmp_path / "c", "synth.patients=40", "synth.image_size=32", "synth.slices_per_series=[3, 3]"
    )
    root = synthesize(config)
    seen = set()
    for path in root.rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        seen.add((ds.BitsStored, ds.PixelRepresentation, float(ds.RescaleIntercept) > -100))
    assert {(12, 0, False), (16, 1, True), (12, 0, True)} <= seen


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    config = small_config(tmp_path / "a", "synth.patients=4")
    first = digest(synthesize(config, workers=1))
    second = digest(synthesize(small_config(tmp_path / "b", "synth.patients=4"), workers=2))
    other = digest(synthesize(small_config(tmp_path / "c", "synth.patients=4", "synth.seed=1")))
    assert first == second != other


def test_generate_is_idempotent_and_regenerates_on_change(tmp_path):
    config = small_config(tmp_path / "d", "synth.patients=3")
    root = synthesize(config)
    stamp = (root / synthetic.MARKER).stat().st_mtime_ns
    synthesize(config)
    assert (root / synthetic.MARKER).stat().st_mtime_ns == stamp
    changed = small_config(tmp_path / "d", "synth.patients=4")
    synthesize(changed)
    assert json.loads((root / synthetic.MARKER).read_text())["synth"]["patients"] == 4
    assert not list(tmp_path.glob(".*partial"))


def test_refuses_to_overwrite_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "stage_2_train.csv").write_text("ID,Label\n")
    with pytest.raises(KitError, match="refusing to overwrite") as info:
        synthesize(small_config(tmp_path / "real"))
    assert "CONFIG=configs/rsna_ich.yaml" in str(info.value)  # the way out
    assert "--set synth.generate=false" in str(info.value)


def test_prevalence_resembles_the_real_data(tmp_path):
    config = small_config(
        tmp_path / "p", "synth.patients=150", "synth.image_size=64", "synth.test_fraction=0"
    )
    synthesize(config)
    labels = read_labels(config.task, config.layout.train_csv)
    rate = labels.mean()
    assert 0.09 <= rate["any"] <= 0.20
    assert rate["epidural"] == min(rate)
    assert 0.0 < rate["epidural"] <= 0.02


@pytest.mark.parametrize("subtype", LESION_SUBTYPES)
def test_each_lesion_draws_blood_where_its_subtype_lives(subtype):
    rng = np.random.default_rng(3)
    geo = phantom.random_geometry(rng, 256, 30)
    plain, plain_labels = phantom.render_slice(geo, 15)
    geo.lesions.append(phantom.random_lesion(rng, subtype, center=15))
    bleeding, labels = phantom.render_slice(geo, 15)
    assert plain_labels.sum() == 0 and labels.tolist() == [
        int(s == subtype) for s in LESION_SUBTYPES
    ]
    blood = bleeding - plain > 4  # subtle lesions are 8-18 HU over brain
    assert blood.sum() > 20
    assert np.median(bleeding[blood]) < 100  # blood, not bone
    ys, xs = np.nonzero(blood)
    radius = np.hypot(ys - geo.center[1], xs - geo.center[0]).mean() / geo.head_a
    inner = {"intraventricular", "intraparenchymal"}
    assert (radius < 0.75) if subtype in inner else (radius > 0.6)
    far = phantom.render_slice(geo, 15 + geo.lesions[-1].half_extent + 1)[1]
    assert far.sum() == 0  # a lesion spans neighbouring slices only


def test_phantom_has_skull_base_calcifications_and_subtle_partial_lesions():
    rng = np.random.default_rng(7)
    geo = phantom.random_geometry(rng, 256, 30)
    geo.pineal = geo.choroid = 300.0
    centre = (slice(77, 179), slice(77, 179))  # the middle 40% of the image

    def dense(index, hu=200):
        return int((phantom.render_slice(geo, index)[0][centre] > hu).sum())

    assert dense(1) > 200 and dense(1) > 10 * max(1, dense(15))  # bone at the base only
    mid, labels = phantom.render_slice(geo, 15)
    assert labels.sum() == 0 and (mid[centre] > 100).sum() > 0  # bright, and not blood
    lesions = [phantom.random_lesion(rng, "subdural", 10) for _ in range(400)]
    subtle = np.mean([lesion.contrast < 20 for lesion in lesions])
    assert 0.2 < subtle < 0.4
    lesion = lesions[0]
    end = lesion.center + lesion.half_extent
    assert phantom.BRAIN < lesion.hu_at(end) < lesion.hu_at(lesion.center)


def test_slice_order_is_only_in_the_headers(small_competition):
    index = read_index(small_competition.layout)
    series = index[index["series_id"] == index["series_id"].iloc[0]]
    by_z = series.sort_values("z")["image_id"].tolist()
    assert by_z != sorted(by_z)  # IDs are random: sorting them does not order the slices


def test_real_and_synthetic_headers_index_the_same_way(small_competition):
    path = next(small_competition.layout.image_dir("test").glob("*.dcm"))
    header = read_header(path)
    assert header["pixel_problem"] is None and header["patient_id"].startswith("ID_")


def test_gallery_shows_each_subtype_beside_real_slices(small_competition, real_series, tmp_path):
    from competition.devtools.gallery import pick_examples, save_gallery

    layout = small_competition.layout
    labels = read_labels(small_competition.task, layout.train_csv)
    picks = pick_examples(small_competition, labels)
    titles = [title for title, _ in picks]
    assert titles[-1] == "none" and len(titles) >= 4
    assert titles[:-1] == [s for s in LESION_SUBTYPES if s in titles]  # the task's order
    for title, image_id in picks[:-1]:
        assert labels.loc[image_id, title] == 1
    assert labels.loc[picks[-1][1]].sum() == 0  # the one with none
    out = save_gallery(small_competition, real_series / "stage_2_test", tmp_path / "g.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
