"""Run chains of stages through the stage cache, evaluating after each stage.

A stage's key hashes its parent's key, its resolved config, the recipe, the model
config, the data key and the seed, so pipelines (and sweep jobs) that share a
prefix share its entries: `SFT(Mem+Ctx)->RL(Comp)` and `SFT(Mem+Ctx)->RL(Mem+Ctx)`
train one SFT. Entries are published atomically; a killed stage resumes from its
last trainer checkpoint, kept in the entry's work folder.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

from datasets import Dataset
from omegaconf import OmegaConf

from atomic_comp import cache, distributed
from atomic_comp.config import CONF_DIR, RLConfig, RunConfig, SFTConfig, StageSpec, default_cache_dir, world_seed
from atomic_comp.prompts import format_completion, format_prompt
from atomic_comp.reading import _CODE_FILES as READING_CODE_FILES
from atomic_comp.reading import Reading, load_reading, reading_key
from atomic_comp.recipe import _CODE_FILES as DATA_CODE_FILES
from atomic_comp.recipe import Data, load_data, stage_items

TASK_NAMES = {"mem": "Mem", "ctx": "Ctx", "comp": "Comp"}
KIND_NAMES = {"sft": "SFT", "rl": "RL", "lora": "LoRA"}


def run_data(cfg: RunConfig, cache_dir: str | None = None) -> Data:
    """A run's data: its world and items drawn from `data_seed` (the run's `seed` when that is unset)."""
    return load_data(cfg.world, cfg.recipe, world_seed(cfg), cfg.cache_dir if cache_dir is None else cache_dir)


def stage_name(spec: StageSpec) -> str:
    return f"{KIND_NAMES[spec.kind]}({'+'.join(TASK_NAMES[t] for t in spec.tasks)})"


def pipeline_name(stages: list[StageSpec]) -> str:
    return "->".join(stage_name(s) for s in stages)


def slug(name: str) -> str:
    """SFT(Mem+Ctx)->RL(Comp) -> sft_mem_ctx__rl_comp: the config option and folder name of a pipeline."""
    parts = []
    for stage in name.split("->"):
        kind, tasks = stage.rstrip(")").split("(")
        parts.append("_".join([kind.lower(), *(t.lower() for t in tasks.split("+"))]))
    return "__".join(parts)


def resolve(cfg: RunConfig) -> list:
    """The pipelines a run covers: the one selected, or each member of a suite."""
    from atomic_comp.config import PipelineConfig, to_typed

    if not cfg.pipeline.members:
        return [cfg.pipeline]
    out = []
    for member in cfg.pipeline.members:
        out.append(to_typed(OmegaConf.load(CONF_DIR / "pipeline" / f"{member}.yaml"), PipelineConfig))
    return out


def stage_config(cfg: RunConfig, spec: StageSpec, first: bool) -> tuple[Any, str, bool]:
    """(typed hyperparameters, pool, mixes in the biographies and drills) of one stage: the kind's
    defaults with the stage's overrides."""
    base = cfg.stage.rl if spec.kind == "rl" else cfg.stage.sft
    schema = RLConfig if spec.kind == "rl" else SFTConfig
    merged = OmegaConf.merge(OmegaConf.structured(base), spec.overrides)
    typed = OmegaConf.to_object(merged)
    if spec.kind == "lora":
        typed.lora = dataclasses.replace(cfg.stage.lora, enabled=True)
    assert isinstance(typed, schema)
    pool = spec.pool or ("sft" if first else "rl")
    bios = spec.kind != "rl" and cfg.recipe.biographies and (
        cfg.stage.bio_replay or (first and cfg.stage.injection == "first_sft"))
    return typed, pool, bios


