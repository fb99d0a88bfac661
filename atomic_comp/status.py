"""`python -m atomic_comp.status SWEEP_DIR`: each job's state and stage.

States: done (results.json written), running / queued / ... (SLURM's word, from squeue),
failed (left the queue without results), unknown (no scheduler to ask).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
from pathlib import Path


def sweep_jobs(sweep: Path) -> list[dict]:
    """The jobs of a sweep: from jobs.json (written at submission) or, failing that, the job folders; a
    single run's folder (`python launch.py hydra.run.dir=DIR`) is a sweep of one job."""
    path = sweep / "jobs.json"
    if path.is_file():
        jobs = json.loads(path.read_text())
        latest = {j["dir"]: j for j in jobs}  # a resubmitted job replaces its earlier entry
        return list(latest.values())
    own = sweep / ".hydra" / "overrides.yaml"
    folders = [sweep] if own.is_file() else [d.parent.parent for d in sorted(sweep.glob("*/.hydra/overrides.yaml"))]
    return [{"job_id": None, "dir": str(d), "overrides": _overrides(d)} for d in folders]


def _overrides(job_dir: Path) -> list[str]:
    from omegaconf import OmegaConf

    path = job_dir / ".hydra" / "overrides.yaml"
    return list(OmegaConf.load(path)) if path.is_file() else []


def _squeue(job_ids: list[str]) -> dict[str, str] | None:
    """SLURM's state of each queued job; None when there is no answer (no squeue, or a busy controller)."""
    if not job_ids or not shutil.which("squeue"):
        return None
    res = subprocess.run(["squeue", "-h", "-o", "%i %T", "-j", ",".join(job_ids)], capture_output=True, text=True)
    if res.returncode != 0:
        # every job purged from the queue is an answer; anything else (a busy controller timing out) is not
        return {} if "invalid job id" in res.stderr.lower() else None
    states = {}
    for line in res.stdout.splitlines():
        jid, state = line.split()
        for one in _array_elements(jid):
            states[one] = state.lower()
    return states


def _array_elements(jid: str) -> list[str]:
    """squeue folds the pending elements of an array into one line: "58_[0-3,7%2]" -> 58_0 ... 58_3, 58_7."""
    m = re.fullmatch(r"(\d+)_\[([\d,\-]+)(?:%\d+)?\]", jid)
    if not m:
        return [jid]
    out = []
    for part in m.group(2).split(","):
        lo, _, hi = part.partition("-")
        out += [f"{m.group(1)}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return out


def job_states(sweep: Path) -> list[dict]:
    jobs = sweep_jobs(sweep)
    queue = _squeue([j["job_id"] for j in jobs if j.get("job_id")])
    out = []
    for j in jobs:
        d = Path(j["dir"])
        progress = json.loads((d / "progress.json").read_text()) if (d / "progress.json").is_file() else {}
        if (d / "results.json").is_file():
            state = "done"
        elif queue is not None and j.get("job_id") in queue:
            state = queue[j["job_id"]]
        elif queue is not None and j.get("job_id"):
            state = "failed"
        else:
            state = "unknown"
        out.append({"job_id": j.get("job_id"), "dir": str(d), "state": state,
                    "pipeline": progress.get("pipeline", ""), "stage": progress.get("stage", ""),
                    "step": progress.get("status", ""), "overrides": j.get("overrides", [])})
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", type=Path)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = job_states(args.sweep_dir)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"{'job':<10} {'state':<10} {'pipeline / stage':<44} folder")
    for r in rows:
        where = f"{r['pipeline']} {r['stage']} {r['step']}".strip()
        print(f"{str(r['job_id'] or '-'):<10} {r['state']:<10} {where:<44} {Path(r['dir']).name}")
    counts: dict = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))


if __name__ == "__main__":
    main()
