"""The cluster commands on a real Ray cluster on this machine: a head node
that takes no work and worker nodes of 1 CPU and 1 (pretend) GPU each,
started and stopped by the tests through their own handles (never `ray
stop`, never a kill by name). The driver is the kit's CLI in its own
process, connected to the cluster's address, as a user would run it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import TRAINED_WITH, small_config
from helpers import REPO

ray_cluster_utils = pytest.importorskip("ray.cluster_utils")

pytestmark = pytest.mark.slow
NODE = {"num_cpus": 1, "num_gpus": 1}  # a pretend GPU: the scheduling is real, the device is not

# The driver in its own process; it must never load TensorFlow.
DRIVER = r"""
import sys
from competition.cli import main
code = main(sys.argv[1:])
assert "tensorflow" not in sys.modules, "the driver imported TensorFlow"
sys.exit(code)
"""


@pytest.fixture(scope="module")
def cluster():
    """A head (no CPU: it only coordinates) and two worker nodes."""
    found = ray_cluster_utils.Cluster(
        initialize_head=True, head_node_args={"num_cpus": 0, "num_gpus": 0}
    )
    try:
        for _ in range(2):
            found.add_node(**NODE)
        found.wait_for_nodes()
        yield found
    finally:
        found.shutdown()


def run_driver(
    cluster, *args: str, timeout: float = 400, backend: str = "tensorflow"
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", DRIVER, *args, "--address", cluster.address],
        cwd=REPO,
        env={
            **os.environ,
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONUNBUFFERED": "1",
            "KERAS_BACKEND": backend,
        },
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def driver(cluster, *args: str, backend: str = "tensorflow") -> subprocess.CompletedProcess:
    result = run_driver(cluster, *args, backend=backend)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def config_args(root, runs, *overrides: str) -> list[str]:
    sets = [f"data.root={root}", f"runs_dir={runs}", *overrides]
    return ["--config", "configs/small.yaml", *[a for s in sets for a in ("--set", s)]]


def start_driver(cluster, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, *args, "--address", cluster.address],
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def backed_up_owner(folder: Path, attempt: int, epoch: int) -> dict | None:
    """The fold's owner record once `attempt` has written the backup of `epoch`."""
    backup, owner = folder / "backup" / f"epoch-{epoch:04d}.weights.h5", folder / "owner.json"
    if not (backup.is_file() and owner.is_file()):
        return None
    record = json.loads(owner.read_text())
    return record if record["attempt"] == attempt else None


def history_epochs(folder: Path) -> list[int]:
    return pd.read_csv(folder / "history.csv")["epoch"].tolist()


def test_two_folds_on_two_nodes_match_sequential_training(
    cluster, small_competition, trained, tmp_path
):
    root, runs = small_competition.data.root, tmp_path / "runs"
    args = config_args(root, runs, *TRAINED_WITH)
    started = time.perf_counter()
    result = driver(cluster, "cluster-train", *args, "--folds", "0,1", "--cpus-per-fold", "1")
    seconds = time.perf_counter() - started
    assert "[2/2]" in result.stdout and "Trained 2 fold(s)" in result.stdout
    owners = [json.loads((runs / "small" / f"fold{k}" / "owner.json").read_text()) for k in (0, 1)]
    assert owners[0]["node"] != owners[1]["node"]  # one fold per node, side by side
    assert all(o["attempt"] == 1 for o in owners)
    assert all(o["cuda_visible_devices"] not in ("", None) for o in owners)  # Ray's GPU given

    from competition.evaluation.cv import cv_report

    on_ray_config = small_config(root, f"runs_dir={runs}", *TRAINED_WITH)
    one_by_one_config = small_config(root, f"runs_dir={trained}", *TRAINED_WITH)
    on_ray = cv_report(on_ray_config.task, on_ray_config.runs)
    one_by_one = cv_report(one_by_one_config.task, one_by_one_config.runs)
    assert on_ray["overall"]["score"] == pytest.approx(one_by_one["overall"]["score"], abs=2e-3)
    for fold in ("0", "1"):
        assert on_ray["folds"][fold]["score"] == pytest.approx(
            one_by_one["folds"][fold]["score"], abs=2e-3
        )
    assert "weighted_log_loss" in result.stdout  # the CV report, as make train FOLD=all prints
    print(f"cluster-train of 2 folds: {seconds:.1f} s")

    again = driver(cluster, "cluster-train", *args, "--folds", "0,1")
    assert again.stdout.count("already trained, skipped") == 2
    assert "Trained 0 fold(s)" in again.stdout


