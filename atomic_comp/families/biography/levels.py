"""The three evaluation levels, decided by which relations a path uses.

Per relation group, relations are split into iid / composition / held_out
(20/70/10 by default), stratified by person vs attribute relations so every
level has intermediate hops to build paths from.

- zero_shot:   the path contains a held-out relation (test only).
- iid:         it contains an iid relation and no held-out one (same paths in train and test).
- composition: only composition relations; each path is train-only or test-only.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from .relations import GROUPS, RELATIONS

LEVELS = ("iid", "composition", "zero_shot")
RELATION_LEVELS = ("iid", "composition", "held_out")


def _largest_remainder(n: int, ratios: dict[str, float]) -> dict[str, int]:
    raw = {k: n * v for k, v in ratios.items()}
    counts = {k: int(x) for k, x in raw.items()}
    for k in sorted(raw, key=lambda k: (raw[k] - counts[k], k), reverse=True)[: n - sum(counts.values())]:
        counts[k] += 1
    return counts


@dataclass(frozen=True)
class LevelSplit:
    """Which level each relation belongs to, and which composition paths are train-only."""

    relation_level: dict[str, str]  # relation name -> iid | composition | held_out
    seed: int
    composition_train_share: float = 0.5

    @classmethod
    def build(cls, ratios: dict[str, float], seed: int, pinned: dict[str, str] | None = None,
              composition_train_share: float = 0.5) -> "LevelSplit":
        rng = random.Random(f"levels-{seed}")
        pinned = dict(pinned or {})
        level: dict[str, str] = dict(pinned)
        for group in GROUPS:
            for person in (True, False):
                names = [r.name for r in RELATIONS if r.group == group and r.person == person]
                counts = _largest_remainder(len(names), ratios)
                for name in names:
                    if name in pinned:
                        counts[pinned[name]] = max(0, counts[pinned[name]] - 1)
                free = [n for n in names if n not in pinned]
                rng.shuffle(free)
                for lvl in RELATION_LEVELS:
                    for _ in range(counts[lvl]):
                        if free:
                            level[free.pop()] = lvl
                for name in free:  # pins consumed a slot that was not there: default to composition
                    level[name] = "composition"
        return cls(relation_level=level, seed=seed, composition_train_share=composition_train_share)

    def relations(self, lvl: str) -> set[str]:
        return {r for r, v in self.relation_level.items() if v == lvl}

    def path_level(self, path: tuple[str, ...] | list[str]) -> str:
        levels = {self.relation_level[r] for r in path}
        if "held_out" in levels:
            return "zero_shot"
        if "iid" in levels:
            return "iid"
        return "composition"

    def composition_side(self, path: tuple[str, ...] | list[str]) -> str:
        """'train' or 'test' for a composition-level path: a seeded hash, so no path list is enumerated."""
        h = hashlib.blake2b(f"{self.seed}|{'/'.join(path)}".encode(), digest_size=8).digest()
        return "train" if int.from_bytes(h, "big") / 2**64 < self.composition_train_share else "test"

    def allowed_in_train(self, path) -> bool:
        lvl = self.path_level(path)
        return lvl == "iid" or (lvl == "composition" and self.composition_side(path) == "train")

    def to_json(self) -> dict:
        out: dict = {}
        for group in GROUPS:
            out[group] = {lvl: sorted(r.name for r in RELATIONS
                                      if r.group == group and self.relation_level[r.name] == lvl)
                          for lvl in RELATION_LEVELS}
        return out
