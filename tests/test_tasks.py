"""Items: hop structure per task, chains of thought that follow the world, contexts that don't give answers away."""

from __future__ import annotations

import random
import re

import pytest

from atomic_comp.families.biography.relations import BY_NAME, CONTEXTUAL, PARAMETRIC
from atomic_comp.families.biography.tasks import ANSWER_MARKER, QUESTION_TEMPLATES, item_text, question_text


def _all_items(data):
    for split in ("train_sft", "train_rl", "test"):
        yield from data.splits[split]


def _family(world_cfg, noun_sentences: bool = False, hop_markers: bool = False, two_hops: bool = False, **context):
    """The tiny recipe's family with some recipe.context fields changed (and only 2-hop paths, if asked)."""
    from .conftest import tiny_recipe

    from atomic_comp.families.biography import BiographyFamily

    r = tiny_recipe(noun_sentences=noun_sentences, hop_markers=hop_markers)
    if two_hops:
        r.hops.max, r.hops.weights = 2, [1.0]
    for key, value in context.items():
        setattr(r.context, key, value)
    return BiographyFamily(world_cfg, r, seed=1)


def _changed_only_in(task: str, default, other) -> tuple[list[dict], list[dict]]:
    """Assert that every test item and the other tasks' training items are the default's; return 200
    training items of `task` from both."""
    for t in ("mem", "ctx", "comp"):
        if t != task:
            assert other.train_items(t, 60) == default.train_items(t, 60)
        for level in ("iid", "composition", "zero_shot"):
            assert other.test_items(t, level, 20, set()) == default.test_items(t, level, 20, set())
    return default.train_items(task, 200), other.train_items(task, 200)


def test_hop_groups_per_task(tiny_data):
    for it in _all_items(tiny_data):
        groups = {BY_NAME[r].group for r in it["relation_path"]}
        assert it["hop_groups"] == [BY_NAME[r].group for r in it["relation_path"]]
        if it["task"] == "mem":
            assert groups == {PARAMETRIC}
        elif it["task"] == "ctx":
            assert groups == {CONTEXTUAL}
        else:
            assert groups == {PARAMETRIC, CONTEXTUAL}


def test_paths_are_walks_without_repeats(tiny_data):
    for it in _all_items(tiny_data):
        path = it["relation_path"]
        assert 2 <= it["hops"] == len(path) <= 3
        assert len(set(path)) == len(path)
        assert all(BY_NAME[r].person for r in path[:-1])
        people = it["entities"][:-1] if not BY_NAME[path[-1]].person else it["entities"]
        assert len(set(people)) == len(people)


def test_chain_of_thought_follows_the_world(tiny_data, tiny_family):
    world = tiny_family.world
    index = {n: i for i, n in enumerate(world.names)}
    for it in list(_all_items(tiny_data))[:600]:
        ents = [index[n] for n in it["entities"][:-1]]
        steps = []
        for i, rel_name in enumerate(it["relation_path"]):
            rel = BY_NAME[rel_name]
            obj = world.object_name(rel, ents[i])
            assert obj == it["entities"][i + 1]
            steps.append(world.sentence(rel, ents[i]))
        assert it["answer_cot"] == " ".join(steps) + f" {ANSWER_MARKER} {it['answer']}"
        assert it["answer"] == it["entities"][-1]
        assert it["entities"][0] in it["question"]


def test_context_holds_contextual_hops_only(tiny_data, tiny_family):
    world = tiny_family.world
    index = {n: i for i, n in enumerate(world.names)}
    same_relation_distractor = 0
    for it in tiny_data.splits["test"]:
        if it["task"] == "mem":
            continue
        ents = [index[n] for n in it["entities"][:-1]]
        for i, rel_name in enumerate(it["relation_path"]):
            sentence = world.sentence(BY_NAME[rel_name], ents[i])
            if BY_NAME[rel_name].group == CONTEXTUAL:
                assert sentence in it["context"]
            else:
                assert sentence not in it["context"]
        # the last contextual relation is also stated about someone off the path
        rel = BY_NAME[[r for r in it["relation_path"] if BY_NAME[r].group == CONTEXTUAL][-1]]
        others = [p for p in world.contextual if p not in ents and p in world.facts[rel.name]]
        if any(world.sentence(rel, p) in it["context"] for p in others):
            same_relation_distractor += 1
    assert same_relation_distractor >= 0.9 * sum(1 for it in tiny_data.splits["test"] if it["task"] != "mem")


