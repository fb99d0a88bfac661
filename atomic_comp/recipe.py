"""The data recipe: disjoint train pools per stage, nested subsets, the test set → cached `datasets`.

Splits stored per data key (`DatasetDict` on disk):
- train_sft / train_rl: disjoint pools of training items. Within each task, rows
  are in *nested order* (path-stratified), so the first p·n rows of a task are
  its proportion-p subset and the 30% subset contains the 10% one.
- test: every task at every level.
- biographies: the parametric biographies as plain text.
- recall: cloze probes of the biographies (evaluation only).
- drills: copy and lookup drills over the world's words (prompt/completion), when recipe.copy_drills or
  recipe.lookup_drills > 0.

The key hashes everything that changes these bytes (world, generating recipe
fields, seed, data-code version). How much of each pool a stage uses
(`*_proportion`, `biographies`) is applied at selection time, so a sweep over
proportions shares one cached entry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import random
import re
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import datasets
import pyarrow as pa
from datasets.table import InMemoryTable

from atomic_comp import cache
from atomic_comp.config import RecipeConfig, WorldConfig, default_cache_dir
from atomic_comp.families import get_family

SPLITS = ("train_sft", "train_rl", "test")
POOLS = {"sft": "train_sft", "rl": "train_rl"}
# Selection-time knobs: they pick rows out of a cached entry and do not change its bytes.
SELECTION_FIELDS = ("name", "mem_proportion", "ctx_proportion", "comp_proportion", "biographies")

_CODE_FILES = ("recipe.py", "families/biography/world.py", "families/biography/tasks.py",
               "families/biography/levels.py", "families/biography/relations.py", "families/biography/__init__.py")


def data_code_version() -> str:
    """Hash of the code that generates data, so a change to it makes new cache entries."""
    return cache.code_version(_CODE_FILES)


def data_key(world: WorldConfig, recipe: RecipeConfig, seed: int, family: str = "biography") -> str:
    gen = {k: v for k, v in dataclasses.asdict(recipe).items() if k not in SELECTION_FIELDS}
    if recipe.released_dir:  # the files' contents, not just their folder's name
        gen["released_files"] = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                                 for p in sorted(Path(recipe.released_dir).glob("*.json*"))}
    return "data-" + cache.stable_hash({"family": family, "world": dataclasses.asdict(world), "recipe": gen,
                                        "seed": seed, "code": data_code_version()})


def released_splits(folder: str | Path) -> tuple[datasets.DatasetDict, dict]:
    """The authors' released files (train_sft, train_rl, test as .json or .jsonl; optional biographies.jsonl)."""
    from atomic_comp.families.biography.released import load_released

    folder = Path(folder)
    splits = {}
    for split in SPLITS:
        path = next((folder / f"{split}{ext}" for ext in (".jsonl", ".json") if (folder / f"{split}{ext}").is_file()),
                    None)
        if path is None:
            raise FileNotFoundError(f"recipe.released_dir={folder}: no {split}.json or {split}.jsonl there")
        # training items need no level; test items carry theirs
        splits[split] = items_dataset(load_released(path, level=None if split == "test" else "train"))
    bios_path = folder / "biographies.jsonl"
    bios = [json.loads(line)["text"] for line in bios_path.read_text().splitlines()] if bios_path.is_file() else []
    splits["biographies"] = _text_dataset(bios)
    return datasets.DatasetDict(splits), {"released_dir": str(folder)}


CHUNK_ITEMS = 5000  # items per generation job; fixed, so the output does not depend on the worker count
_FAMILY = None  # the family object of this process; workers get a pickled copy


def _chunk_sizes(n: int) -> list[int]:
    k = max(1, math.ceil(n / CHUNK_ITEMS))
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def _run_job(job: tuple) -> str:
    """Make one chunk and write it as an Arrow file (cheaper than pickling it back to the parent)."""
    out, kind, task, level, n, chunk, n_chunks, paths = job
    if kind == "train":
        items = _FAMILY.train_items(task, n, chunk, n_chunks)
    else:
        items = _FAMILY.test_items(task, level, n, paths, chunk, n_chunks)
    table = pa.Table.from_pylist(items, schema=ITEM_SCHEMA)
    with pa.OSFile(out, "wb") as sink, pa.ipc.new_file(sink, ITEM_SCHEMA) as writer:
        writer.write_table(table)
    return out


