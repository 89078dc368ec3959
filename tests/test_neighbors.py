"""2.5D input: neighbours in z order from the header index, edges repeated,
channels picked per slice, one cache read per batch, and tasks without
series refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from competition.config import ConfigError
from competition.data.cache.build import build
from competition.data.generator import DataGenerator
from competition.data.index import read_index
from competition.data.neighbors import (
    NeighborSource,
    channel_picks,
    neighbor_rows,
    positions_by_series,
)
from competition.data.sources import open_source, slice_source

from conftest import preset_config, small_config


def _index(rows):
    frame = pd.DataFrame(rows, columns=["image_id", "series_id", "z"])
    return frame.assign(split="train", readable=True)


def test_neighbours_follow_z_and_repeat_at_the_edges():
    index = _index(
        [("c", "s", 3.0), ("a", "s", 1.0), ("b", "s", 2.0), ("lone", "t", 0.0), ("x", "", 5.0)]
    )
    index.loc[len(index)] = ["bad", "s", 1.5, "train", False]  # unreadable: not a neighbour
    table = positions_by_series(index, "train")
    rows = neighbor_rows(table, k=1)
    ids = table["image_id"].to_numpy()
    stacks = {ids[i]: ids[rows[i]].tolist() for i in range(len(ids))}
    assert stacks == {
        "a": ["a", "a", "b"],
        "b": ["a", "b", "c"],
        "c": ["b", "c", "c"],
        "lone": ["lone"] * 3,
        "x": ["x"] * 3,
    }


def test_channel_picks_per_slice():
    assert channel_picks(None, 1, 3).tolist() == list(range(9))
    assert channel_picks([0], 1, 3).tolist() == [0, 3, 6]  # one window over three slices
    assert channel_picks([[0], [0, 1, 2], [2]], 1, 3).tolist() == [0, 3, 4, 5, 8]


@pytest.mark.parametrize("picks", [None, [0, 2], [[1], [0, 1, 2], [2]]])
def test_stacking_puts_each_slices_channels_side_by_side(picks):
    class Slices:
        layout, split, shape = None, "train", (4, 5, 3)

    table = positions_by_series(_index([("a", "s", 1.0)]), "train")
    source = NeighborSource(Slices(), table, 1, picks)
    slices = np.random.default_rng(0).integers(0, 255, (2, 3, 4, 5, 3), dtype=np.uint8)
    expected = np.concatenate([slices[:, p] for p in range(3)], axis=-1)
    np.testing.assert_array_equal(source.stack(slices), expected[..., channel_picks(picks, 1, 3)])


def test_images_without_z_are_refused():
    index = _index([("a", "", np.nan), ("b", "", np.nan)])
    with pytest.raises(ConfigError, match="do not form series"):
        positions_by_series(index, "train")


def test_config_refuses_neighbors_for_images_without_series(tmp_path):
    with pytest.raises(ConfigError, match="do not form series"):
        preset_config("siim_isic_2020", tmp_path, "preprocess.neighbors=1")
    with pytest.raises(ConfigError, match="neighbor_windows"):
        small_config(tmp_path, "preprocess.neighbors=1", "preprocess.neighbor_windows=[3]")
    with pytest.raises(ConfigError, match="one list per slice"):
        small_config(tmp_path, "preprocess.neighbors=1", "preprocess.neighbor_windows=[[0],[1]]")


class CountingCache:
    """A slice source that counts its reads."""

    def __init__(self, inner):
        self.inner, self.takes = inner, 0
        self.layout, self.split, self.shape = inner.layout, inner.split, inner.shape

    def locate(self, ids):
        return self.inner.locate(ids)

    def take(self, rows):
        self.takes += 1
        return self.inner.take(rows)

    def load(self, image_id):
        return self.inner.load(image_id)


def test_stacks_from_the_cache_are_one_read_per_batch_and_match_the_files(small_competition):
    config = small_config(
        small_competition.data.root, "preprocess.neighbors=1", "preprocess.neighbor_windows=[0, 1]"
    )
    build(config.cache, ["train"])
    cache = slice_source(config.inputs, "train")
    assert type(cache).__name__ == "CacheSource"
    index = read_index(config.layout)
    table = positions_by_series(index, "train")
    counting = CountingCache(cache)
    stacked = NeighborSource(counting, table, 1, [0, 1])
    assert stacked.shape == config.input_shape == (64, 64, 6)
    ids = table["image_id"].tolist()[:40]
    batches = DataGenerator(ids, stacked, batch_size=16)
    batch = batches[0]
    assert counting.takes == 1 and batch.shape == (16, 64, 64, 6)
    files = open_source(
        small_config(
            config.data.root,
            "preprocess.neighbors=1",
            "preprocess.neighbor_windows=[0, 1]",
            "data.source=files",
        ).inputs,
        "train",
    )
    for i, image_id in enumerate(ids[:16]):
        np.testing.assert_array_equal(batch[i], files.load(image_id))
        np.testing.assert_array_equal(batch[i], stacked.load(image_id))
    # The centre slice's channels are the plain 2D input's.
    plain = cache.load(ids[5])
    np.testing.assert_array_equal(batch[5][..., 2:4], plain[..., :2])


def test_real_series_stacks_follow_z_without_an_index(real_series, tmp_path):
    """A folder the kit did not write, with no index.csv (as in a Kaggle
    kernel): the test split's headers are read, and each stack holds the
    slices next to it in z."""
    from competition.data.dicom import read_header

    test_dir = real_series / "stage_2_test"
    config = small_config(tmp_path, "preprocess.neighbors=1", f"task.images.test_dir={test_dir}")
    stacked = open_source(config.inputs, "test")
    assert not config.layout.index_csv.exists()
    files = sorted(test_dir.glob("*.dcm"))
    by_z = [p.stem for p in sorted(files, key=lambda p: read_header(p)["z"])]
    assert by_z != sorted(by_z)  # the IDs do not give the order
    plain = slice_source(config.inputs, "test")
    middle = stacked.load(by_z[10])
    for position, image_id in enumerate(by_z[9:12]):
        np.testing.assert_array_equal(
            middle[..., 3 * position : 3 * position + 3], plain.load(image_id)
        )
    lowest = stacked.load(by_z[0])
    np.testing.assert_array_equal(lowest[..., :3], lowest[..., 3:6])  # the edge repeats
