from __future__ import annotations

import json
import shutil

import keras
import numpy as np
import pandas as pd
import pytest

from competition.data.sources import open_source
from competition.errors import KitError
from competition.evaluation.cv import cv_report
from competition.evaluation.metrics import weighted_log_loss
from competition.inference.ensemble import combine_folds
from competition.inference.predict import ensemble_model, load_fold_model
from competition.inference.submission import (
    SubmissionError,
    build_submission,
    read_sample,
    validate_file,
    write_submission,
)
from competition.pipeline.generators import inference_generator
from competition.pipeline.predict import predict_and_submit
from competition.pipeline.runs import select_folds
from competition.training.model import build_model

from conftest import TRAINED_WITH, small_config
from helpers import REPO, cli

TASK = small_config("unused").task
SUBTYPES = TASK.label_columns


def predict_config(base, runs, tmp_path, *overrides):
    return small_config(
        base.data.root,
        f"runs_dir={runs}",
        f"predict.submissions_dir={tmp_path / 'submissions'}",
        *TRAINED_WITH,
        *overrides,
    )


def test_submission_is_the_sample_rows_checked_and_named_by_what_made_it(
    small_competition, trained, tmp_path
):
    config = predict_config(small_competition, trained, tmp_path)
    summary = predict_and_submit(config)
    layout = config.layout
    sample = read_sample(TASK, layout.sample_submission)
    ids = sample.images()

    preds = pd.read_csv(trained / "small" / "test_preds.csv")
    assert preds.columns.tolist() == ["image_id", *SUBTYPES]
    assert preds.image_id.tolist() == ids  # order kept, last partial batch included
    assert len(ids) % config.predict.batch_size != 0

    path = tmp_path / "submissions" / "small-f0_1-tta2.csv"
    assert summary["submission"] == str(path) and summary["folds"] == [0, 1]
    sub = pd.read_csv(path)
    assert sub.columns.tolist() == ["ID", "Label"]
    assert sub.ID.tolist() == sample.ids.tolist()
    assert sub.Label.between(1e-4, 1 - 1e-4).all() and sub.Label.notna().all()
    wide = sub.Label.to_numpy().reshape(-1, 6)
    assert (wide[:, 5] >= wide[:, :5].max(axis=1) - 1e-6).all()  # any consistency
    assert (tmp_path / "submissions" / "submission.csv").read_bytes() == path.read_bytes()
    assert validate_file(TASK, path, layout.sample_submission) == ([], len(sample.ids))
    assert summary["unreadable"] == {} and summary["test_score"]["images"] == len(ids)
    saved = json.loads((trained / "small" / "predict.json").read_text())
    assert saved["submission"] == str(path)


def test_generator_predictions_equal_in_memory_predictions_per_fold_and_view(
    small_competition, trained, tmp_path
):
    config = predict_config(small_competition, trained, tmp_path, "predict.batch_size=7")
    ids = read_sample(TASK, config.layout.sample_submission).images()[:30]
    shape, outputs = config.input_shape, len(TASK.outputs)
    models = [
        load_fold_model(config.runs.fold(f) / "best.keras", shape, outputs, f"fold{f}")
        for f in (0, 1)
    ]
    model = ensemble_model(models, ["identity", "hflip", "vflip"], shape)
    generator = inference_generator(config, ids, open_source(config.inputs, "test"))
    from_generator = model.predict(generator, verbose=0)
    images = np.stack([generator.source.load(i) for i in ids]).astype(np.float32)
    assert from_generator.shape == (30, 2, 3, 6)
    np.testing.assert_allclose(from_generator, model.predict(images, verbose=0), atol=1e-5)
    direct = models[1].predict(images[:, :, ::-1], verbose=0)  # fold 1, hflip
    np.testing.assert_allclose(from_generator[:, 1, 1], direct, atol=1e-5)


def test_fold_combinations():
    rng = np.random.default_rng(0)
    per_fold = rng.uniform(0.01, 0.99, size=(50, 3, 6))
    mean = combine_folds(per_fold, "mean")
    np.testing.assert_allclose(mean, per_fold.mean(axis=1))
    geometric = combine_folds(per_fold, "geometric")
    np.testing.assert_allclose(1 - geometric, combine_folds(1 - per_fold, "geometric"))
    odds = (per_fold / (1 - per_fold)).prod(axis=1) ** (1 / 3)
    np.testing.assert_allclose(geometric, odds / (1 + odds))
    rank = combine_folds(per_fold, "rank")
    # The same values as the mean ensemble, in the order of the mean rank.
    np.testing.assert_allclose(np.sort(rank, axis=0), np.sort(mean, axis=0))
    mean_rank = per_fold.argsort(axis=0).argsort(axis=0).mean(axis=1)
    for k in range(6):
        assert (np.diff(rank[np.argsort(mean_rank[:, k], kind="stable"), k]) >= 0).all()


