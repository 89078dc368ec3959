from __future__ import annotations

import json
import pickle
import signal
import subprocess
import time
from dataclasses import replace

import numpy as np
import pytest

from competition.data.cache import build as cache
from competition.data.cache import shards
from competition.data.cache import spec as cache_spec
from competition.data.cache.build import build_split
from competition.data.cache.source import CacheSource
from competition.data.cache.spec import DONE, CacheError
from competition.data.generator import DataGenerator
from competition.data.index import write_index
from competition.data.sources import ImageSource, image_source, open_source
from competition.devtools.memory import rss_anon_bytes

from conftest import small_config
from helpers import cli, corrupt_entry, group_alive, start_kit


def cached_config(base, tmp_path, *overrides):
    return small_config(base.data.root, f"data.cache_dir={tmp_path / 'cache'}", *overrides)


def test_cache_serves_exactly_what_the_dicom_path_reads(small_competition, tmp_path):
    config = cached_config(small_competition, tmp_path)
    result = build_split(config.cache, "train", workers=2)
    assert result["status"] == "built" and result["unreadable"] == 0
    source = open_source(config.inputs, "train")
    assert isinstance(source, CacheSource)
    dicom = image_source(config.inputs, "train")
    ids = source.index.tolist()
    assert result["images"] == len(ids)
    for image_id in ids[::3]:
        np.testing.assert_array_equal(source.load(image_id), dicom.load(image_id))
    labels = np.zeros((len(ids), 6), np.float32)
    gens = [DataGenerator(ids, s, labels, batch_size=16, workers=2) for s in (source, dicom)]
    np.testing.assert_array_equal(gens[0][2][0], gens[1][2][0])
    # One thread for single-read cache batches, the configured ones to decode DICOM.
    assert [g.workers for g in gens] == [1, 2]
    again = build_split(config.cache, "train")
    assert again["status"] == "up to date"
    restored = pickle.loads(pickle.dumps(source))
    assert len(pickle.dumps(source)) < 200_000  # the array is not pickled
    np.testing.assert_array_equal(restored.load(ids[0]), dicom.load(ids[0]))


def test_settings_change_builds_a_new_cache_instead_of_serving_stale_images(
    small_competition, tmp_path, monkeypatch
):
    config = cached_config(small_competition, tmp_path)
    build_split(config.cache, "test", workers=1)
    assert isinstance(open_source(config.inputs, "test"), CacheSource)
    for override in ("preprocess.image_size=48", "preprocess.windows=[[40, 80], [80, 200]]"):
        other = cached_config(small_competition, tmp_path, override)
        assert other.cache.split_folder("test") != config.cache.split_folder("test")
        assert isinstance(open_source(other.inputs, "test"), ImageSource)
        strict = cached_config(small_competition, tmp_path, override, "data.source=cache")
        with pytest.raises(CacheError, match="no finished test cache for these settings"):
            open_source(strict.inputs, "test")
    before = config.cache.split_folder("test")
    monkeypatch.setattr(cache_spec, "READER_VERSION", 99)
    assert config.cache.split_folder("test") != before
    assert isinstance(open_source(config.inputs, "test"), ImageSource)


def test_unreadable_images_are_recorded_and_left_out(small_competition, tmp_path):
    import shutil

    root = tmp_path / "competition"
    source = small_competition.layout
    shutil.copytree(source.image_dir("test"), root / "stage_2_test")
    files = sorted((root / "stage_2_test").glob("*.dcm"))
    files[0].write_bytes(b"not a dicom file")
    config = small_config(root)
    write_index(config.layout, workers=1)
    files[1].unlink()  # indexed as readable, gone by the time the cache is built
    result = build_split(config.cache, "test", workers=1)
    assert result["unreadable"] == 2 and result["images"] == len(files) - 2
    cached = open_source(config.inputs, "test")
    assert set(cached.unreadable) == {files[0].stem, files[1].stem}
    assert "not a DICOM file" in cached.unreadable[files[0].stem]
    assert "file not found" in cached.unreadable[files[1].stem]
    with pytest.raises(Exception, match="not a DICOM file"):
        cached.load(files[0].stem)
    assert cached.gather(np.array([files[0].stem, files[2].stem])) is None
    generator = DataGenerator([f.stem for f in files[:4]], cached, batch_size=4)
    assert generator[0].shape[0] == 4 and set(generator.failed) == {f.stem for f in files[:2]}