def _sft_rows(items: Dataset, data: Data | None = None, replay: Dataset | None = None) -> Dataset:
    """Items as prompt/completion rows; with `data`, its biographies (empty prompt: plain LM) and drills
    (copy and lookup) are mixed in too; with `replay`, those reading items."""
    items = [items] + ([replay] if replay is not None else [])
    rows = {"prompt": [format_prompt(it) for part in items for it in part],
            "completion": [format_completion(it) for part in items for it in part]}
    if data is not None:
        bios = data.splits["biographies"]["text"]
        drills = data.splits["drills"]
        rows["prompt"] += [""] * len(bios) + list(drills["prompt"])
        rows["completion"] += [" " + b for b in bios] + list(drills["completion"])
    return Dataset.from_dict(rows)


def replayed(cfg: RunConfig, reading: Reading | None, key: str) -> Dataset | None:
    """The reading items an SFT stage (cache key `key`) replays: `stage.read_replay` of the corpus, drawn
    by the key, so each stage reads other items and a rerun the same ones."""
    n = cfg.stage.read_replay
    if not n:
        return None
    assert reading is not None, "stage.read_replay needs the reading corpus"
    return reading.train.shuffle(seed=int(key.rsplit("-", 1)[1][:8], 16)).select(range(n))


def _rl_rows(items: Dataset) -> Dataset:
    # the gold chain sizes the samples' token budget (stage.rl.max_completion_length null); the reward reads answer
    return Dataset.from_dict({"prompt": [format_prompt(it) for it in items], "answer": list(items["answer"]),
                              "gold": [format_completion(it) for it in items]})


def corpus(data: Data, reading: Reading | None = None):
    """Every text the model will read or write: the tokenizer's vocabulary comes from here."""
    for items in [data.splits[split] for split in ("train_sft", "train_rl", "test")] + (
            [reading.train, reading.test] if reading else []):
        for it in items:
            yield format_prompt(it) + format_completion(it)
    yield from (" " + t for t in data.splits["biographies"]["text"])
    for drill in data.splits["drills"]:
        yield drill["prompt"] + drill["completion"]


def base_model(cfg: RunConfig, data: Data, root: Path, reading: Reading | None = None) -> tuple[Path | str, str, bool]:
    """(checkpoint path or hub name, key, built_now) of the model every pipeline starts from; `root` is the
    cache's models folder, `reading` the reading stage's corpus when it is on (loaded here if not given)."""
    m = cfg.model
    key = base_key(cfg, data.key)
    if m.name != "tiny":
        name = m.pretrained or m.name
        if m.revision:  # that snapshot, from the Hub or the node's Hugging Face cache, then loaded as a folder
            from huggingface_hub import snapshot_download

            return snapshot_download(name, revision=m.revision), key, False
        return name, key, False

    def build(work: Path) -> None:
        from atomic_comp.models import build_tiny_model, build_tokenizer, save_checkpoint

        # the reading stage's made-up words are in the tokenizer from the start
        words = reading or (load_reading(cfg.reading, cfg.seed, str(Path(root).parent)) if reads(cfg) else None)
        tok = build_tokenizer(corpus(data, words), m.bpe_vocab)
        save_checkpoint(build_tiny_model(m, tok, cfg.seed), tok, work / "checkpoint")

    entry, built = publish_ranked(root, key, build, resume=False, all_ranks=False)
    return entry / "checkpoint", key, built


INJECT_NAME = "Inject(Bios)"
READ_NAME = "Read(Lookups)"
READING_LEVELS = {"iid": "trained nouns", "zero_shot": "held-out nouns"}  # the reading test's two levels


def injects(cfg: RunConfig) -> bool:
    return cfg.recipe.biographies and cfg.stage.injection == "stage"


def reads(cfg: RunConfig) -> bool:
    return cfg.reading.items > 0


def read_key(cfg: RunConfig, data_key: str) -> str:
    return "stage-" + cache.stable_hash({
        "parent": base_key(cfg, data_key), "kind": "read", "hyper": _hyper(cfg.stage.read),
        "model": model_fields(cfg.model), "reading": reading_key(cfg.reading, cfg.seed), "seed": cfg.seed,
        **_later_knobs(cfg, replays=False),
    })


