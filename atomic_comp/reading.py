"""Reading before the world: Ctx-format questions about a made-up world, for a model trained from scratch.

A pretrained checkpoint arrives able to find "X's mentor is Y." in a context by matching the words of a
question it has never been trained to ask; a tiny model trained only on the world's items learns one
lookup per trained relation and never matches a held-out relation's word (docs/tuning.md sections 13-28).
The reading stage (`reading.items > 0`) trains the base model, before the biographies and every pipeline,
on lookups where memorising cannot help: every relation noun is a made-up word, and so (by default) is
every name and value, the relation nouns number in the hundreds, and the facts are shuffled across lines, so
a fact is found only by matching the question's name and relation word. No word of the world's relations
is used. With `people=world_like` names and values are spelt as the world's (new Faker pairs, the world's
kinds of value): a lookup learnt on made-up names copies made-up words only (docs/tuning.md 31).

Items have the world's format (prompts.format_prompt, "X's {noun} is Y." sentences, the world's question
templates and chain of thought) and the item schema; the test items ask about `held_out` relation nouns
that training items only state among their distractor facts (as a held-out relation of the world is read
in contexts but never asked), so the stage's own evaluation says whether it matches words it was never
asked about. The corpus is its own cache entry, keyed by its config, seed and this code.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path

import datasets

from atomic_comp import cache
from atomic_comp.config import ReadingConfig
from atomic_comp.families.biography.relations import CONTEXTUAL, NOUN, RELATIONS, Relation
from atomic_comp.families.biography.tasks import QUESTION_TEMPLATES, made_up_words, question_text
from atomic_comp.prompts import ANSWER_MARKER

_CODE_FILES = ("reading.py", "families/biography/tasks.py", "families/biography/relations.py", "prompts.py")
SENTENCES_PER_LINE = 2  # the tiny recipe's facts_per_paragraph, but lines mix subjects: no paragraph cue


def reading_key(r: ReadingConfig, seed: int) -> str:
    return "reading-" + cache.stable_hash({"reading": cache.when_set(dataclasses.asdict(r), people="made_up"),
                                           "seed": seed, "code": cache.code_version(_CODE_FILES)})


@dataclass
class Reading:
    """A cached reading corpus: train and test items (the item schema) and where they live."""

    train: datasets.Dataset
    test: datasets.Dataset
    key: str


@dataclass
class Vocabulary:
    nouns: list[str]  # relation nouns the training items ask about
    held_out: list[str]  # relation nouns only the test items ask about
    first: list[str]
    last: list[str]
    values: list[str]


def vocabulary(r: ReadingConfig, seed: int) -> Vocabulary:
    """Made-up words in disjoint pools; none is a word of the world's relation nouns."""
    taken = {w for rel in RELATIONS for w in rel.noun.split()}
    words = made_up_words(r.relations + r.held_out + 2 * r.names + r.values, f"reading-{seed}", taken)
    n, h, k = r.relations, r.held_out, r.names
    cap = [w.capitalize() for w in words[n + h: n + h + 2 * k]]
    if r.people == "world_like":  # after the same draw: the nouns are the made-up corpus's
        return Vocabulary(words[:n], words[n:n + h], *_world_like(r, seed))
    return Vocabulary(words[:n], words[n:n + h], cap[:k], cap[k:], words[n + h + 2 * k:])


def _world_like(r: ReadingConfig, seed: int) -> tuple[list[str], list[str], list[str]]:
    """(first names, last names, values) spelt as the world's are: Faker names, and values of the world's
    kinds (its pools, then cities, companies and street addresses). Pairs of them are new people."""
    from faker import Faker

    from atomic_comp.families.biography.world import VALUE_POOLS, _faker_pool

    fake = Faker("en_US")
    fake.seed_instance(f"reading-{seed}")
    rng = random.Random(f"reading-values-{seed}")
    values = list(dict.fromkeys(v for pool in VALUE_POOLS.values() for v in pool))
    values += _faker_pool(fake, "city", 100) + _faker_pool(fake, "company", 100)
    streets = _faker_pool(fake, "street_name", 100)
    while len(values) < r.values:
        values.append(f"{rng.randint(1, 9999)} {rng.choice(streets)}")
    rng.shuffle(values)
    return _faker_pool(fake, "first_name", r.names), _faker_pool(fake, "last_name", r.names), values[:r.values]


