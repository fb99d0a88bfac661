"""`python -m atomic_comp.data`: build (or find in the cache), export and count the data of a world and recipe.

    python -m atomic_comp.data                       # build into the cache, print the counts and the held-out relations
    python -m atomic_comp.data export_dir=DIR [world=paper recipe=paper seed=2 ...]

Export writes DIR/world.json and one JSONL per split (train_sft, train_rl, test, biographies).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections import Counter
from pathlib import Path

import hydra
from omegaconf import DictConfig

from atomic_comp.config import ConfigError, DataConfig, to_typed, validate_data
from atomic_comp.recipe import SPLITS, Data, load_data


def stats_table(data: Data) -> str:
    """Counts per split, task, level and hop count, and the held-out relations' zero-shot items, as plain text."""
    lines = []
    for split in SPLITS:
        ds = data.splits[split]
        counts = Counter(zip(ds["task"], ds["level"], ds["hops"]))
        hops = sorted({h for _, _, h in counts})
        lines.append(f"{split} ({len(ds)} items)")
        lines.append(f"  {'task':<5} {'level':<12} " + " ".join(f"{f'{h}-hop':>7}" for h in hops) + f" {'total':>7}")
        for task in ("mem", "ctx", "comp"):
            for level in ("iid", "composition", "zero_shot"):
                row = [counts.get((task, level, h), 0) for h in hops]
                if sum(row):
                    lines.append(f"  {task:<5} {level:<12} " + " ".join(f"{c:>7}" for c in row) + f" {sum(row):>7}")
    lines.append(f"biographies ({len(data.splits['biographies'])} paragraphs)")
    # the seed draws the held-out relations: a zero-shot cell is only as broad as the relations behind it
    zero_shot = [it for it in data.splits["test"] if it["level"] == "zero_shot"]
    for group, levels in data.world.get("levels", {}).items():
        cells = []
        for rel in levels["held_out"]:
            n = Counter(it["task"] for it in zero_shot if rel in it["relation_path"])
            cells.append(f"{rel} (" + ", ".join(f"{task} {n[task]}" for task in ("mem", "ctx", "comp")) + ")")
        lines.append(f"held out, {group} (zero-shot test items using it): " + "; ".join(cells))
    if len(data.splits["drills"]):
        lines.append(f"drills ({len(data.splits['drills'])} rows: copy and lookup)")
    return "\n".join(lines)


def _write_jsonl_atomic(path: Path, rows) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def export(data: Data, cfg: DataConfig, out: Path) -> list[Path]:
    """Every file is written beside its final name and renamed into place."""
    out.mkdir(parents=True, exist_ok=True)
    world = dict(data.world)
    world["seed"] = cfg.seed
    world["data_key"] = data.key
    world["config"] = {"world": dataclasses.asdict(cfg.world), "recipe": dataclasses.asdict(cfg.recipe)}
    written = []
    tmp = out / f".world.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(world, indent=1, ensure_ascii=False))
    os.replace(tmp, out / "world.json")
    written.append(out / "world.json")
    for split in (*SPLITS, "biographies"):
        path = out / f"{split}.jsonl"
        _write_jsonl_atomic(path, data.splits[split])
        written.append(path)
    return written


def run(cfg: DataConfig) -> Data:
    data = load_data(cfg.world, cfg.recipe, cfg.seed, cfg.cache_dir)
    print(f"data {data.key} ({'built' if data.built else 'cached'}) at {data.path}")
    if cfg.export_dir:
        for path in export(data, cfg, Path(cfg.export_dir)):
            print(f"wrote {path}")
    print(stats_table(data))
    return data


@hydra.main(version_base="1.3", config_path="../conf", config_name="data")
def main(cfg: DictConfig) -> None:
    try:
        typed = to_typed(cfg, DataConfig)
        validate_data(typed)  # at the door: nothing is built or written before this passes
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    run(typed)


if __name__ == "__main__":
    main()