def _read_or_base_key(cfg: RunConfig, data_key: str) -> str:
    return read_key(cfg, data_key) if reads(cfg) else base_key(cfg, data_key)


def inject_key(cfg: RunConfig, data_key: str) -> str:
    return "stage-" + cache.stable_hash({
        "parent": _read_or_base_key(cfg, data_key), "kind": "inject", "hyper": _hyper(cfg.stage.inject),
        "model": model_fields(cfg.model), "data": data_key, "seed": cfg.seed, **_later_knobs(cfg, replays=True),
    })


def _hyper(h) -> dict:
    return cache.when_set(dataclasses.asdict(h), freeze=[])


def _later_knobs(cfg: RunConfig, replays: bool) -> dict:
    """Run-wide knobs that change what a stage trains: deterministic kernels (other numbers than the default
    ones) and, for the stages that replay them (`replays`), the reading items."""
    return cache.when_set({"deterministic": cfg.deterministic, "read_replay": cfg.stage.read_replay if replays else 0},
                          deterministic=False, read_replay=0)


def start_key(cfg: RunConfig, data_key: str) -> str:
    """The key every pipeline's first stage hangs off: the last shared stage's, or the base model's."""
    shared = start_stages(cfg, data_key)
    return shared[-1][1] if shared else base_key(cfg, data_key)


def start_stages(cfg: RunConfig, data_key: str) -> list[tuple[str, str]]:
    """[(name, key)] of the stages every pipeline shares before its own."""
    return ([(READ_NAME, read_key(cfg, data_key))] if reads(cfg) else []) + (
        [(INJECT_NAME, inject_key(cfg, data_key))] if injects(cfg) else [])


def start_model(cfg: RunConfig, data: Data, root: Path, device: str,
                report: Callable[[str, str, str], Progress | None] = lambda name, key, status: None,
                reading: Reading | None = None) -> tuple[Path | str, str, dict]:
    """(checkpoint, key, {"reading": record, "injection": record} of the stages that ran) that every
    pipeline starts from; `report(stage name, key, status)` gives each stage its progress callback;
    `reading` the reading corpus when it is on (loaded here if not given)."""
    reading = reading or (load_reading(cfg.reading, cfg.seed, str(root)) if reads(cfg) else None)
    parent, key, _ = base_model(cfg, data, root / "models", reading)
    keys, records = dict(start_stages(cfg, data.key)), {}
    if reading:
        progress = report(READ_NAME, keys[READ_NAME], "training")
        record = train_stage(cfg, READ_NAME, "sft", cfg.stage.read, _sft_rows(reading.train), keys[READ_NAME],
                             parent, root / "stages", device, {"kind": "read", "tasks": [], "pool": "reading"},
                             progress)
        record["eval"] = evaluate_reading(cfg, reading, record, root / "evals", device,
                                          report(READ_NAME, keys[READ_NAME], "evaluating the reader"))
        if progress:  # whether the reader formed is known now, not only in the end-of-run table
            cells = record["eval"].get("read", {})
            progress({"status": "read, exact match " + ", ".join(
                f"{READING_LEVELS.get(lv, lv)} {100 * c['em']:.0f}%" for lv, c in cells.items())})
            progress({"status": "the reader on the world's Ctx items, every hop forced"})
        record["eval"]["world_forced_hops"] = reader_on_world(cfg, data, record, root / "evals", device)
        records["reading"], parent, key = record, Path(record["path"]), record["key"]
    if injects(cfg):
        rows = _sft_rows(data.splits["test"].select([]), data, replayed(cfg, reading, keys[INJECT_NAME]))
        record = train_stage(cfg, INJECT_NAME, "sft", cfg.stage.inject, rows, keys[INJECT_NAME],
                             parent, root / "stages", device, {"kind": "inject", "tasks": [], "pool": "biographies"},
                             report(INJECT_NAME, keys[INJECT_NAME], "training"))
        records["injection"], parent, key = record, Path(record["path"]), record["key"]
    return parent, key, records