def test_a_sweep_trains_each_point_in_its_own_folder_and_ranks_them(
    cluster, small_competition, tmp_path
):
    runs = tmp_path / "runs"
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("grid:\n  train.learning_rate: [0.0001, 0.01]\n")
    args = config_args(small_competition.data.root, runs, "train.epochs=1")
    result = driver(cluster, "cluster-train", *args, "--folds", "0", "--sweep", str(sweep))
    names = ["small--train.learning_rate-0.0001", "small--train.learning_rate-0.01"]
    for name in names:
        assert (runs / name / "fold0" / "metrics.json").is_file()
    scores = {
        name: json.loads((runs / name / "fold0" / "metrics.json").read_text())["score"]
        for name in names
    }
    table = result.stdout[result.stdout.index("| rank |") :].splitlines()
    best = min(scores, key=scores.get)  # weighted log loss: lower is better
    assert table[2].startswith(f"| 1 | {best} |")
    assert len([line for line in table if line.startswith("| ")]) == 3  # header + 2 points


def test_a_fold_survives_a_killed_process_then_a_removed_node(cluster, small_competition, tmp_path):
    """A real SIGKILL of the task's process after its first epoch's backup,
    then the removal of the node running the retry after its second: each
    time Ray retries the task and the fold resumes where its backup is."""
    runs = tmp_path / "runs"
    args = config_args(small_competition.data.root, runs, "train.epochs=3")
    proc = start_driver(cluster, "cluster-train", *args, "--folds", "1", "--gpus-per-fold", "0")
    try:
        folder = runs / "small" / "fold1"
        first = wait_for(lambda: backed_up_owner(folder, 1, 1), 300, "epoch 1's backup")
        os.kill(first["pid"], signal.SIGKILL)  # the task's own process, by its PID
        second = wait_for(lambda: backed_up_owner(folder, 2, 2), 300, "epoch 2's backup")
        (node,) = [n for n in cluster.worker_nodes if n.node_id == second["node"]]
        cluster.remove_node(node)
        fresh = cluster.add_node(**NODE)
        out, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out[-3000:]
    assert "Resuming fold 1 at epoch 2" in out and "Resuming fold 1 at epoch 3" in out
    third = json.loads((folder / "owner.json").read_text())
    assert third["attempt"] == 3 and second["pid"] != first["pid"]
    assert third["node"] != second["node"]
    assert third["node"] in {fresh.node_id, *(n.node_id for n in cluster.worker_nodes)}
    assert history_epochs(folder) == [0, 1, 2]  # each epoch once
    assert json.loads((folder / "metrics.json").read_text())["fold"] == 1
    # a CPU task sees no GPU, and TensorFlow runs on the one CPU Ray gave it
    assert third["cuda_visible_devices"] == "" and third["intra_op_threads"] == 1


def test_cluster_predict_in_two_shards_equals_predict(
    cluster, small_competition, trained, tmp_path
):
    from competition.pipeline.predict import predict_and_submit

    runs = tmp_path / "runs"
    shutil.copytree(trained, runs)
    root = small_competition.data.root
    subs = tmp_path / "subs"
    args = config_args(root, runs, *TRAINED_WITH, f"predict.submissions_dir={subs}")
    result = driver(cluster, "cluster-predict", *args, "--shards", "2", "--folds", "0,1")
    assert "0 of 2 shards already predicted" in result.stdout
    on_ray = pd.read_csv(runs / "small" / "test_preds.csv", index_col="image_id")

    local = small_config(root, f"runs_dir={tmp_path / 'one'}", *TRAINED_WITH)
    shutil.copytree(trained, tmp_path / "one")
    predict_and_submit(local, [0, 1])
    one = pd.read_csv(tmp_path / "one" / "small" / "test_preds.csv", index_col="image_id")
    assert list(on_ray.index) == list(one.index)
    np.testing.assert_allclose(on_ray.to_numpy(), one.to_numpy(), atol=1e-5)
    checked = sorted(subs.glob("*.csv"))
    assert checked, "no submission written"

    again = driver(cluster, "cluster-predict", *args, "--shards", "2", "--folds", "0,1")
    assert "2 of 2 shards already predicted" in again.stdout