def _init_worker(family) -> None:
    global _FAMILY
    _FAMILY = family


def _run_jobs(jobs: list[tuple], workers: int, scratch: Path) -> list[pa.Table]:
    scratch.mkdir(parents=True, exist_ok=True)
    jobs = [(str(scratch / f"chunk-{i}.arrow"),) + j for i, j in enumerate(jobs)]
    if workers <= 1 or len(jobs) <= 1:
        paths = [_run_job(j) for j in jobs]
    else:
        # forkserver, not fork: by now the job has threads (wandb, torch), and a child forked while one of
        # them holds a lock can wait on it forever; the server's children also start with default signals
        pool = multiprocessing.get_context("forkserver").Pool(min(workers, len(jobs)), initializer=_init_worker,
                                                              initargs=(_FAMILY,))
        try:
            paths = pool.map(_run_job, jobs, chunksize=1)
            pool.close()  # let workers finish, rather than terminate them
        finally:
            pool.terminate()
            pool.join()
    return [pa.ipc.open_file(pa.memory_map(p)).read_all() for p in paths]  # zero-copy


def _nested_indices(paths: list[list[str]], seed: int, label: str) -> list[int]:
    """Row order in which every prefix holds each relation path in proportion (nested, stratified subsets)."""
    rng = random.Random(f"{seed}|nested|{label}")
    by_path: dict[tuple, list[int]] = defaultdict(list)
    for i, p in enumerate(paths):
        by_path[tuple(p)].append(i)
    keyed = []
    for idxs in by_path.values():
        rng.shuffle(idxs)
        n = len(idxs)
        for rank, i in enumerate(idxs):
            keyed.append(((rank + rng.random()) / n, i))
    keyed.sort()
    return [i for _, i in keyed]


def generate(world: WorldConfig, recipe: RecipeConfig, seed: int, scratch: Path, family: str = "biography",
             workers: int | None = None):
    """Build every split: (DatasetDict, world_json). Deterministic in its arguments, not in `workers`.

    Chunks are written under `scratch`, which must outlive the result (the splits map its files) and is the
    caller's to remove: load_data puts it in the cache entry's work folder and removes it once the splits are
    saved (a failed build's work folder is wiped by the next build of that key).
    """
    global _FAMILY
    workers = workers or os.cpu_count() or 1
    scratch.mkdir(parents=True, exist_ok=True)
    fam = _FAMILY = get_family(family)(world, recipe, seed)
    try:
        jobs, owner = [], []
        for task in fam.tasks:
            n = getattr(recipe.sft_pool, task) + getattr(recipe.rl_pool, task)
            sizes = _chunk_sizes(n)
            for i, size in enumerate(sizes):
                jobs.append(("train", task, None, size, i, len(sizes), None))
                owner.append(task)
        tables = _run_jobs(jobs, workers, scratch / "train")
        pools: dict[str, list[pa.Table]] = {"train_sft": [], "train_rl": []}
        train_paths: dict[str, set] = {}
        for task in fam.tasks:
            table = pa.concat_tables([t for t, o in zip(tables, owner) if o == task])
            tables = [t for t, o in zip(tables, owner) if o != task]  # let chunks go as soon as they are merged
            owner = [o for o in owner if o != task]
            perm = list(range(table.num_rows))
            random.Random(f"{seed}|pools|{task}").shuffle(perm)  # SFT and RL pools share people and paths
            paths = table.column("relation_path").to_pylist()
            train_paths[task] = {tuple(p) for p in paths}
            n_sft = getattr(recipe.sft_pool, task)
            for pool, part, rows in (("train_sft", "sft", perm[:n_sft]), ("train_rl", "rl", perm[n_sft:])):
                order = _nested_indices([paths[i] for i in rows], seed, f"{part}|{task}")
                pools[pool].append(table.take([rows[i] for i in order]))  # one copy per pool
            del table, paths
        jobs = []
        for task in fam.tasks:
            for level in fam.levels:
                sizes = _chunk_sizes(recipe.test_per_level)
                jobs += [("test", task, level, size, i, len(sizes), train_paths[task]) for i, size in enumerate(sizes)]
        test = _run_jobs(jobs, workers, scratch / "test")
        splits = {name: _dataset(pa.concat_tables(ts)) for name, ts in pools.items()}
        splits["test"] = _dataset(pa.concat_tables(test))
        splits["biographies"] = _text_dataset(fam.biographies(recipe.bio_paraphrases, recipe.bio_orders))
        splits["recall"] = _probe_dataset(fam.recall_probes())
        return datasets.DatasetDict(splits), fam.world_json()
    finally:
        _FAMILY = None


