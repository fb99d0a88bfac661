"""Pipelines through the real Hydra door: chaining, the shared stage cache, resume after a kill, determinism."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import composed, wandb_offline_run

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
# A very small world, model and budget: the mechanics, not the science.
SMALL = ["experiment=smoke"]


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
    (root / "stderr1.txt").write_text(first.stderr)
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
        recall = rec["eval"][stage]["recall"]  # parametric facts still held, per relation level
        assert list(recall) == ["iid", "composition", "held_out"]
        assert all(0 < c["n"] <= 200 and 0.0 <= c["em"] <= 1.0 for c in recall.values())
    preds = [json.loads(line) for line in (root / "out1" / "predictions.jsonl").read_text().splitlines()]
    assert {"pipeline", "stage", "task", "level", "hops", "question", "answer", "output", "prediction",
            "correct"} <= set(preds[0])
    assert len(preds) == 4 * 27  # 2 pipelines x 2 stages x 3 tasks x 3 levels x 3 items
    # zero-shot by held-out relation, from each stage's own predictions of the items it was asked
    from datasets import load_from_disk

    from atomic_comp.evaluate import select_items
    from atomic_comp.pipeline import by_held_out_relation

    data = root / "cache" / "data" / res["data_key"]
    world = json.loads((data / "world.json").read_text())
    items = select_items(load_from_disk(str(data / "splits" / "test")), ["iid", "composition", "zero_shot"],
                         ["mem", "ctx", "comp"], 3)
    _, summary = wandb_offline_run(root / "out1")
    for stage in ("SFT(Mem+Ctx)", "RL(Comp)"):
        mine = [p for p in preds if (p["pipeline"], p["stage"]) == ("SFT(Mem+Ctx)->RL(Comp)", stage)]
        by_relation = rec["eval"][stage]["zero_shot_by_relation"]
        assert set(by_relation) == {"mem", "ctx", "comp"}
        assert by_relation == by_held_out_relation(items, mine, world)
    for task, cells in by_relation.items():  # the last stage's cells reach the W&B summary
        assert all(summary[f"zero_shot_by_relation/SFT(Mem+Ctx)->RL(Comp)/{task}/{rel}/em"] == c["em"]
                   for rel, c in cells.items())


def test_progress_names_the_stage_its_step_and_eta(two_pipelines):
    _, _, root = two_pipelines
    err = (root / "stderr1.txt").read_text()
    # the suite's 4 distinct stages: injection, the shared SFT, two RLs
    assert re.search(r"stage 2/4 SFT\(Mem\+Ctx\) of SFT\(Mem\+Ctx\)->RL\(Comp\): training step 8/8, "
                     r"[\d.]+ s/step, ETA 0:00", err), err[-2000:]
    assert re.search(r"stage 4/4 RL\(Mem\+Ctx\) of .*: evaluating \d+/27 questions", err)
    assert "stage 2/4 SFT(Mem+Ctx) of SFT(Mem+Ctx)->RL(Mem+Ctx): cached" in err  # the shared prefix
    progress = json.loads((root / "out1" / "progress.json").read_text())
    assert progress["status"] == "done"


def test_the_job_folder_keeps_its_own_log(two_pipelines):
    """launch.log: every progress line with a timestamp, then the table printed at the end."""
    _, _, root = two_pipelines
    lines = (root / "out1" / "launch.log").read_text().splitlines()
    progress = [ln for ln in (root / "stderr1.txt").read_text().splitlines() if ln.startswith("[atomic-comp ")]
    logged = [ln for ln in lines if re.match(r"\[\d{4}-\d\d-\d\d [\d:,]+\] \[atomic-comp ", ln)]
    assert len(logged) == len(progress) > 5 and logged[-1].endswith(progress[-1])
    assert any(ln.startswith("SFT(Mem+Ctx)->RL(Comp) ") for ln in lines)  # the table's rows
    assert lines[-1] == f"results: {root / 'out1' / 'results.json'}"


def test_the_run_writes_its_chart_and_checks_the_claims(two_pipelines):
    res, _, root = two_pipelines
    png = (root / "out1" / "comp_levels.png").read_bytes()
    assert png[:4] == b"\x89PNG" and res["chart"].endswith("comp_levels.png")
    (stretch,) = res["claims"]  # of the study's claims, only the stretch goal's pipeline ran
    assert stretch["claim"] == "stretch" and stretch["lhs"] == "SFT(Mem+Ctx)->RL(Comp)"
    assert stretch["value"] == pytest.approx(100 * res["pipelines"]["SFT(Mem+Ctx)->RL(Comp)"]["eval"]["RL(Comp)"]
                                             ["comp"]["zero_shot"]["em"], abs=0.01)


def test_chained_rl_starts_from_the_sft_checkpoint(two_pipelines):
    res, _, _ = two_pipelines
    from atomic_comp.models import load_model
    from atomic_comp.stages.common import fingerprint

    sft_rec, rl_rec = res["pipelines"]["SFT(Mem+Ctx)->RL(Comp)"]["stages"]
    assert rl_rec["train"]["parent"] == sft_rec["path"]
    assert rl_rec["train"]["parent_fingerprint"] == fingerprint(load_model(sft_rec["path"]))
    assert rl_rec["pool"] == "rl" and sft_rec["pool"] == "sft"


def test_the_knowledge_injection_stage_is_shared_by_every_pipeline(two_pipelines):
    res, again, _ = two_pipelines
    a, b = (res["pipelines"][p] for p in ("SFT(Mem+Ctx)->RL(Comp)", "SFT(Mem+Ctx)->RL(Mem+Ctx)"))
    assert a["injection"]["name"] == "Inject(Bios)" and a["injection"]["key"] == b["injection"]["key"]
    assert a["injection"]["cached"] is False and b["injection"]["cached"] is True
    bios = a["injection"]["train"]
    assert bios["rows"] > 0 and bios["pool"] == "biographies"
    sft = a["stages"][0]
    assert sft["train"]["parent"] == a["injection"]["path"]
    assert sft["train"]["rows"] == sft["train"]["items"]  # no biographies mixed into the first SFT
    assert all(p["injection"]["cached"] for p in again["pipelines"].values())


def test_biographies_mix_into_the_first_sft_without_an_injection_stage(tmp_path):
    from atomic_comp import pipeline as pl

    staged = composed(*SMALL, "pipeline=sft_mem_ctx__rl_comp")
    mixed = composed(*SMALL, "pipeline=sft_mem_ctx__rl_comp", "stage.injection=first_sft")
    (_, staged_plan), = pl.plan(staged)
    (_, mixed_plan), = pl.plan(mixed)
    assert [n for n, _ in staged_plan] == ["Inject(Bios)", "SFT(Mem+Ctx)", "RL(Comp)"]
    assert [n for n, _ in mixed_plan] == ["SFT(Mem+Ctx)", "RL(Comp)"]
    sft = mixed.pipeline.stages[0]
    assert pl.stage_config(mixed, sft, True)[2] is True and pl.stage_config(staged, sft, True)[2] is False
    assert pl.stage_config(mixed, mixed.pipeline.stages[1], False)[2] is False  # RL never reads biographies
    assert staged_plan[1][1] != mixed_plan[0][1]  # different parents and data: different cache keys


def test_bio_replay_mixes_biographies_into_every_sft_stage_after_the_injection():
    from atomic_comp import pipeline as pl

    args = [*SMALL, "pipeline=sft_mem_ctx__sft_comp"]
    plain = composed(*args)
    replay = composed(*args, "stage.bio_replay=true")
    rl = composed(*SMALL, "pipeline=sft_mem_ctx__rl_comp", "stage.bio_replay=true")
    first, second = replay.pipeline.stages
    assert [pl.stage_config(replay, s, i == 0)[2] for i, s in enumerate((first, second))] == [True, True]
    assert [pl.stage_config(plain, s, i == 0)[2] for i, s in enumerate((first, second))] == [False, False]
    assert pl.stage_config(rl, rl.pipeline.stages[1], False)[2] is False  # RL never reads biographies
    (_, plain_plan), = pl.plan(plain)
    (_, replay_plan), = pl.plan(replay)
    assert plain_plan[0] == replay_plan[0]  # the injection stage is shared; the SFT stages are not
    assert plain_plan[1][1] != replay_plan[1][1] and plain_plan[2][1] != replay_plan[2][1]


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


def test_deterministic_reaches_the_trainer_and_changes_nothing_on_cpu(two_pipelines, tmp_path):
    import torch

    first, _, _ = two_pipelines
    run = launch(["pipeline=sft_mem_ctx", "deterministic=true"], tmp_path / "cache", tmp_path / "out")
    assert run.returncode == 0, run.stderr[-3000:]
    stage = results(tmp_path / "out")["pipelines"]["SFT(Mem+Ctx)"]["stages"][0]
    old = first["pipelines"]["SFT(Mem+Ctx)->RL(Comp)"]["stages"][0]
    assert stage["key"] != old["key"]
    (saved,) = (tmp_path / "cache" / "stages" / stage["key"] / "trainer").glob("checkpoint-*/training_args.bin")
    assert torch.load(saved, weights_only=False).full_determinism is True
    # CPU kernels are deterministic already: the same loss as the default run
    assert stage["train"]["train_loss"] == pytest.approx(old["train"]["train_loss"], rel=1e-5)


def test_a_killed_stage_resumes_from_its_last_checkpoint(tmp_path):
    cache = tmp_path / "cache"
    args = ["pipeline=sft_comp", "stage.sft.max_steps=40", "stage.sft.save_steps=10", "stage.injection=first_sft"]
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


def test_stage_keys_depend_only_on_what_changes_the_stage():
    from atomic_comp import pipeline as pl

    def keys(*overrides):
        (_, stages), = pl.plan(composed("experiment=smoke", "pipeline=sft_mem_ctx__rl_comp", *overrides))
        return [key for name, key in stages if name != pl.INJECT_NAME]

    base = keys()
    prop = keys("recipe.comp_proportion=0.3")
    assert base[0] == prop[0]  # SFT(Mem+Ctx) trains no Comp: shared across a Comp-proportion sweep
    assert base[1] != prop[1]
    assert keys("stage.rl.lr=3e-4")[0] == base[0] and keys("stage.rl.lr=3e-4")[1] != base[1]
    assert keys("seed=2")[0] != base[0]
    assert keys("deterministic=false") == base and keys("deterministic=true")[0] != base[0]  # off: old keys
    assert keys("recipe.hops.min=1", "recipe.hops.weights=[0.5,0.5]")[0] != base[0]
    frozen = keys("stage.sft.freeze=[self_attn]")
    assert frozen[0] != base[0] and frozen[1] != base[1]  # RL's parent changed
    assert keys("stage.rl.freeze=[embed_tokens]")[0] == base[0]


def test_eval_keys_change_with_the_metric_code_not_only_its_config(monkeypatch):
    """A cached evaluation is reused only while the code that scores it is the same."""
    from types import SimpleNamespace

    from atomic_comp import pipeline as pl

    cfg = composed("experiment=smoke")
    data, record = SimpleNamespace(key="data-x"), {"key": "stage-y"}
    base = pl.eval_key(cfg, data, record)
    assert pl.eval_key(cfg, data, record) == base
    assert pl.eval_key(cfg, data, {"key": "stage-z"}) != base
    monkeypatch.setattr(pl, "EVAL_CODE_FILES", ("evaluate.py",))  # as if prompts.py's bytes had changed
    assert pl.eval_key(cfg, data, record) != base


def test_plan_matches_the_keys_a_run_uses(two_pipelines):
    from atomic_comp import pipeline as pl

    res, _, _ = two_pipelines
    cfg = composed(*SMALL, "pipeline=headline", "pipeline.members=[sft_mem_ctx__rl_comp,sft_mem_ctx__rl_mem_ctx]")
    for name, stages in pl.plan(cfg):
        rec = res["pipelines"][name]
        assert [k for _, k in stages] == [rec["injection"]["key"]] + [s["key"] for s in rec["stages"]]


def test_data_seed_keeps_the_test_set_while_the_seed_draws_another_training(two_pipelines):
    from atomic_comp import pipeline as pl

    res, _, root = two_pipelines
    overrides = ["pipeline=sft_mem_ctx", "seed=2", "data_seed=1"]
    run = launch(overrides, root / "cache", root / "data_seed")
    assert run.returncode == 0, run.stderr[-3000:]
    other = results(root / "data_seed")
    assert (other["seed"], other["data_seed"], other["data_key"]) == (2, 1, res["data_key"])
    sft = other["pipelines"]["SFT(Mem+Ctx)"]["stages"][0]
    assert sft["cached"] is False and sft["key"] != res["pipelines"]["SFT(Mem+Ctx)->RL(Comp)"]["stages"][0]["key"]

    def asked(out: Path, pipeline: str) -> list[str]:
        return [p["question"] for p in map(json.loads, (out / "predictions.jsonl").read_text().splitlines())
                if (p["pipeline"], p["stage"]) == (pipeline, "SFT(Mem+Ctx)")]

    assert asked(root / "data_seed", "SFT(Mem+Ctx)") == asked(root / "out1", "SFT(Mem+Ctx)->RL(Comp)")
    (_, stages), = pl.plan(composed(*SMALL, *overrides))  # the dry run keys it the same way
    assert [k for _, k in stages] == [other["pipelines"]["SFT(Mem+Ctx)"]["injection"]["key"], sft["key"]]


def test_a_data_seed_equal_to_the_seed_is_the_same_run():
    """`data_seed=S seed=S` trains and evaluates what `seed=S` does: every stage key is the same, so the
    stages are shared through the cache, and `data_seed=S` with another seed keys other training stages."""
    from atomic_comp import pipeline as pl

    def keys(*overrides: str) -> list[str]:
        (_, stages), = pl.plan(composed(*SMALL, "pipeline=sft_mem_ctx__rl_comp", *overrides))
        return [k for _, k in stages]

    same = keys("seed=2")
    assert keys("seed=2", "data_seed=2") == same
    other = keys("seed=3", "data_seed=2")
    assert len(other) == len(same) and not set(other) & set(same)


def test_two_process_data_parallel_matches_one_process(tmp_path):
    """Two CPU processes (gloo) through the same code, global batch 8 = 2 x 4: the same loss curve as one
    process with batch 8, within 1e-4 relative (only the order of floating-point sums differs)."""
    common = ["pipeline=sft_comp", "stage.sft.max_steps=6", "stage.sft.logging_steps=1", "logger=none"]
    env = dict(os.environ, ATOMIC_COMP_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    one = subprocess.run([sys.executable, "launch.py", *SMALL, *common, "stage.sft.batch_size=8",
                          f"hydra.run.dir={tmp_path / 'one'}"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "launch.py", *SMALL,
                          *common, "stage.sft.batch_size=4", f"hydra.run.dir={tmp_path / 'two'}"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]

    def curve(out):
        res = results(out)
        stage = res["pipelines"]["SFT(Comp)"]["stages"][0]
        metrics = json.loads((Path(stage["path"]).parent / "metrics.json").read_text())
        return res["world_size"], [h["loss"] for h in metrics["log_history"] if "loss" in h]

    (n1, a), (n2, b) = curve(tmp_path / "one"), curve(tmp_path / "two")
    assert (n1, n2) == (1, 2) and len(a) == len(b) == 6
    assert b == pytest.approx(a, rel=1e-4)
    assert a[-1] < a[0]


def _suite_by_pipeline(env: dict, out: Path) -> dict:
    """Run bench/suite_by_pipeline.sh into `out`; the assembled seed-1 suite's pipelines."""
    done = subprocess.run(["bash", "bench/suite_by_pipeline.sh"], cwd=ROOT, env=dict(env, OUT_DIR=str(out)),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0 and "FAILED" not in done.stdout, done.stdout + done.stderr
    (suite,) = (out / "suite").glob("*seed=1/results.json")
    return json.loads(suite.read_text())["pipelines"]


def test_suite_by_pipeline_runs_each_stage_once_and_assembles_the_suite(tmp_path):
    """bench/suite_by_pipeline.sh: pipelines as concurrent processes, then the suite and report from the cache."""
    env = dict(os.environ, EXP="smoke", SEEDS="1", JOBS="3", PY=sys.executable, CACHE=str(tmp_path / "cache"),
               WANDB_MODE="offline")
    assembled = _suite_by_pipeline(env, tmp_path / "out")
    assert len(assembled) == 7
    for name, rec in assembled.items():
        assert all(stage["cached"] for stage in rec["stages"]), name  # nothing trained twice
    trained = []  # (key) of every stage a pipeline process trained rather than found in the cache
    for run in (tmp_path / "out" / "pipelines" / "seed_1").glob("*/results.json"):
        for name, rec in json.loads(run.read_text())["pipelines"].items():
            assert [s["key"] for s in rec["stages"]] == [s["key"] for s in assembled[name]["stages"]]
            assert rec["eval"] == assembled[name]["eval"]
            trained += [s["key"] for s in rec["stages"] if not s["cached"]]
    assert sorted(trained) == sorted({s["key"] for rec in assembled.values() for s in rec["stages"]})
    assert "SFT(Mem+Ctx)->RL(Comp)" in (tmp_path / "out" / "suite" / "report.md").read_text()

    # PIPELINES: part of the suite, the assembling sweep held to the same members; all from the cache now
    part = _suite_by_pipeline(dict(env, PIPELINES="sft_comp sft_comp__rl_comp"), tmp_path / "part")
    assert set(part) == {"SFT(Comp)", "SFT(Comp)->RL(Comp)"}
    assert all(part[name]["eval"] == assembled[name]["eval"] for name in part)
    assert sorted(p.name for p in (tmp_path / "part" / "pipelines" / "seed_1").iterdir()) == [
        "sft_comp", "sft_comp__rl_comp"]


def test_a_job_that_fails_mid_work_leaves_its_traceback_in_launch_log(tmp_path):
    """Past validation, a failure (here: a released-data folder without its files) is written into the job's
    own log, where a SLURM job's failure is looked for."""
    (tmp_path / "released").mkdir()
    run = launch(["pipeline=sft_mem_ctx", f"recipe.released_dir={tmp_path / 'released'}"], tmp_path / "cache",
                 tmp_path / "out")
    assert run.returncode != 0
    log = (tmp_path / "out" / "launch.log").read_text()
    assert "the job failed" in log and "Traceback" in log and "no train_sft.json or train_sft.jsonl" in log
    assert not (tmp_path / "out" / "results.json").exists()


def test_forced_hops_evaluate_from_the_cache_and_reach_results_report_and_summary(two_pipelines):
    _, _, root = two_pipelines
    out = root / "forced"
    from atomic_comp.evaluate import WRONG_OUTCOMES

    res = launch(["pipeline=sft_mem_ctx", "eval.forced_hops=true", "eval.counterfactual_hops=true",
                  "eval.paragraphless_hops=true", "eval.unrivalled_hops=true"], root / "cache", out)
    assert res.returncode == 0, res.stderr[-3000:]
    rec = results(out)["pipelines"]["SFT(Mem+Ctx)"]
    assert rec["stages"][0]["cached"] is True
    forced = rec["eval"]["SFT(Mem+Ctx)"]["forced_hops"]
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    rows = [json.loads(line) for line in (out / "forced_hops.jsonl").read_text().splitlines()]
    # one row per hop of every evaluated item, and the cells count exactly those rows
    assert len(rows) == sum(p["hops"] for p in preds)
    assert sum(c["n"] for levels in forced.values() for cells in levels.values() for c in cells.values()) == len(rows)
    assert {r["relation_level"] for r in rows if r["level"] == "zero_shot"} >= {"held_out"}
    assert all(r["pipeline"] == "SFT(Mem+Ctx)" and r["outcome"] in ("right", *WRONG_OUTCOMES) for r in rows)
    assert "Teacher-forced zero-shot hops" in res.stdout + res.stderr
    # the writing half: every prediction says whether its chain wrote each relation phrase, and the metric
    # counts exactly those
    written = rec["eval"]["SFT(Mem+Ctx)"]["relations_written"]
    for task in ("mem", "ctx"):
        flags = [p["relations_written"] for p in preds if p["task"] == task and p["level"] == "zero_shot"]
        assert None not in flags and written[task]["zero_shot"] == {"em": sum(flags) / len(flags), "n": len(flags)}
    assert "Zero-shot chains that write every hop's relation phrase" in res.stdout + res.stderr
    from atomic_comp.report import collect, jobs_of, markdown, rows as table_rows

    sweep = root / "forced_sweep"
    shutil.copytree(out, sweep / "seed=1")
    values, missing, _ = collect(jobs_of(sweep))
    text = markdown(table_rows(values, missing), values)
    assert "## Teacher-forced hops" in text and "zero_shot:contextual/held_out" in text
    for task, cells in rec["eval"]["SFT(Mem+Ctx)"]["zero_shot_by_relation"].items():
        for rel, c in cells.items():  # one seed: the mean is that seed's cell
            row = rf"\| SFT\(Mem\+Ctx\) \| [^|]+ \| {task} \| {rel} \| {100 * c['em']:.1f} ± 0.0 \| 1 \|"
            assert re.search(row, text), row
    # the counterfactual hops: one row per contextual hop it could change, all of them contextual, counted by
    # its cells, in the summary and in the report
    from atomic_comp.evaluate import COUNTERFACTUAL_OUTCOMES

    changed = [json.loads(line) for line in (out / "counterfactual_hops.jsonl").read_text().splitlines()]
    cells = rec["eval"]["SFT(Mem+Ctx)"]["counterfactual_hops"]
    assert changed and {r["group"] for r in changed} == {"contextual"}
    assert all(r["outcome"] in COUNTERFACTUAL_OUTCOMES and r["context_object"] != r["object"] for r in changed)
    assert sum(c["n"] for levels in cells.values() for cs in levels.values() for c in cs.values()) == len(changed)
    assert "fact changed in the context" in res.stdout + res.stderr
    assert "## Counterfactual contextual hops" in text
    # the hops forced twice, as is and with the context changed: the paragraphless hops (without the found
    # person's paragraph) and the unrivalled hops (without other people's sentences of the hop's relation)
    from atomic_comp.evaluate import PARAGRAPHLESS_OUTCOMES, UNRIVALLED_OUTCOMES

    for name, outcomes, kept, printed, section in [
            ("paragraphless_hops", PARAGRAPHLESS_OUTCOMES, "output_with_paragraph",
             "without the paragraph of the person they find", "Contextual hops without the found person's paragraph"),
            ("unrivalled_hops", UNRIVALLED_OUTCOMES, "output_with_rivals",
             "without other people's sentences of their relation", "Contextual hops without their rivals")]:
        twice = [json.loads(line) for line in (out / f"{name}.jsonl").read_text().splitlines()]
        twice_cells = rec["eval"]["SFT(Mem+Ctx)"][name]
        assert twice and {r["group"] for r in twice} == {"contextual"} and {r["task"] for r in twice} >= {"ctx"}
        assert all(r["outcome"] in outcomes and kept in r for r in twice)
        assert sum(c["n"] for levels in twice_cells.values() for cs in levels.values() for c in cs.values()) == len(twice)
        assert printed in res.stdout + res.stderr and f"## {section}" in text
    (cell,) = [v for (p, _, metric, task, level, _), v in values.items()
               if (p, metric, task, level) == ("SFT(Mem+Ctx)", "relations_written", "mem", "zero_shot")]
    assert list(cell.values()) == [written["mem"]["zero_shot"]["em"]]


def test_a_local_pretrained_checkpoint_runs_every_stage_and_keys_them_by_its_content(tmp_path):
    """`model.pretrained=/local/path`, the cluster's route, in miniature: a Qwen2 checkpoint with its own
    byte-level BPE tokenizer goes through the injection, SFT and GRPO stages and the evaluation; every stage
    stays a Qwen2 model with that tokenizer, and the stage keys follow the checkpoint's bytes, not its path
    alone, so a checkpoint overwritten in place is not served from the cache."""
    from types import SimpleNamespace

    from transformers import AutoConfig, AutoTokenizer

    from atomic_comp.config import ModelConfig
    from atomic_comp.pipeline import base_key

    from .conftest import save_tiny_qwen

    qwen = tmp_path / "qwen"
    texts = ["Who is the boss of the spouse of Dalton Ibarra? So, the answer is: Justin Cain.",
             "Lena Ortiz's email address is lena.ortiz7@mail.com. Her phone number is 5550192834."]
    save_tiny_qwen(qwen, texts)
    args = ["model=qwen2.5-0.5b", f"model.pretrained={qwen}", "model.dtype=float32", "pipeline=sft_mem_ctx__rl_comp",
            "logger=none"]
    run = launch(args, tmp_path / "cache", tmp_path / "out")
    assert run.returncode == 0, run.stderr[-3000:]
    rec = results(tmp_path / "out")["pipelines"]["SFT(Mem+Ctx)->RL(Comp)"]
    stages = [rec["injection"], *rec["stages"]]
    assert [s["name"] for s in stages] == ["Inject(Bios)", "SFT(Mem+Ctx)", "RL(Comp)"]
    for stage in ("SFT(Mem+Ctx)", "RL(Comp)"):
        assert {lv: c["n"] for lv, c in rec["eval"][stage]["comp"].items()} == {
            "iid": 3, "composition": 3, "zero_shot": 3}
    source = AutoTokenizer.from_pretrained(str(qwen)).get_vocab()
    for s in stages:
        ckpt = s["path"]
        assert AutoConfig.from_pretrained(str(ckpt)).model_type == "qwen2"
        assert AutoTokenizer.from_pretrained(str(ckpt)).get_vocab() == source

    def key() -> str:
        return base_key(SimpleNamespace(model=ModelConfig(name="qwen2.5-0.5b", pretrained=str(qwen))), "data")

    before = key()
    assert key() == before
    save_tiny_qwen(qwen, texts, seed=1)  # other weights, same path
    assert key() != before


def test_a_pinned_hub_revision_loads_that_snapshot_and_names_it_in_the_key(tmp_path, monkeypatch):
    """`model.revision`: the base model is the snapshot of that commit or branch, resolved by huggingface_hub
    (here from a Hugging Face cache laid out as the Hub fills it, offline, as a cluster node with the weights
    already fetched sees it), and the base key (so every stage key) names the revision."""
    from types import SimpleNamespace

    import huggingface_hub.constants as hub
    from transformers import AutoConfig

    from atomic_comp.config import ModelConfig
    from atomic_comp.pipeline import base_key, base_model

    from .conftest import save_tiny_qwen

    repo = tmp_path / "hub" / "models--org--tiny-qwen"
    commits = {"main": "a" * 40, "v1": "b" * 40}
    for seed, (ref, sha) in enumerate(commits.items()):
        save_tiny_qwen(repo / "snapshots" / sha, ["Lena Ortiz's boss is Justin Cain."], seed=seed)
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(sha)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)

    def cfg(revision):
        return SimpleNamespace(model=ModelConfig(name="qwen2.5-0.5b", pretrained="org/tiny-qwen", revision=revision))

    data = SimpleNamespace(key="data")
    for revision, sha in [("main", commits["main"]), ("v1", commits["v1"]), (commits["v1"], commits["v1"])]:
        path, key, built = base_model(cfg(revision), data, tmp_path / "models")
        assert Path(path) == repo / "snapshots" / sha and not built
        assert key == base_key(cfg(revision), "data")
        assert AutoConfig.from_pretrained(path).model_type == "qwen2"
    keys = {base_key(cfg(r), "data") for r in (None, "main", "v1", commits["v1"])}
    assert len(keys) == 4  # unpinned, each ref and the commit: their own entries
    assert base_model(cfg(None), data, tmp_path / "models")[0] == "org/tiny-qwen"  # unpinned: the name, as before


def test_a_phase_without_steps_is_repeated_so_that_it_does_not_look_hung():
    """The heartbeat repeats the last report, marked with how long it has stood, and stops when closed."""
    from atomic_comp.job import Heartbeat, progress_line

    seen: list[dict] = []
    beat = Heartbeat(seen.append, every=0.1)
    beat({"status": "building data"})
    deadline = time.time() + 10
    while len(seen) < 3 and time.time() < deadline:
        time.sleep(0.05)
    beat.close()
    assert seen[0] == {"status": "building data"} and len(seen) >= 3
    assert all(s["status"] == "building data" and s["quiet"] >= 0 for s in seen[1:])
    assert "building data (still at it, 0:" in progress_line(dict(seen[-1], elapsed=3), [])
    time.sleep(0.5)
    n = len(seen)
    time.sleep(0.5)
    assert len(seen) == n  # closed: nothing more
    beat({"status": "done"})  # a report after close is still passed on, once
    assert seen[-1] == {"status": "done"}
