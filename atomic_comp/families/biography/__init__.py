"""The biography family of Cheng et al. (arXiv 2512.01970): people, relations, Mem/Ctx/Comp, three levels."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter

from .levels import LEVELS, LevelSplit
from .relations import CONTEXTUAL, PARAMETRIC, RELATIONS
from .tasks import TASKS, ContextSpec, ItemMaker
from .world import World, build_world


class BiographyFamily:
    name = "biography"
    tasks = TASKS
    levels = LEVELS

    def __init__(self, world_cfg, recipe_cfg, seed: int):
        self.seed = seed
        self.recipe = recipe_cfg
        self.world: World = build_world(world_cfg.n_parametric, world_cfg.n_contextual, seed, world_cfg.locale,
                                        recipe_cfg.noun_sentences)
        lv = world_cfg.levels
        self.split = LevelSplit.build({"iid": lv.iid, "composition": lv.composition, "held_out": lv.held_out},
                                      seed, dict(lv.pinned), lv.composition_train_share)
        self.maker = ItemMaker(self.world, self.split, recipe_cfg.hops.values(), list(recipe_cfg.hops.weights),
                               ContextSpec(**dataclasses.asdict(recipe_cfg.context)),
                               seed, recipe_cfg.test_people, recipe_cfg.instruction, recipe_cfg.hop_markers)

    # A chunk draws its questions' first people from a disjoint share of the people,
    # so chunks can be generated in parallel and never duplicate an item.
    def train_items(self, task: str, n: int, chunk: int = 0, n_chunks: int = 1) -> list[dict]:
        """n training items, iid_share of them at the iid level, the rest composition; distinct questions unless
        recipe.context.question_repeats lets a Ctx or Comp question be asked again."""
        maker = self.maker.for_chunk(chunk, n_chunks)
        seen: Counter = Counter()
        n_iid = round(n * self.recipe.iid_share)
        label = f"train|{chunk}/{n_chunks}"
        items = (maker.make(task, "iid", "train", n_iid, seen, label)
                 + maker.make(task, "composition", "train", n - n_iid, seen, label))
        random.Random(f"{self.seed}|mix|{task}|{label}").shuffle(items)
        return items

    def test_items(self, task: str, level: str, n: int, seen_paths: set[tuple[str, ...]],
                   chunk: int = 0, n_chunks: int = 1) -> list[dict]:
        """I.I.D. test items reuse relation paths seen in training, on test-only people."""
        # a training path only counts as seen for its task's own hop pattern (recipe.context.read_parametric
        # gives Ctx training items a parametric last relation, read from the context)
        paths = sorted(p for p in seen_paths if self.split.path_level(p) == "iid" and self.maker.fits(task, p)) \
            if level == "iid" else None
        return self.maker.for_chunk(chunk, n_chunks).make(task, level, "test", n, Counter(),
                                                          f"test|{chunk}/{n_chunks}", paths=paths or None)

    def biographies(self, paraphrases: int, orders: int = 1) -> list[str]:
        return self.world.biographies(paraphrases, self.seed, orders)

    def recall_probes(self) -> list[dict]:
        """Cloze probes of the parametric facts, each tagged with its relation's level (iid | composition |
        held_out): whether a checkpoint still holds the facts no training question asks about."""
        return [dict(p, relation_level=self.split.relation_level[p["relation"]]) for p in self.world.recall_probes()]

    def world_json(self) -> dict:
        out = self.world.to_json()
        out["relations"] = {g: [{"name": r.name, "person": r.person, "symmetric": r.symmetric, "inverse": r.inverse,
                                 "templates": list(r.templates)} for r in RELATIONS if r.group == g]
                            for g in (PARAMETRIC, CONTEXTUAL)}
        out["levels"] = self.split.to_json()
        return out
