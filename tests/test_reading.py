"""The reading stage: a made-up world's lookups, trained before the biographies and shared by every pipeline."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from atomic_comp.config import ConfigError, ReadingConfig, validate_reading
from atomic_comp.families.biography.relations import RELATIONS
from atomic_comp.prompts import ANSWER_MARKER, format_prompt
from atomic_comp.reading import load_reading, reading_items, vocabulary
from tests.conftest import composed, wandb_offline_run

ROOT = Path(__file__).resolve().parents[1]
SMALL = ReadingConfig(items=300, relations=40, held_out=10, names=20, values=30, test_items=60)


def _facts(item: dict) -> dict[tuple[str, str], str]:
    """(subject, noun) -> object of every sentence in an item's context."""
    out = {}
    for s, noun, o in re.findall(r"(\w+ \w+)'s (\w+) is ([\w ]+)\.", item["context"]):
        assert (s, noun) not in out, f"two facts for {s}'s {noun}"
        out[(s, noun)] = o
    return out


def test_every_hop_is_found_only_by_its_name_and_its_word():
    train, test = reading_items(SMALL, seed=3)
    for item in train + test:
        facts, chain, path = _facts(item), item["entities"], item["relation_path"]
        assert len(facts) == SMALL.facts and len(path) == item["hops"] in (1, 2)
        for i, noun in enumerate(path):
            assert facts[(chain[i], noun)] == chain[i + 1]  # the hop's fact is stated, once (_facts)
        # a distractor with the first hop's subject and another word, and one with its word and someone else
        assert any(s == chain[0] and n != path[0] for s, n in facts)
        assert any(n in path and s != chain[path.index(n)] for s, n in facts)
        # no line is one person's paragraph by construction: the subject order is shuffled
        steps = " ".join(f"{chain[i]}'s {n} is {chain[i + 1]}." for i, n in enumerate(path))
        assert item["answer_cot"] == f"{steps} {ANSWER_MARKER} {item['answer']}"
        assert item["answer"] == chain[-1] and item["task"] == "read"
        assert format_prompt(item).startswith("Context:\n") and format_prompt(item).endswith("\nAnswer:")


def test_held_out_nouns_are_read_in_training_contexts_asked_only_by_test_items_and_not_world_words():
    vocab = vocabulary(SMALL, seed=3)
    train, test = reading_items(SMALL, seed=3)
    held = set(vocab.held_out)
    assert len(held) == SMALL.held_out and not held & set(vocab.nouns)
    asked = {w for it in train for w in re.findall(r"\w+", it["question"] + " " + it["answer_cot"])}
    read = {w for it in train for w in re.findall(r"\w+", it["context"])}
    assert not held & asked and held <= read  # read in contexts, never asked, never written
    assert {it["level"] for it in test} == {"iid", "zero_shot"}
    for it in test:
        assert set(it["relation_path"]) <= (held if it["level"] == "zero_shot" else set(vocab.nouns))
    world_words = {w for r in RELATIONS for w in r.noun.split()}
    made_up = {w.lower() for pool in (vocab.nouns, vocab.held_out, vocab.first, vocab.last, vocab.values) for w in pool}
    assert len(made_up) == 40 + 10 + 2 * 20 + 30 and not world_words & made_up
    every = {w.lower() for it in train + test for w in re.findall(r"\w+", it["context"])}
    assert every - made_up == {"s", "is"}  # a context is made-up words in "X's noun is Y." frames only


