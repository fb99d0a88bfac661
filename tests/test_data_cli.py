"""`python -m atomic_comp.data`: export contract, and bad input refused before any work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["recipe.sft_pool.mem=60", "recipe.sft_pool.ctx=60", "recipe.sft_pool.comp=60", "recipe.rl_pool.mem=20",
         "recipe.rl_pool.ctx=20", "recipe.rl_pool.comp=20", "recipe.test_per_level=10"]


def run_data(args, cache):
    env = dict(os.environ, ATOMIC_COMP_CACHE=str(cache))
    return subprocess.run([sys.executable, "-m", "atomic_comp.data", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_export_writes_world_and_one_jsonl_per_split(tmp_path):
    out = tmp_path / "export"
    res = run_data([f"export_dir={out}", "world.n_parametric=120", "world.n_contextual=100", *SMALL],
                   tmp_path / "cache")
    assert res.returncode == 0, res.stderr
    world = json.loads((out / "world.json").read_text())
    assert len(world["people"]) == 120 + 100 // 2  # half of the contextual people reuse parametric names
    assert set(world["relations"]) == {"parametric", "contextual"}
    assert set(world["levels"]["parametric"]) == {"iid", "composition", "held_out"}
    for split in ("train_sft", "train_rl", "test", "biographies"):
        rows = [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]
        assert rows, split
    test = [json.loads(line) for line in (out / "test.jsonl").read_text().splitlines()]
    assert {"question", "answer", "answer_cot", "instruction", "context", "relation_path", "entities",
            "gen_type", "task", "level", "hops"} <= set(test[0])
    assert len(test) == 90
    assert "mem" in res.stdout and "zero_shot" in res.stdout  # the counts table
    for group, levels in world["levels"].items():  # and the relations the seed held out, with their items
        cells = [f"{rel} (" + ", ".join(
            f"{task} {sum(rel in t['relation_path'] for t in test if (t['task'], t['level']) == (task, 'zero_shot'))}"
            for task in ("mem", "ctx", "comp")) + ")" for rel in levels["held_out"]]
        assert f"held out, {group} (zero-shot test items using it): " + "; ".join(cells) in res.stdout


@pytest.mark.parametrize("override, key, allowed", [
    ("recipe.comp_proportion=1.5", "recipe.comp_proportion", "[0, 1]"),
    ("recipe.mem_proportion=-0.1", "recipe.mem_proportion", "[0, 1]"),
    ("recipe.hops.max=6", "recipe.hops.max", "1..5"),
    ("recipe.hops.min=0", "recipe.hops.min", "1..5"),
    ("recipe.hops.weights=[0.5,0.5]", "recipe.hops.weights", "one per hop count"),
    ("+world.levels.pinned.flying=held_out", "world.levels.pinned.flying", "39 relations"),
    ("+world.levels.pinned.hobby=sideways", "world.levels.pinned.hobby", "iid, composition, held_out"),
    ("world.levels.iid=0.5", "world.levels", "summing to 1"),
])
def test_bad_values_stop_before_any_work(tmp_path, override, key, allowed):
    out, cache = tmp_path / "export", tmp_path / "cache"
    res = run_data([f"export_dir={out}", override], cache)
    assert res.returncode != 0
    assert key in res.stderr and allowed in res.stderr, res.stderr
    assert not out.exists() and not cache.exists()  # nothing written, nothing built


def test_unknown_keys_and_wrong_types_are_refused_by_the_schema(tmp_path):
    for override, key in (("world.n_parametric=abc", "world.n_parametric"), ("recipe.foo=1", "recipe.foo")):
        res = run_data([f"export_dir={tmp_path / 'x'}", override], tmp_path / "cache")
        assert res.returncode != 0 and key in res.stderr, res.stderr
        assert not (tmp_path / "x").exists()
