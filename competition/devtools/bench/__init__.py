"""`make bench`: the input pipeline against its peers, in one run, on the
same synthetic images, as ratios (machines are shared and noisy: only ratios
measured side by side mean anything). Prints a table, writes bench.json.

    peers.py          the loaders a competitor writes: the tutorials' generator, tf.data
    timing.py         passes, epochs and alternating runs, timed
    loading.py        the kit's DataGenerator against the peers and an in-memory ceiling
    fitting.py        fit and predict fed by the generator against the same images in memory
    decoding.py       header index vs pixel decode vs a cache build; one reader's rate
    memory_growth.py  a fit's peak memory at 1x and 10x the images
    report.py         the run, the ratios against their targets, the table
"""

from competition.devtools.bench.decoding import reader_rate
from competition.devtools.bench.report import run, table

__all__ = ["reader_rate", "run", "table"]
