"""The three levels, and proofs that nothing leaks from test into train."""

from __future__ import annotations

from collections import Counter

from atomic_comp.families.biography.levels import LevelSplit
from atomic_comp.families.biography.relations import BY_NAME, CONTEXTUAL, PARAMETRIC, RELATIONS

RATIOS = {"iid": 0.2, "composition": 0.7, "held_out": 0.1}


def _train(data):
    return [it for s in ("train_sft", "train_rl") for it in data.splits[s]]


def test_relation_split_per_group_is_20_70_10():
    split = LevelSplit.build(RATIOS, seed=1)
    for group, n in ((PARAMETRIC, 20), (CONTEXTUAL, 19)):
        counts = Counter(split.relation_level[r.name] for r in RELATIONS if r.group == group)
        assert sum(counts.values()) == n
        assert abs(counts["iid"] - 0.2 * n) <= 1 and abs(counts["held_out"] - 0.1 * n) <= 1
        # every level has person->person relations to build intermediate hops from
        for lvl in ("iid", "composition"):
            assert any(BY_NAME[r].person and BY_NAME[r].group == group for r in split.relations(lvl))


def test_pinned_relations_and_seeded_split():
    split = LevelSplit.build(RATIOS, seed=1, pinned={"hobby": "held_out", "spouse": "iid"})
    assert split.relation_level["hobby"] == "held_out" and split.relation_level["spouse"] == "iid"
    assert LevelSplit.build(RATIOS, seed=1).relation_level == LevelSplit.build(RATIOS, seed=1).relation_level
    assert any(LevelSplit.build(RATIOS, seed=s).relation_level != LevelSplit.build(RATIOS, seed=1).relation_level
               for s in range(2, 6))


def test_item_levels_match_their_paths(tiny_data, tiny_family):
    split = tiny_family.split
    for s in ("train_sft", "train_rl", "test"):
        for it in tiny_data.splits[s]:
            assert split.path_level(it["relation_path"]) == it["level"]


def test_train_has_no_zero_shot_and_test_has_every_task_and_level(tiny_data):
    assert {it["level"] for it in _train(tiny_data)} == {"iid", "composition"}
    cells = Counter((it["task"], it["level"]) for it in tiny_data.splits["test"])
    assert set(cells) == {(t, lv) for t in ("mem", "ctx", "comp") for lv in ("iid", "composition", "zero_shot")}


def test_held_out_relations_never_appear_in_training(tiny_data, tiny_family):
    held = tiny_family.split.relations("held_out")
    assert held
    for it in _train(tiny_data):
        assert not held & set(it["relation_path"])
        for r in held:
            noun = BY_NAME[r].noun
            assert f"the {noun} of" not in it["question"] and f"'s {noun}" not in it["question"], (r, it["question"])
    # ... but their facts stay in the biographies and contexts
    bios = " ".join(tiny_data.splits["biographies"]["text"])
    contexts = " ".join(it["context"] for it in _train(tiny_data))
    world = tiny_family.world
    for r in held:
        rel = BY_NAME[r]
        text = bios if rel.group == PARAMETRIC else contexts
        assert any(world.sentence(rel, p) in text for p in list(world.facts[r])[:50]), r


def test_composition_and_zero_shot_test_paths_are_unseen(tiny_data):
    train_paths = {tuple(it["relation_path"]) for it in _train(tiny_data)}
    for it in tiny_data.splits["test"]:
        if it["level"] in ("composition", "zero_shot"):
            assert tuple(it["relation_path"]) not in train_paths, it["relation_path"]


def test_iid_test_paths_are_seen_with_new_people(tiny_data):
    train = _train(tiny_data)
    by_task_paths = {(it["task"], tuple(it["relation_path"])) for it in train}
    train_heads = {it["entities"][0] for it in train}
    iid = [it for it in tiny_data.splits["test"] if it["level"] == "iid"]
    assert iid
    for it in iid:
        assert (it["task"], tuple(it["relation_path"])) in by_task_paths
    test_heads = {it["entities"][0] for it in tiny_data.splits["test"]}
    assert not test_heads & train_heads


def test_composition_paths_split_into_train_and_test_halves(tiny_family):
    split = tiny_family.split
    comp = sorted(split.relations("composition"))
    paths = [(a, b) for a in comp for b in comp if a != b and BY_NAME[a].person]
    sides = Counter(split.composition_side(p) for p in paths)
    assert 0.4 < sides["train"] / len(paths) < 0.6
