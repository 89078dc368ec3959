# The kit's commands. Every target that needs Python first builds .venv once
# (requirements + the package, editable); the stamp is rebuilt when the
# requirements or pyproject.toml change.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
CONFIG ?=
DATA_DIR ?=
FOLD ?= 0
FOLDS ?=
FILE ?=
ARGS ?=
EXPERIMENT ?=
ADDRESS ?= auto
SWEEP ?=
SHARDS ?= 8
BACKBONE ?=
WEIGHTS_DIR ?=
NAMES ?=
LB ?=
K ?=
EXPERIMENTS ?=
NAME ?=

# The venv remembers its flavour (CPU or GPU=1) and its Keras backend
# (BACKEND=tensorflow, jax or torch): later targets use them without GPU= or
# BACKEND= on the command line, and asking for another one is an error, not a
# silent reinstall over it (`make setup BACKEND=...` switches the backend).
BUILT_GPU := $(shell cat $(VENV)/.flavour 2>/dev/null)
ifeq ($(origin GPU),undefined)
GPU := $(or $(BUILT_GPU),0)
else ifneq ($(BUILT_GPU),)
ifneq ($(GPU),$(BUILT_GPU))
$(error $(VENV) was built with GPU=$(BUILT_GPU) and this command asks for GPU=$(GPU). Keep GPU=$(BUILT_GPU) (or leave GPU= out), or switch with `make clean` then `make setup GPU=$(GPU)`, or build the other flavour beside it with VENV=.venv-gpu)
endif
endif
BUILT_BACKEND := $(shell cat $(VENV)/.backend 2>/dev/null)
ifeq ($(origin BACKEND),undefined)
# A new venv: JAX on a GPU (docs/backends.md: measured fastest, and TensorFlow
# 2.20 fails on Blackwell GPUs), TensorFlow on the CPU (measured 5x faster
# there); a venv set up before it recorded its backend: TensorFlow.
BACKEND := $(or $(BUILT_BACKEND),$(if $(wildcard $(VENV)/.flavour),tensorflow,$(if $(filter 1,$(GPU)),jax,tensorflow)))
else ifneq ($(filter setup,$(MAKECMDGOALS)),setup)
ifneq ($(BUILT_BACKEND),)
ifneq ($(BACKEND),$(BUILT_BACKEND))
$(error $(VENV) was set up for BACKEND=$(BUILT_BACKEND) and this command asks for BACKEND=$(BACKEND). Keep BACKEND=$(BUILT_BACKEND) (or leave BACKEND= out), or switch with `make setup BACKEND=$(BACKEND)` (with GPU=1: `make clean` first))
endif
endif
endif
ifeq ($(filter $(BACKEND),tensorflow jax torch),)
$(error BACKEND must be tensorflow, jax or torch. Received: $(BACKEND))
endif
export KERAS_BACKEND := $(BACKEND)

ifeq ($(BACKEND),torch)
REQUIREMENTS := requirements-torch.txt
else ifeq ($(GPU)-$(BACKEND),1-jax)
REQUIREMENTS := requirements-jax-gpu.txt
else ifeq ($(GPU),1)
REQUIREMENTS := requirements-gpu.txt
else
REQUIREMENTS := requirements.txt
endif
STAMP := $(VENV)/.installed-$(basename $(REQUIREMENTS))
PY := $(VENV)/bin/python
CLI := $(PY) -m competition
CLI_ARGS := $(if $(CONFIG),--config $(CONFIG)) $(if $(DATA_DIR),--set data.root=$(DATA_DIR)) $(ARGS)
# predict, report, data-report, validate, kaggle: EXPERIMENT=name takes the config its folds were trained with
EXP_ARGS := $(if $(EXPERIMENT),--experiment $(EXPERIMENT)) $(CLI_ARGS)

.PHONY: help setup data index folds cache train train-seq predict cluster-train cluster-predict augment-preview report data-report validate kaggle kaggle-push errors runs blend stack localise classify two-stage whole-series backbones weights bench bench-gpu bench-stages bench-scale test lint clean

help: ## list the targets
	@echo "Usage: make <target> [CONFIG=configs/x.yaml] [DATA_DIR=path] [GPU=1] [BACKEND=tensorflow|jax|torch]"
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): $(REQUIREMENTS) requirements-base.txt requirements-nodeps.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed; received " + sys.version.split()[0] + " (set PYTHON=python3.x)")'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r $(REQUIREMENTS)
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps -e .
	@rm -f $(VENV)/.installed-*
	@echo $(GPU) > $(VENV)/.flavour
	@echo $(BACKEND) > $(VENV)/.backend
	@touch $@

setup: $(STAMP) ## make .venv with the pinned stack (GPU=1: CUDA; BACKEND=jax or torch: that Keras backend)
	@echo $(BACKEND) > $(VENV)/.backend
	@$(PY) -c 'import competition.backend as b; b.check(); print("Keras backend:", b.chosen())'

data: $(STAMP) ## write the synthetic competition (does nothing when it is up to date)
	$(CLI) synth $(CLI_ARGS)

index: $(STAMP) ## one pass over the image headers (DICOM tags, PNG/JPEG sizes) -> <data.root>/index.csv
	$(CLI) index $(CLI_ARGS)

folds: $(STAMP) ## folds grouped and stratified as the task says -> <data.root>/folds.csv
	$(CLI) folds $(CLI_ARGS)

cache: $(STAMP) ## decode + window + resize every image once into a cache: memory map or zstd/png/jpeg shards (resumable)
	$(CLI) cache $(CLI_ARGS)

