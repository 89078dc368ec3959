"""What bench-scale measures: the synthetic competitions at several sizes,
the real competition's label tables, each stage at each size, the per-image
pixel costs of every codec on real-size slices, fit from the zstd cache,
and the Kaggle kernel's prediction rate."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from competition.devtools.scale.projection import CODECS, REAL_TEST, REAL_TRAIN
from competition.devtools.scale.stages import codec_config, run_stage, scale_config

TRAIN_PER_PATIENT = 36  # train slices per synthetic patient (studies x slices, 80% train)


def write_competition(root: Path, train_images: int, image_size: int, workers: int) -> int:
    from competition.synthetic.generate import generate

    patients = max(4, round(train_images / TRAIN_PER_PATIENT))
    config = scale_config(str(root), f"synth.patients={patients}", f"synth.image_size={image_size}")
    generate(config.synth, config.layout, workers)
    return len(list(config.layout.image_dir("train").iterdir()))


def real_size_tables(root: Path) -> None:
    """Only the CSVs, at the real competition's size (see label_tables_only)."""
    from competition.synthetic.head_ct import label_tables_only

    label_tables_only(scale_config(str(root)).layout, REAL_TRAIN, REAL_TEST)
    (root / "synthetic.json").write_text("{}")  # a folder the kit may write into


def scale_series(scratch: Path, sizes: list[int], workers: int) -> dict:
    series = {}
    for size in sizes:
        root = scratch / f"n{size}"
        print(f"bench-scale: writing {size:,} train slices (64 px) ...", flush=True)
        images = write_competition(root, size, 64, workers)
        found = {"train_images": images}
        for stage, args in (
            ("labels", {}),
            ("index", {"workers": workers}),
            ("folds", {}),
            ("submission", {}),
        ):
            found[stage] = run_stage(stage, root=str(root), **args)
        for codec in CODECS:
            found[f"cache_{codec}"] = run_stage(
                "cache", root=str(root), codec=codec, size=64, workers=workers
            )
        found["epoch_raw"] = run_stage("epoch", root=str(root), codec="raw", size=64, workers=1)
        found["epoch_zstd"] = run_stage("epoch", root=str(root), codec="zstd", size=64, workers=1)
        series[str(images)] = found
        print(f"bench-scale: {images:,} done", flush=True)
    return series


def pixel_costs(scratch: Path, train_images: int, workers: int) -> dict:
    """Per image at the real size: each codec's build rate from 512 px
    DICOMs, bytes and one-core decode rate at 256 x 256 x 3, and the error
    of the lossy codec."""
    from competition.data.cache.source import CacheSource
    from competition.data.sources import image_source

    root = scratch / "pixels"
    print(f"bench-scale: writing {train_images:,} slices at 512 px ...", flush=True)
    write_competition(root, train_images, 512, workers)
    run_stage("index", root=str(root), workers=workers)
    found = {}
    exact = None
    for codec in (*CODECS, "png"):
        build = run_stage("cache", root=str(root), codec=codec, size=256, workers=workers)
        config = codec_config(str(root), codec, 256)
        source = CacheSource(
            config.cache.split_folder("train"), image_source(config.inputs, "train"), False
        )
        rows = np.arange(len(source.index))
        started = time.perf_counter()
        images = np.concatenate([source.take(rows[i : i + 64]) for i in range(0, len(rows), 64)])
        decode = len(rows) / (time.perf_counter() - started)
        exact = images if codec == "raw" else exact
        found[codec] = {
            "images": build["images"],
            "build_images_per_s": build["images"] / build["seconds"],
            "build_workers": workers,
            "kib_per_image": build["bytes"] / build["images"] / 1024,
            "decode_images_per_s_1core": decode,
            "mean_abs_error": float(np.abs(images.astype(np.int16) - exact).mean()),
        }
    return found


