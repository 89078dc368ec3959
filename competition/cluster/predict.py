"""`cluster-predict`: the test set in shards through one Ray actor per GPU,
each loading the fold ensemble once; shards are written atomically and
skipped on a re-run; the driver merges them in the test order and builds,
checks and writes the submission with the same code as `make predict`."""

from __future__ import annotations

import os
import time

from competition.backend import chosen
from competition.cluster import shards as sh
from competition.cluster.session import check_fits, connect
from competition.cluster.storage import check_shared_storage
from competition.cluster.train import Resources
from competition.config import Config
from competition.errors import KitError
from competition.inference import submission as sub
from competition.locks import exclusive
from competition.pipeline import assemble, runs


def refuse_stage_two(config: Config, folds: list[int]) -> None:
    """The actors run the stage-1 ensemble (CNN folds x TTA views)."""
    with_sequence = [f for f in folds if config.runs.has_sequence(f)]
    if config.predict.stage == 2 or (config.predict.stage == "auto" and with_sequence == folds):
        raise KitError(
            "cluster-predict runs the CNN ensemble (stage 1); these folds predict with their "
            "sequence stage (predict.stage resolves to 2). Predict stage 2 on one machine "
            "(make predict), or the CNN ensemble here with --set predict.stage=1."
        )


def actor_count(ray, wanted: int, gpus: float) -> int:
    """`wanted`, or one per GPU the cluster has (one when it has none or the actors take none)."""
    if wanted > 0:
        return wanted
    total = ray.cluster_resources().get("GPU", 0)
    return max(1, int(total // gpus)) if gpus else 1


def predict_shards(ray, config, folds, fields, todo: dict, res: Resources, actors: int) -> None:
    """Every shard in `todo` (path -> image IDs) predicted by the actors."""
    from ray.util.actor_pool import ActorPool

    from competition.cluster.tasks import ShardPredictor

    predictor = ray.remote(ShardPredictor).options(
        num_cpus=res.cpus,
        num_gpus=res.gpus,
        max_restarts=res.max_retries,
        max_task_retries=res.max_retries,
    )
    pool = ActorPool(
        [
            predictor.remote(config, folds, fields, os.getcwd(), res.cpus, res.gpus, chosen())
            for _ in range(min(actors, len(todo)))
        ]
    )
    jobs = [(str(path), ids, sh.signature(config, folds, ids)) for path, ids in todo.items()]
    results = pool.map_unordered(lambda actor, job: actor.predict_shard.remote(*job), jobs)
    for done, result in enumerate(results, 1):
        print(
            f"[{done}/{len(jobs)}] {result['path']}: {result['images']} images in "
            f"{result['seconds']:.1f} s on node {result['node'][:12]}",
            flush=True,
        )


def merged(config: Config, folds: list[int], parts: list[list[str]], total: int):
    """The shards' predictions in the test order."""
    import numpy as np

    combined, unreadable = [], {}
    for index, ids in enumerate(parts):
        path = sh.shard_path(config, index, total)
        found = sh.read_shard(path, sh.signature(config, folds, ids))
        if found is None or found[0] != ids:
            raise KitError(f"{path} is missing or holds other images; run the command again")
        combined.append(found[1])
        unreadable.update(found[2])
    return np.concatenate(combined), unreadable


def on_cluster(config, address: str, res: Resources, actors: int, folds, fields, todo) -> None:
    """Connect, check, and predict the shards still to do."""
    ray = connect(address)
    try:
        check_fits(ray, res.cpus, res.gpus, "a predictor")
        check_shared_storage(ray, [config.layout.root, config.runs.root])
        predict_shards(ray, config, folds, fields, todo, res, actor_count(ray, actors, res.gpus))
    finally:
        ray.shutdown()


def cluster_predict(
    config: Config,
    address: str,
    shards: int,
    res: Resources,
    actors: int = 0,
    folds: list[int] | None = None,
    force: bool = False,
) -> dict:
    """Predict the test set on the cluster; the same files as `make predict`."""
    folds = runs.select_folds(config, folds)
    if not force:
        assemble.check_folds(config, folds)
    refuse_stage_two(config, folds)
    sample = sub.read_sample(config.task, config.layout.sample_submission)
    image_ids, fields = assemble.test_images(config, sample)
    parts = sh.cut(image_ids, shards)
    todo = {}
    for index, ids in enumerate(parts):
        path = sh.shard_path(config, index, len(parts))
        if sh.read_shard(path, sh.signature(config, folds, ids)) is None:
            todo[path] = ids
    print(f"{len(parts) - len(todo)} of {len(parts)} shards already predicted")
    started = time.perf_counter()
    with exclusive(config.runs.root, f"the predictions of experiment {config.experiment!r}"):
        if todo:
            needed = [i for ids in todo.values() for i in ids]
            wanted = fields.loc[needed] if fields is not None else None
            on_cluster(config, address, res, actors, folds, wanted, todo)
        seconds = time.perf_counter() - started
        combined, unreadable = merged(config, folds, parts, len(parts))
        table = assemble.predictions_table(config, folds, image_ids, combined, unreadable)
        summary = {
            "folds": folds,
            "stage": 1,
            "tta": list(config.predict.tta),
            "ensemble": config.predict.ensemble,
            "images": len(image_ids),
            "shards": len(parts),
            "shards_predicted": len(todo),
            "seconds": round(seconds, 2),
            "images_per_second": round(len(image_ids) / max(seconds, 1e-9), 1),
            "training_mean": assemble.training_mean_record(config, folds),
            "unreadable": dict(sorted(unreadable.items())),
        }
        return assemble.finish(config, folds, sample, table, fields, summary)
