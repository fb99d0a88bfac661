"""Typed config schema and the one validation pass, run at the door before any work.

Hydra composes YAML from conf/; `load(cfg)` merges it onto these dataclasses
(so a wrong type or an unknown key fails with its full key) and `validate`
checks the values. Both raise ConfigError naming the key, the value and what is allowed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    def __init__(self, key: str, value: Any, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"invalid config: {key}={value!r}; allowed: {allowed}")


# --------------------------------------------------------------------------- world
@dataclass
class LevelsConfig:
    # share of each relation group that is iid / composition / held out (zero-shot); sums to 1
    iid: float = 0.2
    composition: float = 0.7
    held_out: float = 0.1
    # share of composition-level paths that are train-only (the rest are test-only)
    composition_train_share: float = 0.5
    # pin relations to a level, e.g. {hobby: held_out}; the rest are split at random
    pinned: dict[str, str] = field(default_factory=dict)


@dataclass
class WorldConfig:
    # a label for logs and reports
    name: str = "tiny"
    # people whose biographies are trained into the weights
    n_parametric: int = 200
    # people given only in prompts: half reuse parametric names (where memory and context meet), half are new
    n_contextual: int = 200
    # Faker locale for names, cities and companies
    locale: str = "en_US"
    levels: LevelsConfig = field(default_factory=LevelsConfig)


# --------------------------------------------------------------------------- recipe
@dataclass
class HopsConfig:
    # path lengths drawn for every task, with these weights (paper: 2..5 at 0.5/0.3/0.15/0.05)
    min: int = 2
    max: int = 5
    weights: list[float] = field(default_factory=lambda: [0.5, 0.3, 0.15, 0.05])

    def values(self) -> list[int]:
        return list(range(self.min, self.max + 1))


@dataclass
class ContextConfig:
    # other people's paragraphs in each prompt; they state the path's relations about someone else
    distractor_people: int = 2
    # sentences kept per paragraph (the needed fact always stays); null keeps whole biographies
    facts_per_paragraph: Optional[int] = None
    # Mem items carry irrelevant context, so no skill can be keyed on whether context is present
    mem_context: bool = True


@dataclass
class TaskCounts:
    mem: int = 0
    ctx: int = 0
    comp: int = 0


@dataclass
class RecipeConfig:
    name: str = "default"
    hops: HopsConfig = field(default_factory=HopsConfig)
    context: ContextConfig = field(default_factory=ContextConfig)
    # training items per task in the SFT pool and in the disjoint RL pool
    sft_pool: TaskCounts = field(default_factory=lambda: TaskCounts(mem=1000, ctx=1000, comp=1000))
    rl_pool: TaskCounts = field(default_factory=lambda: TaskCounts(mem=250, ctx=250, comp=500))
    # test items per task and level
    test_per_level: int = 100
    # share of training items at the iid level; the rest are composition-level
    iid_share: float = 0.5
    # share of people whose questions are test-only (I.I.D. = seen paths, new entities)
    test_people: float = 0.2
    # how much of each pool a stage trains on: nested, path-stratified subsets (the sweep knobs)
    mem_proportion: float = 1.0
    ctx_proportion: float = 1.0
    comp_proportion: float = 1.0
    # mix the parametric biographies (plain LM text) into the first SFT stage
    biographies: bool = True
    # copies of each parametric fact in distinct wordings in that text (at most 3)
    bio_paraphrases: int = 1


# --------------------------------------------------------------------------- top level
def default_cache_dir() -> str:
    env = os.environ.get("ATOMIC_COMP_CACHE")
    if env:
        return env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "atomic_comp")


@dataclass
class DataConfig:
    """The data app: `python -m atomic_comp.data` (conf/data.yaml)."""

    # seeds the world, the level split and every item
    seed: int = 1
    world: WorldConfig = field(default_factory=WorldConfig)
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    # root of the dataset and stage caches (a shared filesystem on a cluster)
    cache_dir: Optional[str] = None
    # when set, also write world.json and one JSONL per split here
    export_dir: Optional[str] = None


LEVEL_KEYS = ("iid", "composition", "held_out")


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(key, value, allowed)


def validate_world(w: WorldConfig, prefix: str = "world") -> None:
    from atomic_comp.families.biography.levels import RELATION_LEVELS
    from atomic_comp.families.biography.relations import BY_NAME

    _check(w.n_parametric >= 4, f"{prefix}.n_parametric", w.n_parametric, "an integer >= 4")
    _check(w.n_contextual >= 4, f"{prefix}.n_contextual", w.n_contextual, "an integer >= 4")
    _check(w.n_contextual // 2 <= w.n_parametric, f"{prefix}.n_contextual", w.n_contextual,
           f"at most 2 * world.n_parametric = {2 * w.n_parametric} (half of the contextual people reuse parametric names)")
    lv = w.levels
    for k in LEVEL_KEYS:
        v = getattr(lv, k)
        _check(0.0 <= v <= 1.0, f"{prefix}.levels.{k}", v, "a proportion in [0, 1]")
    total = lv.iid + lv.composition + lv.held_out
    _check(math.isclose(total, 1.0, abs_tol=1e-6), f"{prefix}.levels", {k: getattr(lv, k) for k in LEVEL_KEYS},
           f"iid + composition + held_out summing to 1 (got {total:g})")
    _check(0.0 < lv.composition_train_share < 1.0, f"{prefix}.levels.composition_train_share",
           lv.composition_train_share, "a proportion strictly between 0 and 1")
    for rel, level in lv.pinned.items():
        _check(rel in BY_NAME, f"{prefix}.levels.pinned.{rel}", rel, f"one of the 39 relations: {', '.join(sorted(BY_NAME))}")
        _check(level in RELATION_LEVELS, f"{prefix}.levels.pinned.{rel}", level, f"one of {', '.join(RELATION_LEVELS)}")


def validate_recipe(r: RecipeConfig, prefix: str = "recipe") -> None:
    h = r.hops
    _check(1 <= h.min <= 5, f"{prefix}.hops.min", h.min, "an integer in 1..5")
    _check(1 <= h.max <= 5, f"{prefix}.hops.max", h.max, "an integer in 1..5")
    _check(h.min <= h.max, f"{prefix}.hops.max", h.max, f"an integer >= recipe.hops.min ({h.min})")
    n = h.max - h.min + 1
    _check(len(h.weights) == n, f"{prefix}.hops.weights", list(h.weights),
           f"{n} weights, one per hop count {h.min}..{h.max}")
    for i, wt in enumerate(h.weights):
        _check(wt >= 0, f"{prefix}.hops.weights[{i}]", wt, "a weight >= 0")
    _check(sum(h.weights) > 0, f"{prefix}.hops.weights", list(h.weights), "weights with a positive sum")
    c = r.context
    _check(c.distractor_people >= 0, f"{prefix}.context.distractor_people", c.distractor_people, "an integer >= 0")
    _check(c.facts_per_paragraph is None or c.facts_per_paragraph >= 1, f"{prefix}.context.facts_per_paragraph",
           c.facts_per_paragraph, "null or an integer >= 1")
    for pool in ("sft_pool", "rl_pool"):
        for task in ("mem", "ctx", "comp"):
            v = getattr(getattr(r, pool), task)
            _check(v >= 0, f"{prefix}.{pool}.{task}", v, "a count >= 0")
    _check(r.test_per_level >= 0, f"{prefix}.test_per_level", r.test_per_level, "a count >= 0")
    for key in ("iid_share", "mem_proportion", "ctx_proportion", "comp_proportion"):
        v = getattr(r, key)
        _check(0.0 <= v <= 1.0, f"{prefix}.{key}", v, "a proportion in [0, 1]")
    _check(0.0 < r.test_people < 1.0, f"{prefix}.test_people", r.test_people, "a proportion strictly between 0 and 1")
    _check(1 <= r.bio_paraphrases <= 3, f"{prefix}.bio_paraphrases", r.bio_paraphrases,
           "an integer in 1..3 (every relation has 3 sentence templates)")


def validate_data(cfg: DataConfig) -> None:
    validate_world(cfg.world)
    validate_recipe(cfg.recipe)


def register_schemas() -> None:
    """Make the dataclasses the schema Hydra composes onto (type-checked overrides, defaults in one place)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="data_schema", node=DataConfig)


register_schemas()


def to_typed(cfg: DictConfig | dict, schema: type) -> Any:
    """Merge a composed config onto its dataclass schema and return the typed object."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), cfg)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "?"
        raise ConfigError(str(key), getattr(e, "value", None) if hasattr(e, "value") else "?",
                          f"a value of the schema's type ({type(e).__name__}: {str(e).splitlines()[0]})") from None