def stage_records(record: dict) -> list[dict]:
    """A pipeline's trained stages in order, the shared reading and injection stages first."""
    return [record[k] for k in ("reading", "injection") if record.get(k)] + record["stages"]


def deepspeed_config(cfg: RunConfig) -> str | None:
    ds = cfg.deepspeed
    return str(CONF_DIR / "deepspeed" / ds.config_file) if ds.name and ds.config_file else None


Progress = Callable[[dict], None]


def stage_key(cfg: RunConfig, data_key: str, spec: StageSpec, first: bool, parent_key: str) -> str:
    """The cache key of a stage: computable from configs alone, before any data or training."""
    hyper, pool, bios = stage_config(cfg, spec, first)
    # The data key covers every generating recipe field; of the selection knobs, only those that
    # change this stage's rows enter, so a Comp-proportion sweep shares its SFT(Mem+Ctx) base.
    selection = {t: getattr(cfg.recipe, f"{t}_proportion") for t in spec.tasks}
    return "stage-" + cache.stable_hash({
        "parent": parent_key, "kind": spec.kind, "tasks": list(spec.tasks), "pool": pool,
        "hyper": _hyper(hyper), "selection": selection, "biographies": bios,
        "model": model_fields(cfg.model), "data": data_key, "seed": cfg.seed,
        **_later_knobs(cfg, replays=spec.kind != "rl"),
    })


def model_fields(m) -> dict:
    """The model config as the cache keys see it (a word-level tokenizer, bpe_vocab 0, left out)."""
    return cache.when_set(dataclasses.asdict(m), bpe_vocab=0)


def base_key(cfg: RunConfig, data_key: str) -> str:
    m = cfg.model
    if m.name != "tiny":
        name = m.pretrained or m.name
        # a local checkpoint by its content too; a hub name stands for its files
        local = {"content": cache.folder_digest(name)} if Path(name).is_dir() else {}
        pinned = {"revision": m.revision} if m.revision else {}  # absent when unset: an unpinned name's key as before
        return "base-" + cache.stable_hash({"pretrained": name, **local, **pinned})
    # a tokenizer with the reading stage's words is another base model; without it, the key as before
    reading = {"reading": reading_key(cfg.reading, cfg.seed)} if reads(cfg) else {}
    return "base-" + cache.stable_hash({"model": model_fields(m), "data": data_key, "seed": cfg.seed, **reading})


def plan(cfg: RunConfig) -> list[tuple[str, list[tuple[str, str]]]]:
    """[(pipeline, [(stage name, stage key), ...])] of a run, without building anything."""
    from atomic_comp.recipe import data_key

    dkey = data_key(cfg.world, cfg.recipe, world_seed(cfg))
    out = []
    for pipe in resolve(cfg):
        parent = start_key(cfg, dkey)
        stages = start_stages(cfg, dkey)
        for i, spec in enumerate(pipe.stages):
            parent = stage_key(cfg, dkey, spec, i == 0, parent)
            stages.append((stage_name(spec), parent))
        out.append((pipe.name, stages))
    return out


def run_stage(cfg: RunConfig, data: Data, spec: StageSpec, first: bool, parent: Path | str, key: str,
              root: Path, device: str, progress: Progress | None = None, reading: Reading | None = None) -> dict:
    """Train one pipeline stage (cache key `key`, from stage_key) through the cache; `reading` the reading
    corpus, for `stage.read_replay`. Returns its record for results.json."""
    hyper, pool, bios = stage_config(cfg, spec, first)
    items = stage_items(data, pool, list(spec.tasks), cfg.recipe)
    if spec.kind == "rl":
        rows = _rl_rows(items)
    else:
        rows = _sft_rows(items, data if bios else None, replayed(cfg, reading, key))
    return train_stage(cfg, stage_name(spec), spec.kind, hyper, rows, key, parent, root, device,
                       {"kind": spec.kind, "tasks": list(spec.tasks), "pool": pool, "items": len(items)}, progress)


