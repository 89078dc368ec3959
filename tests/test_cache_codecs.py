"""The encoded caches (`data.cache_codec`): exact for the lossless codecs,
close for jpeg, smaller than raw, damaged entries named and rebuilt, and the
codec `auto` picks said and kept."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from competition.data.cache import shards
from competition.data.cache.build import build_split
from competition.data.cache.codecs import make_codec
from competition.data.cache.source import CacheSource
from competition.data.cache.spec import CacheError
from competition.data.generator import DataGenerator
from competition.data.sources import image_source, open_source

from conftest import small_config
from helpers import cli, corrupt_entry


def codec_config(base, tmp_path, codec, *overrides):
    return small_config(
        base.data.root,
        f"data.cache_dir={tmp_path / 'cache'}",
        f"data.cache_codec={codec}",
        *overrides,
    )


@pytest.mark.parametrize("codec", ["zstd", "png"])
def test_lossless_codecs_serve_exactly_what_the_files_read(small_competition, tmp_path, codec):
    config = codec_config(small_competition, tmp_path, codec)
    result = build_split(config.cache, "test", workers=2)
    folder = config.cache.split_folder("test")
    assert result["codec"] == codec and folder == config.cache.split_folder("test", codec)
    assert not (folder / "images.npy").exists() and list((folder / "shards").glob("*.bin"))
    source, files = open_source(config.inputs, "test"), image_source(config.inputs, "test")
    assert isinstance(source, CacheSource) and source.codec == codec
    ids = source.index.tolist()
    raw_bytes = len(ids) * int(np.prod(source.shape))
    assert result["bytes"] < raw_bytes / 2, (result["bytes"], raw_bytes)
    for image_id in ids:
        np.testing.assert_array_equal(source.load(image_id), files.load(image_id))
    gens = [DataGenerator(ids, s, batch_size=8, workers=2) for s in (source, files)]
    np.testing.assert_array_equal(gens[0][1], gens[1][1])
    assert gens[0].workers == 2  # a decode per image: the configured threads
    assert len(pickle.dumps(source)) < 200_000
    restored = pickle.loads(pickle.dumps(source))
    np.testing.assert_array_equal(restored.load(ids[-1]), files.load(ids[-1]))
    assert build_split(config.cache, "test")["status"] == "up to date"
    auto = codec_config(small_competition, tmp_path, "auto")
    served = open_source(auto.inputs, "test")  # auto serves the finished cache there is
    assert isinstance(served, CacheSource) and served.codec == codec


def test_jpeg_is_smaller_and_close_but_not_exact(small_competition, tmp_path):
    sizes = {}
    for codec in ("zstd", "jpeg"):
        config = codec_config(small_competition, tmp_path, codec)
        sizes[codec] = build_split(config.cache, "test", workers=1)["bytes"]
    source, files = open_source(config.inputs, "test"), image_source(config.inputs, "test")
    assert source.codec == "jpeg" and sizes["jpeg"] < sizes["zstd"]
    errors = [np.abs(source.load(i).astype(int) - files.load(i)).mean() for i in source.index[:20]]
    assert 0 < np.mean(errors) < 4, errors


def test_codecs_round_trip_any_channel_count():
    rng = np.random.default_rng(0)
    for channels in (1, 2, 3, 5):
        image = rng.integers(0, 256, (24, 16, channels), dtype=np.uint8)
        for name in ("zstd", "png"):
            codec = make_codec(name)
            np.testing.assert_array_equal(codec.decode(codec.encode(image), image.shape), image)
        jpeg = make_codec("jpeg", 95)
        assert jpeg.decode(jpeg.encode(image), image.shape).shape == image.shape


def test_shards_roll_over_and_read_back_by_row(tmp_path):
    shards.start(tmp_path, 20)
    writer = shards.ShardWriter(tmp_path, np.zeros(20, bool), shard_bytes=1000)
    entries = {row: bytes([row]) * (150 + row) for row in range(20)}
    crcs = {row: writer.append(row, data) for row, data in entries.items()}
    writer.close()
    assert len(list((tmp_path / "shards").glob("*.bin"))) >= 4
    reader = pickle.loads(pickle.dumps(shards.ShardReader(tmp_path)))
    for row, data in entries.items():
        assert bytes(reader.read(row)) == data
    assert len(set(crcs.values())) == 20


def test_a_damaged_entry_is_named_then_rebuilt_by_verify(small_competition, tmp_path):
    config = codec_config(small_competition, tmp_path, "zstd")
    build_split(config.cache, "test", workers=1)
    folder = config.cache.split_folder("test")
    source, files = open_source(config.inputs, "test"), image_source(config.inputs, "test")
    damaged = source.index[3]
    corrupt_entry(folder, 3)
    fresh = open_source(config.inputs, "test")
    with pytest.raises(CacheError, match=f"damaged entry among images {damaged}.*--verify"):
        fresh.load(damaged)
    np.testing.assert_array_equal(fresh.load(source.index[4]), files.load(source.index[4]))
    args = ["cache", "--config", "configs/small.yaml", "--set", f"data.root={config.data.root}"]
    args += ["--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "data.cache_codec=zstd"]
    result = cli(*args, "--split", "test", "--verify", timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "1 corrupt entries" in result.stdout
    np.testing.assert_array_equal(
        open_source(config.inputs, "test").load(damaged), files.load(damaged)
    )


def test_auto_says_which_codec_and_why(small_competition, tmp_path, capsys):
    config = codec_config(small_competition, tmp_path, "auto")
    result = build_split(config.cache, "test", workers=1)
    said = capsys.readouterr().out
    assert result["codec"] == "raw"  # this disk has room for it
    assert "Cache of test: auto chose raw" in said and "free" in said
