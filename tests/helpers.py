"""Hand-made DICOM files for edge cases the synthetic competition does not write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from competition.dicom import lenient_uids

REPO = Path(__file__).resolve().parents[1]
REAL_SERIES = REPO.parent / "shared" / "data" / "rsna_sample_series"


def make_dataset(
    pixels: np.ndarray,
    *,
    bits_stored: int = 12,
    intercept: float = -1024.0,
    slope: float = 1.0,
    photometric: str = "MONOCHROME2",
    image_id: str = "ID_0000000aa",
    rescale: bool = True,
) -> pydicom.Dataset:
    """A CT dataset around `pixels` (uint16 or int16), Explicit VR Little Endian."""
    with lenient_uids():
        return _dataset(pixels, bits_stored, intercept, slope, photometric, image_id, rescale)


def _dataset(pixels, bits_stored, intercept, slope, photometric, image_id, rescale):
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPInstanceUID = image_id
    ds.Modality = "CT"
    ds.PatientID = "ID_pat00001"
    ds.StudyInstanceUID = "ID_study0001"
    ds.SeriesInstanceUID = "ID_series001"
    ds.ImagePositionPatient = [0, 0, 10.0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = int(pixels.dtype == np.int16)
    if rescale:
        ds.RescaleIntercept = f"{intercept:g}"
        ds.RescaleSlope = f"{slope:g}"
    ds.PixelData = pixels.tobytes()
    return ds


def write_dataset(ds: pydicom.Dataset, path: Path) -> Path:
    with lenient_uids():
        ds.save_as(path, enforce_file_format=True)
    return path


def write_dicom(path: Path, pixels: np.ndarray, **kwargs) -> Path:
    return write_dataset(make_dataset(pixels, **kwargs), path)
