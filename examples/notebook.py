# %% [markdown]
# # A fold and a submission from a notebook
#
# The kit's public API (`import competition`) on its small synthetic
# competition: the data, a fold's generators, the task's compiled model, a
# plain `model.fit`, the test set's predictions and the checked submission.
# A script that also opens as a notebook (jupytext's percent format:
# `jupytext --to notebook examples/notebook.py`). Run from the kit's folder.

# %%
import os
from pathlib import Path

import competition as kit

WORK = Path(os.environ.get("NOTEBOOK_WORK", "work"))  # everything this notebook writes
config = kit.load_config(
    "configs/small.yaml",  # a preset; your own config file extends one
    [
        f"data.root={WORK}/competition",
        f"runs_dir={WORK}/runs",
        f"predict.submissions_dir={WORK}/submissions",
        "experiment=notebook",
    ],
)

# %% [markdown]
# The competition's files (here the synthetic stand-in, written in the real
# download's layout), their header index and grouped folds: each step is
# skipped when it is current.

# %%
kit.prepare_data(config)

# %% [markdown]
# Fold 0's generators (`keras.utils.PyDataset`) and the compiled model; from
# here on it is plain Keras. The training generator shuffles each epoch
# itself (Keras' `shuffle` only reorders its batches), and the model raises a
# loader's error as the kit's error naming the image.

# %%
train, valid = kit.fold_generators(config, fold=0)
model = kit.compiled_model(config, train)
history = model.fit(train, validation_data=valid, epochs=config.train.epochs)
print({name: round(values[-1], 4) for name, values in history.history.items()})

# %% [markdown]
# The test images in the sample submission's order, and the submission built
# on the sample's rows and checked before it is written (an image that cannot
# be read gets the training mean, not a prediction from a blank input).

# %%
test = kit.test_generator(config)
predictions = model.predict(test)
path = kit.write_submission(config, test, predictions, training_mean=train.labels.mean(axis=0))
print(path, kit.validate_submission(config, path) or "valid")

# %% [markdown]
# The kit's own fold lifecycle does the same with checkpoints, resume after a
# kill, out-of-fold predictions and the CV report, and predicts with every
# fold and TTA view: `kit.train_folds(config, [0])`, then
# `kit.predict_and_submit(config)`.
