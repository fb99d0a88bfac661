"""Every sweep composes, validates and dry-runs; the report aggregates over seeds and lists missing jobs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from atomic_comp import cache
from atomic_comp.plan import dry_run, main as plan_main
from atomic_comp.report import report
from atomic_comp.status import job_states

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = sorted(p.stem for p in (ROOT / "sweeps").glob("*.yaml"))
EXPECTED_JOBS = {"table7": 13, "comp_proportion": 10, "atomic_necessity": 4, "strategies": 3,
                 "sample_efficiency": 6, "few_shot": 8, "passk": 4, "model_scaling": 6}


def test_every_figure_has_a_sweep():
    assert set(SWEEPS) == set(EXPECTED_JOBS)


@pytest.mark.parametrize("name", SWEEPS)
def test_each_sweep_dry_runs(name):
    plan = dry_run([f"sweep={name}"])
    assert len(plan["jobs"]) == EXPECTED_JOBS[name]
    assert plan["stages"] <= plan["stage_uses"]
    with_seeds = dry_run([f"sweep={name}", "seed=1,2,3"])
    assert len(with_seeds["jobs"]) == 3 * EXPECTED_JOBS[name]


def test_a_plain_seed_sweep_dry_runs_without_a_preset():
    # `python launch.py -m seed=1,2,3` is the 3-seed route; its dry run has no sweep= file
    plan = dry_run(["seed=1,2,3"])
    assert plan["jobs"] == [["seed=1"], ["seed=2"], ["seed=3"]]
    assert len(plan["matrix"]) == 3 * 7  # the headline suite's seven pipelines per seed
    inject = [uses for uses in plan["shared"].values() if {n for _, _, n in uses} == {"Inject(Bios)"}]
    assert inject == []  # each seed injects its own world; nothing is shared across seeds


def test_a_proportion_sweep_shares_its_atomic_base():
    plan = dry_run(["sweep=comp_proportion"])
    shared = [uses for uses in plan["shared"].values() if {n for _, _, n in uses} == {"SFT(Mem+Ctx)"}]
    assert len(shared) == 1 and len({j for j, _, _ in shared[0]}) == 5
    # every job also starts from the one knowledge-injection stage
    (inject,) = [uses for uses in plan["shared"].values() if {n for _, _, n in uses} == {"Inject(Bios)"}]
    assert len({j for j, _, _ in inject}) == len(plan["jobs"])
    assert plan["stages"] == plan["stage_uses"] - 4 - (len(inject) - 1)


def _write_results(d: Path, seed: int, ems: dict[str, float], recall=False) -> None:
    """A launch's results.json: each pipeline's stages (from its name) with `em` at every Comp level and, when
    asked, a recall of `em` on I.I.D. relations and half of it on held-out ones."""
    pipelines = {}
    for pipeline, em in ems.items():
        stages = pipeline.split("->")
        cells = {"comp": {lv: {"em": em, "n": 10} for lv in ("iid", "composition", "zero_shot")}}
        if recall:
            cells["recall"] = {"iid": {"em": em, "n": 10}, "held_out": {"em": em / 2, "n": 10}}
        pipelines[pipeline] = {"stages": [{"name": s, "kind": s.split("(")[0].lower()} for s in stages],
                               "eval": {s: cells for s in stages}}
    (d / "results.json").write_text(json.dumps({"seed": seed, "pipelines": pipelines}))


def _fake_job(sweep: Path, seed: int, em: float, done=True, extra=()) -> dict:
    d = sweep / ",".join(["pipeline=sft_comp", f"seed={seed}", *extra])
    d.mkdir(parents=True)
    if done:
        _write_results(d, seed, {"SFT(Comp)": em}, recall=True)
    return {"job_id": None, "dir": str(d), "overrides": ["pipeline=sft_comp", f"seed={seed}", *extra]}


def test_report_means_stds_and_missing_jobs(tmp_path):
    jobs = [_fake_job(tmp_path, 1, 0.5), _fake_job(tmp_path, 2, 0.7), _fake_job(tmp_path, 3, 0.0, done=False)]
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    report(tmp_path)
    rows = list(csv.DictReader((tmp_path / "report.csv").open()))
    iid = [r for r in rows if r["task"] == "comp" and r["level"] == "iid"]
    assert len(iid) == 1
    assert float(iid[0]["mean"]) == pytest.approx(0.6) and float(iid[0]["std"]) == pytest.approx(0.1414, abs=1e-3)
    assert iid[0]["n_seeds"] == "2"
    missing = [r for r in rows if r["status"] == "missing"]
    assert len(missing) == 1 and missing[0]["seeds"] == "3"
    md = (tmp_path / "report.md").read_text()
    assert "60.0 ± 14.1" in md and "Failed or missing" in md
    row = next(line for line in md.splitlines() if line.startswith("| SFT(Comp) | default | 60.0"))
    assert row.endswith("| 90.0 | n/a | 18.0 |")  # the paper's Table 7 cells beside ours
    # the same em at every level: the paradox gap is 0 on the seed means, so claim (a) fails
    assert "(a) Zero-shot   SFT(Comp) I.I.D. - zero-shot >= 40: margin 0.0, needs 40 -> does NOT hold" in md
    assert "| SFT(Comp) | default | 60.0 ± 14.1 | - | 30.0 ± 7.1 | 2 |" in md  # recall: iid, held_out
    assert (tmp_path / "levels.png").stat().st_size > 1000
    states = {Path(s["dir"]).name: s["state"] for s in job_states(tmp_path)}
    assert states["pipeline=sft_comp,seed=1"] == "done"
    assert states["pipeline=sft_comp,seed=3"] in ("unknown", "failed")


def test_report_groups_seeds_by_what_they_studied_not_where_they_ran(tmp_path):
    # bench/suite_by_pipeline.sh and a sweep by hand differ in cache_dir, threads and logger: still one setting
    jobs = [_fake_job(tmp_path, 1, 0.5, extra=("cache_dir=/a", "threads=1", "logger=none")),
            _fake_job(tmp_path, 2, 0.7, extra=("cache_dir=/b",)),
            _fake_job(tmp_path, 3, 0.1, extra=("recipe.copy_drills=10",))]
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    report(tmp_path)
    iid = {r["setting"]: r for r in csv.DictReader((tmp_path / "report.csv").open())
           if r["task"] == "comp" and r["level"] == "iid"}
    assert set(iid) == {"default", "recipe.copy_drills=10"}
    assert iid["default"]["n_seeds"] == "2" and float(iid["default"]["mean"]) == pytest.approx(0.6)
    assert iid["recipe.copy_drills=10"]["seeds"] == "3"


def test_report_over_several_sweeps_counts_each_seed_once(tmp_path):
    """Seeds run in separate sweeps (separate calls or machines) aggregate into one report; a seed with
    results in two sweeps is refused, not silently weighed twice or picked."""
    import subprocess
    import sys

    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "out"
    a.mkdir()
    (a / "jobs.json").write_text(json.dumps([_fake_job(a, 1, 0.5), _fake_job(a, 2, 0.7)]))
    b.mkdir()
    (b / "jobs.json").write_text(json.dumps([_fake_job(b, 3, 0.0), _fake_job(b, 4, 0.2, done=False)]))
    report([a, b], out)
    rows = list(csv.DictReader((out / "report.csv").open()))
    (iid,) = [r for r in rows if r["task"] == "comp" and r["level"] == "iid"]
    assert iid["seeds"] == "1 2 3" and float(iid["mean"]) == pytest.approx(0.4)
    assert [r["seeds"] for r in rows if r["status"] == "missing"] == ["4"]
    assert not (a / "report.csv").exists() and (out / "levels.png").is_file()
    with pytest.raises(ValueError, match="several sweep folders need an output folder"):
        report([a, b])

    rerun = tmp_path / "rerun"
    rerun.mkdir()
    (rerun / "jobs.json").write_text(json.dumps([_fake_job(rerun, 2, 0.1)]))
    with pytest.raises(ValueError, match=r"SFT\(Comp\) \[default\] seed 2 has results in both"):
        report([a, rerun], tmp_path / "out2")
    assert not (tmp_path / "out2").exists()  # refused before anything is written
    cli = subprocess.run([sys.executable, "-m", "atomic_comp.report", str(a), str(rerun), "--out", str(tmp_path / "o3")],
                         cwd=ROOT, capture_output=True, text=True)
    assert cli.returncode == 2 and "seed 2 has results in both" in cli.stderr
    cli = subprocess.run([sys.executable, "-m", "atomic_comp.report", str(a), str(b)], cwd=ROOT,
                         capture_output=True, text=True)
    assert cli.returncode == 2 and "need an output folder (--out DIR)" in cli.stderr


def _run_folder(d: Path, seed: int, ems: dict[str, float], members: str, recipe=("experiment=cpu_long",),
                config: str | None = None) -> Path:
    """A `python launch.py pipeline.members=[...] hydra.run.dir=d` run's folder: results.json, overrides and,
    when given, the composed config."""
    (d / ".hydra").mkdir(parents=True)
    if config is not None:
        (d / ".hydra" / "config.yaml").write_text(config)
    _write_results(d, seed, ems)
    (d / ".hydra" / "overrides.yaml").write_text(
        "".join(f"- {o}\n" for o in [*recipe, f"seed={seed}", "pipeline=headline", f"pipeline.members={members}"]))
    return d


def test_report_joins_a_seeds_pipelines_run_in_separate_single_run_folders(tmp_path):
    """`python launch.py pipeline.members=[...] hydra.run.dir=DIR` per part of the suite: each folder is a
    sweep of one job, and the parts of one seed are one setting, not one per members list."""
    runs = [_run_folder(tmp_path / f"s{seed}_b", seed, {"SFT(Comp)": 0.5 + seed / 10}, "[sft_comp]")
            for seed in (1, 2)]
    runs += [_run_folder(tmp_path / f"s{seed}_c", seed, {"SFT(Mem)->RL(Comp)": seed / 10}, "[sft_mem__rl_comp]")
             for seed in (1, 2)]
    out = tmp_path / "out"
    report(runs, out)
    iid = {r["pipeline"]: r for r in csv.DictReader((out / "report.csv").open())
           if r["metric"] == "em" and r["task"] == "comp" and r["level"] == "iid"}
    assert {r["setting"] for r in iid.values()} == {"experiment=cpu_long"}
    assert iid["SFT(Comp)"]["seeds"] == "1 2" and float(iid["SFT(Comp)"]["mean"]) == pytest.approx(0.65)
    assert iid["SFT(Mem)->RL(Comp)"]["seeds"] == "1 2" and float(iid["SFT(Mem)->RL(Comp)"]["mean"]) == pytest.approx(0.15)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ValueError, match="nothing holds no jobs"):
        report([runs[0], tmp_path / "nothing"], tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


def test_report_knows_a_preset_and_its_overrides_spelled_out_for_one_setting(tmp_path):
    """A setting is what the job composed, not how its command was typed: `experiment=cpu_reader_6k` and the
    preset's overrides given one by one are one setting (labelled by the shorter text); the same text
    composing two configs (defaults changed between runs) is two settings, told apart."""
    from omegaconf import OmegaConf

    from atomic_comp.config import compose_config

    preset = ["experiment=cpu_reader_6k"]
    spelled = ["experiment=cpu_reader", "recipe.context.scattered_facts=0.25", "stage.read.max_steps=6000",
               "stage.rl.max_steps=600", "stage.rl.save_steps=200"]
    config = {tuple(r): OmegaConf.to_yaml(compose_config([*r, "seed=1"])) for r in (preset, spelled)}
    assert config[tuple(preset)] == config[tuple(spelled)]
    runs = [_run_folder(tmp_path / "s1", 1, {"SFT(Comp)": 0.5}, "[sft_comp]", preset, config[tuple(preset)]),
            _run_folder(tmp_path / "s2", 2, {"SFT(Comp)": 0.7}, "[sft_comp]", spelled,
                        config[tuple(spelled)].replace("seed: 1", "seed: 2", 1))]
    report(runs, tmp_path / "out")
    iid = [r for r in csv.DictReader((tmp_path / "out" / "report.csv").open())
           if r["metric"] == "em" and r["task"] == "comp" and r["level"] == "iid"]
    assert [(r["setting"], r["seeds"]) for r in iid] == [("experiment=cpu_reader_6k", "1 2")]

    changed = config[tuple(preset)].replace("max_steps: 6000", "max_steps: 3000")
    assert changed != config[tuple(preset)]
    runs.append(_run_folder(tmp_path / "s3", 3, {"SFT(Comp)": 0.1}, "[sft_comp]", preset, changed))
    report(runs, tmp_path / "out3")
    iid = {r["seeds"]: r["setting"] for r in csv.DictReader((tmp_path / "out3" / "report.csv").open())
           if r["metric"] == "em" and r["task"] == "comp" and r["level"] == "iid"}
    assert set(iid) == {"1 2", "3"} and iid["1 2"] != iid["3"]
    assert all(label.startswith("experiment=cpu_reader_6k [config ") for label in iid.values())


def test_kept_jobs_make_the_same_report_after_the_run_folders_are_gone(tmp_path):
    """`--keep DIR`: what the report reads of each finished job outlives the run folders; the kept folder is a
    sweep that reports as the runs did, and a clash is refused before anything is written."""
    import shutil

    runs = [_run_folder(tmp_path / "runs" / f"s{s}", s, {"SFT(Comp)": 0.4 + s / 10}, "[sft_comp]",
                        config=f"seed: {s}\nrecipe:\n  hops: 2\n") for s in (1, 2)]
    sweep = tmp_path / "runs" / "sweep"
    sweep.mkdir()
    (sweep / "jobs.json").write_text(json.dumps([_fake_job(sweep, 3, 0.9), _fake_job(sweep, 4, 0.0, done=False)]))
    kept = tmp_path / "kept"
    report([*runs, sweep], tmp_path / "out", keep_into=kept)
    assert sorted(p.name for p in kept.iterdir()) == ["s1", "s2", "sweep_pipeline=sft_comp,seed=3"]
    assert (kept / "s1" / ".hydra" / "config.yaml").read_text() == "seed: 1\nrecipe:\n  hops: 2\n"
    shutil.rmtree(tmp_path / "runs")
    report(kept, tmp_path / "again")

    def finished(out):  # report.csv less the unfinished job (not kept) and where each job lay
        return [{k: v for k, v in r.items() if k != "dir"} for r in csv.DictReader((out / "report.csv").open())
                if r["status"] != "missing"]
    assert finished(tmp_path / "again") == finished(tmp_path / "out")
    ems = {r["seeds"]: float(r["mean"]) for r in finished(tmp_path / "again")
           if r["metric"] == "em" and r["task"] == "comp" and r["level"] == "iid"}
    assert ems == {"1 2": pytest.approx(0.55), "3": pytest.approx(0.9)}  # two settings: the sweep had no config

    other = _run_folder(tmp_path / "other" / "s1", 1, {"SFT(Comp)": 0.1}, "[sft_comp]")
    with pytest.raises(ValueError, match="already holds other results"):
        report(other, keep_into=kept)
    assert not (other / "report.md").exists()  # refused before the report is written
    assert json.loads((kept / "s1" / "results.json").read_text())["pipelines"]["SFT(Comp)"]["eval"]["SFT(Comp)"][
        "comp"]["iid"]["em"] == pytest.approx(0.5)


def test_report_checks_each_claim_on_the_seeds_its_pipelines_share(tmp_path):
    # the atomic route on seeds 1-3, SFT(Mem)->RL(Comp) on seed 1 only: (c) compares seed 1 with seed 1
    atomic = {1: 0.5, 2: 0.1, 3: 0.0}
    runs = [_run_folder(tmp_path / f"s{s}", s, {"SFT(Mem+Ctx)->RL(Comp)": em}, "[sft_mem_ctx__rl_comp]")
            for s, em in atomic.items()]
    runs.append(_run_folder(tmp_path / "s1_c", 1, {"SFT(Mem)->RL(Comp)": 0.3}, "[sft_mem__rl_comp]"))
    report(runs, tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    # seed 1: 50 - 30 = 20 holds; on the atomic route's 3-seed mean (20) it would be -10
    assert ("(c) Zero-shot   SFT(Mem)->RL(Comp) <= SFT(Mem+Ctx)->RL(Comp) - 15: margin 20.0, needs 15 -> holds "
            "(seeds 1)") in md
    assert "zero-shot >= 60: value 20.0, needs 60 -> does NOT hold (seeds 1 2 3)" in md


def test_a_dry_run_counts_the_stages_the_cache_already_holds(tmp_path):
    overrides = [f"cache_dir={tmp_path}", "pipeline=sft_mem_ctx__rl_comp"]
    before = dry_run(overrides)
    assert before["cached"] == 0 and before["stages"] == 3  # Inject(Bios), SFT(Mem+Ctx), RL(Comp)
    (_, _, _, stages), = before["matrix"]
    cache.publish(tmp_path / "stages", stages[0][1], lambda work: (work / "model").mkdir())  # the injection, built
    cache.work_dir(tmp_path / "stages", stages[1][1]).mkdir()  # an SFT build under way is not in the cache yet
    after = dry_run(overrides)
    assert after["cached"] == 1 and after["stages"] == 3


def test_plan_takes_a_launch_command_as_typed_and_explains_itself(capsys):
    plan_main(["seed=1,2"])
    plain = capsys.readouterr().out
    assert plain.startswith("2 jobs") and "seed=2" in plain
    plan_main(["-m", "seed=1,2"])  # launch.py's sweep flag is accepted, not parsed as an override
    assert capsys.readouterr().out == plain
    plan_main(["--help"])
    assert "dry run" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="cannot parse the overrides"):
        plan_main(["seed=1,,2=="])