def test_unreadable_test_image_gets_the_training_mean_and_is_reported(
    small_competition, trained, tmp_path
):
    layout = small_competition.layout
    test_dir = tmp_path / "test_copy"
    shutil.copytree(layout.image_dir("test"), test_dir)
    bad = read_sample(TASK, layout.sample_submission).images()[3]
    (test_dir / f"{bad}.dcm").write_bytes(b"not a dicom file")
    config = predict_config(
        small_competition, trained, tmp_path, f"task.images.test_dir={test_dir}"
    )
    summary = predict_and_submit(config)
    assert list(summary["unreadable"]) == [bad]
    assert "not a DICOM file" in summary["unreadable"][bad]
    preds = pd.read_csv(trained / "small" / "test_preds.csv", index_col="image_id")
    training_mean = [summary["training_mean"][name] for name in SUBTYPES]
    np.testing.assert_allclose(preds.loc[bad].to_numpy(), training_mean, rtol=1e-5)
    means = [
        json.loads((config.runs.fold(f) / "metrics.json").read_text())["training_mean"]
        for f in (0, 1)
    ]
    expected = [np.mean([fold[name] for fold in means]) for name in SUBTYPES]
    np.testing.assert_allclose(training_mean, expected)


def test_no_trained_fold_and_untrained_fold_are_clear_errors(small_competition, trained, tmp_path):
    empty = predict_config(small_competition, tmp_path / "none", tmp_path)
    with pytest.raises(KitError, match="No trained fold found .*make train FOLD=0"):
        predict_and_submit(empty)
    config = predict_config(small_competition, trained, tmp_path)
    with pytest.raises(KitError, match=r"Fold\(s\) \[2\] .* Finished: \[0, 1\]"):
        select_folds(config, [1, 2])
    assert not (tmp_path / "submissions").exists()


def test_checkpoint_that_does_not_fit_the_config_is_refused(small_competition, trained, tmp_path):
    other = predict_config(small_competition, trained, tmp_path, "preprocess.image_size=32")
    with pytest.raises(KitError, match="other inputs .*\n- preprocess.image_size: 64 then, 32 now"):
        predict_and_submit(other)
    runs = tmp_path / "runs"
    shutil.copytree(trained / "small" / "fold0", runs / "small" / "fold0")
    config = predict_config(small_competition, runs, tmp_path)
    (runs / "small" / "fold0" / "config.yaml").unlink()
    build_model(config.model, (32, 32, 3), TASK).save(runs / "small" / "fold0" / "best.keras")
    with pytest.raises(KitError, match=r"takes \(32, 32, 3\) .* needs \(64, 64, 3\)"):
        predict_and_submit(config)
    inputs = keras.Input((64, 64, 3))
    five = keras.Model(inputs, keras.layers.Dense(5)(keras.layers.Flatten()(inputs)))
    five.save(runs / "small" / "fold0" / "best.keras")
    with pytest.raises(KitError, match="gives 5 outputs"):
        predict_and_submit(config)
    assert not (tmp_path / "submissions").exists()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ID_0000abc_hematoma,0.5", "unknown label"),
        ("0000abc_any,0.5", "Malformed"),
        ("ID_0000abc_any,0.5\nID_0000abc_any,0.5", "Repeated"),
    ],
)
def test_bad_sample_submission_is_an_error_and_nothing_is_written(
    small_competition, trained, tmp_path, line, message
):
    layout = small_competition.layout
    sample = tmp_path / "sample.csv"
    sample.write_text(layout.sample_submission.read_text() + line + "\n")
    config = predict_config(
        small_competition, trained, tmp_path, f"task.submission.sample={sample}"
    )
    with pytest.raises(KitError, match=message):
        predict_and_submit(config)
    assert not (tmp_path / "submissions").exists()