def train_stage(cfg: RunConfig, name: str, kind: str, hyper, rows: Dataset, key: str, parent: Path | str,
                root: Path, device: str, info: dict, progress: Progress | None = None) -> dict:
    from atomic_comp.stages import RUNNERS

    t0 = time.perf_counter()

    def build(work: Path) -> None:
        metrics = RUNNERS[kind](
            Path(parent) if isinstance(parent, Path) else parent, hyper, rows, work,
            cfg.seed, device, cfg.model.dtype, deepspeed_config(cfg), progress=progress, deterministic=cfg.deterministic)
        metrics.update(info, rows=len(rows), world_size=distributed.world_size())
        if distributed.rank() == 0:
            (work / "metrics.json").write_text(json.dumps(metrics, default=str))

    entry, built = publish_ranked(root, key, build, resume=True, all_ranks=True)
    metrics = json.loads((entry / "metrics.json").read_text())
    return {"name": name, **{k: v for k, v in info.items() if k != "items"}, "key": key,
            "cached": not built, "seconds": round(time.perf_counter() - t0, 2), "path": str(entry / "checkpoint"),
            "train": {k: v for k, v in metrics.items() if k != "log_history"}}


def publish_ranked(root: Path, key: str, build: Callable[[Path], None], resume: bool,
                   all_ranks: bool) -> tuple[Path, bool]:
    """cache.publish for data-parallel jobs: rank 0 takes the lock and publishes (transformers writes
    checkpoints from rank 0 only); with all_ranks, the other ranks run `build` alongside it (training)."""
    if distributed.world_size() == 1:
        return cache.publish(root, key, build, resume=resume, info={"key": key})
    entry = root / key
    if distributed.broadcast(cache.is_complete(entry)):  # one decision for all ranks
        return entry, False
    built = False
    if distributed.rank() == 0:
        entry, built = cache.publish(root, key, build, resume=resume, info={"key": key})
    elif all_ranks:
        build(cache.work_dir(root, key))  # trains alongside rank 0; only rank 0 writes
    distributed.barrier()  # rank 0 has published the entry
    return entry, built


# the metric's code: a change to it re-scores cached checkpoints instead of reusing old numbers
EVAL_CODE_FILES = ("evaluate.py", "prompts.py")
# the code as imported keys this process's entries, not a later edit of it (code_version reads a file once)
for _files in (EVAL_CODE_FILES, READING_CODE_FILES, DATA_CODE_FILES):
    cache.code_version(_files)
# optional hop diagnostics: each is an eval switch, a function of evaluate.py, a results.json key and a rows file
HOP_DIAGNOSTICS = ("forced_hops", "counterfactual_hops", "paragraphless_hops", "unrivalled_hops")


def _eval_key(record: dict, **fields) -> str:
    """An evaluation's cache key: the stage's checkpoint, what is scored and how, and the metric's code."""
    return "eval-" + cache.stable_hash({"stage": record["key"], **fields, "code": cache.code_version(EVAL_CODE_FILES)})


def eval_key(cfg: RunConfig, data: Data, record: dict) -> str:
    return _eval_key(record, eval=dataclasses.asdict(cfg.eval), data=data.key)


