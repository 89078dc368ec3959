"""Segmentation masks on a series' own grid (localise.masks), and what the
two stages take from them: each target's point and each slice's visibility.

- NIfTI (`<dir>/<series>.nii` or `.nii.gz`, Abdominal Trauma 2023's
  segmentations/): the file's affine is checked against the series' DICOM
  geometry (ImagePositionPatient of its first and last slice,
  ImageOrientationPatient, PixelSpacing). The map from the series' voxels
  to the mask's must be an axis permutation with flips and no shift beyond
  masks.tolerance_mm at a corner: the mask is then transposed and flipped
  onto the series (slices in body-axis order, rows, columns). Anything
  else (another spacing, a rotation, an offset, a grid of another size) is
  refused with the numbers of both.
- PNG (`<dir>/<series>/<instance>.png`): one per slice, of the slice's size.

A target (masks.targets: name -> mask values) is the union of its values:
its point is the centroid on the slice where its area is largest, and a
slice's visibility is its area over that largest area.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from competition.errors import KitError
from competition.fileio import write_csv_atomic, write_text_atomic
from competition.localise.coordinates import COLUMNS
from competition.localise.series import Volume
from competition.localise.settings import MasksSpec

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
ORIENTATION_VALUES = 6  # ImageOrientationPatient: a row's and a column's direction
GEOMETRY = {"ImagePositionPatient": 3, "ImageOrientationPatient": ORIENTATION_VALUES}


def series_affine(volume: Volume) -> np.ndarray:
    """(4, 4): the series' voxel (column, row, slice) -> RAS mm, from its headers."""
    import pydicom

    first = pydicom.dcmread(volume.paths[0], stop_before_pixels=True)
    last = pydicom.dcmread(volume.paths[-1], stop_before_pixels=True)
    for ds, path in ((first, volume.paths[0]), (last, volume.paths[-1])):
        for key, count in GEOMETRY.items():
            if len(ds.get(key) or []) != count:
                raise KitError(
                    f"{path}: a mask is placed on its series by the DICOM geometry, and this "
                    f"file's {key} is {ds.get(key)!r}."
                )
    orientation = np.asarray(first.ImageOrientationPatient, float)
    origin = np.asarray(first.ImagePositionPatient, float)
    if len(volume) > 1:
        step = (np.asarray(last.ImagePositionPatient, float) - origin) / (len(volume) - 1)
    else:
        thickness = float(first.get("SliceThickness") or 1.0)
        step = np.cross(orientation[:3], orientation[3:]) * thickness
    row_mm, col_mm = volume.spacing
    affine = np.eye(4)
    affine[:3, 0] = orientation[:3] * col_mm  # along a row: the next column
    affine[:3, 1] = orientation[3:] * row_mm
    affine[:3, 2] = step
    affine[:3, 3] = origin
    return LPS_TO_RAS @ affine


def _grid(volume: Volume) -> tuple[int, int, int]:
    """The series' voxel counts along (column, row, slice)."""
    return volume.shape[1], volume.shape[0], len(volume)


def _corners(size) -> np.ndarray:
    """(8, 4) homogeneous voxel corners of a grid."""
    c, r, s = (np.array([0, n - 1]) for n in size)
    return np.array([[a, b, d, 1.0] for a in c for b in r for d in s])


def _refuse(path: Path, volume: Volume, affine, data_shape, mask_affine, why: str):
    size = _grid(volume)
    voxel = np.linalg.norm(mask_affine[:3, :3], axis=0)
    series_voxel = np.linalg.norm(affine[:3, :3], axis=0)
    first = np.linalg.solve(mask_affine, affine[:, 3])[:3]  # the series' first voxel, in the mask's
    raise KitError(
        f"{path}: the mask does not lie on series {volume.series}'s grid ({why}). "
        f"Expected (the series' DICOM headers): {size[0]} x {size[1]} x {size[2]} voxels "
        f"(columns x rows x slices) of {np.round(series_voxel, 3).tolist()} mm, the first at "
        f"RAS {np.round(affine[:3, 3], 2).tolist()} mm. Received (the NIfTI header): "
        f"shape {list(data_shape)}, voxels of {np.round(voxel, 3).tolist()} mm, the series' "
        f"first voxel at its voxel {np.round(first, 2).tolist()} (a corner: whole numbers)."
    )