def test_world_like_people_are_faker_names_and_the_worlds_values_while_the_nouns_stay_made_up():
    import dataclasses

    from atomic_comp import cache
    from atomic_comp.families.biography.world import VALUE_POOLS
    from atomic_comp.reading import _CODE_FILES, reading_key

    like = dataclasses.replace(SMALL, people="world_like", values=500)
    made, real = vocabulary(SMALL, seed=3), vocabulary(like, seed=3)
    assert (real.nouns, real.held_out) == (made.nouns, made.held_out)
    assert len(real.first) == len(real.last) == SMALL.names and len(real.values) == 500
    assert not {w.lower() for w in real.first + real.last} & {w.lower() for w in made.first + made.last}
    assert {v for pool in VALUE_POOLS.values() for v in pool} <= set(real.values)  # the world's kinds of value
    train, _ = reading_items(like, seed=3)
    people = {(a, b) for a in real.first for b in real.last}
    for item in train[:50]:
        assert tuple(item["entities"][0].split(" ", 1)) in people
        assert item["answer"] in real.values or tuple(item["answer"].split(" ", 1)) in people
    # made-up people keep the key they had before the knob; world-like ones are another corpus
    before = {k: v for k, v in dataclasses.asdict(SMALL).items() if k != "people"}
    assert reading_key(SMALL, 3) == "reading-" + cache.stable_hash(
        {"reading": before, "seed": 3, "code": cache.code_version(_CODE_FILES)})
    assert reading_key(like, 3) != reading_key(dataclasses.replace(like, people="made_up"), 3)


def test_the_corpus_is_one_cache_entry_per_config_and_seed(tmp_path):
    a = load_reading(SMALL, 1, str(tmp_path))
    again = load_reading(SMALL, 1, str(tmp_path))
    other = load_reading(SMALL, 2, str(tmp_path))
    assert a.key == again.key != other.key
    assert list(a.train["question"]) == list(again.train["question"]) != list(other.train["question"])
    assert len(a.train) == SMALL.items and len(a.test) == SMALL.test_items
    assert sorted(p.name for p in (tmp_path / "reading").iterdir() if not p.name.startswith(".")) == sorted(
        {a.key, other.key})


@pytest.mark.parametrize("key,value,allowed", [
    ("relations", 5, "reading.facts"), ("facts", 5, "3 * reading.max_hops"), ("max_hops", 0, "1..5"),
    ("held_out", 1, "max_hops"), ("items", -1, ">= 0"), ("people", "real", "made_up, world_like"),
])
def test_bad_reading_config_names_key_value_and_what_is_allowed(key, value, allowed):
    with pytest.raises(ConfigError) as e:
        validate_reading(ReadingConfig(**{key: value}))
    assert f"reading.{key}" in str(e.value) and str(value) in str(e.value) and allowed in str(e.value)