WORD = re.compile(r"\w+")
DRILL_WORDS = (3, 10)  # words per copy drill, drawn uniformly
LOOKUP_FACTS = (3, 8)  # facts per lookup drill, drawn uniformly
# splits trained beside the items, and their columns; every loaded entry has them, empty or not
TRAINING_TEXT_SPLITS = {"biographies": ("text",), "drills": ("prompt", "completion")}


def _words(splits: dict) -> list[str]:
    """Every distinct word the model reads or writes, in a fixed order."""
    words: set[str] = set()
    for name in ("train_sft", "train_rl", "test"):
        for col in ("question", "context", "answer_cot"):
            for text in splits[name][col]:
                words.update(WORD.findall(text))
    for text in splits["biographies"]["text"]:
        words.update(WORD.findall(text))
    return sorted(words)


def drills(splits: dict, recipe: RecipeConfig, seed: int) -> datasets.Dataset:
    """The copy and lookup drills over the words of the data's own text, generated or released."""
    words = _words(splits)
    copies, lookups = copy_drills(words, recipe.copy_drills, seed), lookup_drills(words, recipe.lookup_drills, seed)
    return _strings_dataset({col: copies[col] + lookups[col] for col in copies})


def copy_drills(words: list[str], n: int, seed: int) -> dict[str, list[str]]:
    """n drills, half copying random words in order, half reversed: every word is written as an output
    about equally often, so copying does not depend on which words training questions happened to use."""
    rng = random.Random(f"{seed}|drills")
    prompts, completions = [], []
    for i in range(n):
        seq = [rng.choice(words) for _ in range(rng.randint(*DRILL_WORDS))]
        verb, out = ("Repeat", seq) if i % 2 == 0 else ("Reverse", seq[::-1])
        prompts.append(f"{verb}: {' '.join(seq)} =")
        completions.append(" " + " ".join(out))
    return {"prompt": prompts, "completion": completions}


def lookup_drills(words: list[str], n: int, seed: int) -> dict[str, list[str]]:
    """n associative-recall drills: facts "a's b is c." over random words of the world, then one fact's
    "a's b is" to complete. The distractors share the asked fact's a or its b, so both must match: the
    lookup a Ctx hop does, learnt for every word, held-out relation nouns included."""
    rng = random.Random(f"{seed}|lookup")
    prompts, completions = [], []
    for _ in range(n):
        key = (rng.choice(words), rng.choice(words))
        keys, k = [key], rng.randint(*LOOKUP_FACTS)
        while len(keys) < k:
            shared = rng.randrange(3)  # 0: same a, 1: same b, 2: neither
            cand = (key[0] if shared == 0 else rng.choice(words), key[1] if shared == 1 else rng.choice(words))
            if cand not in keys:
                keys.append(cand)
        facts = [(a, b, rng.choice(words)) for a, b in keys]
        answer = facts[0][2]
        rng.shuffle(facts)
        prompts.append("Facts: " + " ".join(f"{a}'s {b} is {c}." for a, b, c in facts)
                       + f" Look up: {key[0]}'s {key[1]} is")
        completions.append(f" {answer}.")
    return {"prompt": prompts, "completion": completions}


ITEM_FEATURES = datasets.Features({
    "task": datasets.Value("string"),
    "level": datasets.Value("string"),
    "hops": datasets.Value("int32"),
    "relation_path": datasets.List(datasets.Value("string")),
    "hop_groups": datasets.List(datasets.Value("string")),
    "entities": datasets.List(datasets.Value("string")),
    "question": datasets.Value("string"),
    "context": datasets.Value("string"),
    "answer": datasets.Value("string"),
    "answer_cot": datasets.Value("string"),
    "instruction": datasets.Value("string"),
    "gen_type": datasets.Value("string"),
})
ITEM_SCHEMA = ITEM_FEATURES.arrow_schema


