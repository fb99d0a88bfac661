"""Exact match on the test split (per task, level, hop count, final-hop type), pass@k, and first errors.

Generation is batched with left padding and the KV cache. The answer is the text
after the last 'So, the answer is:'; a missing marker counts as wrong.
"""

from __future__ import annotations

import itertools
import logging
import random
import re
from collections import Counter, defaultdict
from typing import Callable

import torch

from atomic_comp.config import LEVEL_KEYS
from atomic_comp.prompts import exact_match, format_completion, format_prompt, normalize, parse_answer

log = logging.getLogger(__name__)
# tokens past the longest gold chain: room for a wrong chain a little longer than the gold one to end
GOLD_SLACK = 8


def gold_tokens(tokenizer, golds: list[str]) -> list[int]:
    """Each text's length in the tokenizer's tokens (no special tokens)."""
    return [len(ids) for ids in tokenizer(list(golds), add_special_tokens=False)["input_ids"]] if golds else []


def room_for(tokenizer, golds: list[str], slack: int) -> int:
    """Tokens that fit the longest of `golds` in this tokenizer, plus `slack`."""
    return max(gold_tokens(tokenizer, golds), default=0) + slack


def answer_budget(tokenizer, golds: list[str], budget: int | None, what: str) -> int:
    """A generation budget for `golds` (gold completions): `budget` as set, or, when None, the longest gold
    in this tokenizer plus GOLD_SLACK. Byte-pair pieces take ~1.7x the words' tokens, so a fixed budget sized
    for words cuts gold chains off, and a cut chain can never match; a set budget that does so is logged."""
    if budget is None:
        return room_for(tokenizer, golds, GOLD_SLACK)
    lengths = gold_tokens(tokenizer, golds)
    cut = sum(n > budget for n in lengths)
    if cut:
        log.warning("%s=%d cuts off %d of %d gold completions (longest %d tokens); null sizes it to fit",
                    what, budget, cut, len(lengths), max(lengths))
    return budget


def select_items(test, levels: list[str], tasks: list[str], max_items: int | None) -> list[dict]:
    """The first max_items test items of each task x level (the test set's own order, fixed before any tuning)."""
    taken: dict[tuple, int] = defaultdict(int)
    out = []
    for it in test:
        cell = (it["task"], it["level"])
        if it["task"] in tasks and it["level"] in levels and (max_items is None or taken[cell] < max_items):
            taken[cell] += 1
            out.append(it)
    return out


@torch.no_grad()
def generate_greedy(model, tokenizer, prompts: list[str], batch_size: int, max_new_tokens: int,
                    progress=None) -> list[str]:
    model.eval()
    device = next(model.parameters()).device
    # longest first, so each batch pads little; outputs are put back in order
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    outputs: list[str] = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True).to(device)
        # a static KV cache writes in place instead of concatenating each step (1.5x on the tiny model)
        gen = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens, use_cache=True,
                             cache_implementation="static",
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        texts = tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        for i, text in zip(idx, texts):
            outputs[i] = text
        if progress:
            progress({"done": min(start + batch_size, len(order)), "total": len(order)})
    return outputs


def first_error(item: dict, output: str) -> int | None:
    """Index of the first wrong hop of a chain, aligned with the gold path by its entities; None if all right.

    Hop i is right when the entity it leads to is written after the previous hop's
    (the final hop: when the parsed answer matches the gold one).
    """
    pos = 0
    objects = item["entities"][1:]
    for i, name in enumerate(objects):
        if i == len(objects) - 1:
            return None if exact_match(output, item["answer"]) else i
        j = output.find(name, pos)
        if j < 0:
            return i
        pos = j + len(name)
    return None


