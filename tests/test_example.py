"""examples/notebook.py: a notebook (jupytext percent format) that trains
fold 0 of the small synthetic competition with the public API and writes a
valid submission, in at most 60 lines of code, with `competition`'s
top-level names only."""

from __future__ import annotations

import ast
import sys

import pandas as pd
import pytest

import competition
from competition.config import load_config
from competition.inference.submission import validate_file

from helpers import REPO, run_checked

EXAMPLE = REPO / "examples" / "notebook.py"


def code_lines(text: str) -> list[str]:
    return [
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]


def test_the_example_is_a_short_notebook_of_the_public_api():
    text = EXAMPLE.read_text()
    cells = text.split("# %%")
    assert cells[0] == "" and len(cells) >= 8  # percent-format cells from the first line
    assert sum(cell.startswith(" [markdown]") for cell in cells) >= 4
    assert len(code_lines(text)) <= 60
    tree = ast.parse(text)
    kit = [n.asname for n in ast.walk(tree) if isinstance(n, ast.alias) and n.name == "competition"]
    assert kit == ["kit"]
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "kit"
    }
    assert used and used <= set(competition.__all__), used - set(competition.__all__)
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [m for m in imported if m and m.startswith("competition")]


@pytest.mark.slow
def test_the_example_trains_a_fold_and_writes_a_valid_submission(tmp_path):
    result = run_checked([sys.executable, str(EXAMPLE)], timeout=600, NOTEBOOK_WORK=str(tmp_path))
    path = tmp_path / "submissions" / "notebook-notebook.csv"
    assert f"{path} valid" in result.stdout
    assert "val_weighted_log_loss" in result.stdout  # the task's metric, watched by plain fit
    config = load_config(REPO / "configs" / "small.yaml", [f"data.root={tmp_path / 'competition'}"])
    sample = config.layout.sample_submission
    assert validate_file(config.task, path, sample) == ([], len(pd.read_csv(sample)))
    assert (tmp_path / "submissions" / "submission.csv").read_bytes() == path.read_bytes()
    assert (tmp_path / "competition" / "folds.csv").is_file()


def test_the_readme_points_to_the_example():
    assert "examples/notebook.py" in (REPO / "README.md").read_text()


def test_importing_the_api_and_loading_a_config_loads_no_backend():
    probe = (
        "import sys, competition as kit; kit.load_config('configs/small.yaml'); kit.TaskSpec; "
        "print(sorted({'tensorflow', 'keras', 'cv2', 'pydicom'} & set(sys.modules)))"
    )
    result = run_checked([sys.executable, "-c", probe], timeout=120)
    assert result.stdout.strip() == "[]"