def _dataset_of(table: pa.Table, features: datasets.Features) -> datasets.Dataset:
    return datasets.Dataset(InMemoryTable(table), info=datasets.DatasetInfo(features=features))


def _dataset(table: pa.Table) -> datasets.Dataset:
    return _dataset_of(table, ITEM_FEATURES)


def _strings_dataset(columns: dict[str, list[str]]) -> datasets.Dataset:
    # built from an Arrow table, so an empty list still saves and loads
    return _dataset_of(pa.table({k: pa.array(v, type=pa.string()) for k, v in columns.items()}),
                       datasets.Features({k: datasets.Value("string") for k in columns}))


def _text_dataset(texts: list[str]) -> datasets.Dataset:
    return _strings_dataset({"text": texts})


PROBE_FIELDS = ("relation", "relation_level", "prompt", "answer")


def _probe_dataset(probes: list[dict]) -> datasets.Dataset:
    return _strings_dataset({k: [p[k] for p in probes] for k in PROBE_FIELDS})


def items_dataset(rows: list[dict]) -> datasets.Dataset:
    """Items (e.g. loaded from the authors' released files) as a dataset of the standard schema."""
    return _dataset(pa.Table.from_pylist([{k: r[k] for k in ITEM_FEATURES} for r in rows], schema=ITEM_SCHEMA))


@dataclass
class Data:
    """A cached data entry: the splits, the world, and where they live."""

    splits: datasets.DatasetDict
    world: dict
    key: str
    path: Path
    built: bool


def load_data(world: WorldConfig, recipe: RecipeConfig, seed: int, cache_dir: str | None = None,
              family: str = "biography") -> Data:
    """Build once per key (lock + atomic publish), then load from disk."""
    key = data_key(world, recipe, seed, family)
    root = Path(cache_dir or default_cache_dir()) / "data"

    def build(work: Path) -> None:
        if recipe.released_dir:
            splits, world_json = released_splits(recipe.released_dir)
            (work / "chunks").mkdir()
        else:
            splits, world_json = generate(world, recipe, seed, work / "chunks", family)
        splits["drills"] = drills(splits, recipe, seed)
        datasets.disable_progress_bars()
        # datasets cannot reload an empty split (released files may have no biographies)
        splits = datasets.DatasetDict({k: v for k, v in splits.items() if len(v)})
        splits.save_to_disk(str(work / "splits"))
        del splits
        shutil.rmtree(work / "chunks")
        (work / "world.json").write_text(json.dumps(world_json, sort_keys=True))

    entry, built = cache.publish(root, key, build, info={"key": key})
    splits = datasets.load_from_disk(str(entry / "splits"))
    for name, columns in TRAINING_TEXT_SPLITS.items():  # saved only when non-empty
        if name not in splits:
            splits[name] = _strings_dataset({c: [] for c in columns})
    world_json = json.loads((entry / "world.json").read_text())
    return Data(splits=splits, world=world_json, key=key, path=entry, built=built)


def select_rows(ds: datasets.Dataset, tasks: list[str], proportions: dict[str, float]) -> datasets.Dataset:
    """The first ceil(p·n) rows of each task in `tasks`: nested, path-stratified subsets."""
    col = ds["task"]
    taken: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(col):
        taken[t].append(i)
    idx = []
    for t in tasks:
        rows = taken.get(t, [])
        idx += rows[: math.ceil(proportions.get(t, 1.0) * len(rows))]
    return ds.select(sorted(idx))


def stage_items(data: Data, pool: str, tasks: list[str], recipe: RecipeConfig) -> datasets.Dataset:
    """The training items a stage uses from its pool ('sft' or 'rl')."""
    props = {"mem": recipe.mem_proportion, "ctx": recipe.ctx_proportion, "comp": recipe.comp_proportion}
    return select_rows(data.splits[POOLS[pool]], tasks, props)