def fit_from_codec(scratch: Path, workers: int) -> dict:
    """fit of efficientnet_b0 at 128 px fed from the zstd cache vs the same
    images in memory (bench.fit_and_predict's protocol)."""
    from competition.data.cache.build import build_split
    from competition.data.cache.source import CacheSource
    from competition.data.sources import image_source
    from competition.devtools.bench.fitting import fit_and_predict

    root = str(scratch / "pixels")
    config = codec_config(root, "zstd", 128)
    build_split(config.cache, "train", workers)
    source = CacheSource(
        config.cache.split_folder("train"), image_source(config.inputs, "train"), False
    )
    ids = source.index[:640].tolist()
    images = source.gather(np.asarray(ids))
    config = scale_config(
        root, "preprocess.image_size=128", "train.batch_size=32", "train.workers=2"
    )
    return fit_and_predict(config, ids, source, images, ["efficientnet_b0"], "_zstd")


def kernel_rate(scratch: Path, preset: Path) -> dict:
    """The Kaggle kernel's prediction from DICOM with the preset's ensemble
    (its backbone, folds, TTA views, input size and 2.5D setting; random
    weights, which do not change the speed), on the 512 px test slices:
    images/s end to end on this CPU, and of the input side alone (read,
    decode, window, resize, stack) on one thread."""
    from competition.config import load_config
    from competition.data.index import read_index
    from competition.data.sources import open_source
    from competition.inference.predict import ensemble_model
    from competition.pipeline.generators import inference_generator
    from competition.training.model import build_model

    root = scratch / "pixels"
    config = load_config(
        preset,
        [f"data.root={root}", "model.weights=null", "data.source=files", "train.workers=1"],
    )
    index = read_index(config.layout)
    ids = index.loc[(index["split"] == "test") & index["readable"], "image_id"].tolist()
    shape = config.input_shape
    models = []
    for fold in range(config.folds.k):
        models.append(build_model(config.model, shape, config.task))
        models[-1].name = f"fold{fold}"  # nested models need distinct names
    model = ensemble_model(models, config.predict.tta, shape)
    source = open_source(config.inputs, "test")
    warm = inference_generator(config, ids[: config.predict.batch_size], source)
    model.predict(warm, verbose=0)  # tracing, first reads
    gen = inference_generator(config, ids, source)
    started = time.perf_counter()
    model.predict(gen, verbose=0)
    end_to_end = len(ids) / (time.perf_counter() - started)
    started = time.perf_counter()
    for batch in range(len(gen)):
        gen[batch]
    inputs = len(ids) / (time.perf_counter() - started)
    return {
        "preset": str(preset),
        "images": len(ids),
        "folds": config.folds.k,
        "tta": list(config.predict.tta),
        "input_shape": list(shape),
        "backbone": config.model.backbone,
        "images_per_s": end_to_end,
        "input_images_per_s_1thread": inputs,
    }


ISIC_PRESET = "configs/synthetic/isic_2024.yaml"
ISIC_LESIONS_PER_PATIENT = 30  # the stand-in's 10-50, on average
ISIC_TILE = 130  # ISIC 2024's tiles are ~130 px crops


def isic_series(scratch: Path, sizes: list[int], workers: int) -> dict:
    """ISIC 2024's stand-in (HDF5 of JPEG tiles at the real tiles' size) at
    each size: the index (the file's keys and each entry's header), the cache
    at the preset's 128 px (raw and JPEG), and a shuffled epoch from each."""
    from competition.synthetic.generate import generate

    series = {}
    for size in sizes:
        root = scratch / f"isic-n{size}"
        patients = max(4, round(size / ISIC_LESIONS_PER_PATIENT / 0.8))
        config = scale_config(str(root), f"synth.patients={patients}",
                              f"synth.image_size={ISIC_TILE}", preset=ISIC_PRESET)  # fmt: skip
        print(f"bench-scale: writing ISIC 2024's stand-in, ~{size:,} train lesions ...", flush=True)
        generate(config.synth, config.layout, workers)
        found = {"index": run_stage("index", root=str(root), workers=workers, preset=ISIC_PRESET)}
        for codec in ("raw", "jpeg"):
            args = {"root": str(root), "codec": codec, "size": 128, "preset": ISIC_PRESET}
            found[f"cache_{codec}"] = run_stage("cache", workers=workers, **args)
            found[f"epoch_{codec}"] = run_stage("epoch", workers=1, **args)
        found["train_images"] = found["cache_raw"]["images"]
        series[str(found["train_images"])] = found
    return series