def test_mem_context_option(tiny_family):
    maker = tiny_family.maker
    rng = random.Random(0)
    walked = None
    while walked is None:
        walked = maker.walk("mem", "iid", "train", rng)
    with_ctx = maker.render("mem", "iid", *walked, rng)
    assert with_ctx["context"]  # irrelevant paragraphs, so the prompt format matches Comp
    for name in with_ctx["entities"][:-1]:
        for line in with_ctx["context"].split("\n"):
            assert not line.startswith(name + " ")
    from dataclasses import replace

    maker.context, saved = replace(maker.context, mem_context=False), maker.context
    try:
        assert maker.render("mem", "iid", *walked, rng)["context"] == ""
    finally:
        maker.context = saved


def test_question_templates():
    path = [BY_NAME["roommate"], BY_NAME["boss"]]
    qs = {question_text(path, "Justin Martinez", t) for t in range(len(QUESTION_TEMPLATES))}
    assert len(qs) >= 3
    assert "Who is the boss of the roommate of Justin Martinez?" in qs
    assert question_text([BY_NAME["boss"], BY_NAME["phone"]], "A B", 0).startswith("What is the phone number of")


@pytest.mark.parametrize("field", ["task", "level", "hops", "relation_path", "entities", "question", "context",
                                   "answer", "answer_cot", "instruction", "gen_type"])
def test_item_fields(tiny_data, field):
    assert field in tiny_data.splits["test"].column_names


def test_prompts_drop_the_instruction_line_when_the_recipe_says_so(tiny_world_cfg):
    from atomic_comp.families.biography import BiographyFamily
    from atomic_comp.prompts import format_prompt

    from .conftest import tiny_recipe

    with_line = BiographyFamily(tiny_world_cfg, tiny_recipe(), seed=1).train_items("ctx", 5)
    without = BiographyFamily(tiny_world_cfg, tiny_recipe(instruction=False), seed=1).train_items("ctx", 5)
    for a, b in zip(with_line, without):
        assert a["question"] == b["question"] and a["answer_cot"] == b["answer_cot"]
        assert format_prompt(a) == a["instruction"] + "\n" + format_prompt(b)
        assert format_prompt(b).startswith("Context:\n")


def test_noun_sentences_word_every_fact_with_the_questions_own_noun(tiny_world_cfg):
    """recipe.noun_sentences changes the wording of biographies, contexts and chains, never the items."""
    import re

    from atomic_comp.families.biography import BiographyFamily

    from .conftest import tiny_recipe

    plain = BiographyFamily(tiny_world_cfg, tiny_recipe(), seed=1)
    noun = BiographyFamily(tiny_world_cfg, tiny_recipe(noun_sentences=True), seed=1)
    a_items, b_items = plain.train_items("comp", 20), noun.train_items("comp", 20)
    for a, b in zip(a_items, b_items):
        for key in ("question", "answer", "relation_path", "entities", "level"):
            assert a[key] == b[key], key
        assert a["answer_cot"] != b["answer_cot"]
        # each chain step is "<subject>'s <noun> is <object>." with the noun the question uses
        steps = b["answer_cot"].split(" So, the answer is:")[0]
        for rel_name, head, obj in zip(b["relation_path"], b["entities"], b["entities"][1:]):
            rel = BY_NAME[rel_name]
            assert f"{head}'s {rel.noun} is {obj}." in steps
            assert rel.noun in b["question"]
        for sentence in re.split(r"(?<=\.)\s+", b["context"].strip()):
            if sentence:
                assert re.fullmatch(r".+'s [a-z ]+ is .+\.", sentence.split("\n")[-1]), sentence
    # biographies: paraphrase 0 is the noun sentence, paraphrase 1 the fact's own template
    person, rel = 0, BY_NAME["roommate"]
    one, two = plain.world.biographies(1, seed=1), noun.world.biographies(2, seed=1)
    noun_sentence = f"{noun.world.names[person]}'s roommate is {noun.world.object_name(rel, person)}."
    assert noun_sentence in two[0] and noun_sentence not in one[0]
    assert plain.world.sentence(rel, person) in two[1]