def align(data: np.ndarray, mask_affine: np.ndarray, volume: Volume, path: Path,
          tolerance_mm: float) -> np.ndarray:  # fmt: skip
    """A NIfTI mask (its array and affine) on the series' grid: (slices, rows,
    columns), or refused (see the module)."""
    affine = series_affine(volume)
    data = np.asarray(data)
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        _refuse(path, volume, affine, data.shape, mask_affine, f"{data.ndim} axes, not 3")
    mapping = np.linalg.solve(mask_affine, affine)  # series voxel -> mask voxel
    axes = np.argmax(np.abs(mapping[:3, :3]), axis=0)  # the mask's axis of each series axis
    if sorted(axes.tolist()) != [0, 1, 2]:
        _refuse(path, volume, affine, data.shape, mask_affine, "no axis permutation")
    size = _grid(volume)
    if tuple(data.shape[a] for a in axes) != size:
        _refuse(path, volume, affine, data.shape, mask_affine, "another grid size")
    signs = np.sign(mapping[axes, [0, 1, 2]])
    exact = np.zeros((4, 4))
    exact[3, 3] = 1
    for series_axis, (mask_axis, sign) in enumerate(zip(axes, signs, strict=True)):
        exact[mask_axis, series_axis] = sign
        exact[mask_axis, 3] = 0 if sign > 0 else data.shape[mask_axis] - 1
    corners = _corners(size)
    drift = (mask_affine @ (mapping - exact) @ corners.T)[:3]  # mm between the two
    worst = float(np.linalg.norm(drift, axis=0).max())
    if worst > tolerance_mm:
        _refuse(path, volume, affine, data.shape, mask_affine,
                f"its voxels lie up to {worst:.2f} mm from the series', "
                f"over localise.masks.tolerance_mm {tolerance_mm}")  # fmt: skip
    # mask axes in the order (slice, row, column) of the series, then the flips
    moved = np.transpose(data, (axes[2], axes[1], axes[0]))
    flips = [k for k, sign in enumerate((signs[2], signs[1], signs[0])) if sign < 0]
    return np.ascontiguousarray(np.flip(moved, axis=flips) if flips else moved)


def nifti_path(folder: Path, series: str) -> Path | None:
    for ending in (".nii", ".nii.gz"):
        path = folder / f"{series}{ending}"
        if path.is_file():
            return path
    return None


def read_nifti(path: Path, volume: Volume, tolerance_mm: float) -> np.ndarray:
    import nibabel

    try:
        image = nibabel.load(str(path))
        data = np.asanyarray(image.dataobj)
    except Exception as error:  # nibabel raises several types for a damaged file
        raise KitError(f"{path}: not a readable NIfTI file ({error})") from error
    return align(np.rint(data).astype(np.int16), image.affine, volume, path, tolerance_mm)


def read_png_slices(folder: Path, volume: Volume) -> np.ndarray:
    """(slices, rows, columns) from <folder>/<instance>.png, one per slice."""
    import cv2

    found = []
    for instance in volume.instances:
        path = folder / f"{instance}.png"
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if path.is_file() else None
        if image is None:
            raise KitError(
                f"{path}: expected the mask of slice (instance) {instance} of series "
                f"{volume.series}, a PNG of {volume.shape[0]} x {volume.shape[1]} pixels. "
                f"Received: {'an unreadable file' if path.is_file() else 'no file'}"
            )
        if image.ndim == 3:
            image = image[..., 0]
        if image.shape != volume.shape:
            raise KitError(
                f"{path}: the mask's size is {image.shape[0]} x {image.shape[1]} pixels; "
                f"its slice (series {volume.series}, instance {instance}) is "
                f"{volume.shape[0]} x {volume.shape[1]}."
            )
        found.append(image)
    return np.stack(found).astype(np.int16)


