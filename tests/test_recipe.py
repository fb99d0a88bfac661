"""Recipe: disjoint pools, nested subsets, and a cache that is content-addressed, atomic and shared."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

import pytest

from atomic_comp import cache
from atomic_comp.families.biography import BiographyFamily
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


def test_worker_count_does_not_change_the_data(tiny_world_cfg, tmp_path):
    from atomic_comp import recipe

    r = tiny_recipe()
    r.sft_pool.comp = recipe.CHUNK_ITEMS + 10  # two chunks
    one, _ = recipe.generate(tiny_world_cfg, r, 1, tmp_path / "one", workers=1)
    two, _ = recipe.generate(tiny_world_cfg, r, 1, tmp_path / "two", workers=2)
    for split in ("train_sft", "test"):
        assert one[split]["question"] == two[split]["question"]
        assert one[split]["context"] == two[split]["context"]


HELD = threading.Lock()


class _LockingFamily(BiographyFamily):
    """Takes HELD in every chunk job: a worker forked while another thread held it would wait forever."""

    def train_items(self, *args):
        with HELD:
            return super().train_items(*args)


def _build_while_another_thread_holds_a_lock() -> None:
    from atomic_comp import recipe
    from atomic_comp.config import WorldConfig

    # as wandb's and torch's threads hold their own locks while a job builds its data
    taken, done = threading.Event(), threading.Event()
    threading.Thread(target=lambda: (HELD.acquire(), taken.set(), done.wait(), HELD.release()), daemon=True).start()
    taken.wait()
    r = tiny_recipe()
    recipe._FAMILY = _LockingFamily(WorldConfig(n_parametric=200, n_contextual=200), r, 1)
    jobs = [("train", "comp", None, 50, i, 2, None) for i in range(2)]
    with tempfile.TemporaryDirectory() as scratch:
        tables = recipe._run_jobs(jobs, workers=2, scratch=Path(scratch))
        print(sum(t.num_rows for t in tables))
    done.set()


def test_data_workers_do_not_inherit_the_locks_of_the_jobs_other_threads():
    """A forked worker copies every lock as it was at fork time; one held by another thread never opens."""
    code = "from tests.test_recipe import _build_while_another_thread_holds_a_lock as f; f()"
    res = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split()[-1] == "100"


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


_MODULE = '''"""Module docstring."""
N = 3  # three


class Maker:
    """Makes."""

    def make(self, x):
        """Doubles."""
        return x * N
'''


def test_code_versions_ignore_comments_docstrings_and_layout_but_not_code(tmp_path):
    f = tmp_path / "m.py"
    f.write_text(_MODULE)
    base = cache.source_digest(f)
    edits = [_MODULE.replace("# three", "# the count, a comment"),
             _MODULE.replace("Doubles.", "Triples, says a wrong docstring."),
             _MODULE.replace('    """Makes."""\n', "").replace("x * N", "x  *  N"),
             "# header\n" + _MODULE.replace('"""Module docstring."""', "")]
    for text in edits:
        f.write_text(text)
        assert cache.source_digest(f) == base, text
    for text in (_MODULE.replace("N = 3", "N = 4"), _MODULE.replace("x * N", "N * x"),
                 _MODULE.replace("def make", "def build")):
        f.write_text(text)
        assert cache.source_digest(f) != base, text


def test_a_code_version_is_the_code_as_first_read_not_a_later_edit(tmp_path):
    # a long job keys its last entries on the code it runs, even when the file is edited meanwhile
    f = tmp_path / "m.py"
    f.write_text(_MODULE)
    before = cache.code_version(("m.py",), root=tmp_path)
    f.write_text(_MODULE.replace("N = 3", "N = 4"))
    assert cache.code_version(("m.py",), root=tmp_path) == before
    g = tmp_path / "n.py"  # a file not read before is read now
    g.write_text(_MODULE.replace("N = 3", "N = 4"))
    assert cache.code_version(("n.py",), root=tmp_path) != before


def test_copy_drills_write_every_word_of_the_world_and_mix_in_wherever_biographies_do(tmp_path, tiny_world_cfg):
    """Drills copy (or reverse) random words of the world's own text; they carry no question and no fact,
    and the injection stage trains them beside the biographies."""
    import re

    from atomic_comp.pipeline import _sft_rows

    data = load_data(tiny_world_cfg, tiny_recipe(copy_drills=400), seed=1, cache_dir=str(tmp_path))
    drills = data.splits["drills"]
    assert len(drills) == 400
    words = set()
    for split in ("train_sft", "train_rl", "test"):
        for col in ("question", "context", "answer_cot"):
            for text in data.splits[split][col]:
                words.update(re.findall(r"\w+", text))
    verbs = Counter()
    for prompt, completion in zip(drills["prompt"], drills["completion"]):
        verb, seq = re.fullmatch(r"(Repeat|Reverse): (.+) =", prompt).groups()
        verbs[verb] += 1
        seq = seq.split(" ")
        assert completion == " " + " ".join(seq if verb == "Repeat" else seq[::-1])
        assert 3 <= len(seq) <= 10 and set(seq) <= words | set(re.findall(r"\w+", " ".join(
            data.splits["biographies"]["text"])))
        assert "So, the answer is" not in prompt + completion
    assert verbs == {"Repeat": 200, "Reverse": 200}
    # uniform over distinct words, not over running text: the question words are not the frequent ones
    used = Counter(w for p in drills["prompt"] for w in p.split(" ")[1:-1])
    assert len(used) > 0.5 * min(len(words), 400 * 6)
    items = data.splits["train_sft"].select(range(10))
    mixed = _sft_rows(items, data)
    assert len(mixed) == 10 + len(data.splits["biographies"]) + 400
    assert list(mixed["completion"][-400:]) == list(drills["completion"])
    assert len(_sft_rows(items)) == 10
    # default off: the split is there and empty, and the data key differs
    plain = load_data(tiny_world_cfg, tiny_recipe(), seed=1, cache_dir=str(tmp_path))
    assert len(plain.splits["drills"]) == 0 and plain.key != data.key


def test_lookup_drills_ask_one_fact_among_distractors_that_share_its_words(tmp_path, tiny_world_cfg):
    """Each drill's asked fact is in its facts exactly once, with the completion's answer; the other facts
    share its first or second word often enough that matching one word is not enough."""
    import re

    data = load_data(tiny_world_cfg, tiny_recipe(copy_drills=10, lookup_drills=300), seed=1, cache_dir=str(tmp_path))
    drills = data.splits["drills"]
    assert len(drills) == 310 and all(p.startswith(("Repeat", "Reverse")) for p in drills["prompt"][:10])
    words = set(re.findall(r"\w+", " ".join(data.splits["biographies"]["text"])))
    for split in ("train_sft", "train_rl", "test"):
        for col in ("question", "context", "answer_cot"):
            words.update(re.findall(r"\w+", " ".join(data.splits[split][col])))
    shared_a = shared_b = 0
    for prompt, completion in zip(drills["prompt"][10:], drills["completion"][10:]):
        facts, a, b = re.fullmatch(r"Facts: (.+) Look up: (\w+)'s (\w+) is", prompt).groups()
        facts = re.findall(r"(\w+)'s (\w+) is (\w+)\.", facts)
        assert 3 <= len(facts) <= 8 and len({(x, y) for x, y, _ in facts}) == len(facts)
        (answer,) = [z for x, y, z in facts if (x, y) == (a, b)]
        assert completion == f" {answer}."
        assert {w for fact in facts for w in fact} <= words
        shared_a += sum(x == a and y != b for x, y, _ in facts)
        shared_b += sum(y == b and x != a for x, y, _ in facts)
    assert shared_a > 100 and shared_b > 100
    again = load_data(tiny_world_cfg, tiny_recipe(copy_drills=10, lookup_drills=300), seed=1,
                      cache_dir=str(tmp_path / "again"))
    assert list(again.splits["drills"]["prompt"]) == list(drills["prompt"])