@pytest.mark.parametrize("facts_per_paragraph", [4, None])
def test_held_out_filler_option(tiny_world_cfg, facts_per_paragraph):
    """held_out_filler=false drops held-out relations' facts from training contexts only: the test items,
    their contexts included, stay exactly those of the default recipe."""
    default, off = (_family(tiny_world_cfg, facts_per_paragraph=facts_per_paragraph, held_out_filler=filler)
                    for filler in (True, False))
    world = off.world
    held_out = [r for r, lvl in off.split.relation_level.items() if lvl == "held_out" and BY_NAME[r].group == CONTEXTUAL]
    assert held_out
    facts = [s for r in held_out for s in world.canonical[r].values()]

    def filler_count(items) -> int:
        return sum(any(s in it["context"] for s in facts) for it in items)

    for task in ("mem", "ctx", "comp"):
        assert filler_count(default.train_items(task, 60)) > 0  # the default states them as filler
        assert filler_count(off.train_items(task, 60)) == 0
        for level in ("iid", "composition", "zero_shot"):
            assert off.test_items(task, level, 20, set()) == default.test_items(task, level, 20, set())
    assert filler_count(off.test_items("ctx", "zero_shot", 20, set())) == 20  # a zero-shot hop's own fact


def test_nonce_relations_rename_a_share_of_training_ctx_items_and_nothing_else(tiny_world_cfg):
    """nonce_relations renames the path relations of that share of training Ctx items, consistently in
    question, context and chain, to made-up nouns that are no word of the world; every other item, and every
    test item, stays exactly the default's."""
    import re

    from atomic_comp.families.biography.tasks import nonce_nouns

    default, nonce = (_family(tiny_world_cfg, noun_sentences=True, nonce_relations=share) for share in (0.0, 0.5))
    pool = set(nonce_nouns(nonce.world, 1))
    world_words = {w.lower() for per in nonce.world.canonical.values() for t in per.values()
                   for w in re.findall(r"\w+", t)}
    assert len(pool) == 400 and not pool & world_words
    plain, renamed = _changed_only_in("ctx", default, nonce)
    changed = 0
    for a, b in zip(plain, renamed):
        assert {k: v for k, v in a.items() if k not in ("question", "context", "answer_cot")} == \
            {k: v for k, v in b.items() if k not in ("question", "context", "answer_cot")}
        if a == b:
            continue
        changed += 1
        rels = [BY_NAME[r] for r in dict.fromkeys(b["relation_path"])]
        words = [w for w in re.findall(r"[a-z]+", b["question"]) if w in pool]
        assert len(words) == len(b["relation_path"]) and len(set(words)) == len(rels)
        assert not any(r.noun in b["question"] for r in rels)
        # every chain step is a sentence of the context: the renamed facts can still be looked up
        steps = b["answer_cot"].split(" So, the answer is:")[0].split(". ")
        assert all(step.rstrip(".") + "." in b["context"] for step in steps)
        for w in words:
            assert f"'s {w} is " in b["answer_cot"] and f"'s {w} is " in b["context"]
        # undoing the renaming gives back the default item exactly
        hop_words = re.findall(r"'s ([a-z]+) is ", b["answer_cot"])
        assert set(hop_words) == set(words)
        undone = dict(b)
        for w, rel in zip(hop_words, b["relation_path"]):
            noun = BY_NAME[rel].noun
            undone["question"] = re.sub(rf"\b{w}\b", noun, undone["question"])
            for key in ("context", "answer_cot"):
                undone[key] = undone[key].replace(f"'s {w} is ", f"'s {noun} is ")
        assert undone == a
    assert 0.35 * len(plain) < changed < 0.65 * len(plain)


