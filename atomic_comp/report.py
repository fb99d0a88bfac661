"""`python -m atomic_comp.report SWEEP_DIR [MORE_SWEEP_DIRS ... --out DIR]`: every job's results.json,
aggregated over seeds (over several sweeps too, e.g. seeds run in separate calls or on separate machines).

Writes into SWEEP_DIR (or --out):
- report.csv: one row per pipeline x setting x task x level (the last stage), with mean, std, n seeds;
  RL stages also get an `rl_gain` row (last stage minus the one before); failed or missing jobs get
  a row with status `missing`;
- report.md: the tables, paper style;
- levels.png (bars per level), comp_proportion.png (when the sweep varies recipe.comp_proportion),
  passk.png (when jobs ran pass@k).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import statistics
from collections import defaultdict
from pathlib import Path

from atomic_comp import cache
from atomic_comp.config import LEVEL_KEYS
from atomic_comp.paper import LEVEL_NAMES, LEVELS, PAPER_TABLE7, claims, claims_text
from atomic_comp.status import sweep_jobs

# Override keys that say where or how a job ran, not what it studied: jobs differing only in these are one setting
# (pipeline.members only picks which of a suite's pipelines a job ran; each pipeline is its own row).
NOT_A_SETTING = ("seed", "pipeline", "pipeline.members", "hydra/launcher", "cache_dir", "output_dir", "threads",
                 "logger")
# the same keys at the top of a job's composed config (.hydra/config.yaml), plus the sweep's name
CONFIG_NOT_A_SETTING = {k.split(".")[0].split("/")[0] for k in NOT_A_SETTING} | {"sweep_name"}
FIELDS = ["status", "pipeline", "setting", "metric", "task", "level", "stage", "mean", "std", "n_seeds", "seeds", "dir"]
# the hop diagnostics of evaluate.py, by metric name: (section title, what the number is, its column)
HOP_DIAGNOSTICS = {
    "forced_hop": ("Teacher-forced hops", "Hop accuracy with the gold chain forced up to the hop's object",
                   "forced hop"),
    "counterfactual_hop": ("Counterfactual contextual hops", "Share of contextual hops, forced as above with the "
                           "hop's fact changed in the context, that write the context's object (read) rather "
                           "than the world's (recalled)", "reads the context"),
    "paragraphless_hop": ("Contextual hops without the found person's paragraph", "Share of contextual hops whose "
                          "object has a paragraph of the context, forced as above with that paragraph left out, "
                          "that still find the object", "finds it without"),
    "unrivalled_hop": ("Contextual hops without their rivals", "Share of contextual hops, forced as above with the "
                       "context's sentences of the hop's relation about other people left out, that find the "
                       "object", "finds it unrivalled"),
}


def _setting(overrides: list[str]) -> str:
    """What distinguishes a job besides its seed and pipeline, in words: the rest of its overrides."""
    keep = [o for o in overrides if not o.split("=", 1)[0].lstrip("+~") in NOT_A_SETTING
            and not o.startswith("hydra.")]
    return ",".join(sorted(keep)) or "default"


def _studied(job: dict, text: str) -> str:
    """What a job studied, as its composed config less where and how it ran; its overrides' `text` when the
    job folder holds no config (a job that never started). A preset and the preset's overrides spelled
    out compose the same config, so they are one setting."""
    from omegaconf import OmegaConf

    path = Path(job["dir"]) / ".hydra" / "config.yaml"
    if not path.is_file():
        return "overrides:" + text
    cfg = OmegaConf.to_container(OmegaConf.load(path))
    return json.dumps({k: v for k, v in cfg.items() if k not in CONFIG_NOT_A_SETTING}, sort_keys=True)


def settings(jobs: list[dict]) -> dict[str, str]:
    """Each job folder's setting label: the shortest overrides text among the jobs that studied the same
    config; two configs given the same text (defaults changed between runs) are told apart by a hash."""
    texts = {job["dir"]: _setting(job.get("overrides", [])) for job in jobs}
    studied = {job["dir"]: _studied(job, texts[job["dir"]]) for job in jobs}
    label: dict[str, str] = {}
    for d in sorted(texts, key=lambda d: (len(texts[d]), texts[d])):
        label.setdefault(studied[d], texts[d])
    configs_by_label = defaultdict(set)
    for key, text in label.items():
        if not key.startswith("overrides:"):
            configs_by_label[text].add(key)
    for text, keys in configs_by_label.items():
        if len(keys) > 1:
            for key in keys:
                label[key] = f"{text} [config {cache.stable_hash(key, 8)}]"
    return {d: label[key] for d, key in studied.items()}


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def jobs_of(sweeps: Path | list[Path]) -> dict[Path, list[dict]]:
    """Each sweep folder -> its jobs; refuses a folder with none."""
    found = {}
    for sweep in [sweeps] if isinstance(sweeps, Path) else sweeps:
        found[sweep] = sweep_jobs(sweep)
        if not found[sweep]:
            raise ValueError(f"{sweep} holds no jobs: no jobs.json, no job folders with .hydra/overrides.yaml, "
                             "and it is not a run's folder itself")
    return found


def collect(sweeps: dict[Path, list[dict]]) -> tuple[dict, list[dict], dict]:
    """({(pipeline, setting, metric, task, level, stage): {seed: value}}, missing jobs, pass@k curves), from
    the jobs `jobs_of` listed in the sweep folders."""
    values: dict = defaultdict(dict)
    passk: dict = defaultdict(lambda: defaultdict(list))
    missing = []
    source: dict = {}  # (pipeline, setting, seed) -> the job folder it came from
    jobs = [job for found in sweeps.values() for job in found]
    setting_of = settings(jobs)
    for job in jobs:
        job["setting"] = setting_of[job["dir"]]
        d = Path(job["dir"])
        path = d / "results.json"
        if not path.is_file():
            missing.append(job)
            continue
        res = json.loads(path.read_text())
        setting, seed = job["setting"], res.get("seed")
        for name, rec in res["pipelines"].items():
            # A seed counts once per cell: two runs of it (a rerun in another sweep) would weigh it twice,
            # and keeping either one would be choosing between them.
            first = source.setdefault((name, setting, seed), d)
            if first != d:
                raise ValueError(f"{name} [{setting}] seed {seed} has results in both {first} and {d}; "
                                 "a report counts each seed once: report those sweeps separately")
            stages = [s["name"] for s in rec["stages"]]
            last = stages[-1]
            for task in ("mem", "ctx", "comp"):
                for level, cell in rec["eval"][last].get(task, {}).items():
                    values[(name, setting, "em", task, level, last)][seed] = cell["em"]
                    if rec["stages"][-1]["kind"] == "rl" and len(stages) > 1:
                        before = rec["eval"][stages[-2]].get(task, {}).get(level)
                        if before:
                            values[(name, setting, "rl_gain", task, level, last)][seed] = cell["em"] - before["em"]
            for task, levels in rec["eval"][last].get("relations_written", {}).items():
                for level, cell in levels.items():
                    values[(name, setting, "relations_written", task, level, last)][seed] = cell["em"]
            for level, cell in rec["eval"][last].get("recall", {}).items():
                values[(name, setting, "recall", "parametric", level, last)][seed] = cell["em"]
            for task, relations in rec["eval"][last].get("zero_shot_by_relation", {}).items():
                for relation, cell in relations.items():
                    values[(name, setting, "zero_shot_by_relation", task, relation, last)][seed] = cell["em"]
            for diagnostic in HOP_DIAGNOSTICS:
                for task, levels in rec["eval"][last].get(f"{diagnostic}s", {}).items():
                    for level, cells in levels.items():
                        for cell, c in cells.items():
                            values[(name, setting, diagnostic, task, f"{level}:{cell}", last)][seed] = c["em"]
            for level, curve in rec["eval"][last].get("pass_at_k", {}).items():
                for k, v in curve.items():
                    passk[(name, setting, level)][int(k)].append(v)
    return values, missing, passk


def rows(values: dict, missing: list[dict]) -> list[dict]:
    out = []
    for (pipe, setting, metric, task, level, stage), by_seed in sorted(values.items()):
        mean, std = _mean_std(list(by_seed.values()))
        out.append({"status": "ok", "pipeline": pipe, "setting": setting, "metric": metric, "task": task,
                    "level": level, "stage": stage, "mean": round(mean, 4), "std": round(std, 4),
                    "n_seeds": len(by_seed), "seeds": " ".join(str(s) for s in sorted(by_seed)), "dir": ""})
    for job in missing:
        ov = job.get("overrides", [])
        pipe = next((o.split("=", 1)[1] for o in ov if o.startswith("pipeline=")), "")
        out.append({"status": "missing", "pipeline": pipe, "setting": job["setting"], "metric": "", "task": "",
                    "level": "", "stage": "", "mean": "", "std": "", "n_seeds": 0,
                    "seeds": next((o.split("=", 1)[1] for o in ov if o.startswith("seed=")), ""), "dir": job["dir"]})
    return out


def _mean_std_cell(row: dict | None) -> str:
    return f"{100 * row['mean']:.1f} ± {100 * row['std']:.1f}" if row else "-"


def claims_on_shared_seeds(values: dict, setting: str) -> list[dict]:
    """The claims of one setting, each on the means of the seeds its pipelines share (`seeds`): a pipeline
    run on more seeds than the one it is compared with would bring other draws of the world into a margin."""
    per_seed: dict = defaultdict(dict)  # pipeline -> level -> {seed: points}
    for (pipe, s, metric, task, level, _), by_seed in values.items():
        if s == setting and metric == "em" and task == "comp":
            per_seed[pipe][level] = {seed: 100 * v for seed, v in by_seed.items()}

    def means(pipes, seeds=None) -> dict:
        return {p: {lv: statistics.fmean(v[x] for x in (seeds or v)) for lv, v in per_seed[p].items()} for p in pipes}

    out = []
    for c in claims(means(per_seed)):
        pipes = {c["lhs"], c["rhs"]} - {""}
        seeds = set.intersection(*(set(v) for p in pipes for v in per_seed[p].values()))
        if not seeds:
            continue
        same = (c["claim"], c["level"], c["lhs"], c["rhs"])
        (shared,) = [d for d in claims(means(pipes, seeds)) if (d["claim"], d["level"], d["lhs"], d["rhs"]) == same]
        out.append({**shared, "seeds": sorted(seeds)})
    return out


def markdown(table: list[dict], values: dict) -> str:
    """report.md from the rows of `rows` and the per-seed `values` of `collect` (the claims pair seeds)."""
    lines = ["# Sweep report", "", "Comp exact match of each pipeline's last stage, mean ± std over seeds (points).", ""]
    ok = [r for r in table if r["status"] == "ok" and r["task"] == "comp"]
    for metric, title in (("em", "Exact match"), ("rl_gain", "RL gain over the stage before")):
        cells = {(r["pipeline"], r["setting"], r["level"]): r for r in ok if r["metric"] == metric}
        keys = sorted({(p, s) for p, s, _ in cells})
        if not keys:
            continue
        lines += [f"## {title}", "", "| pipeline | setting | " + " | ".join(LEVEL_NAMES.values()) + " | seeds |",
                  "| --- | --- | " + " | ".join("---:" for _ in LEVELS) + " | ---: |"]
        if metric == "em":
            lines[-2] += " " + " | ".join(f"paper {LEVEL_NAMES[lv]}" for lv in LEVELS) + " |"
            lines[-1] += " " + " | ".join("---:" for _ in LEVELS) + " |"
        for p, s in keys:
            vals = [cells.get((p, s, lv)) for lv in LEVELS]
            txt = [_mean_std_cell(v) for v in vals]
            n = max((v["n_seeds"] for v in vals if v), default=0)
            row = f"| {p} | {s} | " + " | ".join(txt) + f" | {n} |"
            if metric == "em":
                ref = PAPER_TABLE7.get(p, {})
                row += " " + " | ".join("n/a" if ref.get(lv) is None else f"{ref[lv]:.1f}" for lv in LEVELS) + " |"
            lines.append(row)
        lines.append("")
        if metric == "em":
            for s in sorted({s for _, s in keys}):
                checked = claims_on_shared_seeds(values, s)
                if checked:
                    lines += [f"### The study's claims on the seed means ({s})", "", "```", claims_text(checked),
                              "```", ""]
    recall = {(r["pipeline"], r["setting"], r["level"]): r for r in table
              if r["status"] == "ok" and r["metric"] == "recall"}
    if recall:
        lines += ["## Parametric recall", "",
                  "Biography cloze accuracy of each pipeline's last stage, by relation level, mean ± std (points).",
                  "", "| pipeline | setting | " + " | ".join(LEVEL_KEYS) + " | seeds |",
                  "| --- | --- | " + " | ".join("---:" for _ in LEVEL_KEYS) + " | ---: |"]
        for p, s in sorted({(p, s) for p, s, _ in recall}):
            vals = [recall.get((p, s, lv)) for lv in LEVEL_KEYS]
            txt = [_mean_std_cell(v) for v in vals]
            lines.append(f"| {p} | {s} | " + " | ".join(txt) + f" | {max(v['n_seeds'] for v in vals if v)} |")
        lines.append("")
    for diagnostic, (title, says, column) in HOP_DIAGNOSTICS.items():
        found = [r for r in table if r["status"] == "ok" and r["metric"] == diagnostic]
        if found:
            lines += [f"## {title}", "", f"{says} (`eval.{diagnostic}s`), of each pipeline's last stage, mean ± std "
                      "(points).", "",
                      f"| pipeline | setting | task | level: hop group / relation level | {column} | seeds |",
                      "| --- | --- | --- | --- | ---: | ---: |"]
            lines += [f"| {r['pipeline']} | {r['setting']} | {r['task']} | {r['level']} | {_mean_std_cell(r)} | "
                      f"{r['n_seeds']} |" for r in found]
            lines.append("")
    by_relation = [r for r in table if r["status"] == "ok" and r["metric"] == "zero_shot_by_relation"]
    if by_relation:  # each seed holds out its own relations: a row averages only the seeds that held it out
        lines += ["## Zero-shot by held-out relation", "",
                  "Exact match on the zero-shot items whose path uses each held-out relation, of each pipeline's last"
                  " stage, mean ± std (points) over the seeds that held that relation out.", "",
                  "| pipeline | setting | task | held-out relation | exact match | seeds |",
                  "| --- | --- | --- | --- | ---: | ---: |"]
        lines += [f"| {r['pipeline']} | {r['setting']} | {r['task']} | {r['level']} | {_mean_std_cell(r)} | "
                  f"{r['n_seeds']} |" for r in by_relation]
        lines.append("")
    missing = [r for r in table if r["status"] == "missing"]
    if missing:
        lines += ["## Failed or missing jobs", ""] + [f"- `{r['dir']}` ({r['pipeline']}, seed {r['seeds']})"
                                                       for r in missing] + [""]
    return "\n".join(lines)


def plots(sweep: Path, table: list[dict], passk: dict) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    ok = [r for r in table if r["status"] == "ok" and r["task"] == "comp" and r["metric"] == "em"]
    groups = sorted({(r["pipeline"], r["setting"]) for r in ok})
    if groups:
        labels = [p if s == "default" else f"{p}\n{s}" for p, s in groups]
        means = {lab: {r["level"]: 100 * r["mean"] for r in ok if (r["pipeline"], r["setting"]) == g}
                 for lab, g in zip(labels, groups)}
        stds = {lab: {r["level"]: 100 * r["std"] for r in ok if (r["pipeline"], r["setting"]) == g}
                for lab, g in zip(labels, groups)}
        written.append(level_bars(means, sweep / "levels.png", stds))
    prop = [r for r in table if r["status"] == "ok" and r["task"] == "comp" and "recipe.comp_proportion=" in r["setting"]]
    if prop:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, metric, label in ((axes[0], "em", "absolute accuracy"), (axes[1], "rl_gain", "RL gain")):
            for (pipe, lv) in sorted({(r["pipeline"], r["level"]) for r in prop if r["metric"] == metric}):
                pts = sorted((float(r["setting"].split("recipe.comp_proportion=")[1].split(",")[0]), r["mean"])
                             for r in prop if r["metric"] == metric and r["pipeline"] == pipe and r["level"] == lv)
                ax.plot([p for p, _ in pts], [100 * v for _, v in pts], marker="o", label=f"{pipe} {LEVEL_NAMES[lv]}")
            ax.set_xlabel("Comp proportion")
            ax.set_ylabel(f"Comp {label} (points)")
        axes[0].legend(fontsize=6)
        fig.tight_layout()
        written.append(_save(fig, sweep / "comp_proportion.png"))
    if passk:
        fig, ax = plt.subplots(figsize=(6, 4))
        for (pipe, setting, lv), curve in sorted(passk.items()):
            ks = sorted(curve)
            ax.plot(ks, [100 * statistics.fmean(curve[k]) for k in ks], marker=".", label=f"{pipe} {LEVEL_NAMES[lv]}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("k")
        ax.set_ylabel("pass@k (%)")
        ax.legend(fontsize=6)
        fig.tight_layout()
        written.append(_save(fig, sweep / "passk.png"))
    return written


def level_bars(means: dict[str, dict[str, float]], path: Path, stds: dict | None = None) -> Path:
    """Grouped bars of Comp exact match (points) per pipeline and level, with the paper's Table 7 cells
    (where known, for the same pipeline) as black ticks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(means)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(labels)), 4))
    width, labelled = 0.8 / len(LEVELS), False
    for i, lv in enumerate(LEVELS):
        xs = [j + i * width for j in range(len(labels))]
        ax.bar(xs, [means[g].get(lv, 0) for g in labels], width, label=LEVEL_NAMES[lv], capsize=3,
               yerr=[stds[g].get(lv, 0) for g in labels] if stds else None)
        ref = [(x, PAPER_TABLE7.get(g, {}).get(lv)) for x, g in zip(xs, labels)]
        ref = [(x, v) for x, v in ref if v is not None]
        if ref:
            ax.scatter([x for x, _ in ref], [v for _, v in ref], marker="_", s=300, color="black", zorder=3,
                       label=None if labelled else "paper, Table 7")
            labelled = True
    ax.set_xticks([j + width for j in range(len(labels))])
    ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=7)
    ax.set_ylabel("Comp exact match (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out = _save(fig, path)
    plt.close(fig)
    return out


def _save(fig, path: Path) -> Path:
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=120)
    tmp.replace(path)
    return path


