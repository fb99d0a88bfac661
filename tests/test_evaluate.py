"""Evaluation: answer parsing, exact match, pass@k against brute force, first-error alignment."""

from __future__ import annotations

import itertools
import logging
import random
import re

import pytest
import torch

from atomic_comp.evaluate import (GOLD_SLACK, evaluate, first_error, first_error_summary, gold_tokens, pass_at_k,
                                 recall, score, select_probes)
from atomic_comp.models import build_tokenizer
from atomic_comp.prompts import exact_match, format_completion, format_prompt, normalize, parse_answer


@pytest.mark.parametrize("output, parsed", [
    ("A is B. So, the answer is: Carl Jarvis", "Carl Jarvis"),
    ("So, the answer is: x. So, the answer is: Carl Jarvis\nmore text", "Carl Jarvis"),  # the last marker wins
    ("So, the answer is:   Carl   Jarvis  ", "Carl   Jarvis"),
    ("A is B. The answer is Carl Jarvis", None),  # no marker
    ("", None),
    ("So, the answer is:", ""),
    ("so, the answer is: Carl Jarvis", None),  # the marker is exact
])
def test_parse_answer_on_malformed_chains(output, parsed):
    assert parse_answer(output) == parsed


def test_exact_match_normalises_whitespace_and_case_only():
    assert exact_match("So, the answer is:  carl  JARVIS.", "Carl Jarvis")
    assert not exact_match("So, the answer is: Carl Jarviss", "Carl Jarvis")
    assert not exact_match("Carl Jarvis", "Carl Jarvis")
    assert normalize(" The  Navy ") == "the navy"


def _brute_pass_at_k(n: int, c: int, k: int) -> float:
    samples = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