def first_error_summary(predictions: list[dict]) -> dict:
    """Where wrong chains first go wrong (the paper's Table 2), per task."""
    out: dict = {}
    by_task = defaultdict(list)
    for p in predictions:
        if p["first_error"] is not None:
            by_task[p["task"]].append(p)
    for task, rows in sorted(by_task.items()):
        hop_counts: dict = defaultdict(int)
        groups: dict = defaultdict(int)
        rel = []
        for p in rows:
            i = p["first_error"]
            hop_counts[str(i)] += 1
            groups[p["hop_groups"][i]] += 1
            rel.append(i / (p["hops"] - 1) if p["hops"] > 1 else 0.0)
        out[task] = {
            "n_wrong": len(rows),
            "first_wrong_hop": dict(sorted(hop_counts.items())),
            "by_hop_type": dict(groups),
            "contextual_share": groups["contextual"] / len(rows),
            "mean_relative_position": sum(rel) / len(rel),
        }
    return out


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): 1 - C(n-c, k) / C(n, k), as a stable product."""
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


@torch.no_grad()
def sample_completions(model, tokenizer, prompts: list[str], n: int, temperature: float, top_p: float,
                       max_new_tokens: int, max_sequences: int = 512, seed: int = 0) -> list[list[str]]:
    """n sampled completions per prompt, in batches of about max_sequences sequences.

    Each prompt is prefilled once and its KV cache copied into a static cache for the
    samples (`num_return_sequences` alone would prefill every copy, and a growing cache
    re-copies itself every step); sampling stops at EOS.
    """
    from transformers import DynamicCache, StaticCache

    model.eval()
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    per_call = min(n, max_sequences)
    prompts_per_call = max(1, max_sequences // per_call)
    out: list[list[str]] = [[] for _ in prompts]
    for start in range(0, len(prompts), prompts_per_call):
        idx = list(range(start, min(start + prompts_per_call, len(prompts))))
        enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True).to(device)
        ids, mask = enc["input_ids"], enc["attention_mask"]
        # prefill all but the last prompt token once; generate() feeds the last one itself
        prefix = DynamicCache(config=model.config)
        model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1],
              position_ids=(mask[:, :-1].cumsum(-1) - 1).clamp(min=0), past_key_values=prefix, use_cache=True)
        positions = torch.arange(ids.shape[1] - 1, device=device)
        while len(out[idx[0]]) < n:
            k = min(per_call, n - len(out[idx[0]]))
            cache = StaticCache(config=model.config, max_cache_len=ids.shape[1] + max_new_tokens)
            for layer, kv in enumerate(prefix.layers):
                cache.update(kv.keys.repeat_interleave(k, 0), kv.values.repeat_interleave(k, 0), layer,
                             {"cache_position": positions})
            gen = model.generate(input_ids=ids.repeat_interleave(k, 0), attention_mask=mask.repeat_interleave(k, 0),
                                 past_key_values=cache, do_sample=True, temperature=temperature, top_p=top_p,
                                 top_k=0, max_new_tokens=max_new_tokens, use_cache=True,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            texts = tokenizer.batch_decode(gen[:, ids.shape[1]:], skip_special_tokens=True)
            for j, i in enumerate(idx):
                out[i] += texts[j * k:(j + 1) * k]
    return out


def evaluate_passk(model, tokenizer, items: list[dict], n: int, ks: list[int], temperature: float, top_p: float,
                   max_new_tokens: int | None, max_sequences: int = 512) -> tuple[dict, list[dict]]:
    """({level: {k: pass@k}}, samples) over `items`; k > n is refused up front by the config check.
    max_new_tokens None: sized to the items' gold chains (answer_budget)."""
    max_new_tokens = answer_budget(tokenizer, [format_completion(it) for it in items], max_new_tokens,
                                   "eval.max_new_tokens")
    samples = sample_completions(model, tokenizer, [format_prompt(it) for it in items], n, temperature, top_p,
                                 max_new_tokens, max_sequences)
    per_level: dict = defaultdict(list)
    records = []
    for it, outs in zip(items, samples):
        c = sum(exact_match(o, it["answer"]) for o in outs)
        per_level[it["level"]].append(c)
        records.append({"task": it["task"], "level": it["level"], "question": it["question"],
                        "answer": it["answer"], "n": n, "correct": c, "outputs": outs})
    result = {lv: {str(k): sum(pass_at_k(n, c, k) for c in cs) / len(cs) for k in ks}
              for lv, cs in per_level.items()}
    return result, records


def _recalled(output: str, answer: str) -> bool:
    """The continuation states the object and ends the sentence there."""
    out = output.strip()
    return out.lower().startswith(answer.lower()) and out[len(answer):].lstrip().startswith(".")


def recall(model, tokenizer, probes: list[dict], batch_size: int) -> dict:
    """Greedy cloze accuracy on biography sentences, per relation level: {level: {"em", "n"}}."""
    # the object and its full stop
    width = room_for(tokenizer, [" " + p["answer"] + "." for p in probes], 2)
    outputs = generate_greedy(model, tokenizer, [" " + p["prompt"] for p in probes], batch_size, width)
    by = defaultdict(list)
    for p, out in zip(probes, outputs):
        by[p["relation_level"]].append({"correct": _recalled(out, p["answer"])})
    return {level: _em(by[level]) for level in LEVEL_KEYS if level in by}


