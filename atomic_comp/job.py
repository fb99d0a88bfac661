"""One job: every pipeline of a run, results.json at the end, progress.json while it runs."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from atomic_comp import cache
from atomic_comp.config import RunConfig
from atomic_comp.recipe import load_data

LEVEL_NAMES = {"iid": "I.I.D.", "composition": "Composition", "zero_shot": "Zero-shot"}


def headline_table(results: dict) -> str:
    """Pipelines x levels, Comp exact match of each pipeline's last stage, in points."""
    lines = [f"{'pipeline':<40} " + " ".join(f"{v:>12}" for v in LEVEL_NAMES.values())]
    for name, rec in results["pipelines"].items():
        last = rec["stages"][-1]["name"]
        comp = rec["eval"][last].get("comp", {})
        cells = [f"{100 * comp[lv]['em']:>12.1f}" if lv in comp else f"{'-':>12}" for lv in LEVEL_NAMES]
        lines.append(f"{name:<40} " + " ".join(cells))
    return "\n".join(lines)


def run(cfg: RunConfig, out: Path) -> dict:
    import torch

    from atomic_comp import pipeline as pl
    from atomic_comp.stages.common import pick_device

    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    from atomic_comp import distributed

    device = pick_device(cfg.device)
    distributed.init(device)
    main = distributed.rank() == 0  # only rank 0 of a data-parallel job writes files and logs
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    def progress(state: dict) -> None:
        if not main:
            return
        state = dict(state, elapsed=round(time.perf_counter() - t0, 1), pid=os.getpid())
        cache.write_atomic(out / "progress.json", json.dumps(state))
        print(f"[atomic-comp] {state.get('pipeline', '')} {state.get('stage', '')}: {state['status']}", file=sys.stderr)

    from atomic_comp.tracking import Tracker

    pipelines = pl.resolve(cfg)
    tracker = Tracker(cfg if main else dataclasses.replace(cfg, logger=dataclasses.replace(cfg.logger, name="none")),
                      out, len(pipelines))
    progress({"status": "building data"})
    data = load_data(cfg.world, cfg.recipe, cfg.seed, cfg.cache_dir)
    results: dict = {"seed": cfg.seed, "sweep": cfg.sweep_name, "data_key": data.key, "device": device,
                     "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
                     "slurm_restart_count": int(os.environ.get("SLURM_RESTART_COUNT", 0)), "pipelines": {}}
    predictions = []
    for pipe in pipelines:
        record, preds = pl.run_pipeline(cfg, data, pipe, progress, device)
        results["pipelines"][pipe.name] = record
        predictions += preds
        tracker.pipeline(pipe.name, record)
    results["seconds"] = round(time.perf_counter() - t0, 1)
    results["world_size"] = distributed.world_size()
    if not main:
        return dict(results, rank=distributed.rank())
    cache.write_atomic(out / "predictions.jsonl", "".join(json.dumps(p) + "\n" for p in predictions))
    samples = []  # sampled pass@k completions, beside the greedy predictions
    for name, rec in results["pipelines"].items():
        for stage in rec["stages"]:
            path = Path(stage.get("eval_path", "")) / "passk_samples.jsonl"
            if path.is_file():
                samples += [json.dumps(dict(json.loads(line), pipeline=name, stage=stage["name"])) + "\n"
                            for line in path.read_text().splitlines()]
    if samples:
        cache.write_atomic(out / "passk_samples.jsonl", "".join(samples))
    cache.write_atomic(out / "results.json", json.dumps(results, indent=1))  # last: the job's one record
    tracker.finish(out / "results.json")
    progress({"status": "done"})
    return results
