"""The scale benchmark's parts on a tiny competition, so that `make
bench-scale` cannot rot: every stage runs in its own process and reports
what it did, and the growth and projection arithmetic is checked on known
numbers. Timings belong to `make bench-scale` on a quiet machine."""

from __future__ import annotations

import pytest

from competition.devtools.scale import measure, projection, report, stages


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale") / "competition"
    images = measure.write_competition(root, 360, 64, 1)
    from competition.data.index import write_index

    write_index(stages.scale_config(str(root)).layout, 1)  # the cache reads it
    return root, images


@pytest.mark.slow
def test_each_stage_runs_in_its_own_process_and_reports_its_work(tiny_root):
    root, images = tiny_root
    labels = stages.run_stage("labels", root=str(root))
    cache = stages.run_stage("cache", root=str(root), codec="zstd", size=64, workers=1)
    epoch = stages.run_stage("epoch", root=str(root), codec="zstd", size=64, workers=1)
    submission = stages.run_stage("submission", root=str(root))

    assert labels["images"] == images == cache["images"] == epoch["images"]
    assert 0 < cache["bytes"] < images * 64 * 64 * 3  # compressed below raw
    assert submission["rows"] == submission["images"] * 6 > 0  # six subtypes per test image
    for run in (labels, cache, epoch, submission):
        assert run["seconds"] > 0
        assert run["peak_bytes"] >= run["rss_start"] > 0


def test_a_failed_stage_is_reported_with_its_arguments(tmp_path):
    with pytest.raises(RuntimeError, match=r"stage labels .*missing"):
        stages.run_stage("labels", root=str(tmp_path / "missing"))


def test_growth_exponent_and_projection_arithmetic():
    series = {
        "1000": {"labels": {"seconds": 1.0, "peak_growth_bytes": 100}},
        "4000": {"labels": {"seconds": 16.0, "peak_growth_bytes": 400}},
    }
    assert projection.exponent(series, "labels", "seconds") == pytest.approx(2.0)
    assert projection.exponent(series, "labels", "peak_growth_bytes") == pytest.approx(1.0)
    assert projection.exponent({"1000": series["1000"]}, "labels", "seconds") is None
    assert report.verdict("labels_real_seconds", 2.5).startswith("ok")
    assert report.verdict("labels_real_seconds", 3.5).startswith("MISSED")
    assert report.verdict("zstd_decode_per_core", 1400).startswith("MISSED")
    assert report.duration(90) == "90.0 s" and report.duration(7200) == "2.0 h"


@pytest.mark.slow
def test_isic_2024s_stages_run_on_its_hdf5_stand_in_and_project_to_its_real_size(tmp_path):
    """A tiny ISIC stand-in (HDF5 of JPEG tiles), each stage in its own
    process, and the projection to 401,059 lesions (one size: linear growth)."""
    series = measure.isic_series(tmp_path, [150], 1)
    (found,) = series.values()
    assert (
        found["cache_raw"]["images"] == found["epoch_raw"]["images"] == found["train_images"] > 100
    )
    assert found["cache_jpeg"]["bytes"] < found["cache_raw"]["bytes"]  # 128 x 128 x 3 raw
    rows = projection.isic_projection(series, 1)
    n = found["train_images"]
    assert rows["cache_raw"]["disk_gib"] == pytest.approx(
        found["cache_raw"]["bytes"] * projection.ISIC_TRAIN / n / 2**30
    )
    assert rows["index"]["seconds"]["8-core machine"] == pytest.approx(
        found["index"]["seconds"] * projection.ISIC_TRAIN / n / 8
    )
    rate = found["epoch_jpeg"]["images_per_s"]
    assert rows["epoch_jpeg"]["seconds"]["Kaggle notebook"] == pytest.approx(64_000 / rate)
    assert "| cache_jpeg |" in "\n".join(report.isic_table({"series": series, "projection": rows}))
