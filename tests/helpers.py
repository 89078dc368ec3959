"""Hand-made DICOM files for edge cases the synthetic competition does not write."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from competition.data.cache import shards
from competition.data.dicom import DicomReadError, lenient_uids
from competition.layout import Layout
from competition.task import TaskSpec

REPO = Path(__file__).resolve().parents[1]
REAL_SERIES = REPO.parent / "shared" / "data" / "rsna_sample_series"


def digest(root: Path, skip: str = "synthetic.json") -> str:
    """A hash of every file under `root` (names and bytes), but `skip`."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != skip:
            h.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return h.hexdigest()


def cli(*args: str, backend: str | None = None, more_env: dict | None = None,
        **kwargs) -> subprocess.CompletedProcess:  # fmt: skip
    """`python -m competition ARGS` in the repository (on `backend`, else the
    environment's; `more_env`: more variables, a fault hook's), output captured as text."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", **(more_env or {})}
    if backend:
        env["KERAS_BACKEND"] = backend
    return subprocess.run(
        [sys.executable, "-m", "competition", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        **kwargs,
    )


def run_checked(argv: list[str], timeout: float, **env: str) -> subprocess.CompletedProcess:
    """Run `argv` in the repository, bounded; a non-zero exit fails the test
    with the end of its stderr."""
    result = subprocess.run(
        argv,
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def last_json(result: subprocess.CompletedProcess):
    """What a test script printed as JSON on its last line."""
    return json.loads(result.stdout.strip().splitlines()[-1])


STARTED: list[subprocess.Popen] = []  # killed, with their groups, after each test


def start_kit(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    """`python -m competition ARGS` in its own process group, output piped."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", **(env or {})}
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    proc = subprocess.Popen(
        [sys.executable, "-m", "competition", *args],
        cwd=REPO,
        env=env,
        text=True,
        start_new_session=True,
        **kwargs,
    )
    STARTED.append(proc)
    return proc


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def kill_group(proc: subprocess.Popen) -> None:
    if group_alive(proc.pid):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(timeout=30)


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
    set_pixels(ds, pixels, bits_stored, intercept, slope, photometric, rescale)
    return ds


def set_pixels(
    ds,
    pixels,
    bits_stored=12,
    intercept=-1024.0,
    slope=1.0,
    photometric="MONOCHROME2",
    rescale=True,
):
    """Replace the dataset's pixels (uint16 or int16), stored uncompressed."""
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
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


def write_dataset(ds: pydicom.Dataset, path: Path) -> Path:
    with lenient_uids():
        ds.save_as(path, enforce_file_format=True)
    return path


def write_dicom(path: Path, pixels: np.ndarray, **kwargs) -> Path:
    return write_dataset(make_dataset(pixels, **kwargs), path)


def reencode(path: Path, pixels: np.ndarray, **kwargs) -> Path:
    """Rewrite a DICOM file in place with other pixels or encoding (see
    set_pixels), keeping its IDs and position."""
    ds = pydicom.dcmread(path)
    set_pixels(ds, pixels, **kwargs)
    return write_dataset(ds, path)


class IndexSource:
    """An image source whose pixels hold the sample number (`ID_<n>`), to check
    which samples a generator delivers; IDs in `bad` are unreadable."""

    shape = (4, 4, 3)
    layout = Layout("unused", TaskSpec())

    def __init__(self, bad=(), seen=None):
        self.bad, self.seen = set(bad), seen

    def load(self, image_id: str) -> np.ndarray:
        if image_id in self.bad:
            raise DicomReadError(f"{image_id}.dcm", "corrupt pixel data (test)")
        number = int(image_id.split("_")[1])
        if self.seen is not None:
            self.seen.append(number)
        return np.full(self.shape, number, dtype=np.uint8)


def corrupt_entry(folder, row: int) -> None:
    """Damage one stored row in place, as a machine crash or a bad disk could."""
    if (folder / "images.npy").exists():
        images = np.load(folder / "images.npy", mmap_mode="r+")
        images[row] = 0
        images.flush()
        return
    shard, offset = (int(np.load(folder / f"{name}.npy")[row]) for name in ("shard", "offset"))
    with open(shards.shard_path(folder, shard), "r+b") as handle:
        handle.seek(offset + 20)
        byte = handle.read(1)[0]
        handle.seek(offset + 20)
        handle.write(bytes([byte ^ 0xFF]))


HOOKS = REPO / "tests" / "fault_hooks"


def hooked(**variables: str) -> dict:
    """Environment that loads tests/fault_hooks/sitecustomize.py with these settings."""
    path = os.pathsep.join(filter(None, [str(HOOKS), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path, **variables}


def overrides(*values: str) -> list[str]:
    """`--set` before each KEY=VALUE."""
    return [a for v in values for a in ("--set", v)]


def trained_tiny(base: Path, config: Path, settings) -> tuple[Path, Path, list[str]]:
    """A stand-in under `base` with fold 0 trained through the CLI: (data
    root, runs folder, the CLI's config arguments)."""
    root, runs = base / "competition", base / "runs"
    args = ["--config", str(config), *overrides(f"data.root={root}", f"runs_dir={runs}",
                                                *settings)]  # fmt: skip
    trained = cli("train", "--fold", "0", *args, timeout=600)
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-3000:]
    return root, runs, args


def synthesize(config, workers: int = 0, force: bool = False) -> Path:
    """The config's synthetic competition written at data.root (the generator
    alone: no config file beside it, so two folders can be compared byte for byte)."""
    from competition.synthetic.generate import generate

    return generate(config.synth, config.layout, workers, force)


def sibling_python(dest: Path, left_out: set[str]) -> Path:
    """A fresh virtual environment that sees this one's packages except
    `left_out` (normalised names), symlinked, so nothing is downloaded; its
    own installs go beside them."""
    import importlib.metadata
    import re

    subprocess.run([sys.executable, "-m", "venv", str(dest)], check=True)
    farm = dest / "farm"
    farm.mkdir()
    for dist in importlib.metadata.distributions():
        if re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower() in left_out:
            continue
        for top in {Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")}:
            source, link = Path(dist.locate_file(top)), farm / top
            if source.exists() and not link.exists() and not top.endswith(".pth"):
                link.symlink_to(source)
    (site,) = (dest / "lib").glob("python3*/site-packages")
    (site / "farm.pth").write_text(f"{farm}\n")
    return dest / "bin" / "python"


# Both stages of localise-then-classify at the suite's size (a tiny stand-in's own synth.* beside)
TINY_TWO_STAGE = [
    "folds.k=2",
    "data.workers=1",
    "preprocess.image_size=32",
    "localise.localiser.image_size=48",
    "localise.localiser.epochs=2",
    "localise.crop.size=16",
    "localise.classifier.epochs=2",
    "localise.classifier.units=8",
    "localise.classifier.whole_slices=4",
]
