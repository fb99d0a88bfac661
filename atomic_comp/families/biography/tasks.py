"""Mem / Ctx / Comp items: relation paths walked through the world, questions, contexts, chains of thought.

A path is a random walk: intermediate hops are person->person relations without
repeats (and no person visited twice); the last hop may be any relation of its
group. Mem walks parametric relations only, Ctx contextual ones only, and Comp
a pattern with at least one hop of each.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import re
from collections import Counter
from dataclasses import dataclass

from atomic_comp.prompts import ANSWER_MARKER

from .levels import LevelSplit
from .relations import BY_NAME, CONTEXTUAL, NOUN, PARAMETRIC, RELATIONS, Relation
from .world import World

TASKS = ("mem", "ctx", "comp")
INSTRUCTION = ("Answer the question step by step, one fact per step, using what you know and the context. "
               f"End with '{ANSWER_MARKER} <answer>'.")
# The authors' released files tag each item with gen_type; ours says which task made it.
GEN_TYPE = {"mem": "parametric", "ctx": "contextual", "comp": "complementary"}
GROUP_OF_TASK = {"mem": PARAMETRIC, "ctx": CONTEXTUAL}  # the one relation group of an atomic task's paths

QUESTION_TEMPLATES = (
    "{wh} is {of_chain}?",
    "{wh} is {poss_chain}?",
    "Can you tell me {of_chain}?",
    "Do you know {poss_chain}?",
)


def of_chain(path: list[Relation], head: str) -> str:
    phrase = head
    for rel in path:
        phrase = f"the {rel.noun} of {phrase}"
    return phrase


def poss_chain(path: list[Relation], head: str) -> str:
    return f"{head}'s " + "'s ".join(rel.noun for rel in path)


def question_text(path: list[Relation], head: str, template: int) -> str:
    wh = "Who" if path[-1].person else "What"
    return QUESTION_TEMPLATES[template].format(wh=wh, of_chain=of_chain(path, head), poss_chain=poss_chain(path, head))


# recipe.hop_markers: each chain step opens by saying where its fact comes from, so the chain commits to reading
# or recalling before it writes the relation word (a held-out one says neither)
HOP_MARKERS = {CONTEXTUAL: "The context says", PARAMETRIC: "I recall"}


def chain_of_thought(world: World, path: list[Relation], entities: list[int], markers: bool = False) -> str:
    """One fact per hop, each in the world's own sentence for it, then the answer marker."""
    steps = [world.sentence(rel, entities[i]) for i, rel in enumerate(path)]
    if markers:
        steps = [f"{HOP_MARKERS[rel.group]} {step}" for rel, step in zip(path, steps)]
    return " ".join(steps) + f" {ANSWER_MARKER} {world.object_name(path[-1], entities[-2])}"


def nonce_nouns(world: World, seed: int, n: int = 400) -> list[str]:
    """n made-up lowercase nouns ("bralo", "tesku"), none of them a word of the world's text."""
    taken = {w.lower() for per in world.canonical.values() for text in per.values() for w in re.findall(r"\w+", text)}
    taken |= {w for r in RELATIONS for w in r.noun.split()}
    return made_up_words(n, f"nonce-{seed}", taken)


def made_up_words(n: int, seed: str, taken: set[str]) -> list[str]:
    """n distinct lowercase pseudo-words of 2-3 syllables, none in `taken`, in a fixed order for `seed`."""
    taken = set(taken)
    rng = random.Random(seed)
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    words: list[str] = []
    while len(words) < n:
        w = "".join(rng.choice(syllables) for _ in range(rng.choice((2, 3)))) + rng.choice(("", "n", "k", "l"))
        if w not in taken:
            taken.add(w)
            words.append(w)
    return words


def item_text(item: dict) -> str:
    """Everything an item says: its question, its context and its chain."""
    return " ".join((item["question"], item["context"], item["answer_cot"]))


def is_new(name: str, text: str, named: list[str]) -> bool:
    """Whether `name` can stand in for someone in an item: named nowhere in its text, and neither part of nor
    containing a name (or value) the item already uses, so a whole-word substitution cannot catch it."""
    return name not in text and not any(name in e or e in name for e in named)


