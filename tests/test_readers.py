"""The image readers beyond head CT: PNG and JPEG (8- and 16-bit, gray,
colour, alpha; reduced JPEG decoding; truncated and fake files), colour
DICOM (RGB, YBR_FULL, YBR_FULL_422), the VOI LUT display path (LINEAR,
SIGMOID, MONOCHROME1), every encoding pydicom decodes, and the crop and
non-square fitting. Reference values come from pydicom and OpenCV."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    RLELossless,
)

from competition.data import raster
from competition.data.dicom import load_display, load_hu, load_rgb, read_header
from competition.data.preprocess import PixelSpec, foreground_box, load_input
from competition.errors import ImageReadError
from competition.synthetic import ljpeg

from helpers import make_dataset, write_dataset

RNG = np.random.default_rng(7)
PHOTO = cv2.GaussianBlur(RNG.integers(0, 256, (120, 160, 3)).astype(np.uint8), (0, 0), 3)


def bgr(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


# --- PNG and JPEG ----------------------------------------------------------------------------


def test_png_variants_read_as_uint8(tmp_path):
    gray16 = (RNG.integers(0, 65536, (30, 40))).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), gray16)
    cv2.imwrite(str(tmp_path / "rgb.png"), bgr(PHOTO))
    rgba = np.dstack([bgr(PHOTO), np.full(PHOTO.shape[:2], 128, np.uint8)])
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    cv2.imwrite(str(tmp_path / "rgb16.png"), bgr(PHOTO).astype(np.uint16) * 257)
    expected16 = np.rint(gray16 / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(
        raster.read(tmp_path / "g16.png", colour=False)[..., 0], expected16
    )
    assert raster.read(tmp_path / "g16.png", colour=True).shape == (30, 40, 3)  # gray as RGB
    np.testing.assert_array_equal(raster.read(tmp_path / "rgb.png", colour=True), PHOTO)
    np.testing.assert_array_equal(raster.read(tmp_path / "rgba.png", colour=True), PHOTO)
    np.testing.assert_array_equal(raster.read(tmp_path / "rgb16.png", colour=True), PHOTO)
    gray = cv2.cvtColor(PHOTO, cv2.COLOR_RGB2GRAY)
    np.testing.assert_array_equal(raster.read(tmp_path / "rgb.png", colour=False)[..., 0], gray)
    assert raster.header(tmp_path / "rgb.png") == {"rows": 120, "cols": 160, "pixel_problem": None}


def test_a_large_jpeg_is_decoded_reduced_close_to_decoding_it_whole(tmp_path):
    big = cv2.resize(PHOTO, (1600, 1200), interpolation=cv2.INTER_CUBIC)
    path = tmp_path / "big.jpg"
    cv2.imwrite(str(path), bgr(big), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert raster.header(path)["rows"] == 1200 and raster.header(path)["cols"] == 1600
    whole = raster.read(path, colour=True)
    reduced = raster.read(path, colour=True, at_least=(256, 256))
    assert whole.shape == (1200, 1600, 3) and reduced.shape == (300, 400, 3)  # 1/4
    shrunk = cv2.resize(whole, (400, 300), interpolation=cv2.INTER_AREA)
    assert np.abs(reduced.astype(int) - shrunk).mean() < 2.0
    assert raster.read(path, colour=True, at_least=(500, 500)).shape == (600, 800, 3)  # 1/2
    assert raster.read(path, colour=True, at_least=(700, 700)).shape == (1200, 1600, 3)


@pytest.mark.parametrize(
    ("name", "content", "cause"),
    [
        ("cut.jpg", "truncate", "truncated JPEG (no end-of-image marker)"),
        ("fake.png", b"ID,Label\nx,1\n", "not a PNG file (no PNG signature)"),
        ("cut.png", "truncate", "truncated PNG (no IEND chunk)"),
        ("fake.jpg", b"\xff\xd8not really", "truncated JPEG"),
        ("empty.jpg", b"", "empty file"),
        ("bad.png", "corrupt", "corrupt PNG data"),
    ],
)
def test_files_that_are_not_whole_images_are_refused_with_the_cause(tmp_path, name, content, cause):
    path = tmp_path / name
    cv2.imwrite(str(path), bgr(PHOTO))
    data = path.read_bytes()
    if content == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif content == "corrupt":  # right signature and end, garbage in between
        path.write_bytes(data[:40] + bytes(len(data) - 52) + data[-12:])
    else:
        path.write_bytes(content)
    with pytest.raises(ImageReadError) as info:
        raster.read(path, colour=True)
    assert str(path) in str(info.value) and cause in info.value.cause
    if content != "corrupt":  # the header scan finds it without decoding
        assert cause in raster.header(path)["pixel_problem"]


# --- DICOM: colour, display values, every encoding ---------------------------------------------


def colour_dataset(rgb: np.ndarray, photometric: str) -> pydicom.Dataset:
    ds = make_dataset(np.zeros(rgb.shape[:2], np.uint16))
    ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    del ds.RescaleIntercept, ds.RescaleSlope
    ds.PhotometricInterpretation = photometric
    if photometric == "RGB":
        ds.PixelData = rgb.tobytes()
        return ds
    ybr = pydicom.pixels.convert_color_space(rgb, "RGB", "YBR_FULL")
    if photometric == "YBR_FULL":
        ds.PixelData = ybr.tobytes()
        return ds
    pairs = ybr.reshape(ybr.shape[0], -1, 2, 3)  # 4:2:2 -> Y0 Y1 Cb Cr per pair of pixels
    chroma = pairs[..., 1:].astype(np.uint16).mean(axis=2).round().astype(np.uint8)
    packed = np.concatenate([pairs[..., 0], chroma], axis=-1)
    ds.PixelData = packed.tobytes()
    return ds


@pytest.mark.parametrize("photometric", ["RGB", "YBR_FULL", "YBR_FULL_422"])
def test_colour_dicoms_read_as_rgb_with_pydicoms_values(tmp_path, photometric):
    path = write_dataset(colour_dataset(PHOTO[:64, :96], photometric), tmp_path / "c.dcm")
    rgb = load_rgb(path)
    np.testing.assert_array_equal(rgb, pydicom.dcmread(path).pixel_array)
    assert rgb.shape == (64, 96, 3) and np.abs(rgb.astype(int) - PHOTO[:64, :96]).mean() < 3
    spec = PixelSpec("dicom", "color", (), (32, 48))
    assert load_input(path, spec).shape == (32, 48, 3)
    with pytest.raises(ImageReadError, match="expected one grayscale frame"):
        load_hu(path)  # a CT task refuses it with the true reason


def mammogram(tmp_path, name, *, function=None, monochrome1=False, syntax=None, voi=True):
    rng = np.random.default_rng(3)
    ramp = np.linspace(0, 4095, 96 * 64).reshape(96, 64) + rng.normal(0, 40, (96, 64))
    stored = np.clip(ramp, 0, 4095).astype(np.uint16)
    ds = make_dataset(stored, bits_stored=12, intercept=0, photometric="MONOCHROME2")
    if monochrome1:
        ds.PhotometricInterpretation = "MONOCHROME1"
    if voi:
        ds.WindowCenter, ds.WindowWidth = ["2000", "1500"], ["2500", "1000"]
    if function:
        ds.VOILUTFunction = function
    if syntax == JPEG2000Lossless:
        ds.compress(JPEG2000Lossless)
    elif syntax == JPEGLosslessSV1:
        ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
        ds.PixelData = encapsulate([ljpeg.encode(stored, 12)])
    return write_dataset(ds, tmp_path / name), stored


@pytest.mark.parametrize(
    ("function", "monochrome1", "syntax"),
    [
        (None, False, None),
        ("LINEAR_EXACT", False, None),
        ("SIGMOID", False, JPEG2000Lossless),
        (None, True, JPEGLosslessSV1),
        ("SIGMOID", True, None),
    ],
)
def test_display_values_are_pydicoms_voi_lut_on_0_255(tmp_path, function, monochrome1, syntax):
    path, stored = mammogram(
        tmp_path, "m.dcm", function=function, monochrome1=monochrome1, syntax=syntax
    )
    ds = pydicom.dcmread(path)
    np.testing.assert_array_equal(ds.pixel_array, stored)  # lossless on disk
    reference = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds) * (255 / 4095)
    if monochrome1:
        reference = 255 - reference
    got = load_display(path)
    assert got.dtype == np.uint8 and got.shape == stored.shape
    assert np.abs(got.astype(float) - reference).max() <= 0.5 + 1e-9  # rounding only
    assert got.min() < 30 and got.max() > 225  # the window spreads the tissue


def test_without_voi_the_image_range_is_stretched(tmp_path):
    path, stored = mammogram(tmp_path, "m.dcm", voi=False)
    got = load_display(path)
    assert got.min() == 0 and got.max() == 255
    assert np.corrcoef(got.ravel(), stored.ravel())[0, 1] > 0.999


def test_the_lossless_jpeg_encoder_round_trips_through_pylibjpeg(tmp_path):
    for precision, shape in ((12, (37, 53)), (16, (20, 31))):
        image = RNG.integers(0, 2**precision, shape).astype(np.uint16)
        image[:3] = 0
        image[3:6] = 2**precision - 1  # the largest differences
        ds = make_dataset(image, bits_stored=precision)
        ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
        ds.PixelData = encapsulate([ljpeg.encode(image, precision)])
        path = write_dataset(ds, tmp_path / f"l{precision}.dcm")
        np.testing.assert_array_equal(pydicom.dcmread(path).pixel_array, image)
    with pytest.raises(ValueError, match="12-bit samples"):
        ljpeg.encode(np.full((4, 4), 5000, np.uint16), 12)


def encoded(tmp_path: Path, syntax) -> Path:
    hu = np.linspace(-1000, 1500, 64 * 48).round().reshape(64, 48)
    ds = make_dataset((hu + 1024).astype(np.uint16))
    if syntax in (RLELossless, JPEG2000Lossless):
        ds.compress(syntax)
    else:
        ds.file_meta.TransferSyntaxUID = syntax
    return write_dataset(ds, tmp_path / "e.dcm")


@pytest.mark.parametrize(
    "syntax",
    [ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian, RLELossless,
     JPEG2000Lossless],
)  # fmt: skip
def test_every_encoding_pydicom_decodes_reads_with_its_values(tmp_path, syntax):
    path = encoded(tmp_path, syntax)
    ds = pydicom.dcmread(path)
    expected = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
    assert read_header(path)["pixel_problem"] is None  # deflated: was "truncated pixel data"
    np.testing.assert_array_equal(load_hu(path), expected)


def test_a_multi_frame_file_is_refused_with_the_true_reason(tmp_path):
    frames = RNG.integers(0, 2000, (2, 16, 16)).astype(np.uint16)
    ds = make_dataset(frames[0])
    ds.NumberOfFrames, ds.PixelData = 2, frames.tobytes()
    path = write_dataset(ds, tmp_path / "frames.dcm")
    with pytest.raises(
        ImageReadError,
        match=r"expected one grayscale frame. Received pixel array of shape \(2, 16, 16\)",
    ):
        load_hu(path)


# --- crop and fit ---------------------------------------------------------------------------------


def test_foreground_crop_keeps_the_largest_bright_region_and_letterbox_keeps_the_aspect(tmp_path):
    image = np.zeros((400, 300), np.uint8)
    cv2.ellipse(image, (0, 200), (200, 150), 0, -90, 90, 180, -1)  # a breast against the left edge
    image[10:30, 220:290] = 255  # a burned-in label, brighter but smaller
    rows, cols = foreground_box(image)
    assert abs(rows.start - 50) <= 3 and abs(rows.stop - 350) <= 3
    assert cols.start == 0 and abs(cols.stop - 200) <= 3
    path = tmp_path / "m.png"
    cv2.imwrite(str(path), image)
    spec = PixelSpec("png", "gray", (), (96, 48), keep_aspect=True, crop="foreground", channels=3)
    got = load_input(path, spec)
    assert got.shape == (96, 48, 3) and (got[..., 0] == got[..., 2]).all()
    inner = np.argwhere(got[..., 0] > 0)
    height, width = np.ptp(inner, axis=0) + 1
    assert abs(height / width - 300 / 200) < 0.12  # the breast's aspect ratio, not the frame's
