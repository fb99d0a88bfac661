"""One job: every pipeline of a run, results.json at the end, progress.json while it runs."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

from atomic_comp import cache
from atomic_comp.config import EVAL_LEVELS, RunConfig, world_seed

log = logging.getLogger(__name__)


def last_stage_metric(results: dict, metric: str) -> dict:
    """{pipeline: the `metric` block of its last stage's evaluation, or None}."""
    return {name: rec["eval"][rec["stages"][-1]["name"]].get(metric) for name, rec in results["pipelines"].items()}


def comp_cells(results: dict) -> dict[str, dict[str, float]]:
    """{pipeline: {level: Comp exact match of its last stage, in points}}."""
    return {name: {lv: 100 * cell["em"] for lv, cell in (comp or {}).items()}
            for name, comp in last_stage_metric(results, "comp").items()}


def _forced_cell(cell: dict) -> str:
    """A teacher-forced hop cell: % right (its wrong objects by `WRONG_OUTCOMES` of n)."""
    from atomic_comp.evaluate import WRONG_OUTCOMES

    return f"{100 * cell['em']:.0f} ({'/'.join(str(cell['outcomes'].get(o, 0)) for o in WRONG_OUTCOMES)} of {cell['n']})"


def headline_table(results: dict) -> str:
    """Pipelines x levels beside the paper's Table 7, then the study's claims and the stage times."""
    from atomic_comp.paper import claims_text, table_text

    parts = [table_text(comp_cells(results))]
    if results.get("claims"):
        parts += ["", "The study's claims (Comp exact match, points):", claims_text(results["claims"])]
    recall = last_stage_metric(results, "recall")
    if any(recall.values()):
        parts += ["", "Parametric recall (biography cloze, %) of each pipeline's last stage, by relation level:"]
        parts += [f"  {name:<28} " + "  ".join(f"{lv} {100 * c['em']:.0f}" for lv, c in r.items())
                  for name, r in recall.items() if r]
    forced = last_stage_metric(results, "forced_hops")
    if any(forced.values()):
        parts += ["", "Teacher-forced zero-shot hops of each pipeline's last stage, by hop group / relation level:",
                  "  % right (of wrong: subject's other fact / relation's object for someone else / other text of"
                  " the context / none of these)"]
        for name, f in forced.items():
            for task, levels in (f or {}).items():
                cells = levels.get("zero_shot", {})
                if cells:
                    parts.append(f"  {name:<28} {task:<5} " + "  ".join(
                        f"{cell} {_forced_cell(c)}" for cell, c in cells.items()))
        # the other half of a zero-shot failure: free chains that never write the relation (evaluate.relation_phrases)
        written = last_stage_metric(results, "relations_written")
        parts += ["", "Zero-shot chains that write every hop's relation phrase (free decoding, %):"]
        parts += [f"  {name:<28} " + "  ".join(f"{task} {100 * lv['zero_shot']['em']:.0f}"
                                               for task, lv in w.items() if "zero_shot" in lv)
                  for name, w in written.items() if w]
    by_relation = last_stage_metric(results, "zero_shot_by_relation")
    if any(by_relation.values()):  # which relations the seed held out, and which of them a mean stands on
        parts += ["", "Zero-shot exact match by held-out relation (drawn by the seed), each pipeline's last stage: "
                      "% (items)"]
        parts += [f"  {name:<28} {task:<5} " + "  ".join(f"{rel} {100 * c['em']:.0f} ({c['n']})"
                                                         for rel, c in rels.items())
                  for name, cells in by_relation.items() for task, rels in (cells or {}).items()]
    parts += _every_cell(results, "counterfactual_hops", "memory",
                         "Contextual hops forced with their fact changed in the context, each pipeline's last stage:",
                         "% that write the context's object / % the world's (recalled)")
    parts += _every_cell(results, "paragraphless_hops", "needs_paragraph",
                         "Contextual hops forced without the paragraph of the person they find, each pipeline's "
                         "last stage:", "% still right / % right only with the paragraph")
    parts += _every_cell(results, "unrivalled_hops", "misled_by_rivals",
                         "Contextual hops forced without other people's sentences of their relation, each "
                         "pipeline's last stage:", "% right without them / % right only without them")
    from atomic_comp.pipeline import READING_LEVELS, stage_records

    reading = next((rec["reading"] for rec in results["pipelines"].values() if rec.get("reading")), None)
    if reading:  # every pipeline shares the one reading stage
        levels = reading["eval"].get("read", {})
        parts += ["", "Reading stage (made-up world) exact match: " + "  ".join(
            f"{READING_LEVELS.get(lv, lv)} {100 * c['em']:.0f} (of {c['n']})" for lv, c in levels.items())]
        forced = reading["eval"].get("forced_hops", {}).get("read", {})
        if forced:
            parts += ["  its hops forced to \"X's {noun} is\": % right (wrong: the name's fact by another noun / the "
                      "noun's fact about someone else / other text of the context / none of these)",
                      "    " + "  ".join(f"{READING_LEVELS.get(lv, lv)} {_forced_cell(c)}"
                                       for lv, cells in forced.items() for c in cells.values())]
        world = reading["eval"].get("world_forced_hops", {}).get("ctx", {})
        if world:
            parts += ["  the reader on the world's Ctx items, every hop forced, before any world stage: % right by"
                      " relation level (wrong as above)"]
            parts += [f"    {lv}: " + "  ".join(f"{cell} {_forced_cell(c)}" for cell, c in sorted(world[lv].items()))
                      for lv in EVAL_LEVELS if lv in world]
        after = last_stage_metric(results, "reading")
        parts += ["  the same test on each pipeline's last stage (free / forced, %): is the reading kept?"]
        parts += [f"    {name:<28} " + "  ".join(
            f"{READING_LEVELS.get(lv, lv)} {100 * c['em']:.0f} / "
            + "/".join(f"{100 * f['em']:.0f}" for f in r.get("forced_hops", {}).get("read", {}).get(lv, {}).values())
            for lv, c in r["read"].items()) for name, r in after.items() if r]
    stages: dict = {}  # each stage as its first pipeline ran it (later ones find it cached)
    for rec in results["pipelines"].values():
        for s in stage_records(rec):
            stages.setdefault(s["key"], s)
    times = ", ".join(f"{s['name']} {s['seconds']:.0f}s{' (cached)' if s['cached'] else ''}" for s in stages.values())
    parts += ["", f"wall time {results['seconds']:.0f}s; each stage where it first ran: {times}"]
    return "\n".join(parts)


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def _every_cell(results: dict, metric: str, other: str, title: str, legend: str) -> list[str]:
    """A hop diagnostic's every cell, each pipeline's last stage: em / the share of `other` outcomes."""
    cells = last_stage_metric(results, metric)
    if not any(cells.values()):
        return []
    lines = ["", title, f"  {legend}, by level: relation level"]
    for name, f in cells.items():
        for task, levels in (f or {}).items():
            lines.append(f"  {name:<28} {task:<5} " + "  ".join(
                f"{level}:{cell.split('/')[1]} {100 * c['em']:.0f}/{100 * c['outcomes'].get(other, 0) / c['n']:.0f}"
                for level, cells in levels.items() for cell, c in cells.items()))
    return lines


class Heartbeat:
    """Passes progress reports on, and repeats the last one, marked with how long it has stood, whenever
    nothing new came for `every` seconds: phases without steps (building data, tokenizing a stage's
    dataset, the hop diagnostics after an evaluation) then do not look hung."""

    def __init__(self, emit: Callable[[dict], None], every: float = 8.0):
        self.emit, self.every = emit, every
        self.state: dict | None = None
        self.since = self.last = time.perf_counter()
        self.lock, self.stopped = threading.Lock(), threading.Event()
        threading.Thread(target=self._beat, daemon=True, name="atomic-comp-heartbeat").start()

    def __call__(self, state: dict) -> None:
        with self.lock:  # one writer of progress.json at a time
            self.state, self.since = state, time.perf_counter()
            self.last = self.since
            self.emit(state)

    def _beat(self) -> None:
        while not self.stopped.wait(min(1.0, self.every / 4)):
            with self.lock:
                now = time.perf_counter()
                if self.state is not None and now - self.last >= self.every and not self.stopped.is_set():
                    self.emit(dict(self.state, quiet=round(now - self.since)))
                    self.last = now

    def close(self) -> None:
        self.stopped.set()


def progress_line(state: dict, keys: list[str]) -> str:
    """One human line per progress report: where the suite is, the stage's step and ETA."""
    where = ""
    if state.get("key") in keys:
        where = f"stage {keys.index(state['key']) + 1}/{len(keys)} {state['stage']} of {state['pipeline']}: "
    what = state["status"]
    if "step" in state:
        what += (f" step {state['step']}/{state['max_steps']}, {state['sec_per_step']:.2f} s/step, "
                 f"ETA {_clock(state['eta'])}")
    elif "done" in state:
        what += f" {state['done']}/{state['total']} questions"
    if "quiet" in state:
        what += f" (still at it, {_clock(state['quiet'])} since)"
    return f"[atomic-comp {_clock(state['elapsed'])}] {where}{what}"


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

    keys = list(dict.fromkeys(k for _, stages in pl.plan(cfg) for _, k in stages))  # shared stages once

    def report(state: dict) -> None:
        state = dict(state, elapsed=round(time.perf_counter() - t0, 1), pid=os.getpid())
        cache.write_atomic(out / "progress.json", json.dumps(state))
        log.info(progress_line(state, keys))

    progress = Heartbeat(report) if main else (lambda state: None)
    try:
        return _suite(cfg, out, progress, device, main, t0)
    finally:
        if main:
            progress.close()  # a failed job's last line must not be repeated as if it were still running


def _suite(cfg: RunConfig, out: Path, progress, device: str, main: bool, t0: float) -> dict:
    """Build the data, run every pipeline of the suite, and write the job's files (rank 0)."""
    from atomic_comp import distributed
    from atomic_comp import pipeline as pl
    from atomic_comp.tracking import Tracker

    pipelines = pl.resolve(cfg)
    tracker = Tracker(cfg if main else dataclasses.replace(cfg, logger=dataclasses.replace(cfg.logger, name="none")),
                      out, len(pipelines))
    progress({"status": "building data"})
    data = pl.run_data(cfg)
    results: dict = {"seed": cfg.seed, "data_seed": world_seed(cfg), "sweep": cfg.sweep_name, "data_key": data.key,
                     "device": device,
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
    from atomic_comp.paper import claims
    from atomic_comp.report import level_bars

    cells = comp_cells(results)
    results["claims"] = claims(cells)
    if cells:
        results["chart"] = str(level_bars(cells, out / "comp_levels.png"))
    cache.write_atomic(out / "predictions.jsonl", "".join(json.dumps(p) + "\n" for p in predictions))
    # optional evaluations' rows, beside the predictions
    for rows_file in ("passk_samples.jsonl", *(f"{name}.jsonl" for name in pl.HOP_DIAGNOSTICS)):
        rows = []
        for name, rec in results["pipelines"].items():
            for stage in rec["stages"]:
                path = Path(stage.get("eval_path", "")) / rows_file
                if path.is_file():
                    rows += [json.dumps(dict(json.loads(line), pipeline=name, stage=stage["name"])) + "\n"
                             for line in path.read_text().splitlines()]
        if rows:
            cache.write_atomic(out / rows_file, "".join(rows))
    cache.write_atomic(out / "results.json", json.dumps(results, indent=1))  # last: the job's one record
    tracker.finish(out / "results.json")
    progress({"status": "done"})
    return results