def whole_words(names) -> re.Pattern:
    """A pattern matching any of `names` as whole words, a longer name first where one holds another."""
    return re.compile(r"(?<!\w)(" + "|".join(map(re.escape, sorted(names, key=len, reverse=True))) + r")(?!\w)")


def substitute(item: dict, new: dict[str, str], keys: tuple[str, ...]) -> None:
    """Replace each whole-word occurrence of a key of `new` by its value in the item's `keys` fields."""
    pattern = whole_words(new)
    for key in keys:
        item[key] = pattern.sub(lambda m: new[m.group(1)], item[key])


@dataclass(frozen=True)
class ContextSpec:
    distractor_people: int = 2  # extra contextual paragraphs, each stating a fact of a path relation about someone else
    facts_per_paragraph: int | None = None  # None: the whole contextual biography
    mem_context: bool = True  # Mem items carry irrelevant context, so every task shares one prompt format
    held_out_filler: bool = True  # training contexts may state held-out relations' facts (never an answer there)
    nonce_relations: float = 0.0  # share of training Ctx items whose relations are renamed to made-up nouns
    fresh_objects: float = 0.0  # share of training Ctx items whose hop objects are swapped for the relation's others
    fresh_comp_objects: float = 0.0  # fresh_objects for training Comp items, on their trailing contextual hops
    fresh_heads: float = 0.0  # share of training Ctx items whose first person is renamed to a made-up person
    fresh_people: float = 0.0  # share of training Ctx items whose every person is renamed to a made-up person
    question_repeats: int = 1  # times a training Ctx or Comp question may be asked, each with its own context
    one_hop: float = 0.0  # share of training Ctx items asked about their first hop alone
    scattered_facts: float = 0.0  # share of training Ctx items whose later hops' people get no paragraph
    mem_stated: float = 0.0  # share of training Mem items whose context also states each hop's fact
    read_parametric: float = 0.0  # share of training Ctx items whose last hop reads a parametric relation's fact