def _gold_hops(item: dict) -> tuple[str, list[tuple[int, int]]]:
    """The gold chain and, for each hop whose object it states, (where the text after the previous object
    starts, where this hop's object starts).

    The object is found after the previous one, so a name that the chain also states as
    the next hop's subject is taken at its first, object position.
    """
    cot = format_completion(item)
    spans, pos = [], 0
    for obj in item["entities"][1:]:
        j = cot.find(obj, pos)
        if j < 0:  # a released item whose chain does not state its entities
            break
        spans.append((pos, j))
        pos = j + len(obj)
    return cot, spans


def forced_prefixes(item: dict) -> list[tuple[int, str, str]]:
    """(hop, prompt + gold chain up to that hop's object, the object) for every hop of an item."""
    cot, spans = _gold_hops(item)
    prompt = format_prompt(item)
    return [(i, prompt + cot[:j].rstrip(), item["entities"][i + 1]) for i, (_, j) in enumerate(spans)]


def _hop_words(item: dict) -> list[str | None]:
    """Each hop's text between its subject and its object in the gold chain, spaces kept ("'s award is "), or
    None where the chain does not name the subject before the object."""
    cot, spans = _gold_hops(item)
    out = []
    for subject, (pos, j) in zip(item["entities"], spans):
        k = cot.rfind(subject, pos, j)
        out.append(cot[k + len(subject):j] if k >= 0 else None)
    return out


def relation_phrases(item: dict) -> list[str | None]:
    """Each hop's words between its subject and its object in the gold chain ("'s award is", " works under"),
    or None for a step that states its object first. A zero-shot chain that never writes the held-out
    relation's phrase cannot reach its object, however well the fact is held (see forced_hops)."""
    return [(words.strip() or None) if words is not None else None for words in _hop_words(item)]


def relations_written(item: dict, output: str) -> bool | None:
    """The chain writes every hop's relation phrase (None when the gold chain gives no phrase to look for)."""
    phrases = [p for p in relation_phrases(item) if p]
    return all(p in output for p in phrases) if phrases else None


def _writes(out: str, want: str) -> bool:
    """The normalised continuation starts with the normalised name as whole words."""
    return out.startswith(want) and not out[len(want):len(want) + 1].isalnum()


# where a teacher-forced hop's wrong object came from, in the order the main job prints them
WRONG_OUTCOMES = ("subject_fact", "relation_fact", "in_context", "other")


class _Facts:
    """The world's facts by subject and by relation, to say whose fact a wrong object is (empty for released
    worlds, which carry no people)."""

    def __init__(self, world: dict):
        self.by_subject: dict[str, dict[str, tuple[str, str]]] = defaultdict(dict)
        self.by_relation: dict[str, dict[str, tuple[str, str]]] = defaultdict(dict)
        for p in world.get("people", []):
            for group in p.get("facts", {}).values():
                for rel, obj in group.items():
                    self.by_subject[p["name"]][rel] = self.by_relation[rel][p["name"]] = (obj, normalize(obj))
        self.level = {r: lv for group in world.get("levels", {}).values() for lv, rels in group.items() for r in rels}

    def outcome(self, output: str, gold: str, subject: str, relation: str, context: str | None) -> str:
        """right; subject_fact: another fact of the hop's subject, stated in the context or recalled (the
        relation was not matched); relation_fact: this relation's object for someone else, for a contextual
        hop one the context states (the subject was not matched); in_context: some other text the context
        states, up to the first full stop; other: none of these."""
        output = normalize(output)
        if _writes(output, normalize(gold)):
            return "right"
        if any(_writes(output, o) for r, (_, o) in self.by_subject[subject].items() if r != relation):
            return "subject_fact"
        if any(_writes(output, o) and (context is None or raw in context and s in context)
               for s, (raw, o) in self.by_relation[relation].items() if s != subject):
            return "relation_fact"
        span = output.split(".")[0].strip()
        if context and span and span in normalize(context):
            return "in_context"
        return "other"


def _continue_hops(model, tokenizer, prefixes: list[str], objects: list[str], batch_size: int) -> list[str]:
    """Greedy continuations of hop prefixes, a few tokens longer than the longest object."""
    width = room_for(tokenizer, [" " + obj for obj in objects], 2)
    return generate_greedy(model, tokenizer, prefixes, batch_size, width)


