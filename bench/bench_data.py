"""Data build speed and memory at a given scale (default: the paper's).

    python bench/bench_data.py                 # world=paper recipe=paper
    python bench/bench_data.py world=tiny recipe=tiny

Prints items/s, wall time, and peak resident memory of the main process and of its
largest worker. Builds into a fresh temporary cache so nothing is reused.
"""

from __future__ import annotations

import multiprocessing.forkserver
import resource
import sys
import tempfile
import time

from atomic_comp.config import DataConfig, composed, validate_data
from atomic_comp.recipe import SPLITS, load_data


def main(overrides: list[str]) -> None:
    overrides = overrides or ["world=paper", "recipe=paper"]
    cfg = composed(overrides, DataConfig, "data")
    validate_data(cfg)
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        data = load_data(cfg.world, cfg.recipe, cfg.seed, cache)
        wall = time.perf_counter() - t0
        n = sum(len(data.splits[s]) for s in SPLITS)
        size = sum(f.stat().st_size for f in data.path.rglob("*") if f.is_file())
    # workers are the forkserver's children: stop it, so that its peak (its children's included) is ours
    multiprocessing.forkserver._forkserver._stop()
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"overrides: {' '.join(overrides)}")
    print(f"items: {n} ({', '.join(f'{s}={len(data.splits[s])}' for s in SPLITS)}), on disk {size / 2**20:.0f} MiB")
    print(f"wall: {wall:.1f} s  ->  {n / wall:,.0f} items/s (world, items, arrow, save to disk)")
    print(f"peak RSS: main {own:,.0f} MiB, largest worker {kids:,.0f} MiB")


if __name__ == "__main__":
    main(sys.argv[1:])
