"""One writer per output: a second run on a fold, a cache split or an
experiment's predictions is refused while the first runs, naming its PID and
host; the lock dies with its holder, kill -9 included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from competition.locks import BusyError, exclusive

from conftest import small_config
from helpers import REPO, cli

HOLD = """
import sys
from competition.locks import exclusive
with exclusive(sys.argv[1], "a test's folder", *sys.argv[2:]):
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def holder():
    """Start a process holding a folder's lock; killed at the end."""
    started = []

    def hold(folder, *name: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(folder), *name],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield hold
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_a_held_folder_is_refused_naming_the_holder_and_freed_by_its_kill(tmp_path, holder):
    proc = holder(tmp_path / "fold0")
    busy = rf"being written by another run \(pid {proc.pid} on "
    with pytest.raises(BusyError, match=busy), exclusive(tmp_path / "fold0", "fold 0"):
        pass
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # nothing stale left behind, and re-entrant in one process
    with exclusive(tmp_path / "fold0", "fold 0"), exclusive(tmp_path / "fold0", "fold 0"):
        pass


@pytest.mark.slow
def test_a_second_train_of_the_same_fold_is_refused(small_competition, tmp_path, holder):
    runs = tmp_path / "runs"
    proc = holder(runs / "small" / "fold2")
    root = small_competition.data.root
    result = cli(
        "train", "--fold", "2", "--config", "configs/small.yaml",
        "--set", f"data.root={root}", "--set", f"runs_dir={runs}", timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert "fold 2 of experiment 'small'" in result.stderr
    assert f"pid {proc.pid}" in result.stderr
    assert not (runs / "small" / "fold2" / "metrics.json").exists()


def test_a_second_cache_build_of_the_same_split_is_refused(small_competition, tmp_path, holder):
    from competition.data.cache.build import build_split

    config = small_config(small_competition.data.root, f"data.cache_dir={tmp_path / 'cache'}")
    key = config.cache.root().name
    proc = holder(config.cache.root().parent, f".{key}-train.lock")
    with pytest.raises(BusyError, match=rf"the train cache .* \(pid {proc.pid} on "):
        build_split(config.cache, "train", 1)
    assert not config.cache.root().exists()  # nothing was started
