"""A smoke run of the benchmark on the small preset, so it cannot rot. It
asserts that every measurement is there and plausible, not the targets:
timings belong to `make bench` on a quiet machine, not to a test."""

from __future__ import annotations

import json

import pytest

from helpers import cli


@pytest.mark.slow
def test_quick_bench_measures_every_section(small_competition, tmp_path):
    out = tmp_path / "bench.json"
    result = cli(
        "bench",
        "--quick",
        "--config",
        "configs/small.yaml",
        "--set",
        f"data.root={small_competition.data.root}",
        "--set",
        f"data.cache_dir={tmp_path / 'cache'}",
        "--out",
        str(out),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["machine"]["cores"] >= 1 and report["images"] == 128
    for name in ("seeds_generator", "tfdata_over_dicom", "kit_cache_flips", "in_memory_ceiling"):
        assert report["loaders"][name] > 0
    assert report["fit_predict"]["fit_pipeline_steps_per_s[tiny_cnn]"] > 0
    assert report["decode"]["cache_build_images_per_s"] > 0
    assert report["memory"]["x10"]["images"] == 10 * report["memory"]["x1"]["images"]
    assert set(report["ratios"]) >= {
        "cache_vs_seeds",
        "cache_vs_tfdata",
        "cache_flips_vs_ceiling",
        "fit_pipeline_vs_memory[tiny_cnn]",
        "predict_pipeline_vs_memory",
        "cache_build_vs_pixel_array",
        "rss_anon_growth_10x",
    }
    assert "| cache_vs_seeds |" in result.stdout