def read_mask(spec: MasksSpec, root: Path, volume: Volume) -> np.ndarray | None:
    """The series' mask on its grid, or None where it has none."""
    folder = Path(root) / spec.dir
    if spec.format == "png":
        mine = folder / volume.series
        return read_png_slices(mine, volume) if mine.is_dir() else None
    path = nifti_path(folder, volume.series)
    return None if path is None else read_nifti(path, volume, spec.tolerance_mm)


def target_areas(mask: np.ndarray, spec: MasksSpec) -> dict[str, np.ndarray]:
    """Target -> its area (pixels) on each slice."""
    return {
        target: np.isin(mask, values).sum(axis=(1, 2)) for target, values in spec.targets.items()
    }


def centroid(mask: np.ndarray, values: list[int], s: int) -> tuple[float, float]:
    rows, cols = np.nonzero(np.isin(mask[s], values))
    return float(cols.mean()), float(rows.mean())


def mask_points(spec: MasksSpec, root: Path, series_units: dict[str, str],
                volumes: dict[str, Volume]) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """The points (coordinates.COLUMNS) and visibilities (series, target,
    slice, visibility) of every series in `series_units` that has a mask."""
    points, seen = [], []
    for series, unit in sorted(series_units.items()):
        volume = volumes.get(series)
        mask = None if volume is None else read_mask(spec, root, volume)
        if mask is None:
            continue
        for target, area in target_areas(mask, spec).items():
            if area.max() == 0:
                continue  # not in this series (an incomplete organ): no point
            s = int(np.argmax(area))
            x, y = centroid(mask, spec.targets[target], s)
            points.append([unit, series, volume.instances[s], target, target, x, y])
            seen += [[series, target, k, v] for k, v in enumerate(area / area.max())]
    return (
        pd.DataFrame(points, columns=COLUMNS),
        pd.DataFrame(seen, columns=["series", "target", "slice", "visibility"]),
    )


def by_series_target(visibility: pd.DataFrame) -> dict[tuple[str, str], np.ndarray]:
    """(series, target) -> each slice's visibility, in slice order."""
    return {
        key: rows.sort_values("slice").visibility.to_numpy(np.float32)
        for key, rows in visibility.groupby(["series", "target"], sort=False)
    }


def _masks_digest(spec: MasksSpec, root: Path, series_units: dict, volumes: dict) -> str:
    """What the masks' points depend on: the settings, each mask file's size
    and time, each series' unit and slices."""
    folder = Path(root) / spec.dir
    pattern = "*/*.png" if spec.format == "png" else "*.nii*"
    files = sorted(
        (p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.glob(pattern)
    ) if folder.is_dir() else []  # fmt: skip
    series = {
        s: [unit, *([len(v), list(v.shape), v.instances[0]] if (v := volumes.get(s)) else [])]
        for s, unit in sorted(series_units.items())
    }
    text = json.dumps([dataclasses.asdict(spec), files, series], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_mask_points(spec: MasksSpec, root: Path, series_units: dict[str, str],
                       volumes: dict[str, Volume], folder: Path):  # fmt: skip
    """mask_points, read back from `folder` while the masks, settings and
    series are those that made it (a competition's masks take minutes to
    read), else made and written (atomically, the record last)."""
    record = Path(folder) / "mask_points.json"
    digest = _masks_digest(spec, root, series_units, volumes)
    paths = (Path(folder) / "mask_points.csv", Path(folder) / "mask_visibility.csv")
    if (
        record.is_file()
        and json.loads(record.read_text()).get("digest") == digest
        and all(p.is_file() for p in paths)
    ):
        dtypes = {"unit": str, "series": str, "target": str, "level": str}
        return tuple(pd.read_csv(p, dtype=dtypes) for p in paths)
    found = mask_points(spec, root, series_units, volumes)
    for path, frame in zip(paths, found, strict=True):
        write_csv_atomic(path, frame)
    write_text_atomic(record, json.dumps({"digest": digest, "points": len(found[0])}))
    return found