def test_fresh_objects_swap_a_share_of_training_ctx_objects_for_unmentioned_ones(tiny_world_cfg):
    """fresh_objects swaps each hop's object of that share of training Ctx items, throughout context and chain,
    for a person or value the item did not mention; the chain still follows the context, and every other
    item, test items included, stays exactly the default's."""
    default, fresh = (_family(tiny_world_cfg, fresh_objects=share) for share in (0.0, 0.5))
    plain, swapped = _changed_only_in("ctx", default, fresh)
    world = fresh.world
    changed = 0
    for a, b in zip(plain, swapped):
        if a != b:
            changed += 1
            _assert_swapped_from(a, b, first=0)
            # drawn from the relation's own objects, so a name no such fact has cannot give the swap away
            for rel, new in zip(b["relation_path"], b["entities"][1:]):
                assert new in {world.object_name(BY_NAME[rel], p) for p in world.facts[rel]}
    assert 0.35 * len(plain) < changed < 0.65 * len(plain)


def _assert_swapped_from(a: dict, b: dict, first: int) -> None:
    """b is item a with the objects of hops first.. swapped, throughout context and chain, for ones a did not
    mention; the question, the path and the hops before `first` are a's, and every swapped chain step is still
    a sentence of the context."""
    import re

    assert b["question"] == a["question"] and b["relation_path"] == a["relation_path"]
    assert b["hop_groups"] == a["hop_groups"]
    assert b["entities"][:first + 1] == a["entities"][:first + 1] and b["answer"] == b["entities"][-1]
    old_text = item_text(a)
    assert all(new not in old_text for new in b["entities"][first + 1:])
    steps_a, steps_b = (x["answer_cot"].split(" So, the answer is:")[0].split(". ") for x in (a, b))
    assert steps_b[:first] == steps_a[:first]  # memory's hops are untouched
    assert all(step.rstrip(".") + "." in b["context"] for step in steps_b[first:])
    assert b["answer_cot"].endswith(f"So, the answer is: {b['answer']}")
    undone = dict(b)
    for old, new in zip(a["entities"][first + 1:], b["entities"][first + 1:]):
        for key in ("context", "answer_cot"):
            undone[key] = re.sub(rf"(?<!\w){re.escape(new)}(?!\w)", old, undone[key])
    assert dict(undone, entities=a["entities"], answer=a["answer"]) == a


def test_fresh_comp_objects_swap_the_trailing_contextual_objects_of_a_share_of_training_comp_items(tiny_world_cfg):
    """fresh_comp_objects swaps the objects of a training Comp item's trailing contextual hops, throughout
    context and chain, for ones the item did not mention; the hops before them, parametric ones included, stay
    memory's facts, items that end on a parametric hop never change, and every other item is the default's."""
    default, fresh = (_family(tiny_world_cfg, fresh_comp_objects=share) for share in (0.0, 0.5))
    plain, swapped = _changed_only_in("comp", default, fresh)
    eligible = changed = 0
    for a, b in zip(plain, swapped):
        groups = a["hop_groups"]
        first = len(groups)
        while first and groups[first - 1] == CONTEXTUAL:
            first -= 1
        assert 0 < first  # a Comp path has a parametric hop
        eligible += first < len(groups)
        if a != b:
            changed += 1
            assert first < len(groups)
            _assert_swapped_from(a, b, first)
    assert eligible > 50 and 0.35 * eligible < changed < 0.65 * eligible


def test_fresh_heads_rename_the_first_person_of_a_share_of_training_ctx_items(tiny_world_cfg):
    """fresh_heads renames that share of training Ctx items' first person, throughout question, context and
    chain, to a made-up person: a first and last name of the world's that no person has, the item did not
    mention and other items mostly do not share. Undoing the renaming gives the default item back, and every
    other item, test items included, stays exactly the default's."""
    import re

    default, fresh = (_family(tiny_world_cfg, fresh_heads=share) for share in (0.0, 0.5))
    plain, renamed = _changed_only_in("ctx", default, fresh)
    world_names = set(default.world.names)
    firsts, lasts = ({n.split(" ", 1)[k] for n in world_names} for k in (0, 1))
    heads = []
    for a, b in zip(plain, renamed):
        if a == b:
            continue
        old, new = a["entities"][0], b["entities"][0]
        heads.append(new)
        assert new not in world_names and new.split(" ", 1)[0] in firsts and new.split(" ", 1)[1] in lasts
        assert new not in item_text(a)
        assert new in b["question"] and new in b["answer_cot"].split(". ")[0] and new in b["context"]
        assert old not in item_text(b)
        undone = {k: re.sub(rf"(?<!\w){re.escape(new)}(?!\w)", old, v) if isinstance(v, str) else v
                  for k, v in b.items()}
        assert dict(undone, entities=a["entities"]) == a and b["entities"][1:] == a["entities"][1:]
    assert 0.35 * len(plain) < len(heads) < 0.65 * len(plain)
    assert len(set(heads)) > 0.9 * len(heads)  # not a handful of new people in place of the old


