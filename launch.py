"""atomic-comp's Hydra door: compose -> validate -> run -> results.json.

    python launch.py                                   # the headline suite, tiny world, CPU
    python launch.py pipeline=sft_mem_ctx__rl_comp hydra.run.dir=DIR
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from atomic_comp.config import ConfigError, RunConfig, to_typed, validate_run


def _discard_empty_run_dir() -> None:
    """Hydra makes the run dir before the job starts; a refused config leaves nothing behind."""
    out = Path(HydraConfig.get().runtime.output_dir)
    if out.is_dir() and {p.name for p in out.iterdir()} <= {".hydra", "launch.log"}:
        shutil.rmtree(out)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        typed: RunConfig = to_typed(cfg, RunConfig)
        validate_run(typed)
    except ConfigError as e:
        _discard_empty_run_dir()
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    from atomic_comp import job

    out = Path(typed.output_dir or HydraConfig.get().runtime.output_dir)
    try:
        results = job.run(typed, out)
    except Exception:
        # into launch.log too: a multirun or SLURM job's failure otherwise ends in Hydra's return value only
        logging.getLogger("atomic_comp").exception("the job failed")
        raise
    if results.get("rank", 0) == 0:  # data-parallel jobs: one table, from rank 0
        table = f"{job.headline_table(results)}\nresults: {out / 'results.json'}"
        print(table)
        logging.getLogger("atomic_comp.summary").info(table)


if __name__ == "__main__":
    main()
