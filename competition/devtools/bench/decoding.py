"""Decoding: the header index against pixel decoding against a whole cache
build, on the same files; and one reader's rate (`make bench ARGS=--readers`)."""

from __future__ import annotations

import tempfile
from dataclasses import replace

from competition.config import Config
from competition.data.dicom import lenient_uids, read_header
from competition.devtools.bench.timing import fastest, timed, warm_files


def _each(read, files: list[str]) -> None:
    for path in files:  # nothing kept: each result is dropped at once
        read(path)


def _pixel_array_seconds(files: list[str]) -> float:
    import pydicom

    with lenient_uids():
        return timed(lambda: _each(lambda path: pydicom.dcmread(path).pixel_array, files))


def _header_seconds(files: list[str]) -> float:
    return timed(lambda: _each(read_header, files))


def _fresh_build_seconds(config: Config, workers: int) -> float:
    """Wall time of a whole cache build of the train split, from scratch."""
    from competition.data.cache.build import build_split

    with tempfile.TemporaryDirectory() as scratch:
        fresh = replace(config, data=replace(config.data, cache_dir=scratch))
        return timed(lambda: build_split(fresh.cache, "train", workers))


def decode_rates(config: Config, files: list[str], workers: int) -> dict:
    """Header index vs pixel decode vs a fresh cache build, on the same files,
    alternating, the fastest of each (as for the loaders)."""
    warm_files(files)
    seconds = fastest(
        {
            "pixel_array": lambda: _pixel_array_seconds(files),
            "header": lambda: _header_seconds(files),
            "build": lambda: _fresh_build_seconds(config, workers),
        }
    )
    n = len(files)
    return {
        "pixel_array_files_per_s_1proc": n / seconds["pixel_array"],
        "header_files_per_s_1proc": n / seconds["header"],
        "cache_build_images_per_s": n / seconds["build"],
        "cache_build_workers": workers,
    }


def reader_rate(config: Config, count: int = 300) -> dict:
    """Files -> model input with the config's reader, one process, the
    fastest of a few passes over the first `count` readable training files."""
    from competition.data.index import path_entries, read_index
    from competition.data.preprocess import load_entry
    from competition.pipeline.prepare import ensure_index

    layout = ensure_index(config)
    index = read_index(layout)
    rows = index[(index["split"] == "train") & index["readable"]].head(count)
    entries = path_entries(rows)  # a frame of a multi-frame file, an MR slice's levels
    warm_files(sorted({str(layout.root / e.path) for e in entries}))
    spec = config.pixels
    read = lambda e: load_entry(layout.root, e, spec)  # noqa: E731
    seconds = fastest({"read": lambda: timed(lambda: _each(read, entries))})
    return {
        "format": spec.image_format,
        "mode": spec.mode,
        "images": len(entries),
        "file_size": f"{int(rows['rows'].median())} x {int(rows['cols'].median())} (median)",
        "input_shape": list(spec.input_shape),
        "images_per_s_1proc": round(len(entries) / seconds["read"], 1),
    }