def test_pass_at_k_matches_brute_force_enumeration():
    for n in range(1, 9):
        for c in range(0, n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(_brute_pass_at_k(n, c, k), abs=1e-12), (n, c, k)
    assert pass_at_k(512, 0, 512) == 0.0 and pass_at_k(512, 1, 512) == 1.0
    assert pass_at_k(512, 1, 1) == pytest.approx(1 / 512)


ITEM = {"task": "comp", "level": "iid", "hops": 3, "hop_groups": ["parametric", "contextual", "parametric"],
        "entities": ["Ann Lee", "Bo Chan", "Cy Dow", "Paris"], "answer": "Paris",
        "question": "q", "answer_cot": "Ann Lee and Bo Chan are roommates. Bo Chan is married to Cy Dow. "
                                       "Cy Dow died in Paris. So, the answer is: Paris"}


@pytest.mark.parametrize("output, hop", [
    (ITEM["answer_cot"], None),
    ("Ann Lee and Zed Roe are roommates. Zed Roe is married to Cy Dow. Cy Dow died in Paris. "
     "So, the answer is: Paris", 0),  # right answer, wrong first hop: not chain-correct
    ("Ann Lee and Bo Chan are roommates. Bo Chan is married to Al Ito. Al Ito died in Rome. "
     "So, the answer is: Rome", 1),
    ("Ann Lee and Bo Chan are roommates. Bo Chan is married to Cy Dow. Cy Dow died in Rome. "
     "So, the answer is: Rome", 2),
    ("Cy Dow died in Paris. Ann Lee and Bo Chan are roommates. So, the answer is: Paris", 1),  # out of order
    ("Ann Lee and Bo Chan are roommates. Bo Chan is married to Cy Dow.", 2),  # no marker
])
def test_first_error_alignment_on_hand_made_chains(output, hop):
    assert first_error(ITEM, output) == hop


def test_first_error_summary_counts_contextual_share():
    preds = [dict(ITEM, first_error=1), dict(ITEM, first_error=2), dict(ITEM, first_error=0),
             dict(ITEM, first_error=None)]
    summary = first_error_summary(preds)["comp"]
    assert summary["n_wrong"] == 3
    assert summary["first_wrong_hop"] == {"0": 1, "1": 1, "2": 1}
    assert summary["contextual_share"] == pytest.approx(1 / 3)
    assert summary["mean_relative_position"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)


class OracleLM(torch.nn.Module):
    """A language model that writes a fixed completion for each prompt: the gold chain, or a bad one."""

    def __init__(self, tokenizer, completions: dict[str, str]):
        super().__init__()
        self.tok = tokenizer
        self.table = completions
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def generate(self, input_ids, attention_mask, max_new_tokens, **kw):
        rows = []
        for ids, mask in zip(input_ids, attention_mask):
            prompt = self.tok.decode(ids[mask.bool()], skip_special_tokens=True)
            new = self.tok(self.table[prompt])["input_ids"][:max_new_tokens] + [self.tok.eos_token_id]
            rows.append(ids.tolist() + new)
        width = max(map(len, rows))
        return torch.tensor([r + [self.tok.pad_token_id] * (width - len(r)) for r in rows])


def _items(tiny_data, n=40):
    test = tiny_data.splits["test"]
    return [test[i] for i in random.Random(0).sample(range(len(test)), n)]


def test_exact_match_of_a_gold_copier_is_one_and_of_a_markerless_model_zero(tiny_data):
    items = _items(tiny_data)
    tok = build_tokenizer([format_prompt(it) + format_completion(it) for it in items])
    gold = OracleLM(tok, {format_prompt(it): format_completion(it) for it in items})
    metrics, preds = evaluate(gold, tok, items, batch_size=7, max_new_tokens=200)
    assert all(p["correct"] and p["chain_correct"] for p in preds)
    for task in ("mem", "ctx", "comp"):
        for level, cell in metrics.get(task, {}).items():
            assert cell["em"] == 1.0 and cell["n"] > 0
    assert sum(c["n"] for t in ("mem", "ctx", "comp") for c in metrics[t].values()) == len(items)

    no_marker = OracleLM(tok, {format_prompt(it): format_completion(it).split(" So, the answer is:")[0]
                               for it in items})
    metrics, preds = evaluate(no_marker, tok, items, batch_size=7, max_new_tokens=200)
    assert all(not p["correct"] and p["prediction"] is None for p in preds)
    assert all(cell["em"] == 0.0 for t in ("mem", "ctx", "comp") for cell in metrics[t].values())
    assert metrics["first_error"]["comp"]["n_wrong"] == sum(1 for it in items if it["task"] == "comp")


def test_the_answer_budget_fits_the_longest_gold_chain_and_a_short_one_is_logged(tiny_data, caplog):
    """null sizes the greedy budget to the longest gold chain in this tokenizer; a set budget that cuts gold
    chains is honoured, costs exactly the cut items, and is logged with their count."""
    items = _items(tiny_data)
    tok = build_tokenizer([format_prompt(it) + format_completion(it) for it in items])
    gold = OracleLM(tok, {format_prompt(it): format_completion(it) for it in items})
    lengths = gold_tokens(tok, [format_completion(it) for it in items])
    metrics, preds = evaluate(gold, tok, items, batch_size=7, max_new_tokens=None)
    assert metrics["max_new_tokens"] == max(lengths) + GOLD_SLACK
    assert all(p["correct"] for p in preds)

    short = sorted(lengths)[len(lengths) // 2]  # the median: about half the chains cut
    cut = sum(n > short for n in lengths)
    with caplog.at_level(logging.WARNING, logger="atomic_comp.evaluate"):
        metrics, preds = evaluate(gold, tok, items, batch_size=7, max_new_tokens=short)
    assert metrics["max_new_tokens"] == short and 0 < cut < len(items)
    assert sum(not p["correct"] for p in preds) == cut
    assert f"eval.max_new_tokens={short} cuts off {cut} of {len(items)} gold completions" in caplog.text


def test_recall_scores_each_relation_level_through_generation(tiny_data):
    probes = select_probes(tiny_data.splits["recall"], 15)
    by_level = {lv: [p for p in probes if p["relation_level"] == lv] for lv in ("iid", "composition", "held_out")}
    assert all(0 < len(ps) <= 15 for ps in by_level.values())
    # round-robin: a level's quota is spread over its relations, not spent on the first one
    assert len({p["relation"] for p in by_level["iid"]}) > 1
    tok = build_tokenizer([" " + p["prompt"] + " " + p["answer"] + "." for p in probes] + [" Nobody."])
    # remembers held-out facts, forgets the rest (a wrong name, or the right one running on)
    table = {}
    for i, p in enumerate(probes):
        if p["relation_level"] == "held_out":
            table[" " + p["prompt"]] = " " + p["answer"] + "."
        else:
            table[" " + p["prompt"]] = " Nobody." if i % 2 else " " + p["answer"] + " " + p["answer"] + "."
    result = recall(OracleLM(tok, table), tok, probes, batch_size=8)
    assert list(result) == ["iid", "composition", "held_out"]
    assert result["held_out"] == {"em": 1.0, "n": len(by_level["held_out"])}
    assert result["iid"]["em"] == 0.0 and result["composition"]["em"] == 0.0


NOUN_ITEM = {"task": "mem", "level": "zero_shot", "hops": 2, "hop_groups": ["parametric", "parametric"],
             "entities": ["Ann Lee", "Bo Chan", "the Granite Torch Award"], "answer": "the Granite Torch Award",
             "question": "q", "answer_cot": "Ann Lee's boss is Bo Chan. Bo Chan's award is the Granite Torch Award. "
                                            "So, the answer is: the Granite Torch Award"}


def test_relation_phrases_are_the_words_between_each_hop_subject_and_object():
    from atomic_comp.evaluate import relation_phrases, relations_written

    assert relation_phrases(NOUN_ITEM) == ["'s boss is", "'s award is"]
    # template sentences: whatever stands between the names; a step that names its object first has none
    assert relation_phrases(ITEM) == ["and", "is married to", "died in"]
    flipped = dict(NOUN_ITEM, answer_cot="Bo Chan is the boss of Ann Lee. Bo Chan's award is the Granite Torch "
                                         "Award. So, the answer is: the Granite Torch Award")
    assert relation_phrases(flipped) == [None, "'s award is"]
    # a chain that writes the trained relation but not the held-out one, with any subject names
    assert relations_written(NOUN_ITEM, "Ann Lee's boss is Zed Roe. Zed Roe's award is x. So, the answer is: x")
    assert not relations_written(NOUN_ITEM, "Ann Lee's boss is Bo Chan. Bo Chan's hobby is x. So, the answer is: x")
    assert relations_written(dict(NOUN_ITEM, answer_cot="So, the answer is: x"), "anything") is None
    preds = [dict(NOUN_ITEM, correct=False, chain_correct=False, final_hop="parametric", first_error=1,
                  relations_written=w) for w in (True, False, False, None)]
    assert score(preds)["relations_written"] == {"mem": {"zero_shot": {"em": 1 / 3, "n": 3}}}


def test_score_splits_by_hops_and_final_hop_type():
    preds = [dict(ITEM, correct=True, chain_correct=True, final_hop="parametric", first_error=None),
             dict(ITEM, hops=2, correct=False, chain_correct=False, final_hop="contextual", first_error=1)]
    m = score(preds)
    assert m["comp"]["iid"] == {"em": 0.5, "n": 2}
    assert m["by_hops"]["comp"]["iid"] == {"2": {"em": 0.0, "n": 1}, "3": {"em": 1.0, "n": 1}}
    assert m["by_final_hop"]["comp"]["iid"]["parametric"] == {"em": 1.0, "n": 1}


def test_sampling_shares_the_prefill_and_matches_greedy_at_low_temperature(tiny_data, tmp_path):
    """The cache-sharing sampler is exact: near-zero temperature reproduces greedy decoding."""
    from types import SimpleNamespace

    from atomic_comp.evaluate import generate_greedy, sample_completions
    from atomic_comp.models import build_tiny_model

    items = _items(tiny_data, 6)
    tok = build_tokenizer([format_prompt(it) + format_completion(it) for it in items])
    cfg = SimpleNamespace(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2,
                          max_position_embeddings=1024, rope_theta=10000.0)
    model = build_tiny_model(cfg, tok, seed=0)
    prompts = [format_prompt(it) for it in items]
    greedy = generate_greedy(model, tok, prompts, batch_size=4, max_new_tokens=12)
    samples = sample_completions(model, tok, prompts, n=3, temperature=1e-5, top_p=1.0, max_new_tokens=12,
                                 max_sequences=6)
    assert [len(s) for s in samples] == [3] * 6
    for g, s in zip(greedy, samples):
        assert s == [g, g, g]
    hot = sample_completions(model, tok, prompts[:1], n=8, temperature=1.0, top_p=1.0, max_new_tokens=12)
    assert len(set(hot[0])) > 1


def test_forced_prefixes_stop_each_gold_chain_right_before_each_hop_object(tiny_data):
    from atomic_comp.evaluate import forced_prefixes

    test = tiny_data.splits["test"]
    for it in (test[i] for i in range(0, len(test), 7)):
        full = format_prompt(it) + format_completion(it)
        forced = forced_prefixes(it)
        assert [hop for hop, _, _ in forced] == list(range(it["hops"]))
        for hop, prefix, obj in forced:
            assert obj == it["entities"][hop + 1]
            assert full.startswith(prefix) and full[len(prefix):].lstrip().startswith(obj)
            # the chain so far names every earlier object, and this hop's object is not yet written
            assert all(o in prefix[len(format_prompt(it)):] for o in it["entities"][1:hop + 1])
        assert len({p for _, p, _ in forced}) == len(forced)


def test_forced_hops_scores_each_hop_and_says_whose_fact_a_wrong_object_is(tiny_data):
    """A model that gets hop 0 right and answers hop 1 with its subject's other fact (zero-shot items), with
    someone else's fact of the same relation (I.I.D.), or, for a contextual hop, with such a fact that the
    context does not state (composition): the cells and outcome counts must say exactly that."""
    from atomic_comp.evaluate import forced_hops, forced_prefixes

    facts = {p["name"]: {r: o for g in p["facts"].values() for r, o in g.items()} for p in tiny_data.world["people"]}
    table, expect, items, recalled = {}, [], [], 0
    for it in _items(tiny_data, 200):
        if it["hops"] != 2 or it["entities"][1] not in facts:
            continue
        rel, subject, obj = it["relation_path"][1], it["entities"][1], it["entities"][2]
        ctx = it["context"] if it["hop_groups"][1] == "contextual" else None
        # a subject's other fact counts whether the context states it or it is recalled
        others = sorted(o for r, o in facts[subject].items() if r != rel and o != obj)
        theirs = [(o, name in (ctx or name) and o in (ctx or o)) for name, f in facts.items()
                  if name != subject and rel in f and f[rel] != obj and f[rel] not in facts[subject].values()
                  for o in [f[rel]]]
        if it["level"] == "zero_shot" and others:
            wrong, outcome = others[0], "subject_fact"
            recalled += ctx is not None and wrong not in ctx
        elif it["level"] == "iid" and any(ok for _, ok in theirs):
            wrong, outcome = next(o for o, ok in theirs if ok), "relation_fact"
        elif it["level"] == "composition" and ctx and any(o not in ctx for o, _ in theirs):
            wrong, outcome = next(o for o, _ in theirs if o not in ctx), "other"  # not in this prompt: no lookup slip
        else:
            continue
        (_, first, gold0), (_, second, _) = forced_prefixes(it)
        table[first], table[second] = f" {gold0}.", f" {wrong}."
        expect += ["right", outcome]
        items.append(it)
    assert {"subject_fact", "relation_fact", "other"} <= set(expect) and recalled > 0
    tok = build_tokenizer(list(table) + list(table.values()))
    result, rows = forced_hops(OracleLM(tok, table), tok, items, tiny_data.world, batch_size=9)
    assert [r["outcome"] for r in rows] == expect
    # rows follow the items' order; a zero-shot item has a held-out relation on some hop, other items none
    for k, it in enumerate(items):
        pair = rows[2 * k:2 * k + 2]
        assert [r["object"] for r in pair] == it["entities"][1:]
        assert any(r["relation_level"] == "held_out" for r in pair) == (it["level"] == "zero_shot")
    for task, levels in result.items():
        for level, cells in levels.items():
            for cell, c in cells.items():
                assert cell.split("/")[0] in ("parametric", "contextual") and c["n"] == sum(c["outcomes"].values())
                assert c["em"] == c["outcomes"].get("right", 0) / c["n"]


def test_paragraphless_hops_leave_out_the_found_persons_paragraph_and_count_what_the_model_wrote(tiny_data):
    """Each contextual hop whose object has a paragraph of the context to itself is forced twice: as in
    forced_hops, and with that one paragraph left out (every other line kept, in order). Every 2-hop Ctx item's
    first hop is such a hop; a hop whose object has no paragraph (a Comp item's contextual hop before a
    parametric one) is not. The outcomes count what the model wrote each time."""
    from atomic_comp.evaluate import forced_prefixes, paragraphless_hops, paragraphless_prefixes

    items = [it for it in _items(tiny_data, 200) if "contextual" in it["hop_groups"]]
    table, expect, ctx_first = {}, [], 0
    for it in items:
        forced = {hop: prefix for hop, prefix, _ in forced_prefixes(it)}
        hops = paragraphless_prefixes(it)
        if it["task"] == "ctx" and it["hops"] > 1:
            assert 0 in [hop for hop, *_ in hops]
            ctx_first += 1
        for hop, kept, cut, obj in hops:
            assert it["hop_groups"][hop] == "contextual" and obj == it["entities"][hop + 1] and kept == forced[hop]
            assert it["hop_groups"][hop + 1] == "contextual"  # not the last hop, nor one a parametric hop follows
            lines = it["context"].split("\n")
            left = re.search(r"Context:\n(.*)\nQuestion: ", cut, re.S).group(1).split("\n")
            assert cut.endswith(kept[len(format_prompt(it)):])  # the same chain
            (gone,) = [line for line in lines if line not in left]
            assert left == [line for line in lines if line != gone]
            assert all(obj in sentence for sentence in gone.split(". "))
            assert not all(it["entities"][hop] in sentence for sentence in gone.split(". "))  # not the subject's
            right, without, outcome = [(obj, obj, "right"), (obj, "Nobody Here", "needs_paragraph"),
                                       ("Nobody Here", "Nobody Here", "wrong")][len(expect) % 3]
            table[kept], table[cut] = f" {right}.", f" {without}."
            expect.append(outcome)
    assert ctx_first >= 10 and len(expect) >= 30
    tok = build_tokenizer(list(table) + list(table.values()))
    result, rows = paragraphless_hops(OracleLM(tok, table), tok, items, tiny_data.world, batch_size=8)
    assert [r["outcome"] for r in rows] == expect
    for levels in result.values():
        for cells in levels.values():
            for cell, c in cells.items():
                assert cell.startswith("contextual/") and c["em"] == c["outcomes"].get("right", 0) / c["n"]
    assert sum(c["outcomes"].get("needs_paragraph", 0) for levels in result.values() for cells in levels.values()
               for c in cells.values()) == expect.count("needs_paragraph")


def test_unrivalled_hops_leave_out_other_peoples_sentences_of_the_hops_relation_and_nothing_else(tiny_data):
    """Each contextual hop whose context states the same relation about someone else (a rival) is forced twice:
    as in forced_hops, and with exactly those rival sentences gone; the subject's own sentence, every other
    relation's sentence and the line order stay. The outcomes count what the model wrote each time."""
    from atomic_comp.evaluate import UNRIVALLED_OUTCOMES, forced_prefixes, unrivalled_hops, unrivalled_prefixes

    facts = {p["name"]: {r: o for g in p["facts"].values() for r, o in g.items()} for p in tiny_data.world["people"]}
    items = [it for it in _items(tiny_data, 200) if "contextual" in it["hop_groups"]]
    table, expect, comp, leads = {}, [], 0, set()
    for it in items:
        forced = {hop: prefix for hop, prefix, _ in forced_prefixes(it)}
        for hop, kept, cut, obj in unrivalled_prefixes(it, tiny_data.world):
            subject, rel = it["entities"][hop], it["relation_path"][hop]
            assert it["hop_groups"][hop] == "contextual" and obj == it["entities"][hop + 1] and kept == forced[hop]
            left = re.search(r"Context:\n(.*)\nQuestion: ", cut, re.S).group(1)
            assert cut.endswith(kept[len(format_prompt(it)):])  # the same chain
            before = [s.rstrip(".") for s in re.split(r"(?<=\.)\s+", it["context"])]
            after = [s.rstrip(".") for s in re.split(r"(?<=\.)\s+", left)]
            gone = [s for s in before if s not in after]
            assert gone and after == [s for s in before if s not in gone]  # only sentences go, in order
            words = kept[kept.rindex(subject) + len(subject):] + " "  # the chain's ("'s award is ", " go to ")
            (own,) = [s for s in after if s.endswith(f"{subject}{words}{obj}")]
            lead = own[:-len(f"{subject}{words}{obj}")]  # "Letters for "
            for s in gone:  # each one states the hop's relation in those words, as the world has it, for another
                who, _, what = s.removeprefix(lead).partition(words)
                assert s.startswith(lead) and who != subject and facts[who][rel] == what
            leads.add(lead)
            comp += it["task"] == "comp"
            right, unrivalled, outcome = [(obj, obj, "right"), ("Nobody Here", obj, "misled_by_rivals"),
                                          ("Nobody Here", "Nobody Here", "wrong")][len(expect) % 3]
            table[kept], table[cut] = f" {right}.", f" {unrivalled}."
            expect.append(outcome)
    assert comp >= 5 and len(expect) >= 30 and "" in leads and len(leads) > 1  # sentences with words before X too
    tok = build_tokenizer(list(table) + list(table.values()))
    result, rows = unrivalled_hops(OracleLM(tok, table), tok, items, tiny_data.world, batch_size=8)
    assert [r["outcome"] for r in rows] == expect and set(expect) == set(UNRIVALLED_OUTCOMES)
    assert all("output_with_rivals" in r for r in rows)
    for levels in result.values():
        for cells in levels.values():
            for cell, c in cells.items():
                right_without = c["outcomes"].get("right", 0) + c["outcomes"].get("misled_by_rivals", 0)
                assert cell.startswith("contextual/") and c["em"] == right_without / c["n"]


def test_counterfactual_hops_change_one_fact_of_the_context_and_say_whether_the_model_read_it(tiny_data):
    """Each contextual hop is forced as in forced_hops, with the one context sentence that states its fact now
    naming another object, named nowhere else in the item; a model that writes that object read the context,
    one that writes the world's recalled it, and the cells count exactly what the model wrote."""
    from atomic_comp.evaluate import counterfactual_hops, counterfactual_prefixes, forced_prefixes

    items = [it for it in _items(tiny_data, 120) if "contextual" in it["hop_groups"]]
    table, expect = {}, []
    for it in items:
        forced = {hop: prefix for hop, prefix, _ in forced_prefixes(it)}
        changed = counterfactual_prefixes(it, tiny_data.world)
        assert [hop for hop, *_ in changed] == [i for i, g in enumerate(it["hop_groups"]) if g == "contextual"]
        for hop, prefix, obj, fresh in changed:
            original = format_prompt(it)
            chain = forced[hop][len(original):]
            assert prefix.endswith(chain) and obj == it["entities"][hop + 1]
            before, after = original.splitlines(), prefix[:len(prefix) - len(chain)].splitlines()
            diff = [(a, b) for a, b in zip(before, after) if a != b]
            assert len(before) == len(after) and len(diff) == 1  # one paragraph changed, in one place
            assert fresh not in original + format_completion(it) and diff[0][1].count(fresh) == 1
            assert diff[0][1].replace(fresh, obj) == diff[0][0]  # only the object changed
            answer, outcome = [(fresh, "context"), (obj, "memory"), ("Nobody Here", "other")][len(expect) % 3]
            table[prefix] = f" {answer}."
            expect.append(outcome)
    assert len(expect) >= 30
    tok = build_tokenizer(list(table) + list(table.values()))
    result, rows = counterfactual_hops(OracleLM(tok, table), tok, items, tiny_data.world, batch_size=8)
    assert [r["outcome"] for r in rows] == expect
    reads = sum(c["outcomes"].get("context", 0) for levels in result.values() for cells in levels.values()
                for c in cells.values())
    assert reads == expect.count("context")
    for levels in result.values():
        for cells in levels.values():
            for cell, c in cells.items():
                assert cell.startswith("contextual/") and c["em"] == c["outcomes"].get("context", 0) / c["n"]


def test_reading_hops_forced_are_classed_by_the_facts_their_own_context_states():
    """A made-up world's facts live only in each item's context (`stated_world`): a forced miss is the name's fact
    by another noun (the noun was not matched), the noun's fact about someone else (the name was not), or
    neither; cells are by level, trained nouns apart from held-out ones."""
    from atomic_comp.config import ReadingConfig
    from atomic_comp.evaluate import forced_hops, forced_prefixes, stated_world
    from atomic_comp.reading import reading_items

    _, items = reading_items(ReadingConfig(items=10, relations=40, held_out=10, names=20, values=30, test_items=40), 5)
    table, expect = {}, []
    for it in items:
        facts = {(p["name"], noun): obj for p in stated_world(it)["people"] for noun, obj in p["facts"]["contextual"].items()}
        assert len(facts) == 8 and stated_world(it)["levels"] == {"contextual": {it["level"]: it["relation_path"]}}
        for hop, prefix, obj in forced_prefixes(it):
            subject, noun = it["entities"][hop], it["relation_path"][hop]
            assert facts[(subject, noun)] == obj
            mine = {o for (s, _), o in facts.items() if s == subject}
            by_name = [o for (s, n), o in facts.items() if s == subject and n != noun and o != obj]
            by_noun = [o for (s, n), o in facts.items() if n == noun and s != subject and o not in mine]
            outcome = ("right", "subject_fact", "relation_fact", "other")[len(expect) % 4]
            wrote = {"right": obj, "subject_fact": (by_name or [None])[0], "relation_fact": (by_noun or [None])[0],
                     "other": "Nobody Here"}[outcome]
            if wrote is None:
                outcome, wrote = "other", "Nobody Here"
            table[prefix] = f" {wrote}."
            expect.append(outcome)
    assert {"right", "subject_fact", "relation_fact", "other"} <= set(expect)
    tok = build_tokenizer(list(table) + list(table.values()))
    result, rows = forced_hops(OracleLM(tok, table), tok, items, stated_world, batch_size=7)
    assert [r["outcome"] for r in rows] == expect
    assert set(result) == {"read"} and set(result["read"]) == {"iid", "zero_shot"}
    for level, cells in result["read"].items():
        (cell, c), = cells.items()
        assert cell == f"contextual/{level}"
        assert c["n"] == sum(it["hops"] for it in items if it["level"] == level) == sum(c["outcomes"].values())


def test_zero_shot_cells_by_held_out_relation_count_each_item_under_every_held_out_relation_of_its_path(tiny_data):
    from atomic_comp.evaluate import select_items
    from atomic_comp.pipeline import by_held_out_relation

    items = select_items(tiny_data.splits["test"], ["iid", "zero_shot"], ["mem", "ctx", "comp"], None)
    held = {r for group in tiny_data.world["levels"].values() for r in group["held_out"]}
    preds = [{"question": it["question"], "correct": i % 3 == 0} for i, it in enumerate(items)]
    cells = by_held_out_relation(items, preds, tiny_data.world)
    assert set(cells) == {"mem", "ctx", "comp"}
    for task, relations in cells.items():
        assert relations and set(relations) <= held
        for rel, cell in relations.items():
            mine = [i for i, it in enumerate(items)
                    if (it["task"], it["level"]) == (task, "zero_shot") and rel in it["relation_path"]]
            assert cell == {"em": sum(i % 3 == 0 for i in mine) / len(mine), "n": len(mine)}
    # a zero-shot item is counted at least once (its path has a held-out relation), an I.I.D. one never
    zero_shot = sum(it["level"] == "zero_shot" for it in items)
    assert 0 < zero_shot <= sum(c["n"] for relations in cells.values() for c in relations.values())
    with pytest.raises(ValueError, match="out of step"):
        by_held_out_relation(items, preds[1:] + preds[:1], tiny_data.world)
