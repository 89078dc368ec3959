"""The fast reader and the lookup-table windowing against the reference path
(pydicom's full parse, `pixel_array`, HU, windows, resize)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.uid import ImplicitVRLittleEndian, RLELossless

from competition.augment.flips import flip_batch
from competition.data.dicom import Rescale, lenient_uids, read_pixels
from competition.data.preprocess import load_windowed, preprocess
from competition.data.rawdicom import read_fast

from helpers import make_dataset, write_dataset, write_dicom

WINDOW_SETS = [
    [[40, 80]],
    [[40, 80], [80, 200]],
    [[40, 80], [80, 200], [40, 380]],
    [[40, 80], [80, 200], [40, 380], [600, 2800], [0, 1000]],
]


def reference(path):
    """Stored samples and rescale as pydicom reads them."""
    with lenient_uids():
        ds = pydicom.dcmread(path)
        return ds.pixel_array, Rescale.of(ds)


def reference_windowed(path, windows, size):
    pixels, rescale = reference(path)
    return preprocess(rescale.to_hu(pixels), windows, size)


def edge_case_files(tmp_path):
    ramp = np.linspace(0, 3000, 64 * 48).reshape(64, 48).astype(np.uint16)
    files = {
        "mono1_rescale": write_dicom(tmp_path / "ID_0e1.dcm", ramp, photometric="MONOCHROME1"),
        "mono1_raw": write_dicom(
            tmp_path / "ID_0e2.dcm", ramp, photometric="MONOCHROME1", rescale=False
        ),
        "12bit_fix": write_dicom(tmp_path / "ID_0e3.dcm", ramp + 3000, intercept=0),
        "signed12": write_dicom(
            tmp_path / "ID_0e4.dcm", (ramp.astype(np.int16) - 1500), bits_stored=12
        ),
        "signed16_slope": write_dicom(
            tmp_path / "ID_0e5.dcm", ramp.astype(np.int16) - 1000, bits_stored=16, slope=2
        ),
    }
    implicit = make_dataset(ramp)
    implicit.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    files["implicit"] = write_dataset(implicit, tmp_path / "ID_0e6.dcm")
    rle = make_dataset(ramp)
    rle.compress(RLELossless)
    files["rle"] = write_dataset(rle, tmp_path / "ID_0e7.dcm")
    return files


def all_files(small_competition, real_series, tmp_path):
    layout = small_competition.layout
    synthetic = sorted(layout.image_dir("train").glob("*.dcm"))[::5]
    real = sorted((real_series / "stage_2_test").glob("*.dcm"))
    return [*synthetic, *real, *edge_case_files(tmp_path).values()]


def test_fast_reader_agrees_with_pydicom_wherever_it_answers(
    small_competition, real_series, tmp_path
):
    answered = 0
    for path in all_files(small_competition, real_series, tmp_path):
        fast = read_fast(path)
        pixels, rescale = reference(path)
        if fast is None:
            continue
        answered += 1
        np.testing.assert_array_equal(fast[0], pixels, err_msg=str(path))
        assert fast[0].dtype == pixels.dtype, path
        assert Rescale(**fast[1]) == rescale, path
        assert (read_pixels(path)[1]) == rescale
    assert answered >= 40  # the synthetic encodings and the real series take the fast path
    files = edge_case_files(tmp_path)
    assert read_fast(files["rle"]) is None and read_fast(files["signed12"]) is None
    assert read_fast(files["implicit"]) is not None


@pytest.mark.parametrize("size", [32, 100, 128, 256, 700])
def test_lookup_table_windowing_equals_the_reference(
    small_competition, real_series, tmp_path, size
):
    for windows in WINDOW_SETS:
        for path in all_files(small_competition, real_series, tmp_path)[::3]:
            got = load_windowed(path, windows, size)
            assert got.shape == (size, size, len(windows)) and got.dtype == np.uint8
            np.testing.assert_array_equal(got, reference_windowed(path, windows, size), str(path))


def test_host_flips_are_seeded_and_exact():
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 255, (16, 24, 24, 3)).astype(np.uint8)
    np.testing.assert_array_equal(flip_batch(batch.copy(), rng, (1, 0)), batch[:, :, ::-1])
    np.testing.assert_array_equal(flip_batch(batch.copy(), rng, (0, 1)), batch[:, ::-1])
    nine = rng.integers(0, 255, (4, 8, 8, 9)).astype(np.uint8)  # 2.5D: numpy's flip
    np.testing.assert_array_equal(flip_batch(nine.copy(), rng, (1, 0)), nine[:, :, ::-1])
    one = flip_batch(batch.copy(), np.random.default_rng(5), (0.5, 0.5))
    two = flip_batch(batch.copy(), np.random.default_rng(5), (0.5, 0.5))
    np.testing.assert_array_equal(one, two)
    assert not np.array_equal(one, batch)