def _kept_names(sweeps: dict[Path, list[dict]], into: Path) -> dict[Path, tuple[dict, Path]]:
    """Each finished job's folder -> (the job, its folder under `into`): a run's own folder keeps its name, a
    sweep's job is `<sweep>_<job>`. Refuses two jobs under one name, or a name already kept from other results."""
    names: dict[Path, tuple[dict, Path]] = {}
    taken: set[Path] = set()
    for sweep, jobs in sweeps.items():
        for job in jobs:
            d = Path(job["dir"])
            if not (d / "results.json").is_file():
                continue
            name = d.name if d.resolve() == sweep.resolve() else f"{sweep.resolve().name}_{d.name}"
            target = into / name
            if target in taken:
                raise ValueError(f"--keep: two jobs would be kept as {target}; keep their sweeps into separate folders")
            kept = target / "results.json"
            if kept.is_file() and kept.read_bytes() != (d / "results.json").read_bytes():
                raise ValueError(f"--keep: {target} already holds other results; keep into another folder")
            taken.add(target)
            names[d] = (job, target)
    return names


def _keep(names: dict[Path, tuple[dict, Path]]) -> None:
    """Copy what the report reads of each job (`_kept_names`) into its kept folder, one run folder per job:
    the composed config, the overrides (as jobs.json or the job folder gave them) and results.json, each
    written atomically and results.json last, as a job writes it. The kept folders are a sweep the report reads."""
    from omegaconf import OmegaConf

    for source, (job, target) in names.items():
        if (source / ".hydra" / "config.yaml").is_file():
            cache.write_atomic(target / ".hydra" / "config.yaml", (source / ".hydra" / "config.yaml").read_text())
        cache.write_atomic(target / ".hydra" / "overrides.yaml", OmegaConf.to_yaml(list(job.get("overrides", []))))
        cache.write_atomic(target / "results.json", (source / "results.json").read_text())