@pytest.mark.slow
def test_the_reading_stage_runs_first_and_every_pipeline_shares_it(tmp_path):
    from atomic_comp.models import load_tokenizer

    env = dict(os.environ, ATOMIC_COMP_CACHE=str(tmp_path / "cache"), WANDB_MODE="offline")
    args = [sys.executable, "launch.py", "experiment=smoke", "reading.items=200", "reading.test_items=20",
            "stage.read.max_steps=4", "stage.read.save_steps=4", "stage.read_replay=30", "pipeline=headline",
            "pipeline.members=[sft_mem_ctx,sft_comp]", f"hydra.run.dir={tmp_path / 'out'}"]
    run = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    a, b = res["pipelines"]["SFT(Mem+Ctx)"], res["pipelines"]["SFT(Comp)"]
    assert a["reading"]["key"] == b["reading"]["key"] and a["reading"]["name"] == "Read(Lookups)"
    assert [a["reading"]["cached"], b["reading"]["cached"]] == [False, True]
    assert a["injection"]["train"]["parent"] == a["reading"]["path"]  # reading, then biographies
    assert a["reading"]["train"]["rows"] == 200 and a["reading"]["train"]["pool"] == "reading"
    # each later SFT stage replays 30 reading items beside its own rows (the smoke world's first SFT stage
    # has no biographies: they have a stage of their own)
    for rec in (a, b):
        sft = rec["stages"][0]["train"]
        assert sft["rows"] == sft["items"] + 30
    cells = a["reading"]["eval"]["read"]
    # whether the reader formed shows as soon as the stage is evaluated, before any world stage starts
    said = re.findall(r"\] stage 1/\d+ Read\(Lookups\) of SFT\(Mem\+Ctx\): read, exact match (.*)", run.stderr)
    assert said[:1] == [f"trained nouns {100 * cells['iid']['em']:.0f}%, held-out nouns "
                        f"{100 * cells['zero_shot']['em']:.0f}%"], said
    assert run.stderr.index(said[0]) < run.stderr.index("Inject(Bios) of SFT(Mem+Ctx): training")
    # no phase stands under a stale label: the reader's scoring, its forced hops on the world, and each
    # pipeline's closing reading test say what they are
    order = ["Read(Lookups) of SFT(Mem+Ctx): evaluating the reader 20/20 questions", said[0],
             "Read(Lookups) of SFT(Mem+Ctx): the reader on the world's Ctx items, every hop forced",
             "Inject(Bios) of SFT(Mem+Ctx): training", "SFT(Mem+Ctx) of SFT(Mem+Ctx): evaluating",
             "SFT(Mem+Ctx) of SFT(Mem+Ctx): reading test 20/20 questions", "SFT(Comp) of SFT(Comp): reading test"]
    at = [run.stderr.find(line) for line in order]
    assert -1 not in at and at == sorted(at), list(zip(order, at))
    assert {lv: c["n"] for lv, c in cells.items()} == {"iid": 10, "zero_shot": 10}
    # the tokenizer knows the made-up words from the start: none is an unknown token
    tok = load_tokenizer(a["reading"]["path"])
    _, test = reading_items(ReadingConfig(items=200, test_items=20), 1)
    held = next(it for it in test if it["level"] == "zero_shot")
    ids = tok(f" {held['entities'][0]}'s {held['relation_path'][0]} is {held['answer'].split()[0]}.")["input_ids"]
    assert len(ids) == 8 and tok.unk_token_id not in ids  # one token per word, "'", "s" and "."
    assert tok.unk_token_id in tok(" Zzyzx's qwerty is")["input_ids"]  # an unknown word would show
    assert re.search(r"Reading stage \(made-up world\) exact match: trained nouns \d+ \(of 10\)  "
                     r"held-out nouns \d+ \(of 10\)", run.stdout)
    # every hop of the test items forced, by level; the job prints them with their wrong objects' kinds
    forced = a["reading"]["eval"]["forced_hops"]["read"]
    hops = {lv: sum(it["hops"] for it in test if it["level"] == lv) for lv in ("iid", "zero_shot")}
    assert {lv: c["n"] for lv, cells in forced.items() for c in cells.values()} == hops
    # the reader on the world's Ctx items before any world stage: 3 items per level (eval.max_items), 2 hops each
    world = a["reading"]["eval"]["world_forced_hops"]["ctx"]
    assert {lv: sum(c["n"] for c in cells.values()) for lv, cells in world.items()} == {
        "iid": 6, "composition": 6, "zero_shot": 6}
    assert all(cell.startswith("contextual/") for cells in world.values() for cell in cells)
    assert re.search(r"the reader on the world's Ctx items.*\n    iid: contextual/\w+ \d+ \(.*\n    composition: .*\n    zero_shot: ", run.stdout)
    # the same test on each pipeline's last stage: whether the world's stages kept the reading
    for name, rec in res["pipelines"].items():
        last = rec["eval"][rec["stages"][-1]["name"]]["reading"]
        assert {lv: c["n"] for lv, c in last["read"].items()} == {"iid": 10, "zero_shot": 10}
        assert {lv: c["n"] for lv, cells in last["forced_hops"]["read"].items() for c in cells.values()} == hops
        assert re.search(rf"    {re.escape(name)} +trained nouns \d+ / \d+  held-out nouns \d+ / \d+\n", run.stdout)
    # W&B (offline here) has both, read back
    _, summary = wandb_offline_run(tmp_path / "out")
    for level, world_cells in world.items():
        for cell, c in world_cells.items():
            assert summary[f"reading/world/{level}/{cell}/forced_em"] == c["em"]
    for lv in ("iid", "zero_shot"):
        assert summary[f"reading/{lv}/em"] == cells[lv]["em"]
        assert summary[f"reading/{lv}/forced_em"] == next(iter(forced[lv].values()))["em"]
        for name, rec in res["pipelines"].items():
            last = rec["eval"][rec["stages"][-1]["name"]]["reading"]["read"]
            assert summary[f"reading/{name}/last/{lv}/em"] == last[lv]["em"]
    assert re.search(r"its hops forced to .*\n    trained nouns \d+ \(\d+/\d+/\d+/\d+ of %d\)  held-out nouns \d+ "
                     r"\(\d+/\d+/\d+/\d+ of %d\)" % (hops["iid"], hops["zero_shot"]), run.stdout)