@pytest.fixture
def many_images(small_competition, tmp_path):
    """A train split of 2,000 links to the small competition's files: big
    enough to kill a build half-way."""
    root = tmp_path / "many"
    folder = root / "stage_2_train"
    folder.mkdir(parents=True)
    originals = sorted(small_competition.layout.image_dir("train").glob("*.dcm"))
    for i in range(2000):
        (folder / f"ID_{i:06d}.dcm").symlink_to(originals[i % len(originals)])
    config = small_config(root, "synth.generate=false")
    write_index(config.layout, workers=2)
    return config


@pytest.mark.slow
@pytest.mark.parametrize("codec", ["raw", "zstd"])
def test_killed_build_resumes_and_corrupt_entries_are_redone(many_images, codec):
    config = replace(many_images, data=replace(many_images.data, cache_codec=codec))
    folder = config.cache.split_folder("train", codec)
    args = ["cache", "--config", "configs/small.yaml", "--set", f"data.root={config.data.root}"]
    args += ["--set", "synth.generate=false", "--set", f"data.cache_codec={codec}"]
    proc = start_kit(
        *args,
        "--split",
        "train",
        "--workers",
        "1",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while True:
        assert proc.poll() is None and time.time() < deadline, "the build ended before the kill"
        state = folder / "state.npy"
        if state.exists() and int((np.load(state) == DONE).sum()) >= 200:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # the job's own process, as `kill -9 PID` does
    proc.wait(timeout=30)
    deadline = time.time() + 10
    while group_alive(proc.pid):  # its pool workers die with it
        assert time.time() < deadline, "a cache worker outlived the killed build"
        time.sleep(0.05)
    assert not (folder / "complete.json").exists()
    assert isinstance(open_source(config.inputs, "train"), ImageSource)  # never served unfinished
    state = np.load(folder / "state.npy")
    done_rows = np.flatnonzero(state == DONE)
    assert 200 <= len(done_rows) < 2000
    corrupt_entry(folder, done_rows[5])
    result = cli(*args, "--split", "train", timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((folder / "complete.json").read_text())
    assert summary["redone"] == 1 and summary["images"] == 2000 and summary["codec"] == codec
    if codec != "raw":  # what the kill left after the last entry is cut off; the old copy stays
        lengths = np.load(folder / "length.npy").astype(int)
        assert shards.stored_bytes(folder) == lengths.sum() + lengths[done_rows[5]]
    cached = open_source(config.inputs, "train")
    dicom = image_source(config.inputs, "train")
    for row in (*done_rows[:10], 1999):
        image_id = f"ID_{row:06d}"
        np.testing.assert_array_equal(cached.load(image_id), dicom.load(image_id))


def test_verify_finds_a_corrupt_entry_in_a_finished_cache(small_competition, tmp_path):
    config = cached_config(small_competition, tmp_path)
    build_split(config.cache, "test", workers=1)
    folder = config.cache.split_folder("test")
    assert cache.verify(folder) == []
    images = np.load(folder / "images.npy", mmap_mode="r+")
    images[3, 10, 10] ^= 0xFF
    images.flush()
    del images
    assert cache.verify(folder) == [3]
    assert not (folder / "complete.json").exists()
    assert build_split(config.cache, "test")["redone"] == 0  # marked to do by verify, now rebuilt
    assert cache.verify(folder) == []


def test_rss_anon_counts_anonymous_memory_but_not_a_mapped_file(tmp_path):
    before = rss_anon_bytes()
    block = np.ones(64 * 2**20, dtype=np.uint8)  # touched: resident and anonymous
    assert rss_anon_bytes() - before >= 60 * 2**20
    del block
    path = tmp_path / "big.npy"
    np.save(path, np.ones(64 * 2**20, dtype=np.uint8))
    base = rss_anon_bytes()
    mapped = np.load(path, mmap_mode="r")
    assert int(mapped[::4096].sum()) == 16384  # every page read
    assert rss_anon_bytes() - base < 16 * 2**20
