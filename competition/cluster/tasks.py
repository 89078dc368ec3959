"""What runs inside a Ray worker process: the kit's own fold training (and
the shared-storage probe), with the process set up from what Ray gave the
task and the driver's Keras backend. The backend is imported here, after
the set-up, never in the driver."""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from pathlib import Path

from competition.backend import isolate
from competition.config import Config


def prepare_process(cwd: str, cpus: float, gpus: float, backend: str = "tensorflow") -> dict:
    """Before Keras loads: the driver's working folder (relative paths mean
    the same there), the driver's Keras backend, no GPU for a CPU task, the
    backend's thread pools sized to the task's CPUs. Returns what the task
    runs with."""
    if Path(cwd).is_dir():
        os.chdir(cwd)
    os.environ["KERAS_BACKEND"] = backend  # a Ray worker has the node's environment
    isolate()
    if gpus == 0:  # Ray leaves the variable alone for a task without GPUs
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    threads = max(1, int(cpus))
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = str(min(2, threads))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen={threads > 1}".strip()
    return {
        "backend": backend,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "intra_op_threads": _set_threads(backend, threads),
    }


def _set_threads(backend: str, threads: int) -> int:
    """The backend's own thread pool, sized (TensorFlow and PyTorch have one to set)."""
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
        return tf.config.threading.get_intra_op_parallelism_threads()
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
        return torch.get_num_threads()
    return threads


def sized_to_task(config: Config, cpus: float) -> Config:
    """`0` workers means one per core: here, one per CPU Ray gave the task."""
    workers = max(1, int(cpus))
    train = config.train
    data = config.data
    return dataclasses.replace(
        config,
        train=train if train.workers else dataclasses.replace(train, workers=workers),
        data=data if data.workers else dataclasses.replace(data, workers=workers),
    )


def train_fold_task(
    config: Config, fold: int, cwd: str, cpus: float, gpus: float, backend: str
) -> dict:
    """One fold, trained (or resumed from its backup) in this process."""
    import ray

    from competition.cluster.owner import claim
    from competition.locks import exclusive

    started = time.perf_counter()
    context = ray.get_runtime_context()
    process = prepare_process(cwd, cpus, gpus, backend)
    from competition.pipeline.inputs import read_inputs
    from competition.pipeline.train import train_fold

    config = sized_to_task(config, cpus)
    inputs = read_inputs(config)
    out = config.runs.fold(fold)
    with exclusive(out, f"fold {fold} of experiment {config.experiment!r}"):
        owner = claim(out, context.get_node_id(), process)
        metrics = train_fold(config, inputs, fold, guard=owner.check)
    return {
        "experiment": config.experiment,
        "fold": fold,
        "metrics": metrics,
        "node": owner.node,
        "host": owner.host,
        "pid": owner.pid,
        "attempt": owner.attempt,
        "seconds": round(time.perf_counter() - started, 1),
        **process,
    }


def probe_markers(markers: dict[str, str], cwd: str) -> dict:
    """On one node: which of the driver's marker files (path -> token) this
    node sees with the right token."""
    import ray

    if Path(cwd).is_dir():
        os.chdir(cwd)
    missing = [
        path
        for path, token in markers.items()
        if not Path(path).is_file() or Path(path).read_text() != token
    ]
    return {
        "node": ray.get_runtime_context().get_node_id(),
        "host": socket.gethostname(),
        "missing": missing,
    }


class ShardPredictor:
    """A Ray actor (one per GPU): loads the fold ensemble once, then predicts
    the shards of the test set it is handed, each written atomically."""

    def __init__(
        self, config: Config, folds: list[int], fields, cwd: str, cpus: float, gpus, backend: str
    ):
        self.process = prepare_process(cwd, cpus, gpus, backend)
        from competition.data.sources import open_source
        from competition.pipeline.predict import load_ensemble

        self.config = sized_to_task(config, cpus)
        self.model = load_ensemble(self.config, folds)
        self.source = open_source(self.config.inputs, "test", fields)

    def predict_shard(self, path: str, image_ids: list[str], signature: str) -> dict:
        import ray

        from competition.cluster.shards import write_shard
        from competition.inference.predict import ensemble_vocabularies, run_ensemble
        from competition.pipeline.generators import inference_generator

        started = time.perf_counter()
        vocab = ensemble_vocabularies(self.model)
        generator = inference_generator(self.config, image_ids, self.source, vocab)
        combined, unreadable = run_ensemble(self.model, generator, self.config.predict.ensemble)
        write_shard(Path(path), image_ids, combined, unreadable, signature)
        return {
            "path": path,
            "images": len(image_ids),
            "seconds": round(time.perf_counter() - started, 2),
            "node": ray.get_runtime_context().get_node_id(),
            **self.process,
        }
