"""The preprocessed image cache: every image of a split read from its file,
windowed and resized once, in parallel, into a store read by row.

    spec.py    where a split's cache is and which settings made it (CacheSpec)
    plan.py    which codec a new cache gets, and whether it fits the disk
    build.py   the build: parallel, resumable, CRC-checked
    store.py   how a split keeps its rows: a raw memory map, or encoded shards
    codecs.py  zstd, png, jpeg: encode / decode one cached image
    shards.py  encoded images in large shard files with an offset index
    source.py  CacheSource: model input from a finished split, a batch per read

Two stores (chosen by `data.cache_codec`): `raw`, one memory-mapped `.npy`
uint8 array (reading a batch is one slice of a file; the operating system's
page cache does the caching; 196 KB per 256 x 256 x 3 image), and encoded
images (`zstd`, `png`, `jpeg`) in large shard files with an offset index,
several times smaller for a decode per read. `auto` picks from the projected
size and the free space.
"""
