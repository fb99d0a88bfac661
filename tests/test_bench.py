"""The README's benchmark commands run and print positive figures (on the smoke world and model).

Timings are not asserted: what fails here is a benchmark that crashes or measures nothing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from atomic_comp.config import CONF_DIR

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def leaf_overrides(node, prefix: str) -> list[str]:
    """A config node as one `key=value` override per leaf (lists whole)."""
    if OmegaConf.is_dict(node):
        return [o for k, v in node.items() for o in leaf_overrides(v, f"{prefix}.{k}")]
    return [f"{prefix}={OmegaConf.to_container(node) if OmegaConf.is_list(node) else node}".replace(" ", "")]


# experiment=smoke's world and recipe, for the data app, which has no experiment group
SMOKE = OmegaConf.load(CONF_DIR / "experiment" / "smoke.yaml")
SMOKE_DATA = leaf_overrides(SMOKE.world, "world") + leaf_overrides(SMOKE.recipe, "recipe")


def bench(script: str, *args: str) -> str:
    env = dict(os.environ, WANDB_MODE="offline")
    done = subprocess.run([sys.executable, f"bench/{script}", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def figure(pattern: str, out: str) -> float:
    m = re.search(pattern, out)
    assert m, f"{pattern!r} not in:\n{out}"
    value = float(m.group(1).replace(",", ""))
    assert value > 0, m.group(0)
    return value


def test_bench_train_measures_sft_tokens_and_grpo_completions():
    out = bench("bench_train.py", "experiment=smoke")
    figure(r"SFT: ([\d,.]+) tokens/s over 30 steps", out)
    assert 0 < figure(r"MFU ([\d.]+)%", out) < 100
    figure(r"GRPO: ([\d.]+) completions/s .* 5 steps", out)


def test_bench_eval_times_batched_naive_and_sampled_decoding():
    out = bench("bench_eval.py", "--questions", "8", "--naive", "2", "--n", "4", "--max-new-tokens", "8",
                "experiment=smoke")
    figure(r"greedy batched \(batch \d+\): ([\d.]+) questions/s over 8", out)
    figure(r"greedy naive loop: ([\d.]+) questions/s over 2", out)
    figure(r"pass@4 sampling: ([\d,]+) samples/s", out)


def test_bench_data_counts_every_split_and_its_memory():
    out = bench("bench_data.py", *SMOKE_DATA)
    n = figure(r"items: (\d+) \(", out)
    parts = re.search(r"\(train_sft=(\d+), train_rl=(\d+), test=(\d+)\)", out)
    assert parts and sum(map(int, parts.groups())) == n, out
    figure(r"([\d,]+) items/s", out)
    figure(r"peak RSS: main ([\d,]+) MiB", out)