def test_fresh_people_rename_every_person_of_a_share_of_training_ctx_items(tiny_world_cfg):
    """fresh_people renames every person a training Ctx item names (first person, objects, the distractors'
    people) to made-up people of its own, one for one: no person of the world is left in it, undoing the
    renaming gives the default item back, and every other item, test items included, is the default's."""
    import re

    default, fresh = (_family(tiny_world_cfg, fresh_people=share) for share in (0.0, 0.5))
    plain, renamed = _changed_only_in("ctx", default, fresh)
    world_names = set(default.world.names)
    any_name = re.compile("|".join(rf"(?<!\w){re.escape(n)}(?!\w)" for n in world_names))
    changed = 0
    for a, b in zip(plain, renamed):
        if a == b:
            continue
        changed += 1
        text_a, text_b = item_text(a), item_text(b)
        assert any_name.search(text_b) is None  # every person renamed
        mapping = {old: new for old, new in zip(a["entities"], b["entities"]) if old != new}
        assert a["entities"][0] in mapping and (a["answer"] in mapping) == (a["answer"] in world_names)
        assert all(new not in world_names and new not in text_a for new in mapping.values())
        assert len(set(mapping.values())) == len(mapping)
        # the distractors' people too: b is a's text with each person's name, everywhere, one made-up name
        pieces = re.split(f"({any_name.pattern})", text_a)
        found = re.fullmatch("(.+?)".join(map(re.escape, pieces[0::2])), text_b, flags=re.S)
        assert found is not None
        pairs = {}
        for old, new in zip(pieces[1::2], found.groups()):
            assert pairs.setdefault(old, new) == new and new not in world_names
        assert len(set(pairs.values())) == len(pairs) and mapping.items() <= pairs.items()
    assert 0.35 * len(plain) < changed < 0.65 * len(plain)


def _has_paragraph(item: dict, person: str) -> bool:
    """Whether the item's context has a paragraph about `person` (one that names them in every sentence)."""
    return any(all(re.search(rf"(?<!\w){re.escape(person)}(?!\w)", sentence) for sentence in para.split(". "))
               for para in item["context"].split("\n"))


def test_one_hop_asks_a_share_of_training_ctx_items_about_their_first_hop_alone(tiny_world_cfg):
    """one_hop asks that share of training Ctx questions about their first hop alone: the same first person
    and first relation, the answer the first hop's object, a one-step chain, and a context with the first
    person's fact and the distractors but nothing said about the object (in a 2-hop Ctx item the object always
    has a paragraph). Every other item, test items included, stays exactly the default's."""
    default, cut = (_family(tiny_world_cfg, two_hops=True, one_hop=share) for share in (0.0, 0.5))
    plain, asked = _changed_only_in("ctx", default, cut)
    changed = 0
    for a, b in zip(plain, asked):
        assert a["hops"] == 2
        if b == a:
            continue
        changed += 1
        head, obj = a["entities"][:2]
        assert b["hops"] == 1 and b["relation_path"] == a["relation_path"][:1] and b["entities"] == [head, obj]
        assert b["answer"] == obj and b["answer_cot"].endswith(f"answer is: {obj}")
        assert b["answer_cot"].startswith(a["answer_cot"].split(". ")[0] + ".")  # the first step, as a's
        assert head in b["question"] and _has_paragraph(b, head) and obj in b["context"]
        assert _has_paragraph(a, obj) and not _has_paragraph(b, obj)
        assert len(b["context"].split("\n")) == 1 + 2  # the first person's paragraph and two distractors
    assert 0.35 * len(plain) < changed < 0.65 * len(plain)