def reading_item(rng: random.Random, vocab: Vocabulary, nouns: list[str], other_nouns: list[str],
                 r: ReadingConfig) -> dict:
    """One question of 1..max_hops hops on `nouns`, its facts shuffled among distractors that share its
    subjects (by `other_nouns`) or its relation nouns: only both the name and the word single a fact out."""
    hops = rng.randint(1, r.max_hops)
    people: set[str] = set()

    def person() -> str:
        while True:
            name = f"{rng.choice(vocab.first)} {rng.choice(vocab.last)}"
            if name not in people:
                people.add(name)
                return name

    chain = [person() for _ in range(hops)]
    path = rng.sample(nouns, hops)
    last_is_person = rng.random() < 0.5
    answer = person() if last_is_person else rng.choice(vocab.values)
    objects = chain[1:] + [answer]
    facts = {(chain[i], path[i]): objects[i] for i in range(hops)}
    others = [person() for _ in range(2)]
    # every hop gets a fact of its subject by another word and one of its word about someone else; then
    # 0: a chain person's other relation, 1: someone else by a chain relation, 2: anyone, any word
    required = [k for i in range(hops) for k in ((0, i), (1, i))]
    while len(facts) < r.facts:
        kind, i = required[0] if required else (rng.randrange(3), rng.randrange(hops))
        subject = chain[i] if kind == 0 else rng.choice(others + chain[1:] if kind == 2 else others)
        noun = path[i] if kind == 1 else rng.choice(other_nouns)
        if (subject, noun) in facts:
            continue  # drawn again (a required one too: there is always a free subject or word for it)
        if required:
            required.pop(0)
        named = [p for p in others + chain if p != subject]
        facts[(subject, noun)] = rng.choice([rng.choice(vocab.values), rng.choice(named)])
    sentences = [f"{s}'s {noun} is {o}." for (s, noun), o in facts.items()]
    rng.shuffle(sentences)
    lines = [" ".join(sentences[i:i + SENTENCES_PER_LINE]) for i in range(0, len(sentences), SENTENCES_PER_LINE)]
    relations = [Relation(noun, CONTEXTUAL, i < hops - 1 or last_is_person, noun, ()) for i, noun in enumerate(path)]
    steps = [rel.say(chain[i], objects[i], NOUN) for i, rel in enumerate(relations)]
    return {
        "task": "read", "level": "", "hops": hops, "relation_path": path, "hop_groups": [CONTEXTUAL] * hops,
        "entities": chain + [answer], "question": question_text(relations, chain[0], rng.randrange(len(QUESTION_TEMPLATES))),
        "context": "\n".join(lines), "answer": answer, "answer_cot": " ".join(steps) + f" {ANSWER_MARKER} {answer}",
        "instruction": "", "gen_type": "reading",
    }


def reading_items(r: ReadingConfig, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, test): training items over the trained nouns; test items half on them (level iid), half with
    every hop on a held-out noun (level zero_shot)."""
    vocab = vocabulary(r, seed)
    rng = random.Random(f"reading-items-{seed}")
    # held-out nouns stand in training contexts, never in a question or a chain: read, never asked, as a
    # held-out relation of the world is
    every = vocab.nouns + vocab.held_out
    train = [reading_item(rng, vocab, vocab.nouns, every, r) for _ in range(r.items)]
    test = []
    for i in range(r.test_items):
        held = i % 2 == 1
        item = reading_item(rng, vocab, vocab.held_out if held else vocab.nouns, every, r)
        test.append(dict(item, level="zero_shot" if held else "iid"))
    return train, test


def load_reading(r: ReadingConfig, seed: int, cache_dir: str) -> Reading:
    """Build once per key (lock + atomic publish), then load from disk."""
    from atomic_comp.recipe import items_dataset

    key = reading_key(r, seed)

    def build(work: Path) -> None:
        train, test = reading_items(r, seed)
        datasets.disable_progress_bars()
        datasets.DatasetDict({"train": items_dataset(train), "test": items_dataset(test)}).save_to_disk(str(work / "splits"))

    entry, _ = cache.publish(Path(cache_dir) / "reading", key, build, info={"key": key})
    splits = datasets.load_from_disk(str(entry / "splits"))
    return Reading(train=splits["train"], test=splits["test"], key=key)
