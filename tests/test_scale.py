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