def _sentences(item: dict) -> list[list[tuple[str, str]]]:
    """The item's context as paragraphs of (subject, object) sentences, in noun form "X's {noun} is Y."."""
    return [[tuple(re.fullmatch(r"(.+?)'s [\w ]+? is (.+?)\.?", s).groups()) for s in re.split(r"(?<=\.) (?=[A-Z])", para)]
            for para in item["context"].split("\n")]


def test_scattered_facts_give_the_person_a_training_ctx_hop_finds_no_paragraph(tiny_world_cfg):
    """scattered_facts gives that share of training 2-hop Ctx items a context in which the first hop's object
    heads no paragraph: its second-hop fact is one sentence inside another person's paragraph, and a
    distractor's object by the first relation gets such a loose sentence too, so being named as an object and
    as a subject does not single the answer out. Question, chain and answer stay; every other item, test
    items included, stays exactly the default's."""
    default, loose = (_family(tiny_world_cfg, noun_sentences=True, two_hops=True, scattered_facts=share)
                      for share in (0.0, 0.5))
    plain, scattered = _changed_only_in("ctx", default, loose)
    changed = decoyed = 0
    for a, b in zip(plain, scattered):
        if b == a:
            continue
        changed += 1
        assert {k: v for k, v in b.items() if k != "context"} == {k: v for k, v in a.items() if k != "context"}
        head, obj = a["entities"][:2]
        assert _has_paragraph(a, obj) and not _has_paragraph(b, obj)
        for step in a["answer_cot"].split(" So, ")[0].split(". "):  # both hops' facts are stated
            assert step.rstrip(".") + "." in b["context"]
        paragraphs = _sentences(b)
        assert any(sum(s == head for s, _ in para) > 1 for para in paragraphs)  # the first person's stays
        # a loose sentence: the only one of its paragraph about its subject
        loose_subjects = {s for para in paragraphs for s, _ in para if sum(x == s for x, _ in para) == 1}
        assert obj in loose_subjects
        # the objects distractors' paragraphs name (the first person's paragraph left out)
        named = {o for para in paragraphs for s, o in para if s != head and sum(x == s for x, _ in para) > 1}
        decoyed += any(o in loose_subjects and o != obj for o in named)
    assert 0.35 * len(plain) < changed < 0.65 * len(plain)
    assert decoyed > 0.5 * changed


def test_question_repeats_ask_a_training_ctx_or_comp_question_again_with_its_own_context(tiny_world_cfg):
    """question_repeats lets a training Ctx or Comp question (first person, relation path) be asked up to that
    many times, each time with another context and, under fresh objects, other objects: a world too small for a
    pool of distinct questions holds it. Mem and test questions stay distinct."""
    from collections import Counter, defaultdict

    from atomic_comp.config import WorldConfig

    small = WorldConfig(n_parametric=8, n_contextual=8)
    once, again = (_family(small, two_hops=True, fresh_objects=1.0, fresh_comp_objects=1.0, question_repeats=k)
                   for k in (1, 3))

    def question(it: dict) -> tuple:
        return it["entities"][0], tuple(it["relation_path"])

    n = 1000
    with pytest.raises(RuntimeError, match="world is too small"):
        once.train_items("ctx", n)
    for task in ("ctx", "comp"):
        asked = defaultdict(list)
        for it in again.train_items(task, n):
            asked[question(it)].append(it)
        counts = Counter(len(v) for v in asked.values())
        assert sum(k * v for k, v in counts.items()) == n and max(counts) == 3, counts
        for items in asked.values():
            assert len({it["context"] for it in items}) == len(items)
        if task == "ctx":  # each asking draws its own objects (a small world has few values, so some coincide)
            repeated = [items for items in asked.values() if len(items) > 1]
            assert sum(len({it["answer"] for it in items}) == len(items) for items in repeated) > 0.5 * len(repeated)
    mem = again.train_items("mem", 300)
    assert len(set(map(question, mem))) == 300
    test = again.test_items("ctx", "composition", 30, set())  # all this world has: a test question is asked once
    assert len(set(map(question, test))) == 30
    with pytest.raises(RuntimeError, match="could only make 30 of 31"):
        again.test_items("ctx", "composition", 31, set())