def _cached_eval(cfg: RunConfig, record: dict, root: Path, device: str, key: str,
                 score: Callable) -> tuple[Path, dict]:
    """Load the stage's checkpoint, `score(model, tokenizer, work)` it (metrics; it writes its own rows into
    work), hand the model's memory back, and publish metrics.json under `key`: (the cached entry's folder,
    its metrics)."""

    def build(work: Path) -> None:
        model, tok = _load_for_eval(cfg, record, device)
        metrics = score(model, tok, work)
        del model
        _free_cuda(device)
        (work / "metrics.json").write_text(json.dumps(metrics))

    entry, _ = cache.publish(root, key, build, info={"key": key})
    return entry, json.loads((entry / "metrics.json").read_text())


def evaluate_stage(cfg: RunConfig, data: Data, record: dict, pipeline: str, root: Path, device: str,
                   progress: Progress | None = None) -> tuple[dict, list]:
    """Greedy exact match of a stage's checkpoint, cached per (stage key, eval config, eval code)."""
    from atomic_comp import evaluate as metric
    from atomic_comp.evaluate import evaluate, evaluate_passk, recall, select_items, select_probes

    e = cfg.eval
    items = select_items(data.splits["test"], e.levels, e.tasks, e.max_items)  # scored, then split by relation

    def score(model, tok, work: Path) -> dict:
        metrics, preds = evaluate(model, tok, items, e.batch_size, e.max_new_tokens, progress=progress)
        _write_rows(work / "predictions.jsonl", preds)
        if e.passk_n > 0:
            sampled = select_items(data.splits["test"], e.levels, e.passk_tasks, e.passk_items)
            metrics["pass_at_k"], samples = evaluate_passk(model, tok, sampled, e.passk_n, e.passk_ks,
                                                           e.temperature, e.top_p, e.max_new_tokens)
            _write_rows(work / "passk_samples.jsonl", samples)
        if e.recall_items > 0 and "recall" in data.splits:  # released files carry no probes
            metrics["recall"] = recall(model, tok, select_probes(data.splits["recall"], e.recall_items),
                                       e.batch_size)
        for name in HOP_DIAGNOSTICS:
            if getattr(e, name):
                metrics[name], rows = getattr(metric, name)(model, tok, items, data.world, e.batch_size)
                _write_rows(work / f"{name}.jsonl", rows)
        return metrics

    entry, metrics = _cached_eval(cfg, record, root, device, eval_key(cfg, data, record), score)
    record["eval_path"] = str(entry)
    preds = [dict(json.loads(line), pipeline=pipeline, stage=record["name"])
             for line in (entry / "predictions.jsonl").read_text().splitlines()]
    return dict(metrics, zero_shot_by_relation=by_held_out_relation(items, preds, data.world)), preds


def by_held_out_relation(items: list[dict], preds: list[dict], world: dict) -> dict:
    """{task: {held-out relation: {"em", "n"}}} over the zero-shot items whose path uses that relation.
    The seed draws which relations are held out, and one of them can stand at 0 under every pipeline, so a
    zero-shot mean is read beside what it stands on. Derived from the predictions, outside the eval cache:
    adding it re-scores nothing."""
    held = {r for group in world.get("levels", {}).values() for r in group.get("held_out", [])}
    cells: dict = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for item, pred in zip(items, preds, strict=True):
        if item["question"] != pred["question"]:
            raise ValueError(f"predictions out of step with the test items at {item['question']!r}")
        for rel in held.intersection(item["relation_path"]) if item["level"] == "zero_shot" else ():
            cells[item["task"]][rel][0] += bool(pred["correct"])
            cells[item["task"]][rel][1] += 1
    return {task: {rel: {"em": right / n, "n": n} for rel, (right, n) in sorted(c.items())}
            for task, c in cells.items()}


def _load_for_eval(cfg: RunConfig, record: dict, device: str):
    from atomic_comp.models import load_model, load_tokenizer

    return load_model(record["path"], cfg.model.dtype).to(device), load_tokenizer(record["path"])


def _free_cuda(device: str) -> None:
    """Hand a deleted model's GPU memory back before the next stage loads one."""
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()


