"""Pipelines through the real Hydra door: chaining, the shared stage cache, resume after a kill, determinism."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
# A very small world, model and budget: the mechanics, not the science.
SMALL = [
    "world.n_parametric=40", "world.n_contextual=40",
    "recipe.sft_pool.mem=60", "recipe.sft_pool.ctx=60", "recipe.sft_pool.comp=60",
    "recipe.rl_pool.mem=20", "recipe.rl_pool.ctx=20", "recipe.rl_pool.comp=20", "recipe.test_per_level=5",
    "recipe.hops.max=2", "recipe.hops.weights=[1.0]",
    "model.hidden_size=32", "model.intermediate_size=64", "model.num_layers=2", "model.num_heads=2",
    "stage.sft.max_steps=8", "stage.sft.batch_size=8", "stage.sft.save_steps=4",
    "stage.rl.max_steps=2", "stage.rl.prompts_per_step=2", "stage.rl.num_generations=2",
    "stage.rl.max_completion_length=16", "eval.max_items=3", "eval.max_new_tokens=24",
]


def launch(args, cache: Path, out: Path, **kw) -> subprocess.CompletedProcess | subprocess.Popen:
    env = dict(os.environ, ATOMIC_COMP_CACHE=str(cache), WANDB_MODE="offline")
    cmd = [sys.executable, "launch.py", *SMALL, *args, f"hydra.run.dir={out}"]
    if kw.get("background"):
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def two_pipelines(tmp_path_factory):
    """A suite of two pipelines that share their SFT stage, run twice."""
    root = tmp_path_factory.mktemp("pipes")
    args = ["pipeline=headline", "pipeline.members=[sft_mem_ctx__rl_comp,sft_mem_ctx__rl_mem_ctx]"]
    first = launch(args, root / "cache", root / "out1")
    assert first.returncode == 0, first.stderr[-3000:]
    second = launch(args, root / "cache", root / "out2")
    assert second.returncode == 0, second.stderr[-3000:]
    return results(root / "out1"), results(root / "out2"), root


def test_results_contract(two_pipelines):
    res, _, root = two_pipelines
    assert set(res["pipelines"]) == {"SFT(Mem+Ctx)->RL(Comp)", "SFT(Mem+Ctx)->RL(Mem+Ctx)"}
    rec = res["pipelines"]["SFT(Mem+Ctx)->RL(Comp)"]
    assert rec["slug"] == "sft_mem_ctx__rl_comp"
    assert [s["name"] for s in rec["stages"]] == ["SFT(Mem+Ctx)", "RL(Comp)"]
    for s in rec["stages"]:
        assert {"name", "key", "cached", "seconds"} <= set(s)
    for stage in ("SFT(Mem+Ctx)", "RL(Comp)"):
        comp = rec["eval"][stage]["comp"]
        assert set(comp) == {"iid", "composition", "zero_shot"}
        assert comp["iid"]["n"] == 3 and 0.0 <= comp["iid"]["em"] <= 1.0
    preds = [json.loads(line) for line in (root / "out1" / "predictions.jsonl").read_text().splitlines()]
    assert {"pipeline", "stage", "task", "level", "hops", "question", "answer", "output", "prediction",
            "correct"} <= set(preds[0])
    assert len(preds) == 4 * 27  # 2 pipelines x 2 stages x 3 tasks x 3 levels x 3 items


def test_chained_rl_starts_from_the_sft_checkpoint(two_pipelines):
    res, _, _ = two_pipelines
    from atomic_comp.models import load_model
    from atomic_comp.stages.common import fingerprint

    sft_rec, rl_rec = res["pipelines"]["SFT(Mem+Ctx)->RL(Comp)"]["stages"]
    assert rl_rec["train"]["parent"] == sft_rec["path"]
    assert rl_rec["train"]["parent_fingerprint"] == fingerprint(load_model(sft_rec["path"]))
    assert rl_rec["pool"] == "rl" and sft_rec["pool"] == "sft"


def test_a_shared_prefix_is_trained_once(two_pipelines):
    res, _, _ = two_pipelines
    a = res["pipelines"]["SFT(Mem+Ctx)->RL(Comp)"]["stages"]
    b = res["pipelines"]["SFT(Mem+Ctx)->RL(Mem+Ctx)"]["stages"]
    assert a[0]["key"] == b[0]["key"]
    assert a[0]["cached"] is False and b[0]["cached"] is True
    assert a[1]["key"] != b[1]["key"]


def test_rerunning_trains_nothing(two_pipelines):
    first, second, _ = two_pipelines
    for name, rec in second["pipelines"].items():
        assert all(s["cached"] for s in rec["stages"]), name
        assert [s["key"] for s in rec["stages"]] == [s["key"] for s in first["pipelines"][name]["stages"]]
        assert rec["eval"] == first["pipelines"][name]["eval"]


def test_same_seed_same_metrics_in_a_fresh_cache(two_pipelines, tmp_path):
    first, _, _ = two_pipelines
    again = launch(["pipeline=sft_mem_ctx"], tmp_path / "cache", tmp_path / "out")
    assert again.returncode == 0, again.stderr[-3000:]
    fresh = results(tmp_path / "out")["pipelines"]["SFT(Mem+Ctx)"]["stages"][0]
    old = first["pipelines"]["SFT(Mem+Ctx)->RL(Comp)"]["stages"][0]
    assert fresh["key"] == old["key"] and fresh["cached"] is False
    assert fresh["train"]["train_loss"] == pytest.approx(old["train"]["train_loss"], rel=1e-5)


def test_a_killed_stage_resumes_from_its_last_checkpoint(tmp_path):
    cache = tmp_path / "cache"
    args = ["pipeline=sft_comp", "stage.sft.max_steps=40", "stage.sft.save_steps=10"]
    proc = launch(args, cache, tmp_path / "out1", background=True)
    deadline = time.time() + 300
    ckpts = []
    while time.time() < deadline and proc.poll() is None:
        ckpts = list(cache.glob("stages/.work-*/trainer/checkpoint-*/trainer_state.json"))
        if ckpts:
            break
        time.sleep(0.5)
    assert ckpts, "no trainer checkpoint appeared"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert not list(cache.glob("stages/stage-*/COMPLETE"))  # nothing that looks complete
    done = launch(args, cache, tmp_path / "out2")
    assert done.returncode == 0, done.stderr[-3000:]
    stage = results(tmp_path / "out2")["pipelines"]["SFT(Comp)"]["stages"][0]
    assert stage["cached"] is False
    assert stage["train"]["resumed_from"].startswith("checkpoint-")
    assert int(stage["train"]["resumed_from"].split("-")[1]) >= 10
    assert stage["train"]["steps"] == 40


def test_passk_evaluation_runs_from_the_cache_without_retraining(two_pipelines):
    _, _, root = two_pipelines
    out = root / "passk"
    res = launch(["pipeline=sft_mem_ctx", "eval=passk", "eval.passk_n=8", "eval.passk_ks=[1,2,4,8]",
                  "eval.passk_items=2"], root / "cache", out)
    assert res.returncode == 0, res.stderr[-3000:]
    rec = results(out)["pipelines"]["SFT(Mem+Ctx)"]
    assert rec["stages"][0]["cached"] is True
    pk = rec["eval"]["SFT(Mem+Ctx)"]["pass_at_k"]
    assert set(pk) == {"iid", "composition", "zero_shot"}
    for curve in pk.values():
        values = [curve[k] for k in ("1", "2", "4", "8")]
        assert values == sorted(values) and all(0.0 <= v <= 1.0 for v in values)
    samples = [json.loads(line) for line in (out / "passk_samples.jsonl").read_text().splitlines()]
    assert len(samples) == 6 and all(len(s["outputs"]) == 8 for s in samples)