def test_read_parametric_asks_a_share_of_training_ctx_last_hops_as_a_parametric_attribute_read_from_context(
        tiny_world_cfg):
    """read_parametric turns the last hop of that share of training Ctx items (those whose subject has no
    parametric facts) into a parametric attribute with a value of the item's own, stated only in the context,
    and every same-relation distractor into the new relation with another value; the path stays one that
    training may use, and every other item, test items included, is the default's."""
    import re

    default, read = (_family(tiny_world_cfg, noun_sentences=True, read_parametric=share) for share in (0.0, 0.5))
    world, split = read.world, read.split
    index = {n: i for i, n in enumerate(world.names)}
    plain, changed_items = _changed_only_in("ctx", default, read)
    changed = eligible = 0
    for a, b in zip(plain, changed_items):
        subject = a["entities"][-2]
        eligible += not world.is_parametric(index[subject])
        if a == b:
            continue
        changed += 1
        assert not world.is_parametric(index[subject])  # no memory to agree or disagree with
        old, new = BY_NAME[a["relation_path"][-1]], BY_NAME[b["relation_path"][-1]]
        assert b["relation_path"][:-1] == a["relation_path"][:-1] and b["entities"][:-1] == a["entities"][:-1]
        assert new.group == PARAMETRIC and not new.person and split.allowed_in_train(b["relation_path"])
        assert b["hop_groups"] == a["hop_groups"] == [CONTEXTUAL] * a["hops"]
        assert b["answer"] == b["entities"][-1] and b["answer_cot"].endswith(f"{ANSWER_MARKER} {b['answer']}")
        assert f"{new.noun} of" in b["question"] or f"'s {new.noun}?" in b["question"]
        # the answer is stated once, for the subject; the other same-relation sentences give other values
        fact = f"{subject}'s {new.noun} is {b['answer']}."
        values = re.findall(rf"'s {new.noun} is (.*?)\.(?= |\n|$)", b["context"])
        assert b["context"].count(fact) == 1 and values.count(b["answer"]) == 1
        assert len(values) == a["context"].count(f"'s {old.noun} is ") >= 2
        assert f"'s {old.noun} is " not in b["context"]
        steps = b["answer_cot"].split(f" {ANSWER_MARKER}")[0].split(". ")
        assert steps[-1].rstrip(".") + "." == fact and all(s.rstrip(".") + "." in b["context"] for s in steps)
        assert len(b["context"].split("\n")) == len(a["context"].split("\n"))
    assert 0.35 * eligible < changed < 0.65 * eligible and eligible > 0.3 * len(plain)


