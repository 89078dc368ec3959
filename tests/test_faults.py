"""Faults injected into real runs: kill -9 at random and at exact moments,
a loader that fails mid-epoch, a full disk. Every process a test starts is
bounded in time and killed (with its process group) when the test ends."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pandas as pd
import pytest

from competition.locks import LOCK
from competition.training.model import load_checkpoint

from conftest import TRAINED_WITH
from helpers import REPO, hooked, kill_group, run_checked, start_kit


def finish(proc: subprocess.Popen, timeout: float) -> tuple[int, str, str]:
    """Wait (bounded); on a timeout the whole process group is killed and the test fails."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        pytest.fail(f"{proc.args} did not finish within {timeout} s")
    return proc.returncode, out, err


def kill_after(proc: subprocess.Popen, seconds: float) -> str | None:
    """kill -9 the process group after `seconds`; its stdout, or None if it
    ended before."""
    try:
        proc.wait(timeout=seconds)
        return None
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.communicate(timeout=30)[0]


def epochs_logged(history: Path) -> int:
    try:
        return max(0, len(history.read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0


def wait_for_epoch(proc: subprocess.Popen, history: Path, timeout: float = 120) -> float:
    """Until the run logs one more epoch (or ends); returns the time that took."""
    start_count, started = epochs_logged(history), time.monotonic()
    while epochs_logged(history) <= start_count and proc.poll() is None:
        assert time.monotonic() - started < timeout, "no epoch finished in time"
        time.sleep(0.01)
    return time.monotonic() - started


def fault_seed() -> int:
    """Random kill times; a failure names its seed, KIT_FAULT_SEED replays it."""
    return int(os.environ.get("KIT_FAULT_SEED") or random.randrange(2**32))


def small_args(command: str, data_root, *overrides: str) -> list[str]:
    args = [command, "--config", "configs/small.yaml", "--set", f"data.root={data_root}"]
    for override in overrides:
        args += ["--set", override]
    return args


# --- kill -9 during training ------------------------------------------------------


def assert_no_half_written_checkpoint(out: Path) -> None:
    """Every checkpoint under its final name loads. (Keras' history.csv is
    appended to, and may end mid-line after a kill: the resumed run trims it.)"""
    if (out / "best.keras").exists():
        load_checkpoint(out / "best.keras")
    for backup in (out / "backup").glob("epoch-*.weights.h5"):
        with h5py.File(backup, "r") as handle:
            assert len(handle.keys()) > 0, backup


@pytest.mark.slow
def test_training_killed_at_random_points_resumes_with_every_epoch_once(
    small_competition, tmp_path
):
    seed = fault_seed()
    rng = random.Random(seed)
    args = small_args(
        "train", small_competition.data.root, f"runs_dir={tmp_path}", "train.epochs=6"
    )
    out = tmp_path / "small" / "fold0"
    history = out / "history.csv"
    outputs = []
    # First during start-up (imports, data, model build); then twice at a
    # random moment of the third epoch a run trains (timed by the second):
    # mid-batch, in the validation pass, or while a checkpoint or the
    # history is being written.
    proc = start_kit(*args)
    outputs.append(kill_after(proc, rng.uniform(0.5, 4.0)))
    assert_no_half_written_checkpoint(out)
    for _ in range(2):
        proc = start_kit(*args)
        wait_for_epoch(proc, history)
        epoch_seconds = wait_for_epoch(proc, history)
        outputs.append(kill_after(proc, rng.uniform(0.0, epoch_seconds)))
        assert_no_half_written_checkpoint(out)
    code, stdout, stderr = finish(start_kit(*args), timeout=300)
    assert code == 0, f"seed {seed}: {stderr[-3000:]}"
    killed = [o for o in outputs if o is not None]
    assert len(killed) >= 2, f"seed {seed}: runs ended before their kill"
    resumed = [o for o in [*killed, stdout] if "Resuming fold 0 at epoch" in o]
    assert resumed, f"seed {seed}: no run resumed from a backup: {outputs} {stdout}"
    assert pd.read_csv(history).epoch.tolist() == [0, 1, 2, 3, 4, 5], f"seed {seed}"
    assert (out / "metrics.json").exists()
    assert_no_half_written_checkpoint(out)
    temporary = [p.name for p in out.rglob(".*") if p.is_file() and p.name != LOCK]
    assert not temporary  # no temporary file left (the fold's lock file stays, unlocked)


def weights_of(path: Path) -> list:
    import numpy as np

    return [np.asarray(w) for w in load_checkpoint(path).get_weights()]


RECIPE = ("train.ema=0.9", "train.accumulate=2", "train.schedule=onecycle",
          "train.freeze_epochs=3", "train.label_smoothing={multilabel: 0.05}")  # fmt: skip


@pytest.mark.slow
def test_a_killed_run_with_averaged_weights_resumes_as_the_uninterrupted_one(
    small_competition, tmp_path
):
    """train.ema, train.accumulate, the one-cycle schedule, a backbone frozen
    for 3 epochs and label smoothing: killed (-9) in its third epoch (still
    frozen) and resumed, a run logs the same history and saves the same
    averaged weights as one never killed; validation saw the averaged weights."""
    import numpy as np

    settings = ("train.epochs=4", "train.workers=0", *RECIPE)
    runs = {}
    for name in ("whole", "killed"):
        args = small_args("train", small_competition.data.root, f"runs_dir={tmp_path / name}",
                          *settings)  # fmt: skip
        out = tmp_path / name / "small" / "fold0"
        if name == "killed":
            proc = start_kit(*args)
            wait_for_epoch(proc, out / "history.csv")
            wait_for_epoch(proc, out / "history.csv")
            assert kill_after(proc, 0.5) is not None, "the run ended before its kill"
        code, stdout, stderr = finish(start_kit(*args), timeout=300)
        assert code == 0, stderr[-3000:]
        assert "Effective batch: " in stdout
        runs[name] = (out, stdout)
    (whole, _), (killed, stdout) = runs["whole"], runs["killed"]
    assert "Resuming fold 0 at epoch 3" in stdout
    first = pd.read_csv(whole / "history.csv")
    second = pd.read_csv(killed / "history.csv")
    assert first.epoch.tolist() == second.epoch.tolist() == [0, 1, 2, 3]
    pd.testing.assert_frame_equal(first, second, rtol=1e-4, atol=1e-5)
    for a, b in zip(weights_of(whole / "best.keras"), weights_of(killed / "best.keras"),
                    strict=True):  # fmt: skip
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_a_keras_application_with_the_recipe_resumes_after_kill_and_predicts(
    small_competition, tmp_path
):
    """MobileNetV3Small (a Keras application: BatchNorm, depthwise convolutions,
    squeeze-excite; random weights, 32 px; built faster than EfficientNetB0,
    for the suite's time) with train.ema, train.accumulate=2
    and the warmup-cosine schedule: killed (-9) after its first epoch, it
    resumes at the second, finishes, and its folds predict a valid submission."""
    from competition.cli import main
    from competition.inference.submission import validate_file

    settings = ("model.backbone=MobileNetV3Small", "preprocess.image_size=32", "train.epochs=2",
                "train.ema=0.9", "train.accumulate=2", "train.schedule=cosine",
                "train.warmup_epochs=0.5", "train.workers=0", f"runs_dir={tmp_path / 'runs'}",
                f"predict.submissions_dir={tmp_path / 'subs'}")  # fmt: skip
    root = small_competition.data.root
    history = tmp_path / "runs" / "small" / "fold0" / "history.csv"
    proc = start_kit(*small_args("train", root, *settings))
    backup = history.parent / "backup" / "epoch-0001.weights.h5"
    deadline = time.monotonic() + 300
    while not backup.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # the first epoch's backup written: killed in the second
    assert kill_after(proc, 0.05) is not None, "the run ended before its kill"
    code, stdout, stderr = finish(start_kit(*small_args("train", root, *settings)), timeout=600)
    assert code == 0, stderr[-3000:]
    assert "Resuming fold 0 at epoch 2" in stdout and "Effective batch: 16 a step x 2" in stdout
    assert pd.read_csv(history).epoch.tolist() == [0, 1]
    assert main(small_args("predict", root, *settings)) == 0  # in this process: no new start-up
    sample = small_competition.layout.sample_submission
    problems, rows = validate_file(small_competition.task, tmp_path / "subs" / "submission.csv",
                                   sample)  # fmt: skip
    assert problems == [] and rows > 0


# --- kill -9 during prediction and submission writing -----------------------------


@pytest.fixture
def predict_run(small_competition, trained, tmp_path):
    """A private runs folder with fold 0 and a first, good submission."""
    runs, subs = tmp_path / "runs", tmp_path / "subs"
    shutil.copytree(trained / "small" / "fold0", runs / "small" / "fold0")
    args = small_args(
        "predict",
        small_competition.data.root,
        f"runs_dir={runs}",
        f"predict.submissions_dir={subs}",
        *TRAINED_WITH,
    )
    code, _, stderr = finish(start_kit(*args), timeout=300)
    assert code == 0, stderr[-3000:]
    return args, subs


def snapshot(folder: Path) -> dict[str, bytes]:
    """The files a user sees (temporary files are hidden: .name.pid-xxx.tmp)."""
    return {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith(".")}


@pytest.mark.slow
def test_kill_during_prediction_or_writing_keeps_the_previous_submission(predict_run):
    args, subs = predict_run
    good = snapshot(subs)
    name = next(n for n in good if n != "submission.csv")
    moments = [
        f"open:{name}",  # the temporary file was just opened for writing
        f"rename:{name}",  # complete, about to replace the previous file
        "rename:submission.csv",  # the named file replaced, the copy not yet
    ]
    seed = fault_seed()
    delays = [random.Random(seed + i).uniform(2.0, 9.0) for i in range(2)]
    for moment in moments:
        code, _, stderr = finish(start_kit(*args, env=hooked(KIT_KILL_ON=moment)), timeout=300)
        assert code == -signal.SIGKILL, f"{moment}: not killed ({code}): {stderr[-2000:]}"
        now = snapshot(subs)
        assert set(now) == set(good), moment
        if moment == "rename:submission.csv":  # the named file may be the new, whole one
            assert now["submission.csv"] == good["submission.csv"]
            assert now[name].count(b"\n") == good[name].count(b"\n")
        else:
            assert now == good, moment
    for delay in delays:
        kill_after(start_kit(*args), delay)
        now = snapshot(subs)
        assert set(now) == set(good), f"seed {seed}"
        for content in now.values():  # whole files only: the same rows as before
            assert content.count(b"\n") == good[name].count(b"\n"), f"seed {seed}"
    code, _, stderr = finish(start_kit(*args), timeout=300)
    assert code == 0, stderr[-3000:]
    assert not [p.name for p in subs.iterdir() if p.name.startswith(".")]  # orphans removed


# --- a loader that fails mid-epoch ----------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
def test_worker_error_mid_epoch_names_the_image_and_nothing_hangs(
    small_competition, tmp_path, processes
):
    log = tmp_path / "failed_id.txt"
    args = small_args(
        "train",
        small_competition.data.root,
        f"runs_dir={tmp_path / 'runs'}",
        "data.source=files",
        "train.workers=2",
        f"train.use_multiprocessing={str(processes).lower()}",
    )
    env = hooked(KIT_FAIL_LOAD="150", KIT_FAIL_LOAD_LOG=str(log))  # past a few batches
    started = time.monotonic()
    code, _, stderr = finish(start_kit(*args, env=env), timeout=180)
    failed = log.read_text().split()  # one per worker process that reached the count
    assert code == 2, stderr[-3000:]
    reported = r"Reading train image (\S+) failed \(OSError: \[Errno 5\] Input/output error"
    named = re.findall(reported, stderr)
    assert len(named) == 1 and named[0] in failed, (failed, stderr[-3000:])
    assert "Traceback" not in stderr
    assert time.monotonic() - started < 180


# --- a full disk ------------------------------------------------------------------


def small_tmpfs_works() -> bool:
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
        capture_output=True,
    )
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(
    not shutil.which("unshare") or not small_tmpfs_works(),
    reason="needs user + mount namespaces to mount a small tmpfs",
)
def test_full_disk_is_a_clear_error_and_the_previous_file_is_intact(
    small_competition, trained, tmp_path
):
    small = tmp_path / "small"
    small.mkdir()
    runs = tmp_path / "runs"
    shutil.copytree(trained / "small" / "fold0", runs / "small" / "fold0")
    out = tmp_path / "found.json"
    script = f'mount -t tmpfs -o size=6m tmpfs "{small}" && exec "$@"'
    driver = [sys.executable, str(REPO / "tests" / "no_space_driver.py")]
    args = [str(small), str(small_competition.data.root), str(runs), str(out)]
    run_checked(["unshare", "-rm", "sh", "-c", script, "sh", *driver, *args], 400)
    found = json.loads(out.read_text())
    for step in found.values():
        assert "crashed" not in step, step.get("crashed")
    no_space = "NoSpaceError: No space left on the device writing"

    checkpoint = found["checkpoint"]
    assert checkpoint["errors"]["best"].startswith(f"{no_space} {small}/fold0/best.keras")
    assert checkpoint["errors"]["backup"].startswith(no_space)
    assert checkpoint["intact"] and checkpoint["best_loads_the_good_weights"]

    training = found["training"]
    assert training["code"] == 2 and "Traceback" not in training["stderr"]
    assert "No space left on the device writing" in training["stderr"]
    assert "best.keras" not in training["files"]  # never half-written
    assert not [name for name in training["files"] if name.startswith(".") and name != LOCK]

    cache = found["cache"]
    assert cache["refused"].startswith("CacheError: The train cache of"), cache["refused"]
    assert "will not fit" in cache["refused"] and "Nothing was written" in cache["refused"]
    assert cache["refused_started"] == []
    assert cache["error"].startswith("CacheError: No space left for the train cache at")
    assert cache["test_complete"] and cache["test_intact"] and cache["test_served_from_cache"]
    assert not cache["train_complete"] and cache["train_served_from_dicom"]
    assert cache["rebuilt"] == "built" and cache["rebuilt_complete"]
    assert cache["corrupt_after_rebuild"] == []

    submission = found["submission"]
    assert submission["error"].startswith(no_space)
    assert submission["intact"]
    assert not [name for name in submission["names"] if name.startswith(".")]


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("", None),  # killed before Keras wrote the header
        ("epoch,loss\n0,0.5\n1,0.4\n2,0.", [0, 1]),  # killed mid-row
        ("epoch,loss\n0,0.5\n1,0.4\n", [0, 1]),
    ],
)
def test_history_left_by_a_kill_is_trimmed_to_the_resumed_epoch(tmp_path, text, kept):
    from competition.training.callbacks import trim_history

    path = tmp_path / "history.csv"
    path.write_text(text)
    trim_history(path, 2)
    if kept is None:
        assert not path.exists()
    else:
        assert pd.read_csv(path).epoch.tolist() == kept
