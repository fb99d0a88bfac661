"""Recipe: disjoint pools, nested subsets, and a cache that is content-addressed, atomic and shared."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections import Counter
from pathlib import Path

import pytest

from atomic_comp import cache
from atomic_comp.recipe import data_key, load_data, select_rows, stage_items
from tests.conftest import tiny_recipe


def _key(it):
    return (it["task"], it["entities"][0], tuple(it["relation_path"]))


def test_pools_are_disjoint_and_sized(tiny_data):
    sft, rl = tiny_data.splits["train_sft"], tiny_data.splits["train_rl"]
    assert Counter(sft["task"]) == {"mem": 400, "ctx": 400, "comp": 400}
    assert Counter(rl["task"]) == {"mem": 100, "ctx": 100, "comp": 200}
    assert not {_key(it) for it in sft} & {_key(it) for it in rl}
    assert len({_key(it) for it in sft}) == len(sft)


def test_nested_subsets_contain_each_other_and_keep_path_mix(tiny_data):
    pool = tiny_data.splits["train_sft"]
    small = select_rows(pool, ["comp"], {"comp": 0.1})
    big = select_rows(pool, ["comp"], {"comp": 0.3})
    assert len(small) == 40 and len(big) == 120
    assert {_key(it) for it in small} <= {_key(it) for it in big}
    # stratified by path: every path's share in the 30% subset is close to its share in the pool
    full = Counter(tuple(p) for p, t in zip(pool["relation_path"], pool["task"]) if t == "comp")
    part = Counter(tuple(p) for p in big["relation_path"])
    for path, n in full.items():
        assert abs(part[path] - 0.3 * n) <= 1.5, (path, n, part[path])


def test_stage_items_follow_the_recipe_proportions(tiny_data):
    r = tiny_recipe(comp_proportion=0.5, mem_proportion=0.25)
    ds = stage_items(tiny_data, "sft", ["mem", "comp"], r)
    assert Counter(ds["task"]) == {"mem": 100, "comp": 200}
    assert Counter(stage_items(tiny_data, "rl", ["comp"], r)["task"]) == {"comp": 100}


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_key_gives_identical_bytes_and_a_changed_config_a_new_entry(tmp_path, tiny_world_cfg):
    r = tiny_recipe(sft_pool=tiny_recipe().rl_pool)
    a = load_data(tiny_world_cfg, r, seed=1, cache_dir=str(tmp_path / "a"))
    b = load_data(tiny_world_cfg, r, seed=1, cache_dir=str(tmp_path / "b"))
    assert a.key == b.key and a.built and b.built
    assert _digest(a.path) == _digest(b.path)
    again = load_data(tiny_world_cfg, r, seed=1, cache_dir=str(tmp_path / "a"))
    assert not again.built and again.path == a.path

    changed = tiny_recipe(sft_pool=tiny_recipe().rl_pool)
    changed.hops.max, changed.hops.weights = 2, [1.0]
    assert data_key(tiny_world_cfg, changed, 1) != a.key
    assert data_key(tiny_world_cfg, r, 2) != a.key
    # a selection knob picks rows out of the same entry
    assert data_key(tiny_world_cfg, tiny_recipe(sft_pool=tiny_recipe().rl_pool, comp_proportion=0.3), 1) == a.key


def test_worker_count_does_not_change_the_data(tiny_world_cfg):
    from atomic_comp import recipe

    r = tiny_recipe()
    r.sft_pool.comp = recipe.CHUNK_ITEMS + 10  # two chunks
    one, _ = recipe.generate(tiny_world_cfg, r, 1, workers=1)
    two, _ = recipe.generate(tiny_world_cfg, r, 1, workers=2)
    for split in ("train_sft", "test"):
        assert one[split]["question"] == two[split]["question"]
        assert one[split]["context"] == two[split]["context"]


def _build_slow(args):
    root, key, out = args
    import time

    def build(work):
        (work / "data.txt").write_text(f"built by {os.getpid()}")
        time.sleep(1.0)

    entry, built = cache.publish(root, key, build)
    Path(out).write_text(f"{int(built)} {(entry / 'data.txt').read_text()}")


def test_concurrent_jobs_build_an_entry_once(tmp_path):
    outs = [tmp_path / f"out{i}" for i in range(3)]
    procs = [multiprocessing.get_context("spawn").Process(target=_build_slow, args=((str(tmp_path / "c"), "k", str(o)),))
             for o in outs]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    results = [o.read_text().split(" ", 1) for o in outs]
    assert sorted(r[0] for r in results) == ["0", "0", "1"]
    assert len({r[1] for r in results}) == 1  # everyone reads the one published entry


def test_a_killed_build_leaves_no_complete_entry(tmp_path):
    def crash(work):
        (work / "half.txt").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.publish(tmp_path, "k", crash)
    assert not cache.is_complete(tmp_path / "k")
    assert not (tmp_path / "k").exists()

    def good(work):
        assert not (work / "half.txt").exists()  # debris of the killed build is wiped
        (work / "ok.txt").write_text("ok")

    entry, built = cache.publish(tmp_path, "k", good)
    assert built and cache.is_complete(entry) and (entry / "ok.txt").read_text() == "ok"


def test_resume_hands_the_work_folder_back(tmp_path):
    def crash(work):
        (work / "checkpoint").write_text("step 5")
        raise RuntimeError("preempted")

    with pytest.raises(RuntimeError):
        cache.publish(tmp_path, "k", crash, resume=True)
    seen = {}

    def resume(work):
        seen["ckpt"] = (work / "checkpoint").read_text()

    cache.publish(tmp_path, "k", resume, resume=True)
    assert seen["ckpt"] == "step 5"