def _hop_row(it: dict, hop: int, facts: "_Facts", **fields) -> dict:
    return {"task": it["task"], "level": it["level"], "question": it["question"], "hop": hop,
            "group": it["hop_groups"][hop], "relation": it["relation_path"][hop],
            "relation_level": facts.level.get(it["relation_path"][hop], "unknown"), **fields}


def _hop_cells(rows: list[dict], hit: str | tuple[str, ...]) -> dict:
    """task -> level -> "<hop group>/<relation level>" -> {em: share of rows whose outcome is `hit` (or one of
    them), n, outcomes}."""
    hits = (hit,) if isinstance(hit, str) else hit
    cells = defaultdict(list)
    for row in rows:
        cells[(row["task"], row["level"], f"{row['group']}/{row['relation_level']}")].append(row)
    result: dict = {}
    for (task, level, cell), rs in sorted(cells.items()):
        counts = Counter(r["outcome"] for r in rs)
        result.setdefault(task, {}).setdefault(level, {})[cell] = {
            "em": sum(counts[h] for h in hits) / len(rs), "n": len(rs), "outcomes": dict(sorted(counts.items()))}
    return result


def forced_hops(model, tokenizer, items: list[dict], world: "dict | Callable[[dict], dict]",
                batch_size: int) -> tuple[dict, list[dict]]:
    """Teacher-forced hop accuracy: the gold chain up to each hop's object, then greedy decoding.

    It separates retrieving a hop's object from writing the chain that leads to it: a zero-shot
    item fails freely when the model never writes the held-out relation, and under forcing only
    when, given that relation, it cannot find the object. Cells are task -> level ->
    "<hop group>/<relation level>", with where wrong objects came from (`_Facts.outcome`). `world` is
    the data's world JSON, or a function giving each item's own (`stated_world`, for items whose facts
    live only in their contexts).
    """
    shared = None if callable(world) else _Facts(world)
    jobs = [(it, i, prefix, obj) for it in items for i, prefix, obj in forced_prefixes(it)]
    outputs = _continue_hops(model, tokenizer, [j[2] for j in jobs], [j[3] for j in jobs], batch_size)
    rows = []
    for (it, i, _, obj), out in zip(jobs, outputs):
        facts = shared or _Facts(world(it))
        group = it["hop_groups"][i]
        context = it.get("context") or "" if group == "contextual" else None  # parametric: no context counts
        rows.append(_hop_row(it, i, facts, object=obj, output=out,
                             outcome=facts.outcome(out, obj, it["entities"][i], it["relation_path"][i], context)))
    return _hop_cells(rows, "right"), rows


_STATED = re.compile(r"^(.+?)'s (.+?) is (.+)\.$")


def stated_world(item: dict) -> dict:
    """The facts an item's context states as "X's {noun} is Y." sentences, as a world JSON for `_Facts`, the
    item's path at the item's level: the world of an item whose facts exist nowhere else (the reading stage's
    made-up world, a new one per item), so a forced miss is classed as the subject's other fact or the noun's
    fact about someone else, as a world's are."""
    people: dict[str, dict] = defaultdict(dict)
    for sentence in _SENTENCE_END.split((item.get("context") or "").replace("\n", " ")):
        m = _STATED.match(sentence.strip())
        if m:
            people[m.group(1)][m.group(2)] = m.group(3)
    return {"people": [{"name": name, "facts": {"contextual": facts}} for name, facts in people.items()],
            "levels": {"contextual": {item["level"]: list(item["relation_path"])}}}


def _whole_word(name: str) -> re.Pattern:
    """`name` where it stands as whole words, not inside a longer name."""
    return re.compile(rf"(?<!\w){re.escape(name)}(?!\w)")


# where a counterfactual hop's answer came from: the changed context, the world's fact (memory), neither
COUNTERFACTUAL_OUTCOMES = ("context", "memory", "other")
_SENTENCE_END = re.compile(r"(?<=\.)\s+")


