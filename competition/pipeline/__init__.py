"""The stages assembled from a Config: what the commands (and the public
API) run. Each module takes the whole config, resolves what a stage needs
(its section, the layout, the image source) once, and calls the stage:

    prepare.py     the data steps, each skipped when current: synthetic data, index, folds, cache
    runs.py        what an experiment's folds were trained with, and which have finished
    inputs.py      what a fold reads, once: labels, folds, the training image source
    generators.py  every DataGenerator the kit builds from a config
    train.py       stage 1: a CNN fold (the fold lifecycle of competition.training.lifecycle)
    train_seq.py   stage 2: the sequence model of a fold over its CNN's features
    predict.py     the test set: stage 1 or 2 per predict.stage, folds x TTA, the submission
"""