def test_the_plan_puts_reading_before_the_injection_and_leaves_keys_alone_when_off():
    import dataclasses

    from atomic_comp import cache
    from atomic_comp import pipeline as pl
    from atomic_comp.recipe import data_key

    args = ["experiment=smoke", "pipeline=sft_mem_ctx__rl_comp"]
    off = composed(*args)
    on = composed(*args, "reading.items=50")
    longer = composed(*args, "reading.items=50", "stage.read.max_steps=9")
    (_, plain), = pl.plan(off)
    (_, read), = pl.plan(on)
    (_, read9), = pl.plan(longer)
    assert [n for n, _ in read] == ["Read(Lookups)", "Inject(Bios)", "SFT(Mem+Ctx)", "RL(Comp)"]
    assert [n for n, _ in plain] == ["Inject(Bios)", "SFT(Mem+Ctx)", "RL(Comp)"]
    assert all(a != b for (_, a), (_, b) in zip(plain, read[1:]))  # everything after it starts elsewhere
    assert read9[0][1] != read[0][1] and read9[1][1] != read[1][1]
    # off, the base model's key is what it was before the reading stage existed: cached stages stay valid
    dkey = data_key(off.world, off.recipe, off.seed)
    # (and before model.bpe_vocab: a word-level tokenizer is left out of the key)
    before = {k: v for k, v in dataclasses.asdict(off.model).items() if k != "bpe_vocab"}
    assert pl.base_key(off, dkey) == "base-" + cache.stable_hash({"model": before, "data": dkey, "seed": off.seed})
    assert pl.base_key(on, dkey) != pl.base_key(off, dkey)  # its words are in the tokenizer


def _composed(*overrides: str):
    from atomic_comp.config import validate_run

    cfg = composed("experiment=smoke", *overrides)
    validate_run(cfg)
    return cfg


def test_replay_draws_other_reading_items_per_stage_into_sft_rows_and_only_sft_keys(tmp_path):
    from atomic_comp import pipeline as pl
    from atomic_comp.config import StageSpec
    from atomic_comp.recipe import data_key

    on = _composed("reading.items=50", "stage.read_replay=10")
    off = _composed("reading.items=50")
    reading = load_reading(on.reading, on.seed, str(tmp_path))
    a, again, other = (pl.replayed(on, reading, k) for k in ("stage-00000001aa", "stage-00000001aa", "stage-00000002aa"))
    assert len(a) == 10 and list(a["question"]) == list(again["question"]) != list(other["question"])
    assert set(a["question"]) <= set(reading.train["question"])
    assert pl.replayed(off, reading, "stage-00000001aa") is None
    # the replayed items are rows of the stage, formatted as the reading stage trains them
    world = reading.test.select(range(3))
    rows = pl._sft_rows(world, None, a)
    assert list(rows["prompt"]) == [format_prompt(it) for it in list(world) + list(a)]
    # the injection and SFT stages have keys of their own; RL replays nothing, so its key does not move
    dkey = data_key(on.world, on.recipe, on.seed)
    assert pl.inject_key(on, dkey) != pl.inject_key(off, dkey)
    sft, rl = StageSpec(kind="sft", tasks=["mem", "ctx"]), StageSpec(kind="rl", tasks=["comp"])
    assert pl.stage_key(on, dkey, sft, True, "p") != pl.stage_key(off, dkey, sft, True, "p")
    assert pl.stage_key(on, dkey, rl, False, "p") == pl.stage_key(off, dkey, rl, False, "p")


@pytest.mark.parametrize("overrides,value", [(["stage.read_replay=5"], "5"),
                                             (["reading.items=50", "stage.read_replay=51"], "51"),
                                             (["reading.items=50", "stage.read_replay=-1"], "-1")])
def test_replay_beyond_the_reading_corpus_is_refused_with_key_value_and_range(overrides, value):
    with pytest.raises(ConfigError) as e:
        _composed(*overrides)
    assert "stage.read_replay" in str(e.value) and value in str(e.value) and "0..reading.items" in str(e.value)