def counterfactual_prefixes(item: dict, world: "dict | _Facts") -> list[tuple[int, str, str, str]]:
    """(hop, prompt + gold chain up to the hop's object, the world's object, the context's) for each contextual
    hop whose fact is one sentence of the context, with that sentence's object changed to the same relation's
    object for someone else, named nowhere in the item.

    The world's facts are fixed, so a model can answer a contextual hop by recalling the object from the
    training chains that stated it instead of reading the context; only a changed context tells the two apart.
    `world` is the data's world JSON, or its `_Facts` when called for many items."""
    facts = world if isinstance(world, _Facts) else _Facts(world)
    cot, spans = _gold_hops(item)
    context = item.get("context") or ""
    text = " ".join((item["question"], context, cot))
    out = []
    for i, (_, j) in enumerate(spans):
        if item["hop_groups"][i] != "contextual":
            continue
        subject, obj = item["entities"][i], item["entities"][i + 1]
        has = _whole_word(obj)
        said = [s for s in _SENTENCE_END.split(context) if subject in s and has.search(s)]
        if len(said) > 1:  # a symmetric fact is also stated from the object's side: keep the subject's own
            said = [s for s in said if s.startswith(subject)]
        others = sorted({raw for raw, _ in facts.by_relation[item["relation_path"][i]].values()
                         if raw not in text and not any(raw in e or e in raw for e in item["entities"])})
        if len(said) != 1 or not others:
            continue
        fresh = random.Random(f"{item['question']}|{context}|{i}").choice(others)
        changed = context.replace(said[0], has.sub(lambda _: fresh, said[0]), 1)  # fresh as text, not a pattern
        out.append((i, format_prompt(dict(item, context=changed)) + cot[:j].rstrip(), obj, fresh))
    return out


def counterfactual_hops(model, tokenizer, items: list[dict], world: dict, batch_size: int) -> tuple[dict, list[dict]]:
    """Contextual hops forced as in `forced_hops`, but with the hop's fact changed in the context
    (`counterfactual_prefixes`): em is the share that writes the context's object (reads), and the outcomes
    count `COUNTERFACTUAL_OUTCOMES` (memory: the world's object, recalled against the context)."""
    facts = _Facts(world)
    jobs = [(it, i, prefix, obj, fresh) for it in items
            for i, prefix, obj, fresh in counterfactual_prefixes(it, facts)]
    outputs = _continue_hops(model, tokenizer, [j[2] for j in jobs], [j[4] for j in jobs], batch_size)
    rows = []
    for (it, i, _, obj, fresh), out in zip(jobs, outputs):
        said = normalize(out)
        outcome = ("context" if _writes(said, normalize(fresh)) else
                   "memory" if _writes(said, normalize(obj)) else "other")
        rows.append(_hop_row(it, i, facts, object=obj, context_object=fresh, output=out, outcome=outcome))
    return _hop_cells(rows, "context"), rows


# a contextual hop forced without the found person's paragraph: still right, right only with it, wrong both ways
PARAGRAPHLESS_OUTCOMES = ("right", "needs_paragraph", "wrong")


def _names_all(paragraph: str, name: str) -> bool:
    """Whether every sentence of a context line names `name` (pieces without words, as after "Apt.", aside)."""
    has = _whole_word(name)
    return all(has.search(s) for s in _SENTENCE_END.split(paragraph) if re.search(r"[^\W\d]{2}", s))


def paragraphless_prefixes(item: dict) -> list[tuple[int, str, str, str]]:
    """(hop, prompt + gold chain up to the hop's object, the same with the object's paragraph left out of the
    context, the object) for each contextual hop whose object has a paragraph of the context to itself: a line
    naming the object in every sentence, and not the hop's subject in every sentence (the subject's own, when
    two of its facts name the object). The last hop is left out: its object is the answer, a value or a person
    whose paragraph no item gives (a line that names a value in every sentence is not the value's paragraph)."""
    cot, spans = _gold_hops(item)
    prompt = format_prompt(item)
    lines = (item.get("context") or "").split("\n")
    out = []
    for i, (_, j) in enumerate(spans[:len(item["hop_groups"]) - 1]):
        if item["hop_groups"][i] != "contextual":
            continue
        subject, obj = item["entities"][i:i + 2]
        kept = [line for line in lines if not _names_all(line, obj) or _names_all(line, subject)]
        if len(kept) < len(lines):
            chain = cot[:j].rstrip()
            out.append((i, prompt + chain, format_prompt(dict(item, context="\n".join(kept))) + chain, obj))
    return out


