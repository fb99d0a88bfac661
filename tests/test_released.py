"""The loader for the authors' released JSON format."""

from __future__ import annotations

import json
import re

import pytest

from atomic_comp.families.biography.released import load_released
from atomic_comp.recipe import items_dataset

RELEASED = [
    {"question": "Who is the boss of the roommate of Justin Martinez?", "answer": "Frederick Juarez",
     "answer_cot": "Justin Martinez shared a room with Carl Jarvis. Frederick Juarez is the boss of Carl Jarvis. "
                   "So, the answer is: Frederick Juarez",
     "instruction": "Answer the question.", "context": "", "relation_path": ["roommate", "boss"],
     "entities": ["Justin Martinez", "Carl Jarvis", "Frederick Juarez"], "gen_type": "parametric"},
    {"question": "What is the phone number of the spouse of Ann Lee?", "answer": "6548113713",
     "answer_cot": "Ann Lee is married to Bo Chan. Bo Chan can be called at 6548113713. So, the answer is: 6548113713",
     "instruction": "Answer the question.", "context": "Ann Lee is married to Bo Chan.",
     "relation_path": "spouse, phone", "entities": ["Ann Lee", "Bo Chan", "6548113713"], "gen_type": "complementary",
     "level": "zero-shot"},
]


def test_loads_json_list_and_jsonl(tmp_path):
    as_list = tmp_path / "test.json"
    as_list.write_text(json.dumps(RELEASED))
    as_lines = tmp_path / "test.jsonl"
    as_lines.write_text("\n".join(json.dumps(r) for r in RELEASED))
    for path in (as_list, as_lines):
        items = load_released(path, level="iid")
        assert [it["task"] for it in items] == ["mem", "comp"]
        assert [it["level"] for it in items] == ["iid", "zero_shot"]  # an item's own level wins
        assert items[1]["relation_path"] == ["spouse", "phone"]
        assert items[1]["hop_groups"] == ["contextual", "parametric"]
        assert items[0]["hops"] == 2 and items[0]["answer"] == "Frederick Juarez"
        assert items[0]["gen_type"] == "parametric"
    ds = items_dataset(items)
    assert len(ds) == 2 and ds[1]["answer_cot"].endswith("6548113713")


def test_unknown_gen_type_and_missing_fields_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([dict(RELEASED[0], gen_type="weird")]))
    with pytest.raises(ValueError, match="gen_type='weird'"):
        load_released(bad, level="iid")
    assert load_released(bad, task="ctx", level="iid")[0]["task"] == "ctx"
    bad.write_text(json.dumps([{"question": "q"}]))
    with pytest.raises(ValueError, match="lacks required"):
        load_released(bad, task="mem", level="iid")


def test_a_recipe_can_train_on_released_files(tmp_path, tiny_world_cfg):
    from atomic_comp.pipeline import _sft_rows
    from atomic_comp.recipe import load_data, stage_items
    from tests.conftest import tiny_recipe

    folder = tmp_path / "released"
    folder.mkdir()
    (folder / "train_sft.jsonl").write_text("\n".join(json.dumps(r) for r in RELEASED))
    (folder / "train_rl.json").write_text(json.dumps(RELEASED[1:]))
    (folder / "test.json").write_text(json.dumps([dict(r, level="composition") for r in RELEASED]))
    recipe = tiny_recipe(released_dir=str(folder))
    data = load_data(tiny_world_cfg, recipe, seed=1, cache_dir=str(tmp_path / "cache"))
    assert len(data.splits["train_sft"]) == 2 and len(data.splits["train_rl"]) == 1
    assert set(data.splits["test"]["level"]) == {"composition"}
    comp = stage_items(data, "sft", ["comp"], recipe)
    assert comp["question"] == [RELEASED[1]["question"]]
    assert _sft_rows(comp)["completion"][0].endswith("So, the answer is: 6548113713")
    # drills come from the released text's own words, as from a generated world's
    drilled = load_data(tiny_world_cfg, tiny_recipe(released_dir=str(folder), copy_drills=30, lookup_drills=10),
                        seed=1, cache_dir=str(tmp_path / "cache"))
    assert len(drilled.splits["drills"]) == 40 and len(data.splits["drills"]) == 0
    text = " ".join(r[k] for r in RELEASED for k in ("question", "context", "answer_cot"))
    drilled_words = {w for p in drilled.splits["drills"]["prompt"] for w in re.findall(r"\w+", p)}
    assert drilled_words - {"Repeat", "Reverse", "Facts", "Look", "up", "s", "is"} <= set(re.findall(r"\w+", text))
    (folder / "train_rl.json").write_text(json.dumps(RELEASED))  # new contents, new cache entry
    assert load_data(tiny_world_cfg, recipe, seed=1, cache_dir=str(tmp_path / "cache")).key != data.key
