from __future__ import annotations

import numpy as np
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import MPEG2MPML, JPEG2000Lossless, RLELossless

from competition.data import dicom
from competition.data.dicom import DicomReadError, load_hu, read_header, window, window_stack

from helpers import make_dataset, write_dataset, write_dicom


def hu_ramp(shape=(64, 48)) -> np.ndarray:
    """HU from -1000 to 1500 over the image, integer-valued."""
    return np.linspace(-1000, 1500, shape[0] * shape[1]).round().reshape(shape)


def test_real_series_reads_as_plausible_hu(real_series):
    files = sorted((real_series / "stage_2_test").glob("*.dcm"))
    assert len(files) == 32
    middle = []
    for path in files:
        hu = load_hu(path)
        assert hu.dtype == np.float32 and hu.shape == (512, 512)
        corner = hu[:32, :32]
        assert abs(float(np.median(corner)) + 1000) <= 50  # air
        if read_header(path)["z"] is not None:
            middle.append((read_header(path)["z"], hu))
    middle.sort(key=lambda item: item[0])
    _, hu = middle[len(middle) // 2]
    tissue = hu[(hu > -100) & (hu < 200)]
    assert tissue.size > 10_000
    assert 0 <= float(np.median(tissue)) <= 80  # brain tissue


def test_real_header_has_ids_and_z_without_decoding(real_series):
    header = read_header(sorted((real_series / "stage_2_test").glob("*.dcm"))[0])
    assert header["patient_id"] == "ID_52c1ab5a"
    assert header["rows"] == header["cols"] == 512
    assert header["pixel_problem"] is None
    assert np.isfinite(header["z"])


def test_12bit_intercept_fix_recovers_hu(tmp_path):
    hu = hu_ramp()
    raw = np.mod(hu, 4096).astype(np.uint16)  # how the bad files store negative HU
    path = write_dicom(tmp_path / "ID_0000bad12.dcm", raw, bits_stored=12, intercept=1)
    assert dicom.needs_12bit_fix(12, 0, 1.0)
    np.testing.assert_array_equal(load_hu(path), hu.astype(np.float32))


def test_normal_12bit_file_is_not_touched_by_the_fix(tmp_path):
    hu = hu_ramp()
    path = write_dicom(tmp_path / "ID_0000good1.dcm", (hu + 1024).astype(np.uint16))
    assert not dicom.needs_12bit_fix(12, 0, -1024.0)
    np.testing.assert_array_equal(load_hu(path), hu.astype(np.float32))


def test_signed_16bit_with_slope(tmp_path):
    raw = (hu_ramp() / 2).astype(np.int16)
    path = write_dicom(tmp_path / "ID_00000s16a.dcm", raw, bits_stored=16, intercept=-10, slope=2)
    np.testing.assert_array_equal(load_hu(path), raw.astype(np.float32) * 2 - 10)


def test_any_image_size_is_returned_as_is(tmp_path):
    raw = np.full((300, 200), 1024, dtype=np.uint16)
    assert load_hu(write_dicom(tmp_path / "ID_0000size1.dcm", raw)).shape == (300, 200)


def test_monochrome1_with_rescale_keeps_hu(tmp_path):
    hu = hu_ramp()
    path = write_dicom(
        tmp_path / "ID_00000m1a.dcm", (hu + 1024).astype(np.uint16), photometric="MONOCHROME1"
    )
    np.testing.assert_array_equal(load_hu(path), hu.astype(np.float32))


def test_monochrome1_without_rescale_is_inverted(tmp_path):
    raw = np.array([[0, 100], [3000, 4000]], dtype=np.uint16)
    path = write_dicom(tmp_path / "ID_00000m1b.dcm", raw, photometric="MONOCHROME1", rescale=False)
    np.testing.assert_array_equal(load_hu(path), [[4000, 3900], [1000, 0]])


def test_multi_valued_window_tags_take_the_first(real_series):
    import pydicom

    path = sorted((real_series / "stage_2_test").glob("*.dcm"))[0]
    ds = pydicom.dcmread(path)
    assert len(ds.WindowCenter) == 2 and float(ds.WindowCenter[0]) == 40.0  # as RSNA ships it
    center, width = float(ds.WindowCenter[0]), float(ds.WindowWidth[0])
    linear = ((load_hu(path) - (center - 0.5)) / (width - 1) + 0.5) * 255  # DICOM's VOI LINEAR
    shown = dicom.load_display(path).astype(np.float64)  # the voi_lut mode's reader
    assert np.abs(shown - np.clip(linear, 0, 255)).max() <= 0.5


def test_window_maps_the_range_to_0_255():
    hu = np.array([-1000, 0, 40, 80, 3000], dtype=np.float32)
    np.testing.assert_array_equal(window(hu, 40, 80), [0, 0, 128, 255, 255])


def test_window_stack_is_one_channel_per_window():
    hu = hu_ramp().astype(np.float32)
    stack = window_stack(hu, [(40, 80), (80, 200), (40, 380)])
    assert stack.shape == (*hu.shape, 3) and stack.dtype == np.uint8
    for c, (center, width) in enumerate([(40, 80), (80, 200), (40, 380)]):
        np.testing.assert_array_equal(stack[..., c], window(hu, center, width))


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
def test_compressed_syntaxes_decode_losslessly(tmp_path, syntax):
    hu = hu_ramp((64, 64))
    ds = make_dataset((hu + 1024).astype(np.uint16))
    ds.compress(syntax)
    path = write_dataset(ds, tmp_path / "ID_0000comp1.dcm")
    np.testing.assert_array_equal(load_hu(path), hu.astype(np.float32))


# --- files that cannot be read ------------------------------------------------


@pytest.fixture
def good_file(tmp_path):
    return write_dicom(tmp_path / "ID_0000good2.dcm", (hu_ramp() + 1024).astype(np.uint16))


def expect_read_error(path, cause):
    with pytest.raises(DicomReadError) as info:
        load_hu(path)
    assert str(path) in str(info.value) and cause in info.value.cause
    return info.value


def test_truncated_file(good_file):
    data = good_file.read_bytes()
    good_file.write_bytes(data[: len(data) - 1000])
    expect_read_error(good_file, "truncated pixel data")
    assert "truncated" in read_header(good_file)["pixel_problem"]


def test_truncated_header(good_file):
    good_file.write_bytes(good_file.read_bytes()[:200])
    assert "truncated" in read_header(good_file)["pixel_problem"]
    expect_read_error(good_file, "truncated file")


def test_not_a_dicom_file(tmp_path):
    path = tmp_path / "ID_0000text1.dcm"
    path.write_text("ID,Label\nID_1_any,0\n")
    expect_read_error(path, "not a DICOM file")


def test_empty_file(tmp_path):
    path = tmp_path / "ID_000empty1.dcm"
    path.write_bytes(b"")
    expect_read_error(path, "not a DICOM file")


def test_no_pixel_data(tmp_path):
    ds = make_dataset((hu_ramp() + 1024).astype(np.uint16))
    del ds.PixelData
    path = write_dataset(ds, tmp_path / "ID_000nopix1.dcm")
    expect_read_error(path, "no pixel data")


def test_corrupt_compressed_pixel_data(tmp_path):
    ds = make_dataset((hu_ramp() + 1024).astype(np.uint16))
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.PixelData = encapsulate([b"\x01\x00\x00\x00" + b"\xff" * 60])
    path = write_dataset(ds, tmp_path / "ID_000corr01.dcm")
    expect_read_error(path, "corrupt pixel data")


def test_syntax_without_a_decoder(tmp_path):
    ds = make_dataset((hu_ramp() + 1024).astype(np.uint16))
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    ds.PixelData = encapsulate([b"\x00" * 64])
    path = write_dataset(ds, tmp_path / "ID_000mpeg01.dcm")
    expect_read_error(path, "no decoder installed for transfer syntax MPEG2")


def test_missing_file(tmp_path):
    expect_read_error(tmp_path / "ID_000absent.dcm", "file not found")