def _forced_twice(model, tokenizer, items: list[dict], world: dict, batch_size: int,
                  prefixes: Callable[[dict, "_Facts"], list[tuple[int, str, str, str]]],
                  outcome: dict[tuple[bool, bool], str], kept_output: str) -> tuple[dict, list[dict]]:
    """Hops forced as in `forced_hops` twice, with the item's context as is (`kept`) and changed (`cut`), from
    `prefixes(item, facts)`: (hop, kept prefix, cut prefix, object). `outcome` names each (right as is, right
    changed); em is the share right with the change. A row's `output` is the changed prompt's, and
    `kept_output` names the field of the other."""
    facts = _Facts(world)
    jobs = [(it, i, kept, cut, obj) for it in items for i, kept, cut, obj in prefixes(it, facts)]
    outputs = _continue_hops(model, tokenizer, [j[2] for j in jobs] + [j[3] for j in jobs],
                             [j[4] for j in jobs] * 2, batch_size)
    rows = []
    for (it, i, _, _, obj), as_is, changed in zip(jobs, outputs, outputs[len(jobs):]):
        found = tuple(_writes(normalize(out), normalize(obj)) for out in (as_is, changed))
        rows.append(_hop_row(it, i, facts, object=obj, output=changed, **{kept_output: as_is}, outcome=outcome[found]))
    return _hop_cells(rows, tuple({outcome[True, True], outcome[False, True]})), rows


def paragraphless_hops(model, tokenizer, items: list[dict], world: dict, batch_size: int) -> tuple[dict, list[dict]]:
    """Contextual hops forced as in `forced_hops`, with and without the paragraph of the person the hop finds.

    In a 2-hop Ctx item that person always has a paragraph (the next hop's fact is about them); in a Comp item
    whose next hop is parametric they never do. A lookup that picks a paragraph's head rather than reading the
    hop's own sentence finds the first and misses the second: em is the share still right without the
    paragraph, and `needs_paragraph` counts the hops right only with it."""
    right, needs_paragraph, wrong = PARAGRAPHLESS_OUTCOMES
    outcome = {(True, True): right, (False, True): right, (True, False): needs_paragraph, (False, False): wrong}
    return _forced_twice(model, tokenizer, items, world, batch_size, lambda it, _: paragraphless_prefixes(it),
                         outcome, "output_with_paragraph")


# a contextual hop forced with and without its rivals: right both ways, right only without them, wrong without them
UNRIVALLED_OUTCOMES = ("right", "misled_by_rivals", "wrong")


def _sentence(lead: str, text: str) -> re.Pattern:
    """`lead` (a pattern) then `text`, as a whole sentence of a context: from a line's start or after a full stop,
    up to whitespace or the line's end, with the space after it."""
    return re.compile(rf"(?m)(?:^|(?<=\. )){lead}{re.escape(text)}(?!\S) ?")


def unrivalled_prefixes(item: dict, world: "dict | _Facts") -> list[tuple[int, str, str, str]]:
    """(hop, prompt + gold chain up to the hop's object, the same with the hop's rivals left out of the context,
    the object) for each contextual hop that has rivals: sentences of the context that state the hop's relation,
    in the chain's words ("X's follower is Y."), for someone other than the hop's subject. A hop whose own
    sentence the context does not state in those words is left out; the subject's own sentences all stay.

    Only the hop's subject tells its sentence from a rival's, so a lookup that matches the relation word but not
    the name is right once the rivals are gone and not before."""
    facts = world if isinstance(world, _Facts) else _Facts(world)
    cot, spans = _gold_hops(item)
    prompt = format_prompt(item)
    context = item.get("context") or ""
    out = []
    for i, ((_, j), words) in enumerate(zip(spans, _hop_words(item))):
        subject, obj = item["entities"][i:i + 2]
        if item["hop_groups"][i] != "contextual" or words is None:
            continue
        own = _sentence(r"([^.\n]*?)", f"{subject}{words}{obj}.").search(context)
        if not own:
            continue
        # whole sentences, in the own sentence's words ("Letters for X go to Y."): an object may hold a full stop
        rivals = [f"{s}{words}{raw}." for s, (raw, _) in facts.by_relation[item["relation_path"][i]].items()
                  if s != subject]
        kept = context
        for rival in (r for r in rivals if r in context):
            kept = _sentence(re.escape(own.group(1)), rival).sub("", kept)
        if kept == context:
            continue
        kept = "\n".join(line.rstrip() for line in kept.split("\n") if line.strip())
        chain = cot[:j].rstrip()
        out.append((i, prompt + chain, format_prompt(dict(item, context=kept)) + chain, obj))
    return out