def test_cluster_train_and_predict_run_on_the_drivers_backend(
    cluster, small_competition, trained, tmp_path
):
    """JAX: a fold trained in a Ray task, then a TensorFlow experiment's
    test set predicted by the shard actors (the same as TensorFlow's own)."""
    from competition.pipeline.predict import predict_and_submit

    root = small_competition.data.root
    fresh = tmp_path / "fresh"
    driver(cluster, "cluster-train", *config_args(root, fresh, *TRAINED_WITH), "--folds", "0",
           backend="jax")  # fmt: skip
    owner = json.loads((fresh / "small" / "fold0" / "owner.json").read_text())
    metrics = json.loads((fresh / "small" / "fold0" / "metrics.json").read_text())
    assert owner["backend"] == metrics["backend"] == "jax" and np.isfinite(metrics["score"])

    runs = tmp_path / "runs"
    shutil.copytree(trained, runs, ignore=shutil.ignore_patterns("test*"))
    args = config_args(root, runs, *TRAINED_WITH, f"predict.submissions_dir={tmp_path / 's'}")
    driver(cluster, "cluster-predict", *args, "--shards", "2", "--folds", "0,1", backend="jax")
    on_jax = pd.read_csv(runs / "small" / "test_preds.csv", index_col="image_id")
    local = small_config(root, f"runs_dir={tmp_path / 'one'}", *TRAINED_WITH)
    shutil.copytree(trained, tmp_path / "one")
    predict_and_submit(local, [0, 1])
    one = pd.read_csv(tmp_path / "one" / "small" / "test_preds.csv", index_col="image_id")
    np.testing.assert_allclose(on_jax.loc[one.index].to_numpy(), one.to_numpy(), atol=1e-4)


def node_without(folder: Path, address: str) -> subprocess.Popen:
    """A worker node in its own mount namespace, where `folder` is an empty tmpfs."""
    script = REPO / "tests" / "ray_node_in_namespace.py"
    command = f'mount -t tmpfs none "{folder}" && exec "{sys.executable}" "{script}" {address}'
    return subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", command],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_node_that_does_not_see_the_runs_folder_stops_the_command(
    cluster, small_competition, tmp_path
):
    runs = tmp_path / "runs"
    runs.mkdir()
    node = node_without(runs, cluster.address)
    try:
        if not node.stdout.readline().strip():  # no node: this machine cannot unshare
            pytest.skip(f"cannot start a node in a private mount namespace: {node.stderr.read()}")
        args = config_args(small_competition.data.root, runs)
        result = run_driver(cluster, "cluster-train", *args)
    finally:
        node.stdin.close()  # the node stops its own processes
        node.wait(timeout=120)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"does not see: {runs.resolve()}" in result.stderr
    assert "Nothing was submitted" in result.stderr
    assert not (runs / "small").exists()  # no fold was started
    assert not list(runs.glob(".cluster-marker-*"))  # the markers were removed


def test_a_fold_larger_than_every_node_is_refused_not_left_waiting(
    cluster, small_competition, tmp_path
):
    args = config_args(small_competition.data.root, tmp_path / "runs")
    result = run_driver(cluster, "cluster-train", *args, "--cpus-per-fold", "4")
    assert result.returncode == 2
    assert "No node of the cluster can run a fold with 4 CPU(s) and 1 GPU(s)" in result.stderr


def test_a_study_level_task_trains_a_fold_in_a_ray_task(cluster, tmp_path):
    """The Cervical stand-in (a study per sample, a stack of its slices):
    the driver writes, indexes and folds it, a Ray task trains fold 0."""
    from test_units import CONFIG, TINY

    root, runs = tmp_path / "competition", tmp_path / "runs"
    sets = [f"data.root={root}", f"runs_dir={runs}", *TINY]
    driver(cluster, "cluster-train", "--config", str(CONFIG),
           *[a for s in sets for a in ("--set", s)], "--folds", "0")  # fmt: skip
    fold = runs / "rsna_cervical_2022_synthetic" / "fold0"
    metrics = json.loads((fold / "metrics.json").read_text())
    folds = pd.read_csv(root / "folds.csv", dtype=str)
    assert metrics["images"] == int((folds.fold == "0").sum()) and np.isfinite(metrics["score"])
    oof = pd.read_csv(fold / "oof.csv", dtype=str)
    assert set(oof.image_id) == set(folds.image_id[folds.fold == "0"])  # one row per study
