"""submitit launchers that check every job's config before anything is submitted, and can return at once.

`hydra/launcher=slurm` and `hydra/launcher=local` select these. With `wait: false`
the launch returns as soon as the jobs are queued, printing their ids and the sweep
folder; `python -m atomic_comp.status SWEEP_DIR` follows them from there.
"""


import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf, LocalQueueConf, SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher
from omegaconf import OmegaConf, open_dict

log = logging.getLogger(__name__)


def _job_configs(launcher, job_overrides: Sequence[Sequence[str]]) -> list:
    return [launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(o)) for o in job_overrides]


def validate_jobs(launcher, job_overrides: Sequence[Sequence[str]]) -> list[str]:
    """Every job's config through atomic-comp's schema and checks; returns each job's output folder."""
    from hydra.core.hydra_config import HydraConfig

    from atomic_comp.config import RunConfig, to_typed, validate_run

    folders = []
    for overrides, cfg in zip(job_overrides, _job_configs(launcher, job_overrides)):
        HydraConfig.instance().set_config(cfg)  # the sweep subdir interpolates the job's overrides
        with open_dict(cfg):
            sweep = cfg.hydra.sweep
            folder = str(Path(str(sweep.dir)) / str(sweep.subdir))
            del cfg["hydra"]
        try:
            validate_run(to_typed(cfg, RunConfig))
        except ValueError as e:
            raise ValueError(f"job {' '.join(overrides)}: {e}") from None
        folders.append(folder)
    return folders


class _Submitting:
    """What both launchers add to hydra-submitit-launcher's: checks first, then submit, then maybe wait."""

    def __init__(self, **params: Any) -> None:
        self.wait = bool(params.pop("wait", True))
        super().__init__(**params)  # type: ignore[call-arg]

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        try:
            folders = validate_jobs(self, job_overrides)
        except ValueError as e:
            # BasicSweeper wrote multirun.yaml before calling us; a refused sweep leaves nothing behind
            if sweep_dir.is_dir() and {p.name for p in sweep_dir.iterdir()} <= {"multirun.yaml"}:
                shutil.rmtree(sweep_dir)
            raise SystemExit(f"error: nothing submitted: {e}")
        params = dict(self.params)
        init = {"folder": params.pop("submitit_folder")}
        if "max_num_timeout" in params:
            init[f"{self._EXECUTOR}_max_num_timeout"] = params.pop("max_num_timeout")
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init)
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in base else f"{self._EXECUTOR}_{k}": v for k, v in params.items()})
        sweep_dir.mkdir(parents=True, exist_ok=True)
        job_params = []
        for i, overrides in enumerate(job_overrides):
            idx = initial_job_idx + i
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
        jobs = executor.map_array(self, *zip(*job_params))
        record = [{"job_id": j.job_id, "overrides": list(o), "dir": f} for j, o, f in zip(jobs, job_overrides, folders)]
        _append_jobs(sweep_dir / "jobs.json", record)
        print(f"sweep dir: {sweep_dir}")
        for r in record:
            print(f"submitted {r['job_id']}: {' '.join(filter_overrides(r['overrides']))}")
        if self.wait:
            return [j.results()[0] for j in jobs]
        print(f"not waiting; follow with: python -m atomic_comp.status {sweep_dir}")
        return [JobReturn(overrides=list(o), status=JobStatus.COMPLETED, _return_value=None) for o in job_overrides]


def _append_jobs(path: Path, record: list[dict]) -> None:
    old = json.loads(path.read_text()) if path.is_file() else []
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(old + record, indent=1))
    os.replace(tmp, path)


class AtomicSlurmLauncher(_Submitting, SlurmLauncher):
    pass


class AtomicLocalLauncher(_Submitting, LocalLauncher):
    pass


@dataclass
class AtomicSlurmConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.atomic_comp_launcher.launcher.AtomicSlurmLauncher"
    # false: return once the jobs are queued (print ids and the sweep folder)
    wait: bool = True


@dataclass
class AtomicLocalConf(LocalQueueConf):
    _target_: str = "hydra_plugins.atomic_comp_launcher.launcher.AtomicLocalLauncher"
    wait: bool = True


ConfigStore.instance().store(group="hydra/launcher", name="atomic_slurm", node=AtomicSlurmConf(), provider="atomic_comp")
ConfigStore.instance().store(group="hydra/launcher", name="atomic_local", node=AtomicLocalConf(), provider="atomic_comp")