def _write_rows(path: Path, rows: list[dict]) -> None:
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def evaluate_reading(cfg: RunConfig, reading: Reading, record: dict, root: Path, device: str,
                     progress: Progress | None = None) -> dict:
    """Greedy exact match of the reading stage on its test items: `read.iid` on trained made-up nouns,
    `read.zero_shot` on nouns no training item asked about (matching a word, not recalling a lookup); and
    each hop teacher-forced (`forced_hops`: does it find the fact once the chain names the noun, and if not,
    whose fact it writes)."""
    from atomic_comp.evaluate import evaluate, forced_hops, stated_world

    def score(model, tok, work: Path) -> dict:
        items = list(reading.test)
        metrics, preds = evaluate(model, tok, items, cfg.eval.batch_size, cfg.eval.max_new_tokens,
                                  stage=record["name"], progress=progress)
        metrics["forced_hops"], rows = forced_hops(model, tok, items, stated_world, cfg.eval.batch_size)
        _write_rows(work / "forced_hops.jsonl", rows)
        _write_rows(work / "predictions.jsonl", preds)
        return metrics

    key = _eval_key(record, reading=reading.key, batch_size=cfg.eval.batch_size,
                    max_new_tokens=cfg.eval.max_new_tokens)
    return _cached_eval(cfg, record, root, device, key, score)[1]


def reader_on_world(cfg: RunConfig, data: Data, record: dict, root: Path, device: str) -> dict:
    """The reading stage's checkpoint on the world's Ctx test items, every hop teacher-forced, before any
    world stage: does what it learnt to read carry over to the world's names, values and relation words
    (the world's `forced_hops` cells of task ctx)?"""
    from atomic_comp.config import EVAL_LEVELS
    from atomic_comp.evaluate import forced_hops, select_items

    def score(model, tok, work: Path) -> dict:
        items = select_items(data.splits["test"], list(EVAL_LEVELS), ["ctx"], cfg.eval.max_items)
        metrics, rows = forced_hops(model, tok, items, data.world, cfg.eval.batch_size)
        _write_rows(work / "forced_hops.jsonl", rows)
        return metrics

    key = _eval_key(record, data=data.key, reader_on_world=True, max_items=cfg.eval.max_items,
                    batch_size=cfg.eval.batch_size)
    return _cached_eval(cfg, record, root, device, key, score)[1]


def run_pipeline(cfg: RunConfig, data: Data, pipeline, progress: Progress, device: str) -> tuple[dict, list]:
    root = Path(cfg.cache_dir or default_cache_dir())

    def report(stage: str, key: str, status: str) -> Progress:
        head = {"pipeline": pipeline.name, "stage": stage, "key": key, "status": status}
        cached = status == "training" and cache.is_complete(root / "stages" / key)
        progress(dict(head, status="cached") if cached else head)
        return lambda state: progress({**head, **state})

    reading = load_reading(cfg.reading, cfg.seed, str(root)) if reads(cfg) else None
    parent, parent_key, shared = start_model(cfg, data, root, device, report,
                                             reading)
    stages, evals, predictions = [], {}, []
    for i, spec in enumerate(pipeline.stages):
        name, key = stage_name(spec), stage_key(cfg, data.key, spec, i == 0, parent_key)
        record = run_stage(cfg, data, spec, i == 0, parent, key, root / "stages", device,
                           report(name, key, "training"), reading)
        evals[name], preds = evaluate_stage(cfg, data, record, pipeline.name, root / "evals", device,
                                            report(name, key, "evaluating"))
        predictions += preds
        stages.append(record)
        parent, parent_key = Path(record["path"]), record["key"]
    if reading and stages:  # is the reading still there after the world's stages?
        last = stages[-1]
        evals[last["name"]]["reading"] = evaluate_reading(cfg, reading, last, root / "evals", device,
                                                          report(last["name"], last["key"], "reading test"))
    return {"slug": slug(pipeline.name), "stages": stages, "eval": evals, **shared}, predictions