def test_failed_check_writes_nothing_and_keeps_the_previous_submission(small_competition, tmp_path):
    sample = read_sample(TASK, small_competition.layout.sample_submission)
    ids = sample.images()
    probs = pd.DataFrame(0.5, index=ids, columns=SUBTYPES)
    probs.iloc[1, 2] = np.nan
    (tmp_path / "submission.csv").write_text("previous")
    frame = build_submission(TASK, sample, probs)
    with pytest.raises(SubmissionError, match="nothing was written:\n- 1 values of Label are not"):
        write_submission(TASK, frame, sample, tmp_path, "x.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["submission.csv"]
    assert (tmp_path / "submission.csv").read_text() == "previous"
    with pytest.raises(SubmissionError, match=f"No prediction for 1 sample images: {ids[0]}"):
        build_submission(TASK, sample, probs.iloc[1:])


def test_cv_report_pools_the_out_of_fold_predictions(small_competition, trained, tmp_path):
    config = predict_config(small_competition, trained, tmp_path)
    report = cv_report(config.task, config.runs)
    oof = [pd.read_csv(config.runs.fold(f) / "oof.csv") for f in (0, 1)]
    pooled = pd.concat(oof)
    truth = pooled.filter(like="label_").to_numpy()
    assert list(report["folds"]) == ["0", "1"]
    assert report["overall"]["images"] == len(pooled)
    assert report["overall"]["score"] == pytest.approx(
        weighted_log_loss(truth, pooled.filter(like="pred_").to_numpy(), [1, 1, 1, 1, 1, 2])
    )
    out = trained / "small"
    assert json.loads((out / "cv.json").read_text()) == report
    assert "| all |" in (out / "cv.md").read_text()
    assert (out / "roc.png").stat().st_size > 10_000
    with pytest.raises(KitError, match="No out-of-fold predictions"):
        empty = predict_config(small_competition, tmp_path / "none", tmp_path)
        cv_report(empty.task, empty.runs)


@pytest.mark.slow
def test_real_series_predicts_a_valid_192_row_submission(
    small_competition, trained, real_series, tmp_path
):
    args = [
        "--config",
        "configs/small.yaml",
        "--set",
        f"data.root={small_competition.data.root}",
        "--set",
        f"runs_dir={trained}",
        "--set",
        f"task.images.test_dir={real_series / 'stage_2_test'}",
        "--set",
        f"task.submission.sample={real_series / 'stage_2_sample_submission.csv'}",
        "--set",
        f"predict.submissions_dir={tmp_path}",
        *(a for o in TRAINED_WITH for a in ("--set", o)),
    ]
    result = cli("predict", "--folds", "0", *args, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Predicted 32 test images with folds [0]" in result.stdout
    assert "unreadable" not in result.stdout
    assert "| all |" in result.stdout  # the CV report follows
    path = tmp_path / "small-f0-tta2.csv"
    checked = cli("validate", str(path), *args, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith("ok: 192 rows")
    sub = pd.read_csv(path)
    assert len(sub) == 192 and sub.Label.nunique() > 6  # real predictions, not a constant


def test_validate_lists_what_is_wrong(small_competition, tmp_path):
    sample_path = small_competition.layout.sample_submission
    sample = pd.read_csv(sample_path)
    bad = sample.iloc[2:].copy()
    bad.loc[bad.index[0], "Label"] = 1.5
    bad.loc[bad.index[1], "Label"] = np.nan
    bad = pd.concat([bad, pd.DataFrame({"ID": ["ID_ffffffff_any"], "Label": [0.5]})])
    path = tmp_path / "bad.csv"
    bad.to_csv(path, index=False)
    result = cli("validate", str(path), "--sample", str(sample_path), timeout=60)
    assert result.returncode == 1
    assert "2 sample IDs are missing" in result.stdout
    assert "1 IDs are not in the sample submission: ID_ffffffff_any" in result.stdout
    assert "2 values of Label are not what the task allows" in result.stdout
    sample.rename(columns={"Label": "Prob"}).to_csv(path, index=False)
    result = cli("validate", str(path), "--sample", str(sample_path), timeout=60)
    assert result.returncode == 1 and "header must be ID,Label" in result.stdout
    result = cli("validate", str(sample_path), "--sample", str(sample_path), timeout=60)
    assert result.returncode == 0 and result.stdout.startswith(f"ok: {len(sample)} rows")


def test_validate_exit_codes_are_consistent(small_competition, tmp_path):
    """1: the file fails (missing, unreadable or wrong); 2: the command cannot run."""
    sample_path = small_competition.layout.sample_submission
    missing = tmp_path / "nothing.csv"
    result = cli("validate", str(missing), "--sample", str(sample_path), timeout=60)
    assert result.returncode == 1 and f"No submission file at {missing}" in result.stdout
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(b"\xff\xfe\x00binary")
    result = cli("validate", str(garbage), "--sample", str(sample_path), timeout=60)
    assert result.returncode == 1 and "not a readable CSV" in result.stdout
    result = cli("validate", str(garbage), "--sample", str(tmp_path / "no_sample.csv"), timeout=60)
    assert result.returncode == 2 and "no_sample.csv" in result.stderr


def test_make_predict_passes_the_folds():
    import subprocess

    result = subprocess.run(
        ["make", "-n", "predict", "FOLDS=0,1"], cwd=REPO, capture_output=True, text=True
    )
    assert "-m competition predict --folds 0,1" in result.stdout


def test_training_several_folds_ends_with_the_cv_report(small_competition, trained):
    result = cli(
        "train",
        "--config",
        "configs/small.yaml",
        "--fold",
        "0,1",
        "--set",
        f"data.root={small_competition.data.root}",
        "--set",
        f"runs_dir={trained}",
        *(a for o in TRAINED_WITH for a in ("--set", o)),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Fold 1 already trained" in result.stdout
    assert "### Cross-validation: small" in result.stdout and "| all |" in result.stdout
