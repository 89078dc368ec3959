"""Beyond one machine, on Ray: folds (and sweeps of settings over them) as
Ray tasks, the test set's shards through one Ray actor per GPU.

The unit of work is the kit's own fold training, run unchanged in the
task's process; the driver only submits, reports progress and builds the
same CV report and submission as the single-machine commands. Ray is
imported only here (`pip install ".[cluster]"`), and TensorFlow never by
the driver.
"""
