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

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
SMOKE_DATA = ["world.n_parametric=40", "world.n_contextual=40", "recipe.sft_pool={mem:60,ctx:60,comp:60}",
              "recipe.rl_pool={mem:20,ctx:20,comp:20}", "recipe.test_per_level=5"]


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
