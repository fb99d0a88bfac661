"""Stages are pure functions: (parent checkpoint, stage config, dataset) -> checkpoint + metrics.

They know nothing of caching, SLURM or W&B; atomic_comp.pipeline wraps them.
"""

from __future__ import annotations

from . import rl, sft

RUNNERS = {"sft": sft.run, "lora": sft.run, "rl": rl.run}
KINDS = tuple(RUNNERS)
