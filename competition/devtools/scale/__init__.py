"""The scale benchmark (`make bench-scale` -> bench-scale.json and a table):
every data stage at several sizes of the synthetic competition, in one run,
with its time and peak memory, the growth exponent between sizes, and the
projection to the real RSNA competition on an 8-core machine and on Kaggle's
4-CPU notebook, with the disk each artifact needs.

Where pixels do not matter (labels, index, folds, the overhead of a cache
build and an epoch) the competitions are written with small 64 px images;
what a real image costs (decode a 512 x 512 DICOM, each codec's bytes and
decode time at 256 x 256 x 3, fit from an encoded cache) is measured on a
smaller competition of real-size slices and projected per image.

    stages.py      each data stage in its own process, with its time and peak memory
    measure.py     the competitions written, and what is measured on them
    projection.py  growth exponents, the projection to the real size, the ratios
    report.py      the run and its tables
"""

from competition.devtools.scale.report import run, table

__all__ = ["run", "table"]
