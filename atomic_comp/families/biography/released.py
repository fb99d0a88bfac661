"""Load the authors' released JSON format, so training can use their files instead of generated ones.

Their items carry `question, answer, answer_cot, instruction, context,
relation_path, entities, gen_type`. A file is a JSON list or JSON lines. The
task comes from `gen_type` (or `task`) when it names one, else from the caller;
the level from `level` when present, else from the caller.
"""

from __future__ import annotations

import json
from pathlib import Path

from .relations import BY_NAME
from .tasks import GEN_TYPE, INSTRUCTION

RELEASED_FIELDS = ("question", "answer", "answer_cot", "instruction", "context", "relation_path", "entities", "gen_type")
_TASK_ALIASES = {
    "mem": "mem", "memory": "mem", "parametric": "mem", "param": "mem",
    "ctx": "ctx", "context": "ctx", "contextual": "ctx",
    "comp": "comp", "complementary": "comp", "composite": "comp", "mixed": "comp", "mix": "comp",
}
_LEVEL_ALIASES = {"iid": "iid", "i.i.d.": "iid", "id": "iid", "composition": "composition", "compositional": "composition",
                  "comp": "composition", "zero_shot": "zero_shot", "zero-shot": "zero_shot", "zeroshot": "zero_shot",
                  "ood": "zero_shot"}


def _read(path: Path) -> list[dict]:
    text = path.read_text()
    stripped = text.lstrip()
    if stripped.startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _as_list(v) -> list[str]:
    if isinstance(v, str):
        return [s.strip() for s in v.replace("->", ",").split(",") if s.strip()]
    return [str(x) for x in v]


def load_released(path: str | Path, task: str | None = None, level: str | None = None) -> list[dict]:
    """Items in atomic-comp's schema (the released fields kept as they are)."""
    path = Path(path)
    rows = _read(path)
    out = []
    for i, row in enumerate(rows):
        missing = [f for f in ("question", "answer", "relation_path") if f not in row]
        if missing:
            raise ValueError(f"{path}: item {i} lacks required field(s) {missing}; released items have {RELEASED_FIELDS}")
        gen = str(row.get("task") or row.get("gen_type") or "").strip().lower()
        t = _TASK_ALIASES.get(gen) or task
        if t not in ("mem", "ctx", "comp"):
            raise ValueError(f"{path}: item {i} has gen_type={row.get('gen_type')!r}, which names no task; "
                             f"pass task= one of mem, ctx, comp (known gen_types: {sorted(_TASK_ALIASES)})")
        lv = _LEVEL_ALIASES.get(str(row.get("level", "")).strip().lower()) or level
        if not lv:
            raise ValueError(f"{path}: item {i} has no level; pass level= one of iid, composition, zero_shot")
        rel_path = _as_list(row["relation_path"])
        groups = [BY_NAME[r].group if r in BY_NAME else ("parametric" if t == "mem" else "contextual" if t == "ctx" else "unknown")
                  for r in rel_path]
        out.append({
            "task": t,
            "level": lv,
            "hops": len(rel_path),
            "relation_path": rel_path,
            "hop_groups": groups,
            "entities": _as_list(row.get("entities", [])),
            "question": row["question"],
            "context": row.get("context") or "",
            "answer": str(row["answer"]),
            "answer_cot": row.get("answer_cot") or "",
            "instruction": row.get("instruction") or INSTRUCTION,
            "gen_type": row.get("gen_type") or GEN_TYPE[t],
        })
    return out