def unrivalled_hops(model, tokenizer, items: list[dict], world: dict, batch_size: int) -> tuple[dict, list[dict]]:
    """Contextual hops forced as in `forced_hops`, with and without their rivals (`unrivalled_prefixes`): the
    context's sentences of the hop's relation about other people. A lookup that reads the relation but does not
    match the subject takes a rival's object as is (forced_hops' `relation_fact`) and is right without them:
    em is the share right without the rivals (`right`, right both ways, and `misled_by_rivals`, right only
    without them); `wrong` is wrong without them."""
    right, misled, wrong = UNRIVALLED_OUTCOMES
    outcome = {(True, True): right, (False, True): misled, (True, False): wrong, (False, False): wrong}
    return _forced_twice(model, tokenizer, items, world, batch_size, unrivalled_prefixes, outcome, "output_with_rivals")


def select_probes(probes, per_level: int) -> list[dict]:
    """per_level probes of each relation level, taken round-robin over its relations in the split's order, so
    every relation of a level is probed."""
    by_level: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for p in probes:
        by_level[p["relation_level"]][p["relation"]].append(p)
    out = []
    for rels in by_level.values():
        rounds = itertools.zip_longest(*rels.values())
        out += [p for p in itertools.chain.from_iterable(rounds) if p is not None][:per_level]
    return out


def chain_correct(item: dict, output: str) -> bool:
    """Every hop right: the final answer matches and each intermediate entity is written, in order."""
    return first_error(item, output) is None


def _em(rows: list[dict]) -> dict:
    return {"em": sum(r["correct"] for r in rows) / len(rows) if rows else 0.0, "n": len(rows)}


def score(predictions: list[dict]) -> dict:
    """The metrics block of results.json for one stage."""
    out: dict = {}
    by = defaultdict(list)
    for p in predictions:
        by[(p["task"], p["level"])].append(p)
    for (task, level), rows in by.items():
        out.setdefault(task, {})[level] = _em(rows)
    hops = defaultdict(list)
    final = defaultdict(list)
    chain = defaultdict(list)
    written = defaultdict(list)
    for p in predictions:
        hops[(p["task"], p["level"], str(p["hops"]))].append(p)
        final[(p["task"], p["level"], p["final_hop"])].append(p)
        chain[(p["task"], p["level"])].append({"correct": p["chain_correct"]})
        if p.get("relations_written") is not None:
            written[(p["task"], p["level"])].append({"correct": p["relations_written"]})
    out["by_hops"] = _nest(hops)
    out["by_final_hop"] = _nest(final)
    out["chain_correct"] = _nest(chain)
    out["relations_written"] = _nest(written)
    out["first_error"] = first_error_summary(predictions)
    return out


def _nest(groups: dict) -> dict:
    out: dict = {}
    for (a, b, *c), rows in sorted(groups.items()):
        node = out.setdefault(a, {})
        if c:
            node = node.setdefault(b, {})
            node[c[0]] = _em(rows)
        else:
            node[b] = _em(rows)
    return out


def evaluate(model, tokenizer, items: list[dict], batch_size: int, max_new_tokens: int | None,
             pipeline: str = "", stage: str = "", progress=None) -> tuple[dict, list[dict]]:
    """(metrics, predictions) for greedy decoding of `items`; max_new_tokens None: sized to their gold chains."""
    max_new_tokens = answer_budget(tokenizer, [format_completion(it) for it in items], max_new_tokens,
                                   "eval.max_new_tokens")
    outputs = generate_greedy(model, tokenizer, [format_prompt(it) for it in items], batch_size, max_new_tokens,
                              progress)
    predictions = []
    for it, out in zip(items, outputs):
        predictions.append({
            "pipeline": pipeline, "stage": stage, "task": it["task"], "level": it["level"], "hops": it["hops"],
            "final_hop": it["hop_groups"][-1], "question": it["question"], "answer": it["answer"],
            "output": out, "prediction": parse_answer(out), "correct": exact_match(out, it["answer"]),
            "chain_correct": chain_correct(it, out), "relations_written": relations_written(it, out),
            "hop_groups": list(it["hop_groups"]),
            "first_error": first_error(it, out),
        })
    metrics = score(predictions)
    metrics["max_new_tokens"] = max_new_tokens  # the budget used: as set, or sized to the gold chains
    return metrics, predictions