def report(sweeps: Path | list[Path], out: Path | None = None, keep_into: Path | None = None) -> list[dict]:
    """Aggregate one sweep (written into it) or several (written into `out`); with `keep_into`, keep the jobs
    there too."""
    sweeps = [sweeps] if isinstance(sweeps, Path) else list(sweeps)
    if out is None and len(sweeps) > 1:
        raise ValueError("several sweep folders need an output folder (--out DIR)")
    jobs = jobs_of(sweeps)
    values, missing, passk = collect(jobs)
    kept = _kept_names(jobs, keep_into) if keep_into is not None else {}  # refused before anything is written
    sweep = out or sweeps[0]
    sweep.mkdir(parents=True, exist_ok=True)
    table = rows(values, missing)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(table)
    cache.write_atomic(sweep / "report.csv", buf.getvalue())
    cache.write_atomic(sweep / "report.md", markdown(table, values))
    plots(sweep, table, passk)
    _keep(kept)
    return table


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Aggregate sweeps' results.json files over seeds.")
    ap.add_argument("sweep_dirs", type=Path, nargs="+", help="one sweep folder, or several (then --out)")
    ap.add_argument("--out", type=Path, default=None, help="where the report goes (default: the one sweep folder)")
    ap.add_argument("--keep", type=Path, default=None, metavar="DIR",
                    help="also copy each finished job's results.json and .hydra config into DIR/<job>/ "
                         "(a sweep folder this command reads again)")
    args = ap.parse_args(argv)
    for d in args.sweep_dirs:
        if not d.is_dir():
            ap.error(f"sweep_dirs: {d} is not a folder (expected a sweep folder such as multirun/table7)")
    try:
        table = report(args.sweep_dirs, args.out, args.keep)
    except ValueError as e:
        ap.error(str(e))
    out = args.out or args.sweep_dirs[0]
    print((out / "report.md").read_text())
    print(f"wrote {out / 'report.csv'} ({len(table)} rows), report.md and plots")


if __name__ == "__main__":
    main()