def test_hop_markers_open_each_chain_step_with_where_its_fact_comes_from(tiny_world_cfg):
    """hop_markers changes only the chains, of training and test items alike: each step opens with its hop
    group's marker, so a teacher-forced hop's prefix carries it, and each hop's relation phrase (what
    relations_written looks for) stays the default's. A step that read_parametric rewrites keeps the
    context's marker: its fact is read from the context."""
    import re

    from atomic_comp.evaluate import forced_prefixes, relation_phrases
    from atomic_comp.families.biography.tasks import HOP_MARKERS
    from atomic_comp.prompts import format_prompt

    default, marked = (_family(tiny_world_cfg, noun_sentences=True, hop_markers=on) for on in (False, True))
    pairs = [(a, b) for t in ("mem", "ctx", "comp")
             for a, b in zip(default.train_items(t, 60), marked.train_items(t, 60))]
    pairs += [(a, b) for t in ("mem", "ctx", "comp") for level in ("iid", "composition", "zero_shot")
              for a, b in zip(default.test_items(t, level, 20, set()), marked.test_items(t, level, 20, set()))]
    assert len(pairs) == 3 * 60 + 9 * 20
    marker = re.compile("|".join(HOP_MARKERS.values()))
    for a, b in pairs:
        assert {k: v for k, v in a.items() if k != "answer_cot"} == {k: v for k, v in b.items() if k != "answer_cot"}
        assert marker.findall(b["answer_cot"]) == [HOP_MARKERS[g] for g in a["hop_groups"]]
        assert b["answer_cot"].startswith(HOP_MARKERS[a["hop_groups"][0]] + " ")
        assert marker.sub("", b["answer_cot"]).replace("  ", " ").strip() == a["answer_cot"]
        assert relation_phrases(b) == relation_phrases(a)
        prompt = format_prompt(b)
        for (i, forced, obj), (_, plain, _) in zip(forced_prefixes(b), forced_prefixes(a), strict=True):
            chain = forced[len(prompt):]
            assert obj == a["entities"][i + 1] and chain.count(". ") == i
            assert chain.rsplit(". ", 1)[-1].strip().startswith(HOP_MARKERS[a["hop_groups"][i]] + " ")
            assert marker.sub("", chain).replace("  ", " ") == plain[len(prompt):]
    read = _family(tiny_world_cfg, noun_sentences=True, hop_markers=True, read_parametric=1.0)
    rewritten = [it for it in read.train_items("ctx", 100) if BY_NAME[it["relation_path"][-1]].group == PARAMETRIC]
    assert rewritten and all(it["answer_cot"].count(HOP_MARKERS[CONTEXTUAL]) == it["hops"]
                             and HOP_MARKERS[PARAMETRIC] not in it["answer_cot"] for it in rewritten)


def test_a_path_seen_in_training_is_an_iid_test_path_only_for_its_own_task(tiny_family):
    """read_parametric gives Ctx training items a parametric last relation; such a path must not become an
    I.I.D. Ctx test path (a Ctx test item with a parametric hop would be a Comp item)."""
    split = tiny_family.split
    ctx = next(p for p in _iid_paths(tiny_family, "ctx"))
    mixed = next(p for p in _iid_paths(tiny_family, "comp"))
    items = tiny_family.test_items("ctx", "iid", 20, {ctx, mixed})
    assert items and {tuple(it["relation_path"]) for it in items} == {ctx}
    assert split.path_level(mixed) == "iid"


def _iid_paths(family, task: str):
    return (tuple(it["relation_path"]) for it in family.train_items(task, 60)
            if family.split.path_level(it["relation_path"]) == "iid")


def test_mem_stated_adds_each_hop_fact_and_a_same_relation_distractor_to_a_share_of_training_mem_items(
        tiny_world_cfg):
    """mem_stated adds to that share of training Mem items' contexts each hop's fact and the same relation's
    fact about a person off the path; question, chain and answer stay the default's, the original context's
    paragraphs all stay, and every other item, test items included, is unchanged."""
    default, stated = (_family(tiny_world_cfg, noun_sentences=True, mem_stated=share) for share in (0.0, 0.5))
    world = stated.world
    index = {n: i for i, n in enumerate(world.names)}
    plain, changed_items = _changed_only_in("mem", default, stated)
    changed = 0
    for a, b in zip(plain, changed_items):
        assert {k: v for k, v in a.items() if k != "context"} == {k: v for k, v in b.items() if k != "context"}
        if a == b:
            continue
        changed += 1
        old, new = a["context"].split("\n"), b["context"].split("\n")
        added = list(new)
        for p in old:
            added.remove(p)
        assert len(added) == 2 * a["hops"]
        # the chain's steps are now sentences of the context, each beside someone else's same-relation fact
        steps = [s.rstrip(".") + "." for s in b["answer_cot"].split(" So, the answer is:")[0].split(". ")]
        assert sorted(steps) == sorted(s for s in added if s in steps) and all(s in added for s in steps)
        path_people = {index[e] for e in a["entities"][:-1]}
        for rel_name, subject in zip(a["relation_path"], a["entities"]):
            rel = BY_NAME[rel_name]
            others = [s for s in added if s not in steps and s.endswith(".") and f"'s {rel.noun} is " in s]
            assert any(s.split("'s ")[0] in index and index[s.split("'s ")[0]] not in path_people
                       for s in others), (rel_name, subject, added)
    assert 0.35 * len(plain) < changed < 0.65 * len(plain)
