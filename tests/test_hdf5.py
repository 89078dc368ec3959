"""Images in HDF5 files (ISIC 2024's layout), in a folder written by hand:
listed by key, read by their first bytes, cached, and bad entries (corrupt
bytes, a truncated JPEG, a key the metadata names but the file lacks)
reported and left out."""

from __future__ import annotations

import cv2
import h5py
import numpy as np
import pandas as pd
import pytest

from competition.config import load_config
from competition.data import hdf5, raster
from competition.errors import ImageReadError

from helpers import REPO


def _jpeg(seed: int, size=(40, 52)) -> bytes:
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.integers(0, 255, (*size, 3), dtype=np.uint8), (5, 5), 0)
    return cv2.imencode(".jpg", image)[1].tobytes()


def _png(seed: int) -> bytes:
    return cv2.imencode(".png", np.full((30, 30, 3), seed, np.uint8))[1].tobytes()


BAD = {"ISIC_0000090": b"not an image at all", "ISIC_0000091": _jpeg(91)[:-300]}


@pytest.fixture(scope="module")
def isic_folder(tmp_path_factory):
    """An ISIC 2024 download made by hand: 30 train lesions of 6 patients
    (3 positive), one PNG among the JPEGs, two bad entries, one lesion the
    metadata lists with no key in the file; 6 test lesions, one without a key."""
    root = tmp_path_factory.mktemp("isic") / "competition"
    root.mkdir()
    train = [f"ISIC_{i:07d}" for i in range(30)] + list(BAD)
    with h5py.File(root / "train-image.hdf5", "w") as handle:
        for k, isic_id in enumerate(train):
            data = BAD.get(isic_id) or (_png(k) if k == 5 else _jpeg(k))
            handle.create_dataset(isic_id, data=np.bytes_(data))
    rows = [*train, "ISIC_0000099"]  # listed, never stored
    metadata = pd.DataFrame(
        {
            "isic_id": rows,
            "target": [int(i % 11 == 3) for i in range(len(rows))],
            "patient_id": [f"IP_{i % 6:07d}" for i in range(len(rows))],
            "age_approx": [40 + 5 * (i % 7) for i in range(len(rows))],
            "sex": ["male", "female"] * (len(rows) // 2) + ["male"] * (len(rows) % 2),
            "tbp_lv_H": np.linspace(50, 70, len(rows)),
            "iddx_1": ["Benign"] * len(rows),
        }
    )
    metadata.to_csv(root / "train-metadata.csv", index=False)
    test = [f"ISIC_{i:07d}" for i in range(100, 105)]
    with h5py.File(root / "test-image.hdf5", "w") as handle:
        for k, isic_id in enumerate(test):
            handle.create_dataset(isic_id, data=np.bytes_(_jpeg(100 + k)))
    listed = [*test, "ISIC_0000199"]
    pd.DataFrame(
        {
            "isic_id": listed,
            "patient_id": "IP_0000100",
            "age_approx": 50,
            "sex": "male",
            "tbp_lv_H": 60.0,
        }
    ).to_csv(root / "test-metadata.csv", index=False)
    pd.DataFrame({"isic_id": listed, "target": 0.0}).to_csv(
        root / "sample_submission.csv", index=False
    )
    return root


def _config(root, *extra):
    overrides = [
        f"data.root={root}",
        "folds.k=3",
        "preprocess.image_size=32",
        "data.workers=1",
        *extra,
    ]
    return load_config(REPO / "configs" / "isic_2024.yaml", overrides)


def test_member_paths_read_by_their_bytes(isic_folder):
    file = isic_folder / "train-image.hdf5"
    assert hdf5.member_of(file / "ISIC_0000001") == (file, "ISIC_0000001")
    assert hdf5.member_of(isic_folder / "train-metadata.csv") is None
    jpeg = raster.read(file / "ISIC_0000001", colour=True)
    expected = cv2.cvtColor(cv2.imdecode(np.frombuffer(_jpeg(1), np.uint8), 1), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(jpeg, expected)
    assert raster.read(file / "ISIC_0000005", colour=True)[0, 0].tolist() == [5, 5, 5]  # a PNG
    assert raster.header(file / "ISIC_0000002") == {"rows": 40, "cols": 52, "pixel_problem": None}
    with pytest.raises(ImageReadError, match=r"ISIC_0000099.*no image under this key"):
        raster.read(file / "ISIC_0000099", colour=True)
    with pytest.raises(ImageReadError, match="neither JPEG nor PNG"):
        raster.read(file / "ISIC_0000090", colour=True)
    with pytest.raises(ImageReadError, match="truncated JPEG"):
        raster.read(file / "ISIC_0000091", colour=True)


def test_index_cache_and_report_of_an_hdf5_download(isic_folder):
    from competition.data.cache.build import build
    from competition.data.sources import image_source, slice_source
    from competition.evaluation.data_report import build_report
    from competition.pipeline.prepare import ensure_data

    config = _config(isic_folder, "data.source=auto", f"runs_dir={isic_folder.parent / 'runs'}")
    ensure_data(config)
    index = pd.read_csv(isic_folder / "index.csv", dtype=str)
    assert len(index) == 32 + 5  # every key of both files, nothing else
    bad = index.set_index("image_id").loc[list(BAD)]
    assert bad["readable"].tolist() == ["False", "False"]
    assert bad["reason"].tolist() == [
        "neither JPEG nor PNG bytes",
        "truncated JPEG (no end-of-image marker)",
    ]
    assert (
        index.loc[index.readable == "True", "path"]
        .str.startswith(("train-image.hdf5/", "test-image.hdf5/"))
        .all()
    )
    folds = pd.read_csv(isic_folder / "folds.csv", dtype=str)
    assert set(folds["image_id"]) == {f"ISIC_{i:07d}" for i in range(30)}  # bad and missing out
    build(config.cache, ["train", "test"], 1)
    cached, files = slice_source(config.inputs, "train"), image_source(config.inputs, "train")
    for isic_id in ("ISIC_0000000", "ISIC_0000005", "ISIC_0000029"):
        np.testing.assert_array_equal(cached.load(isic_id), files.load(isic_id))
    text = repr(build_report(config.cache, config.runs))
    for isic_id in (*BAD, "ISIC_0000099"):
        assert isic_id in text
