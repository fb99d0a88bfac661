"""Weights & Biases: one run per job, identified by the config, never able to fail training.

- id: a hash of the resolved config (seed included), so a requeued or rerun job resumes its run;
- group: the sweep name; job_type: the pipeline (or suite); config: the flattened resolved config;
- offline unless credentials are configured (or WANDB_MODE says otherwise); `wandb sync DIR/wandb/offline-run-*`
  uploads later.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

from atomic_comp import cache

log = logging.getLogger(__name__)
SECRET_WORDS = ("api_key", "apikey", "token", "secret", "password")


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def redact(flat: dict) -> dict:
    return {k: ("<redacted>" if any(w in k.lower() for w in SECRET_WORDS) else v) for k, v in flat.items()}


def run_config(cfg) -> dict:
    """The config W&B shows: flattened, without machine-local paths or secrets."""
    d = dataclasses.asdict(cfg)
    for k in ("cache_dir", "output_dir", "device", "threads", "logger"):
        d.pop(k, None)
    return redact(flatten(d))


def run_id(cfg) -> str:
    return "ac-" + cache.stable_hash(run_config(cfg), 16)


def _mode(explicit: str | None) -> str:
    if explicit:
        return explicit
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    has_key = bool(os.environ.get("WANDB_API_KEY")) or "api.wandb.ai" in _netrc()
    return "online" if has_key else "offline"


def _netrc() -> str:
    try:
        return (Path.home() / ".netrc").read_text()
    except OSError:
        return ""


class Tracker:
    """A W&B run, or nothing when disabled or when W&B fails: every call is guarded."""

    def __init__(self, cfg, out: Path, n_pipelines: int = 1):
        self.run = None
        self.suite = n_pipelines > 1
        lg = cfg.logger
        if lg.name != "wandb":
            return
        try:
            import wandb

            self.run = wandb.init(
                project=lg.project, entity=lg.entity, group=cfg.sweep_name, job_type=cfg.pipeline.name,
                tags=list(lg.tags), id=run_id(cfg), resume="allow", config=run_config(cfg), dir=str(out),
                mode=_mode(lg.mode), reinit="finish_previous",
            )
        except Exception as e:  # noqa: BLE001 - W&B must never fail training
            log.warning("W&B disabled for this job: %s", e)
            self.run = None

    def _guard(self, fn, *args) -> None:
        if self.run is None:
            return
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001
            log.warning("W&B logging failed (training goes on): %s", e)

    def pipeline(self, name: str, record: dict) -> None:
        self._guard(self._pipeline, name, record)

    def _pipeline(self, name: str, record: dict) -> None:
        import wandb

        from atomic_comp.pipeline import stage_records

        for stage in stage_records(record):
            metrics_file = Path(stage["path"]).parent / "metrics.json"
            history = json.loads(metrics_file.read_text()).get("log_history", []) if metrics_file.is_file() else []
            for row in history:
                self.run.log({f"train/{name}/{stage['name']}/{k}": v for k, v in row.items()
                              if isinstance(v, (int, float))})
        for stage_name, ev in record["eval"].items():
            for task in ("mem", "ctx", "comp"):
                for level, cell in ev.get(task, {}).items():
                    self.run.summary[f"eval/{name}/{stage_name}/{task}/{level}/em"] = cell["em"]
            for level, cell in ev.get("recall", {}).items():
                self.run.summary[f"recall/{name}/{stage_name}/{level}"] = cell["em"]
        reading = record.get("reading", {}).get("eval", {})
        for level, cell in reading.get("read", {}).items():
            self.run.summary[f"reading/{level}/em"] = cell["em"]
        for level, cells in reading.get("forced_hops", {}).get("read", {}).items():
            for cell in cells.values():
                self.run.summary[f"reading/{level}/forced_em"] = cell["em"]
        for level, cells in reading.get("world_forced_hops", {}).get("ctx", {}).items():  # does it read the world?
            for cell, c in cells.items():
                self.run.summary[f"reading/world/{level}/{cell}/forced_em"] = c["em"]
        last = record["stages"][-1]["name"]
        for level, cell in record["eval"][last].get("reading", {}).get("read", {}).items():  # the reading kept?
            self.run.summary[f"reading/{name}/last/{level}/em" if self.suite else f"reading/last/{level}/em"] = cell["em"]
        for level, cell in record["eval"][last].get("comp", {}).items():
            self.run.summary[f"comp/{name}/{level}/em" if self.suite else f"comp/{level}/em"] = cell["em"]
        for task, cells in record["eval"][last].get("zero_shot_by_relation", {}).items():
            for rel, cell in cells.items():
                where = f"{name}/{task}/{rel}" if self.suite else f"{task}/{rel}"
                self.run.summary[f"zero_shot_by_relation/{where}/em"] = cell["em"]
        rows = [[name, stage_name, level, int(k), v] for stage_name, ev in record["eval"].items()
                for level, curve in ev.get("pass_at_k", {}).items() for k, v in curve.items()]
        if rows:
            table = wandb.Table(columns=["pipeline", "stage", "level", "k", "pass_at_k"], data=rows)
            self.run.log({f"pass_at_k/{name}": table,
                          f"pass_at_k_plot/{name}": wandb.plot.line(table, "k", "pass_at_k", title=f"pass@k {name}")})

    def finish(self, results_path: Path | None) -> None:
        def _finish():
            import wandb

            if results_path is not None and results_path.is_file():
                art = wandb.Artifact(f"results-{self.run.id}", type="results")
                art.add_file(str(results_path))
                self.run.log_artifact(art)
            self.run.finish()

        self._guard(_finish)