train: $(STAMP) ## train fold FOLD (0, 1,2 or all); sets up data, index and folds first
	$(CLI) train --fold $(FOLD) $(CLI_ARGS)

train-seq: $(STAMP) ## the sequence stage of fold FOLD (0, 1,2 or all) over its trained CNN
	$(CLI) train-seq --fold $(FOLD) $(CLI_ARGS)

predict: $(STAMP) ## ensemble the trained folds (FOLDS=0,1; default all) -> submissions/
	$(CLI) predict $(if $(FOLDS),--folds $(FOLDS)) $(EXP_ARGS)

cluster-train: $(STAMP) ## train FOLDS (default all) as Ray tasks on the cluster at ADDRESS (default auto); SWEEP=file for a sweep
	$(CLI) cluster-train --address $(ADDRESS) --folds $(or $(FOLDS),all) $(if $(SWEEP),--sweep $(SWEEP)) $(CLI_ARGS)

cluster-predict: $(STAMP) ## the test set in SHARDS pieces through one Ray actor per GPU -> the same submission as make predict
	$(CLI) cluster-predict --address $(ADDRESS) --shards $(SHARDS) $(if $(FOLDS),--folds $(FOLDS)) $(EXP_ARGS)

augment-preview: $(STAMP) ## a PNG of training images after the configured augmentation (OUT=, default runs/<experiment>/augment_preview.png)
	$(CLI) augment-preview $(if $(OUT),--out $(OUT)) $(CLI_ARGS)

report: $(STAMP) ## cross-validation report over the out-of-fold predictions
	$(CLI) report $(EXP_ARGS)

data-report: $(STAMP) ## images left out at each stage (index, labels, cache, training, prediction) and why
	$(CLI) data-report $(EXP_ARGS)

validate: $(STAMP) ## check FILE (default submissions/submission.csv) against the sample
	$(CLI) validate $(or $(FILE),submissions/submission.csv) $(EXP_ARGS)

kaggle: $(STAMP) ## bundle the kit + trained folds -> build/kaggle/{dataset,kernel}; prints the upload commands
	$(CLI) kaggle $(EXP_ARGS)

kaggle-push: $(STAMP) ## make kaggle, then upload both with the kaggle client (needs Kaggle credentials)
	$(CLI) kaggle --push $(EXP_ARGS)

errors: $(STAMP) ## fold FOLD's worst validation images per output with Grad-CAM, reliability diagrams (K=4) -> runs/<experiment>/errors/
	$(CLI) errors --fold $(FOLD) $(if $(K),--k $(K)) $(EXP_ARGS)

runs: $(STAMP) ## every experiment under runs/ in one table: CV per stage and fold, settings, time, date; LB=<exp>=<score> records a public LB
	$(CLI) runs $(if $(LB),--lb $(LB)) $(CLI_ARGS)

blend: $(STAMP) ## blend EXPERIMENTS=a,b on their out-of-fold predictions: weights for the metric, honest CV, checked submission (NAME=folder)
	$(CLI) blend --experiments "$(EXPERIMENTS)" $(if $(NAME),--name $(NAME)) $(CLI_ARGS)

stack: $(STAMP) ## the stack: stage: gradient boosting over the metadata, patient-relative features and stack.experiments' OOF predictions
	$(CLI) stack $(EXP_ARGS)

localise: $(STAMP) ## localise-then-classify, stage 1: keypoint localisers per series kind and fold (FOLDS=0,1; default all), out-of-fold and test points, accuracy
	$(CLI) localise $(if $(FOLDS),--fold $(FOLDS)) $(EXP_ARGS)

classify: $(STAMP) ## stage 2: crops around the points (cached), crop classifiers, CV, checked submission
	$(CLI) classify $(EXP_ARGS)

two-stage: $(STAMP) ## make localise, then make classify
	$(CLI) two-stage $(EXP_ARGS)

whole-series: $(STAMP) ## the two stages' baseline on the same folds: the series model over whole series
	$(CLI) whole-series $(EXP_ARGS)

backbones: $(STAMP) ## every backbone: parameters, input range, a CPU training step at 128 px (NAMES=a,b)
	$(CLI) backbones $(if $(NAMES),--names $(NAMES)) $(CLI_ARGS)

weights: $(STAMP) ## fetch BACKBONE's ImageNet or hub:<handle> weights into WEIGHTS_DIR (default weights/), checksummed
	$(CLI) weights $(if $(BACKBONE),--backbone $(BACKBONE)) $(if $(WEIGHTS_DIR),--dir $(WEIGHTS_DIR)) $(CLI_ARGS)

bench: $(STAMP) ## measure the input pipeline against its peers -> bench.json and a table
	$(CLI) bench $(CLI_ARGS)

lint: $(STAMP) ## ruff over the package and the tests
	$(VENV)/bin/ruff check competition tests
	$(VENV)/bin/ruff format --check competition tests

bench-gpu: $(STAMP) ## fit/predict on the accelerator fed by the kit vs in memory, per backend -> bench-gpu.json (ARGS=--small on a CPU)
	$(CLI) bench-gpu $(CLI_ARGS)

bench-stages: $(STAMP) ## 2D, 2.5D, and each + the sequence stage on fold FOLD -> stages.json and a table
	$(CLI) bench-stages --fold $(FOLD) $(CLI_ARGS)

bench-scale: $(STAMP) ## each data stage at 5k/20k/80k slices, projected to the real competition -> bench-scale.json
	$(CLI) bench-scale $(ARGS)

test: lint ## lint, then the whole test suite (the 25 slowest tests' times at the end)
	$(PY) -m pytest -q --durations=25 -n 2 --dist loadfile

clean: ## remove .venv, build outputs and caches (data/ and runs/ are kept)
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
