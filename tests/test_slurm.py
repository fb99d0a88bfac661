"""Sweeps on a real single-node SLURM cluster (Debian's slurm-wlm + munge, started by .ci/slurm.sh)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import wandb_offline_run

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
SLURM = ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=4"]


@pytest.fixture(scope="session")
def slurm():
    res = subprocess.run(["bash", str(ROOT / ".ci" / "slurm.sh")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"could not start SLURM:\n{res.stdout}\n{res.stderr}"
    return True


def launch_m(args, cache: Path, timeout=600) -> subprocess.CompletedProcess:
    env = dict(os.environ, ATOMIC_COMP_CACHE=str(cache), WANDB_MODE="offline")
    return subprocess.run([sys.executable, "launch.py", "-m", "experiment=smoke", *SLURM, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def wait_done(sweep: Path, n: int, timeout: float = 600) -> list[dict]:
    from atomic_comp.status import job_states

    deadline = time.time() + timeout
    while time.time() < deadline:
        states = job_states(sweep)
        if len(states) == n and all(s["state"] in ("done", "failed") for s in states):
            return states
        time.sleep(2)
    raise AssertionError(f"jobs did not finish: {job_states(sweep)}")


def next_job_id() -> int:
    out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True).stdout
    return int(re.search(r"NEXT_JOB_ID\s*=\s*(\d+)", out).group(1))


def test_two_job_sweep_returns_at_once_and_logs_to_wandb(slurm, tmp_path):
    sweep = tmp_path / "sweep"
    t0 = time.time()
    res = launch_m(["pipeline=sft_comp", "seed=1,2", "sweep_name=slurm_test", "hydra.launcher.wait=false",
                    f"hydra.sweep.dir={sweep}"], tmp_path / "cache")
    assert res.returncode == 0, res.stderr[-3000:]
    assert time.time() - t0 < 60  # queued, not run
    ids = re.findall(r"submitted (\S+):", res.stdout)
    assert len(ids) == 2 and f"sweep dir: {sweep}" in res.stdout

    status = subprocess.run([sys.executable, "-m", "atomic_comp.status", str(sweep)], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert status.returncode == 0 and all(i in status.stdout for i in ids)

    states = wait_done(sweep, 2)
    assert [s["state"] for s in states] == ["done", "done"]
    for seed in (1, 2):
        job = next(sweep.glob(f"*seed={seed}*"))
        res_json = json.loads((job / "results.json").read_text())
        assert res_json["seed"] == seed and "SFT(Comp)" in res_json["pipelines"]
        run, summary = wandb_offline_run(job)
        assert run["run_group"] == "slurm_test" and run["job_type"] == "SFT(Comp)"
        config = run["config"]["update"]
        assert config["seed"] == seed and "recipe.comp_proportion" in config and "pipeline.name" in config
        assert summary["comp/iid/em"] == res_json["pipelines"]["SFT(Comp)"]["eval"]["SFT(Comp)"]["comp"]["iid"]["em"]
        assert not any("api_key" in k.lower() for k in config)

    rep = subprocess.run([sys.executable, "-m", "atomic_comp.report", str(sweep)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert rep.returncode == 0 and (sweep / "report.csv").is_file() and "SFT(Comp)" in rep.stdout


def test_a_bad_config_is_refused_before_sbatch(slurm, tmp_path):
    before = next_job_id()
    sweep = tmp_path / "sweep"
    res = launch_m(["pipeline=sft_comp", "seed=1,2", "stage.sft.lr=-1", f"hydra.sweep.dir={sweep}"], tmp_path / "c")
    assert res.returncode != 0
    assert "nothing submitted" in res.stderr + res.stdout and "stage.sft.lr" in res.stderr + res.stdout
    assert next_job_id() == before
    assert not sweep.exists()


def test_a_requeued_job_resumes_and_finishes(slurm, tmp_path):
    sweep, cache = tmp_path / "sweep", tmp_path / "cache"
    res = launch_m(["pipeline=sft_comp", "seed=5", "stage.sft.max_steps=300", "stage.sft.save_steps=5",
                    "stage.injection=first_sft",
                    "hydra.launcher.wait=false", f"hydra.sweep.dir={sweep}"], cache)
    assert res.returncode == 0, res.stderr[-3000:]
    (job_id,) = re.findall(r"submitted (\S+):", res.stdout)
    deadline = time.time() + 300
    while time.time() < deadline and not list(cache.glob("stages/.work-*/trainer/checkpoint-*/trainer_state.json")):
        time.sleep(0.5)
    assert list(cache.glob("stages/.work-*/trainer/checkpoint-*")), "no trainer checkpoint before the requeue"
    subprocess.run(["scontrol", "requeue", job_id], check=True)
    time.sleep(3)
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=False)
    # a deadline, not a timing: on a loaded 2-core machine the restarted job took over 600 s
    states = wait_done(sweep, 1, timeout=1200)
    assert states[0]["state"] == "done"
    res_json = json.loads(next(sweep.glob("*seed=5*/results.json")).read_text())
    assert res_json["slurm_restart_count"] >= 1  # SLURM restarted it...
    stage = res_json["pipelines"]["SFT(Comp)"]["stages"][0]
    assert stage["train"]["resumed_from"] and stage["train"]["resumed_from"].startswith("checkpoint-")  # ...mid-stage
    assert stage["train"]["steps"] == 300


def test_tasks_per_node_two_trains_data_parallel(slurm, tmp_path):
    """SLURM starts two tasks; the rendezvous comes from SLURM's environment; both train one SFT stage."""
    sweep = tmp_path / "sweep"
    res = launch_m(["pipeline=sft_comp", "seed=7", "stage.sft.batch_size=4", "hydra.launcher.tasks_per_node=2",
                    f"hydra.sweep.dir={sweep}"], tmp_path / "cache")
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(next(sweep.glob("*seed=7*/results.json")).read_text())
    assert out["world_size"] == 2
    stage = out["pipelines"]["SFT(Comp)"]["stages"][0]
    assert stage["train"]["world_size"] == 2 and stage["train"]["steps"] == 8
    assert (Path(stage["path"]) / "model.safetensors").is_file()


