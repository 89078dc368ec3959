"""A smoke run of the benchmark on the small preset, so it cannot rot. It
asserts that every measurement is there and plausible, not the targets:
timings belong to `make bench` on a quiet machine, not to a test."""

from __future__ import annotations

import json

import pytest

from helpers import cli


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow"])
def test_quick_bench_measures_every_section(small_competition, backend, tmp_path):
    """On TensorFlow, with the tf.data peer. (On JAX it runs without that peer,
    TensorFlow staying out of the process: measured, and checked by this test
    with backend jax, but left out of the suite for its time: about two and a
    half minutes; bench-gpu's test below runs JAX.)"""
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
        backend=backend,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["machine"]["cores"] >= 1 and report["images"] == 128
    assert report["machine"]["keras"].startswith(f"Keras 3.13.2 on {backend} ")
    on_tensorflow = backend == "tensorflow"
    assert ("tfdata_over_dicom" in report["loaders"]) == on_tensorflow
    for name in ("seeds_generator", "kit_cache_flips", "in_memory_ceiling"):
        assert report["loaders"][name] > 0
    assert report["fit_predict"]["fit_pipeline_steps_per_s[tiny_cnn]"] > 0
    assert report["decode"]["cache_build_images_per_s"] > 0
    assert report["memory"]["x10"]["images"] == 10 * report["memory"]["x1"]["images"]
    assert ("cache_vs_tfdata" in report["ratios"]) == on_tensorflow
    assert set(report["ratios"]) >= {
        "cache_vs_seeds",
        "cache_flips_vs_ceiling",
        "fit_pipeline_vs_memory[tiny_cnn]",
        "predict_pipeline_vs_memory",
        "cache_build_vs_pixel_array",
        "rss_anon_growth_10x",
    }
    assert "| cache_vs_seeds |" in result.stdout


@pytest.mark.slow
def test_bench_gpu_measures_each_backend_side_by_side(tmp_path):
    """`make bench-gpu` at its smallest: a tiny CNN on 32 px stand-ins, on
    TensorFlow and JAX, the headline setup and the RSNA preset's."""
    out = tmp_path / "bench-gpu.json"
    tiny = ("--image-size", "32", "--batch-size", "8", "--images", "48", "--steps", "2")
    result = cli(
        "bench-gpu", "--small", "--backends", "tensorflow,jax", "--backbone", "tiny_cnn", *tiny,
        "--rounds", "1", "--preset-set", "model.backbone=tiny_cnn",
        "--preset-set", "preprocess.image_size=32", "--preset-set", "train.batch_size=8",
        "--folder", str(tmp_path / "bench"), "--out", str(out),
        timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert list(report["backends"]) == ["tensorflow", "jax"]
    for backend, measured in report["backends"].items():
        assert measured["keras"].startswith(f"Keras 3.13.2 on {backend} ")
        assert measured["accelerator"] is None  # this machine has none
        headline, preset = measured["setups"].values()
        assert headline["input_shape"] == [32, 32, 3] and headline["batch_size"] == 8
        assert preset["augment"][:2] == ["RandomFlip", "RandomRotation"]  # the preset's own list
        for setup in (headline, preset):
            assert setup["augment_on"] == "host"  # no accelerator: the image layers on the host
            for key in ("fit_kit", "fit_memory", "predict_kit", "predict_memory"):
                assert setup[f"{key}_images_per_s"] > 0
            assert setup["fit_first_step_s"] >= setup["fit_compile_s"] > 0  # traced, or XLA
            per_core = [setup[f"host_{k}_images_per_core_s"] for k in ("load", "load_augment")]
            assert per_core[0] > per_core[1] > 0  # the image layers cost the host
    ratios = report["ratios"]
    for setup in report["backends"]["jax"]["setups"]:
        assert ratios[f"fit_jax_vs_tensorflow[{setup}]"] > 0
        assert 0 < ratios[f"fit_kit_vs_memory[jax, {setup}]"] < 2
    assert report["targets"] == []  # the targets are for an accelerator
    assert "| ratio | value |" in result.stdout and f"Wrote {out}" in result.stdout
