"""`python -m atomic_comp.plan [-m] sweep=<name> [overrides, a=1,2 ...]`: a sweep's dry run.

Prints the job matrix, the stages jobs share (trained once through the stage
cache), how many stages the sweep trains and how many of those the cache already
holds, validating every job's config on the way. Nothing is built, trained or
submitted.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException
from omegaconf import OmegaConf

from atomic_comp import cache
from atomic_comp.config import compose_config, composed, default_cache_dir, validate_run
from atomic_comp.pipeline import plan as stage_plan


def job_overrides(overrides: list[str]) -> list[list[str]]:
    """Expand CLI overrides and the sweep file's hydra.sweeper.params as Hydra's basic sweeper does."""
    fixed = [o.input_line for o in OverridesParser.create().parse_overrides(overrides) if not o.is_sweep_override()]
    cfg = compose_config(fixed, return_hydra_config=True)
    # without a sweep= preset the sweeper has no params (None), and the CLI's own a=1,2 lists are the sweep
    params = cfg.hydra.sweeper.params
    params = OmegaConf.to_container(params, resolve=False) if params is not None else {}
    swept = {o.split("=", 1)[0] for o in overrides if "=" in o}
    combined = [f"{k}={v}" for k, v in params.items() if k not in swept] + list(overrides)
    parsed = OverridesParser.create().parse_overrides(combined)
    return [list(job) for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def dry_run(overrides: list[str]) -> dict:
    jobs = job_overrides(overrides)
    users: dict = defaultdict(list)
    cached = set()
    matrix = []
    for i, job in enumerate(jobs):
        cfg = composed(job)
        validate_run(cfg, check_deepspeed=False)
        stages_root = Path(cfg.cache_dir or default_cache_dir()) / "stages"
        for pipe, stages in stage_plan(cfg):
            matrix.append((i, job, pipe, stages))
            for name, key in stages:
                users[key].append((i, pipe, name))
                if cache.is_complete(stages_root / key):
                    cached.add(key)
    shared = {k: v for k, v in users.items() if len({j for j, _, _ in v}) > 1}
    return {"jobs": jobs, "matrix": matrix, "stages": len(users),
            "stage_uses": sum(len(v) for v in users.values()), "shared": shared, "cached": len(cached)}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if {"-h", "--help"} & set(argv):
        print(__doc__)
        return
    # launch.py's sweep flag, kept so that a launch command can be planned as typed: plan always expands sweeps
    argv = [a for a in argv if a not in ("-m", "--multirun")]
    try:
        p = dry_run(argv)
    except OverrideParseException as e:
        sys.exit(f"atomic_comp.plan: cannot parse the overrides {argv}: {e}")
    print(f"{len(p['jobs'])} jobs")
    for i, job, pipe, stages in p["matrix"]:
        print(f"  #{i:<3} {pipe:<40} {' '.join(o for o in job if not o.startswith('hydra'))}")
    print(f"{p['stages']} distinct stages for {p['stage_uses']} stage uses "
          f"({p['stage_uses'] - p['stages']} uses shared through the stage cache); "
          f"{p['cached']} already in the cache, {p['stages'] - p['cached']} to train")
    for key, uses in p["shared"].items():
        names = sorted({name for _, _, name in uses})
        print(f"  shared {'/'.join(names)} {key}: jobs {sorted({j for j, _, _ in uses})}")


if __name__ == "__main__":
    main()