class ItemMaker:
    """Walks paths for a task, level and side (train/test) and renders them as items."""

    def __init__(self, world: World, split: LevelSplit, hop_values: list[int], hop_weights: list[float],
                 context: ContextSpec, seed: int, test_people: float, instruction: bool = True,
                 hop_markers: bool = False):
        self.world = world
        self.hop_markers = hop_markers
        self.instruction = INSTRUCTION if instruction else ""
        self.split = split
        self.hop_values = hop_values
        self.hop_weights = hop_weights
        self.context = context
        self.seed = seed
        self.member = {PARAMETRIC: set(world.parametric), CONTEXTUAL: set(world.contextual)}
        # I.I.D. means new entities: questions about test people never appear in train.
        rng = random.Random(f"heads-{seed}")
        people = list(range(len(world.names)))
        rng.shuffle(people)
        test = set(people[: round(test_people * len(people))])
        self.heads = {
            side: {g: sorted(p for p in self.member[g] if (p in test) == (side == "test")) for g in self.member}
            for side in ("train", "test")
        }
        allowed_levels = {"iid": {"iid", "composition"}, "composition": {"composition"},
                          "zero_shot": {"iid", "composition", "held_out"}}
        self.allowed = {
            lvl: {g: [r for r in RELATIONS if r.group == g and split.relation_level[r.name] in rl]
                  for g in self.member}
            for lvl, rl in allowed_levels.items()
        }
        self.ctx_people = list(world.contextual)
        self._full: dict[tuple[int, frozenset], list[str]] = {}  # (person, facts left out): whole paragraph
        self.held_out = frozenset(r for r, lvl in split.relation_level.items() if lvl == "held_out")
        if context.fresh_heads or context.fresh_people:
            # made-up people are combinations of the world's own first and last names, so every word is known
            self.name_parts = tuple(sorted({n.split(" ", 1)[k] for n in world.names}) for k in (0, 1))
            self.taken_names = set(world.names)
            self.any_name = whole_words(world.names)
        if context.nonce_relations:
            assert world.noun_sentences, "nonce relations rename the noun of 'X's {noun} is Y.' sentences"
            self.nonce = nonce_nouns(world, seed)

    def for_chunk(self, chunk: int, n_chunks: int) -> "ItemMaker":
        if n_chunks == 1:
            return self
        other = copy.copy(self)
        other.heads = {side: {g: ps[chunk::n_chunks] for g, ps in by_group.items()}
                       for side, by_group in self.heads.items()}
        return other

    # -- paths ---------------------------------------------------------------
    def _pattern(self, task: str, hops: int, rng: random.Random) -> list[str]:
        if task in GROUP_OF_TASK:
            return [GROUP_OF_TASK[task]] * hops
        while True:
            pattern = [rng.choice((PARAMETRIC, CONTEXTUAL)) for _ in range(hops)]
            if len(set(pattern)) == 2:
                return pattern

    @staticmethod
    def fits(task: str, path: tuple[str, ...]) -> bool:
        """Whether a relation path has the hop groups of `task`'s pattern."""
        groups = {BY_NAME[r].group for r in path}
        return groups == {PARAMETRIC, CONTEXTUAL} if task == "comp" else groups == {GROUP_OF_TASK[task]}

    def walk(self, task: str, level: str, side: str, rng: random.Random,
             fixed_path: tuple[str, ...] | None = None) -> tuple[tuple[str, ...], list[int]] | None:
        """One attempt at a path of the wanted level; None when the walk dead-ends or misses the level."""
        if fixed_path is not None:
            pattern = [BY_NAME[r].group for r in fixed_path]
        else:
            hops = rng.choices(self.hop_values, self.hop_weights)[0]
            pattern = self._pattern(task, hops, rng)
        heads = self.heads[side][pattern[0]]
        if not heads:
            return None
        entities = [rng.choice(heads)]
        path: list[str] = []
        facts = self.world.facts
        for i, group in enumerate(pattern):
            cur = entities[-1]
            last = i == len(pattern) - 1
            if fixed_path is not None:
                rel = BY_NAME[fixed_path[i]]
                if cur not in facts[rel.name]:
                    return None
                cands = [rel]
            else:
                cands = [r for r in self.allowed[level][group]
                         if (r.person or last) and r.name not in path and cur in facts[r.name]]
            if not last:
                nxt = pattern[i + 1]
                cands = [r for r in cands if r.person and facts[r.name][cur] in self.member[nxt]
                         and facts[r.name][cur] not in entities]
            else:
                cands = [r for r in cands if not r.person or facts[r.name][cur] not in entities]
            if not cands:
                return None
            rel = rng.choice(cands)
            path.append(rel.name)
            obj = facts[rel.name][cur]
            entities.append(obj if rel.person else -1)  # type: ignore[arg-type]
        tpath = tuple(path)
        got = self.split.path_level(tpath)
        if got != level:
            return None
        if level == "composition" and self.split.composition_side(tpath) != side:
            return None
        return tpath, entities

    # -- rendering -----------------------------------------------------------
    def _paragraph(self, person: int, must: set[str], rng: random.Random, skip: frozenset = frozenset()) -> list[str]:
        """The person's sentences kept for a context (joined into one line by `_context`)."""
        drop = skip - must  # the needed fact always stays
        order = [r for r in self.world.bio_order[person] if r not in drop]
        k = self.context.facts_per_paragraph
        if k is None or k >= len(order):
            para = self._full.get((person, drop))
            if para is None:
                para = self._full[(person, drop)] = [self.world.canonical[r][person] for r in order]
            return list(para)
        keep = [r for r in order if r in must]
        others = [r for r in order if r not in must]
        keep_set = set(keep) | set(rng.sample(others, max(0, k - len(keep))))
        return [self.world.canonical[r][person] for r in order if r in keep_set]

    def _context(self, task: str, path: list[Relation], entities: list[int], rng: random.Random,
                 side: str = "test", scattered: bool = False) -> str:
        ctx_hops = [i for i, r in enumerate(path) if r.group == CONTEXTUAL]
        if task == "mem" and not self.context.mem_context:
            return ""
        # A held-out relation's fact is never a training answer, so as training filler it teaches the model
        # to skip exactly the facts a zero-shot hop must copy; test contexts are never changed.
        skip = self.held_out if side == "train" and not self.context.held_out_filler else frozenset()
        # scattered: a person found by reading the hop before gets no paragraph, only the next hop's sentence
        # inside someone else's, as the person a Comp item's contextual hop finds has none
        loose_hops = {i for i in ctx_hops if scattered and i > 0 and path[i - 1].group == CONTEXTUAL}
        paragraphs = [self._paragraph(entities[i], {path[i].name}, rng, skip) for i in ctx_hops if i not in loose_hops]
        loose = [self.world.canonical[path[i].name][entities[i]] for i in sorted(loose_hops)]
        # Distractors state the same relations about other people, so a plausible
        # answer cannot be copied out of the context without following the chain.
        on_path = set(entities)
        ctx_rels = [path[i].name for i in ctx_hops]
        n_distractors = self.context.distractor_people + (1 if not ctx_hops else 0)
        made, tries, decoys = 0, 0, []
        while made < n_distractors and tries < 50 * (n_distractors + 1):
            tries += 1
            person = rng.choice(self.ctx_people)
            # the answer-bearing (last) contextual relation first, then the others in turn
            rel = ctx_rels[-1 - made % len(ctx_rels)] if ctx_rels else None
            if person in on_path or (rel is not None and person not in self.world.facts[rel]):
                continue
            on_path.add(person)
            paragraphs.append(self._paragraph(person, {rel} if rel else set(), rng, skip))
            made += 1
            if loose_hops and rel is not None and path.index(BY_NAME[rel]) + 1 in loose_hops:
                decoys.append((self.world.facts[rel][person], path[path.index(BY_NAME[rel]) + 1].name))
        # Each decoy, a distractor's object by the same relation, gets a loose sentence too (the next hop's
        # fact when it has one): being named once as an object and once as a subject then singles out no one.
        for person, want in decoys:
            rels = [want] if person in self.world.facts[want] else sorted(
                r.name for r in RELATIONS if r.group == CONTEXTUAL and person in self.world.facts[r.name])
            rels = [r for r in rels if r not in skip]
            if person not in on_path and rels:
                on_path.add(person)
                loose.append(self.world.canonical[rng.choice(rels)][person])
        for sentence in loose:
            para = paragraphs[rng.randrange(len(paragraphs))]
            para.insert(rng.randrange(len(para) + 1), sentence)
        rng.shuffle(paragraphs)
        return "\n".join(" ".join(p) for p in paragraphs)

    def render(self, task: str, level: str, path_names: tuple[str, ...], entities: list[int],
               rng: random.Random, side: str = "test") -> dict:
        world = self.world
        path = [BY_NAME[r] for r in path_names]
        answer = world.object_name(path[-1], entities[-2])
        head = world.names[entities[0]]
        names = [world.names[e] for e in entities[:-1]] + [answer]
        template = rng.randrange(len(QUESTION_TEMPLATES))
        item = {
            "task": task,
            "level": level,
            "hops": len(path),
            "relation_path": list(path_names),
            "hop_groups": [r.group for r in path],
            "entities": names,
            "question": question_text(path, head, template),
            "context": self._context(task, path, entities, rng, side),
            "answer": answer,
            "answer_cot": chain_of_thought(world, path, entities, self.hop_markers),
            "instruction": self.instruction,
            "gen_type": GEN_TYPE[task],
        }
        if side == "train" and task == "ctx" and len(path) > 1:
            own = self._chosen(item, "one_hop", self.context.one_hop)
            if own is not None:  # the same first person and relation, asked alone (its own draws: others unchanged)
                return self.render(task, level, path_names[:1], entities[:2], own, side)
            own = self._chosen(item, "scattered", self.context.scattered_facts)
            if own is not None:  # the same question and chain; its context drawn again, the later hops' facts loose
                item["context"] = self._context(task, path, entities, own, side, scattered=True)
        if side == "train" and task in ("ctx", "comp"):
            self._fresh_objects(item, path, task)
        if side == "train" and task == "ctx":
            self._fresh_head(item)
            self._fresh_people(item)
            self._nonce_relations(item, path, head, template)
            self._read_parametric(item, path, entities, head, template)
        if side == "train" and task == "mem":
            self._stated_facts(item, path, entities)
        return item

    def _chosen(self, item: dict, what: str, share: float) -> random.Random | None:
        """The item's own generator if it is among `share` of items to change, else None. Its own draw, so
        that the items stay the default's and only the wording of some changes."""
        if not share:
            return None
        own = random.Random(f"{what}|{self.seed}|{item['question']}|{item['context']}")
        return own if own.random() < share else None

    def _stated_facts(self, item: dict, path: list[Relation], entities: list[int]) -> None:
        """Add each hop's fact to the context, each beside the same relation's fact about another parametric
        person (so copying any sentence with the right relation word is wrong): the answer is the same as
        memory's, and reading or recalling becomes a question of what the context states."""
        own = self._chosen(item, "stated", self.context.mem_stated)
        if own is None:
            return
        on_path = set(entities)
        paragraphs = item["context"].split("\n") if item["context"] else []
        for rel, subject in zip(path, entities):
            others = [p for p in self.world.facts[rel.name] if p not in on_path]
            other = own.choice(others)
            on_path.add(other)
            paragraphs += [self.world.sentence(rel, subject), self.world.sentence(rel, other)]
        own.shuffle(paragraphs)
        item["context"] = "\n".join(paragraphs)

    def _fresh_objects(self, item: dict, path: list[Relation], task: str) -> None:
        """Swap each hop's object, everywhere in the prompt and chain, for another object of the same relation
        that the item does not mention: the context then states facts that memory contradicts, and only reading
        it is rewarded.
        A Comp item's swap covers its trailing contextual hops only: an earlier hop's object is the subject
        of a later hop, and a parametric hop must stay the fact memory holds."""
        first = len(path)
        while first and path[first - 1].group == CONTEXTUAL:
            first -= 1
        share = self.context.fresh_objects if task == "ctx" else self.context.fresh_comp_objects
        own = self._chosen(item, "fresh", share) if first < len(path) else None
        if own is None:
            return
        text = item_text(item)
        fresh: list[str] = []
        for rel in path[first:]:
            # the relation's own objects: a name from outside them (a person with no such fact) would say which
            # sentence is the swapped one, and a model learns to pick the odd name out instead of reading
            pool = sorted({self.world.object_name(rel, p) for p in self.world.facts[rel.name]})
            unused = [x for x in pool if is_new(x, text, item["entities"] + fresh)]
            if not unused:  # a tiny world can run out; the item then stays as it is
                return
            fresh.append(own.choice(unused))
        substitute(item, dict(zip(item["entities"][first + 1:], fresh)), ("context", "answer_cot"))
        item["entities"] = item["entities"][:first + 1] + fresh
        item["answer"] = fresh[-1]

    def _fresh_head(self, item: dict) -> None:
        """Rename the item's first person, in question, context and chain, to a made-up person (a first and last
        name no person of the world has): the lookup is then learnt for any name, not around the few people
        training questions start from. The person's facts stay, so the context still answers the question."""
        own = self._chosen(item, "head", self.context.fresh_heads)
        if own is not None:
            self._rename(item, [item["entities"][0]], own)

    def _fresh_people(self, item: dict) -> None:
        """Rename every person the item names to a made-up person of its own. Nothing in it can then be
        recalled (no fact of a real person is stated, so none is contradicted either, unlike fresh objects),
        and no name stands out: each is as new as the others, the answer's included."""
        own = self._chosen(item, "people", self.context.fresh_people)
        if own is not None:
            self._rename(item, list(dict.fromkeys(self.any_name.findall(item_text(item)))), own)

    def _rename(self, item: dict, people: list[str], own: random.Random) -> None:
        """Rename each of `people`, throughout question, context, chain and answer, to a made-up person named
        nowhere in the item; a tiny world that runs out of names leaves the item as it is."""
        text = item_text(item)
        firsts, lasts = self.name_parts
        new: dict[str, str] = {}
        for old in people:
            for _ in range(100):
                name = f"{own.choice(firsts)} {own.choice(lasts)}"
                if name not in self.taken_names and is_new(name, text, item["entities"] + list(new.values())):
                    new[old] = name
                    break
            else:
                return
        substitute(item, new, ("question", "context", "answer_cot"))
        item["entities"] = [new.get(e, e) for e in item["entities"]]
        item["answer"] = new.get(item["answer"], item["answer"])

    def _nonce_relations(self, item: dict, path: list[Relation], head: str, template: int) -> None:
        own = self._chosen(item, "nonce", self.context.nonce_relations)
        if own is not None:
            # A made-up noun has no meaning the model could have learnt: the hop's fact can only be found by
            # matching the question's word in the context, which is what a held-out relation's hop needs.
            rels = list(dict.fromkeys(path))
            nonce = dict(zip(rels, own.sample(self.nonce, len(rels))))
            item["question"] = question_text([dataclasses.replace(r, noun=nonce[r]) for r in path], head, template)
            for key in ("context", "answer_cot"):
                for r in rels:
                    item[key] = item[key].replace(f"'s {r.noun} is ", f"'s {nonce[r]} is ")

    def _read_parametric(self, item: dict, path: list[Relation], entities: list[int], head: str,
                         question: int) -> None:
        """Ask the last hop as a parametric attribute of a person who has no parametric facts, with a value
        drawn for this item and stated only in its context; the context's other sentences of the old last
        relation (the same-relation distractors) become the new relation's, each with another value.

        In the default data a relation word alone says whether to read or recall (contextual relations are
        always read, parametric ones always recalled), so a relation word no question used is recalled. Here
        a parametric word is read whenever the context states it for the subject: what to do is decided by the
        context, which is what a held-out contextual hop needs. Nothing is memorisable (the value is the
        item's own) and nothing contradicts memory (the subject has no parametric facts)."""
        own = self._chosen(item, "read", self.context.read_parametric)
        subject, old = entities[-2], path[-1]
        if own is None or self.world.is_parametric(subject) or len(path) < 2:
            return
        start = tuple(r.name for r in path[:-1])
        cands = [r for r in RELATIONS if r.group == PARAMETRIC and not r.person
                 and self.split.allowed_in_train(start + (r.name,))]  # never a test path: no level changes
        if not cands:
            return
        new = own.choice(cands)
        said = [p for p in self.ctx_people if p in self.world.facts[old.name]
                and re.search(rf"(?<![\w']){re.escape(self.world.sentence(old, p))}", item["context"])]
        if subject not in said:
            return
        values = own.sample(sorted(set(self.world.facts[new.name].values())), len(said))
        template = NOUN if self.world.noun_sentences else own.randrange(len(new.templates))
        for p, value in zip(said, values):
            before, after = self.world.sentence(old, p), new.say(self.world.names[p], value, template)
            item["context"] = item["context"].replace(before, after)
            if p == subject:
                answer, step = value, (before, after)
        item["answer_cot"] = item["answer_cot"].replace(*step).rsplit(f" {ANSWER_MARKER} ", 1)[0] \
            + f" {ANSWER_MARKER} {answer}"
        new_path = path[:-1] + [new]
        item.update(question=question_text(new_path, head, question), answer=answer,
                    relation_path=[r.name for r in new_path], entities=item["entities"][:-1] + [answer])
        # hop_groups stays all contextual: it says where each hop's fact is found, and here that is the context

    # -- item sets -----------------------------------------------------------
    def make(self, task: str, level: str, side: str, n: int, seen: Counter, label: str,
             paths: list[tuple[str, ...]] | None = None) -> list[dict]:
        """n items, no question (first person, path) asked more often than its repeats (`seen` counts them);
        `paths`, when given, are the only relation paths allowed (I.I.D. test)."""
        rng = random.Random(f"{self.seed}|{label}|{task}|{level}|{side}")
        # a Mem question asked again is the same item; a Ctx or Comp one comes with another context
        repeats = self.context.question_repeats if side == "train" and task in ("ctx", "comp") else 1
        items: list[dict] = []
        budget = 200 * n + 1000
        while len(items) < n:
            budget -= 1
            if budget < 0:
                raise RuntimeError(
                    f"could only make {len(items)} of {n} {task} items at level {level} ({side}): "
                    "the world is too small for this recipe; raise world.n_parametric/n_contextual "
                    "or lower the recipe's counts")
            fixed = rng.choice(paths) if paths else None
            walked = self.walk(task, level, side, rng, fixed)
            if walked is None:
                continue
            tpath, entities = walked
            question = (task, entities[0], tpath)
            if seen[question] >= repeats:
                continue
            seen[question] += 1
            items.append(self.render(task, level, tpath, entities, rng, side))
        return items
