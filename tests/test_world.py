"""The world: the paper's 39 relations, two consistent knowledge bases, deterministic people."""

from __future__ import annotations

from atomic_comp.families.biography.relations import BY_NAME, CONTEXTUAL, PARAMETRIC, RELATIONS
from atomic_comp.families.biography.world import VALUE_POOLS, build_world

PARAM_PERSON = {"boss", "child", "classmate", "influenced_by", "mentoring", "roommate"}
PARAM_ATTR = {"birth_date", "died_in", "died_on", "email", "favorite_food", "first_language", "hobby", "known_for",
              "occupation", "pet", "phone", "service", "university", "wrote"}
CTX_PERSON = {"best_friend", "boss_of", "colleague", "influence", "mentored_by", "neighbor", "parent", "rival",
              "sibling", "spouse"}
CTX_ATTR = {"address", "awards", "birth_place", "leader_of", "lived_in", "major", "nationality", "philanthropy",
            "worked_at"}
INVERSES = {("child", "parent"), ("mentoring", "mentored_by"), ("boss", "boss_of"), ("influenced_by", "influence")}
SYMMETRIC = {"spouse", "best_friend", "colleague", "sibling", "rival", "neighbor", "classmate", "roommate"}


def test_relations_are_the_papers_split():
    assert len(RELATIONS) == 39
    groups = {g: {r.name for r in RELATIONS if r.group == g} for g in (PARAMETRIC, CONTEXTUAL)}
    assert groups[PARAMETRIC] == PARAM_PERSON | PARAM_ATTR
    assert groups[CONTEXTUAL] == CTX_PERSON | CTX_ATTR
    assert {r.name for r in RELATIONS if r.person} == PARAM_PERSON | CTX_PERSON
    assert {r.name for r in RELATIONS if r.symmetric} == SYMMETRIC
    for a, b in INVERSES:
        assert BY_NAME[a].inverse == b and BY_NAME[b].inverse == a
        assert BY_NAME[a].group != BY_NAME[b].group
    for r in RELATIONS:
        assert len(set(r.templates)) >= 3, r.name
        for t in r.templates:
            assert "{s}" in t and "{o}" in t, (r.name, t)


def test_nouns_are_distinct_so_questions_name_one_relation():
    nouns = [r.noun for r in RELATIONS]
    assert len(set(nouns)) == len(nouns)
    for a in RELATIONS:
        for b in RELATIONS:
            if a is not b:
                assert f"the {a.noun} of" not in f"the {b.noun} of", (a.name, b.name)


def test_people_are_unique_and_contextual_half_reused():
    w = build_world(300, 200, seed=3)
    assert len(set(w.names)) == len(w.names) == 300 + 100
    assert len(w.contextual) == 200
    reused = [p for p in w.contextual if w.is_parametric(p)]
    assert len(reused) == 100
    for p in w.contextual:
        assert p in w.bio_order and w.bio_order[p]


def test_facts_live_in_their_knowledge_base():
    w = build_world(200, 200, seed=1)
    contextual = set(w.contextual)
    for r in RELATIONS:
        subjects = set(w.facts[r.name])
        members = set(w.parametric) if r.group == PARAMETRIC else contextual
        assert subjects <= members, r.name
        assert len(subjects) >= 0.9 * len(members), (r.name, len(subjects))
        if r.person:
            assert set(w.facts[r.name].values()) <= members, r.name


def test_inverse_pairs_agree_and_symmetric_relations_are_symmetric():
    w = build_world(200, 200, seed=1)
    for a, b in INVERSES:
        checked = 0
        for x, y in w.facts[a].items():
            if x in w.facts[b].values() or y in w.facts[b]:
                assert w.facts[b].get(y) == x, (a, x, y)
                checked += 1
        assert checked > 20, (a, checked)
    for name in SYMMETRIC:
        for x, y in w.facts[name].items():
            assert x != y and w.facts[name][y] == x, name


def test_attribute_values_come_from_pools_and_dates_are_ordered():
    w = build_world(200, 200, seed=1)
    assert set(w.facts["hobby"].values()) <= set(VALUE_POOLS["hobby"])
    assert len(VALUE_POOLS["hobby"]) == 9 and len(VALUE_POOLS["university"]) == 15
    assert len(VALUE_POOLS["food"]) == 20 and len(VALUE_POOLS["language"]) == 20
    for p, born in w.facts["birth_date"].items():
        died = w.facts["died_on"][p]
        assert int(str(died)[-4:]) > int(str(born)[-4:])
    assert all(str(v).isdigit() and len(str(v)) == 10 for v in w.facts["phone"].values())


def test_world_is_deterministic_in_its_seed():
    a, b, c = build_world(100, 100, seed=7), build_world(100, 100, seed=7), build_world(100, 100, seed=8)
    assert a.names == b.names and a.facts == b.facts and a.canonical == b.canonical
    assert a.names != c.names


def test_biographies_paraphrase_each_fact():
    w = build_world(50, 50, seed=1)
    one, three = w.biographies(1, seed=1), w.biographies(3, seed=1)
    assert len(one) == 50 and len(three) == 150
    person = 0
    texts = " ".join(three[0:3])
    rel = BY_NAME["roommate"]
    for t in range(3):
        assert rel.say(w.names[person], w.object_name(rel, person), t) in texts
    # every parametric fact of person 0 is stated in its first paragraph
    for r in RELATIONS:
        if r.group == PARAMETRIC and person in w.facts[r.name]:
            assert w.object_name(r, person) in one[0], r.name


def test_biography_orders_repeat_each_paragraph_with_its_sentences_reshuffled():
    w = build_world(50, 50, seed=1)
    one, four = w.biographies(1, seed=1), w.biographies(1, seed=1, orders=4)
    assert len(four) == 4 * len(one)
    assert four[0] == one[0]  # the first order is the single-order paragraph
    for person in range(3):
        copies = four[4 * person: 4 * person + 4]
        sentences = [sorted(c.rstrip(".").split(". ")) for c in copies]
        assert all(s == sentences[0] for s in sentences)  # the same facts in the same words...
        assert len(set(copies)) == 4  # ...in four different orders


def test_recall_probes_are_cloze_prefixes_of_biography_sentences():
    world = build_world(40, 40, seed=3)
    bios = " ".join(world.biographies(1, seed=3))
    probes = world.recall_probes()
    assert probes
    for p in probes:
        assert BY_NAME[p["relation"]].group == PARAMETRIC
        assert f"{p['prompt']} {p['answer']}." in bios  # the sentence the injection stage trained on
        assert p["prompt"].split()[0] != p["answer"].split()[0]
    # every parametric relation is probed where a wording puts its object last
    assert {p["relation"] for p in probes} == {r.name for r in RELATIONS if r.group == PARAMETRIC}
    # "X is the boss of Y" names the object first: no cloze of it
    assert not any(p["prompt"].endswith("of") and p["relation"] == "boss" for p in probes)
    nouns = build_world(40, 40, seed=3, noun_sentences=True)
    n_facts = sum(len(nouns.facts[r.name]) for r in RELATIONS if r.group == PARAMETRIC)
    assert len(nouns.recall_probes()) == n_facts  # "X's {noun} is Y." always qualifies


def test_recall_probes_carry_their_relations_level(tiny_family):
    probes = tiny_family.recall_probes()
    levels = tiny_family.split.relation_level
    assert all(p["relation_level"] == levels[p["relation"]] for p in probes)
    assert {p["relation_level"] for p in probes} == {"iid", "composition", "held_out"}
