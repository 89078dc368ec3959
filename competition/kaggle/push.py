"""`make kaggle-push`: upload the bundle with the `kaggle` client, the
dataset first (created, or a new version), then the kernel once Kaggle has
processed the dataset. The client prints its failures and still exits 0,
so what it says is read, and an error stops the push."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from competition.errors import KitError


def credentials_found() -> bool:
    """What the kaggle client authenticates with: a token or user+key in the
    environment, or kaggle.json / access_token in KAGGLE_CONFIG_DIR or ~/.kaggle."""
    env = os.environ
    if env.get("KAGGLE_API_TOKEN") or (env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY")):
        return True
    folder = Path(env.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle")
    return any((folder / name).is_file() for name in ("kaggle.json", "access_token"))


def require_credentials() -> None:
    if not credentials_found():
        raise KitError(
            "No Kaggle credentials: set KAGGLE_API_TOKEN (or KAGGLE_USERNAME and KAGGLE_KEY), or "
            "save the token from kaggle.com/settings to ~/.kaggle/access_token (or kaggle.json). "
            "Nothing was uploaded."
        )


def kaggle_client() -> str:
    beside = Path(sys.executable).with_name("kaggle")  # the venv's own client first
    found = str(beside) if beside.is_file() else shutil.which("kaggle")
    if not found:
        raise KitError("The kaggle client is not installed: pip install kaggle (make setup does).")
    return found


# The client prints its failures and still exits 0: read what it says.
FAILED = re.compile(r"error|not valid|invalid", re.IGNORECASE)


def _client(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([kaggle_client(), *args], capture_output=True, text=True)
    said = (done.stdout + done.stderr).strip()
    if said:
        print(said)
    if check and (done.returncode != 0 or FAILED.search(said)):
        raise KitError(f"`kaggle {' '.join(args)}` failed (exit {done.returncode}); see above.")
    return done


def dataset_exists(dataset_id: str) -> bool:
    return _client("datasets", "status", dataset_id, check=False).returncode == 0


def wait_until_ready(dataset_id: str, timeout: float = 900, poll: float = 10) -> None:
    """Kaggle processes a new dataset version before kernels can mount it."""
    deadline = time.monotonic() + timeout
    while True:
        done = _client("datasets", "status", dataset_id, check=False)
        if done.returncode == 0 and "ready" in done.stdout.lower():
            return
        if time.monotonic() > deadline:
            raise KitError(
                f"Dataset {dataset_id} not ready after {timeout:.0f} s; push the kernel later."
            )
        time.sleep(poll)


def push(folder: Path, dataset_id: str) -> int:
    """Upload the dataset (create, or a new version when it exists), wait
    until Kaggle has processed it, then push the kernel."""
    require_credentials()
    dataset = str(folder / "dataset")
    if dataset_exists(dataset_id):
        _client("datasets", "version", "-p", dataset, "-r", "zip", "-m", "make kaggle-push")
    else:
        _client("datasets", "create", "-p", dataset, "-r", "zip")
    wait_until_ready(dataset_id)
    _client("kernels", "push", "-p", str(folder / "kernel"))
    return 0