def test_status_tells_a_job_gone_from_the_queue_from_a_controller_that_gave_no_answer(slurm, monkeypatch, tmp_path):
    from atomic_comp.status import _squeue

    assert _squeue(["999999"]) == {}  # SLURM's "invalid job id": the job has left the queue
    # the same cluster behind a port nobody listens on: squeue gets no answer (~20 s of retries)
    conf = [line for line in Path("/etc/slurm/slurm.conf").read_text().splitlines()
            if not line.startswith("SlurmctldPort")]
    (tmp_path / "slurm.conf").write_text("\n".join(conf + ["SlurmctldPort=1"]) + "\n")
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "slurm.conf"))
    assert _squeue(["999999"]) is None


def test_status_reads_a_pending_array_folded_into_one_squeue_line(slurm, tmp_path):
    """squeue prints held or pending array elements as one line ("58_[0-1] PENDING"), not one per element."""
    from atomic_comp.status import job_states

    res = subprocess.run(["sbatch", "--parsable", "--hold", "--array=0-1", "-p", "debug", "--wrap", "true"],
                         capture_output=True, text=True, check=True)
    base = res.stdout.strip()
    try:
        jobs = [{"job_id": f"{base}_{i}", "dir": str(tmp_path / f"seed={i}"), "overrides": []} for i in (0, 1)]
        (tmp_path / "jobs.json").write_text(json.dumps(jobs))
        assert [s["state"] for s in job_states(tmp_path)] == ["pending", "pending"]
    finally:
        subprocess.run(["scancel", base], check=False)
