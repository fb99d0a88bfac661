"""The biography world: two knowledge bases over one set of fictional people.

People are integer ids into `World.names`. Ids [0, n_parametric) are the
parametric people; the contextual people are the first n_contextual//2
parametric people (the *reused* names, where paths cross between memory and
context) plus n_contextual - n_contextual//2 new people after them.

Every relation is a function (one answer per question). Inverse pairs are built
from one permutation, so `child` in memory and `parent` in context always agree;
symmetric relations are perfect matchings.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from faker import Faker

from .relations import CONTEXTUAL, GROUPS, NOUN, PARAMETRIC, RELATIONS, Relation

# Small pools, as in the paper (e.g. 9 hobbies, 15 universities, 20 foods, 20 languages).
VALUE_POOLS: dict[str, tuple[str, ...]] = {
    "hobby": ("painting", "chess", "hiking", "gardening", "knitting", "fishing", "photography", "pottery", "birdwatching"),
    "university": tuple(f"{n} University" for n in (
        "Northbridge", "Lakeshore", "Westfield", "Redwood", "Ashford", "Kingsley", "Marlow", "Halden",
        "Brookvale", "Stonegate", "Fairhaven", "Elmhurst", "Clearwater", "Oakridge", "Silverton")),
    "food": ("sushi", "lasagna", "tacos", "ramen", "paella", "dumplings", "curry", "pizza", "falafel", "pho",
             "risotto", "burritos", "kimchi", "goulash", "moussaka", "pierogi", "biryani", "gumbo", "ceviche", "pancakes"),
    "language": ("English", "Spanish", "French", "German", "Italian", "Portuguese", "Dutch", "Swedish", "Polish", "Greek",
                 "Turkish", "Arabic", "Hindi", "Bengali", "Japanese", "Korean", "Mandarin", "Vietnamese", "Swahili", "Finnish"),
    "feat": ("designing a floating bridge", "discovering a comet", "breaking a sprint record", "founding a theater",
             "mapping a cave system", "restoring a cathedral", "inventing a water filter", "winning a chess olympiad",
             "composing a famous opera", "decoding an old script", "building a solar car", "crossing the Atlantic alone"),
    "occupation": ("an architect", "a nurse", "a pilot", "a chemist", "a carpenter", "a journalist", "a lawyer", "a baker",
                   "a surgeon", "a librarian", "an engineer", "a teacher", "a farmer", "a plumber", "a translator"),
    "pet": ("a parrot", "a beagle", "a tabby cat", "a goldfish", "a hamster", "a tortoise", "a rabbit", "a ferret",
            "a poodle", "a canary"),
    "service": ("the Navy", "the Army", "the Air Force", "the Coast Guard", "the Marines", "the National Guard"),
    "book": tuple(f"The {a} of {b}" for a, b in (
        ("Silence", "Winter"), ("Garden", "Stars"), ("Echo", "Rivers"), ("Weight", "Salt"), ("Shadow", "Mountains"),
        ("Map", "Tides"), ("Song", "Iron"), ("House", "Mirrors"), ("Road", "Ashes"), ("Light", "Harbors"),
        ("Clock", "Dreams"), ("Memory", "Glass"), ("Return", "Swallows"), ("Edge", "Forests"), ("Voice", "Deserts"))),
    "award": ("the Golden Quill Award", "the Silver Compass Prize", "the Blue Lantern Medal", "the Iron Oak Award",
              "the Crystal Harp Prize", "the Northern Star Medal", "the Bright Horizon Award", "the Copper Key Prize",
              "the Emerald Wing Medal", "the Granite Torch Award", "the Scarlet Feather Prize", "the Velvet Crown Medal"),
    "major": ("physics", "history", "economics", "biology", "philosophy", "mathematics", "architecture", "linguistics",
              "chemistry", "sociology", "music", "astronomy", "geology", "psychology", "literature"),
    "nationality": ("Canadian", "Brazilian", "Norwegian", "Kenyan", "Irish", "Chilean", "Austrian", "Thai", "Moroccan",
                    "Danish", "Peruvian", "Icelandic", "Portuguese", "Korean", "Belgian", "Egyptian", "Finnish", "Mexican",
                    "Scottish", "Nepali"),
    "cause": ("ocean cleanup", "child literacy", "animal shelters", "cancer research", "clean water", "refugee support",
              "rainforest protection", "veteran care", "food banks", "music education", "disaster relief", "public libraries"),
}

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")


@dataclass
class World:
    """People, their facts per relation, and the sentence chosen for each fact."""

    names: list[str]
    n_parametric: int
    contextual: list[int]  # ids of contextual people (reused first, then new)
    # facts[relation][person] = person id (person relations) or value string (attributes)
    facts: dict[str, dict[int, int | str]]
    # template index per (relation, person): the one sentence that states this fact
    phrasing: dict[str, dict[int, int]]
    bio_order: dict[int, list[str]] = field(default_factory=dict)  # shuffled contextual paragraph per person
    # canonical[relation][person]: the fact in the world's own phrasing (rendered once; contexts reuse it)
    canonical: dict[str, dict[int, str]] = field(default_factory=dict)
    # every fact stated as "X's {noun} is Y." (recipe.noun_sentences): a model trained from scratch then
    # meets a held-out relation's question word in its biographies, as a pretrained model has met it
    noun_sentences: bool = False

    def __post_init__(self) -> None:
        from .relations import BY_NAME

        if not self.canonical:
            self.canonical = {r: {p: self.sentence(BY_NAME[r], p, NOUN if self.noun_sentences else t)
                                  for p, t in per.items()}
                              for r, per in self.phrasing.items()}

    @property
    def parametric(self) -> range:
        return range(self.n_parametric)

    def is_parametric(self, person: int) -> bool:
        return person < self.n_parametric

    def object_name(self, relation: Relation, person: int) -> str:
        obj = self.facts[relation.name][person]
        return self.names[obj] if relation.person else obj  # type: ignore[index]

    def sentence(self, relation: Relation, person: int, template: int | None = None) -> str:
        """The fact `relation(person)` in words; by default the world's own phrasing of it."""
        if template is None:
            return self.canonical[relation.name][person]
        return relation.say(self.names[person], self.object_name(relation, person), template)

    def relations_of(self, person: int, group: str) -> list[Relation]:
        return [r for r in RELATIONS if r.group == group and person in self.facts[r.name]]

    def biographies(self, paraphrases: int, seed: int, orders: int = 1) -> list[str]:
        """Parametric biographies as plain text: one paragraph per person, paraphrase and order.

        Paraphrase k states every fact with template k (rotated from the fact's own
        phrasing; with noun sentences, paraphrase 0 is the noun sentence), so `paraphrases` copies of the world show each fact in that many wordings;
        each is written `orders` times, its sentences shuffled afresh every time.
        """
        rng = random.Random(f"bio-{seed}")
        texts = []
        rels = [r for r in RELATIONS if r.group == PARAMETRIC]
        for person in self.parametric:
            for k in range(paraphrases):
                sents = [self.sentence(r, person, self._template(r, person, k))
                         for r in rels if person in self.facts[r.name]]
                for _ in range(orders):
                    rng.shuffle(sents)
                    texts.append(" ".join(sents))
        return texts

    def recall_probes(self) -> list[dict]:
        """Each parametric fact as a cloze on its own biography sentence: the sentence up to its object.

        Only sentences that name the subject first and the object last qualify (in "X is the boss of Y"
        the object comes first, so its prefix would give nothing to recall from).
        """
        probes = []
        for rel in (r for r in RELATIONS if r.group == PARAMETRIC):
            for person in self.parametric:
                if person not in self.facts[rel.name]:
                    continue
                text, subject, obj = self.sentence(rel, person), self.names[person], self.object_name(rel, person)
                cut = text.rfind(obj)
                if text.startswith(subject) and cut > len(subject) and text[cut + len(obj):] == ".":
                    probes.append({"relation": rel.name, "prompt": text[:cut].rstrip(), "answer": obj})
        return probes

    def _template(self, relation: Relation, person: int, k: int) -> int:
        if self.noun_sentences:
            return NOUN if k == 0 else self.phrasing[relation.name][person] + k - 1
        return self.phrasing[relation.name][person] + k

    def to_json(self) -> dict:
        from .relations import BY_NAME

        def fact_value(rel, v):
            return self.names[v] if BY_NAME[rel].person else v

        people = []
        contextual = set(self.contextual)
        for pid, name in enumerate(self.names):
            kbs = {}
            for group in GROUPS:
                kbs[group] = {r: fact_value(r, self.facts[r][pid]) for r in self.facts
                              if BY_NAME[r].group == group and pid in self.facts[r]}
            people.append({
                "id": pid,
                "name": name,
                "parametric": self.is_parametric(pid),
                "contextual": pid in contextual,
                "facts": kbs,
            })
        return {"people": people}


def _faker_pool(fake: Faker, method: str, n: int) -> list[str]:
    """Up to n distinct values of a Faker method. Faker is slow per call, so the world draws from pools."""
    seen: dict[str, None] = {}
    for _ in range(20 * n):
        if len(seen) >= n:
            break
        seen[getattr(fake, method)()] = None
    return list(seen)


def _names(n: int, rng: random.Random, fake: Faker) -> list[str]:
    firsts = _faker_pool(fake, "first_name", 600)
    lasts = _faker_pool(fake, "last_name", 600)
    if n > len(firsts) * len(lasts) // 2:
        raise ValueError(f"{n} people need more distinct names than the name pools hold "
                         f"({len(firsts)} first x {len(lasts)} last names)")
    seen: set[str] = set()
    names: list[str] = []
    while len(names) < n:
        name = f"{rng.choice(firsts)} {rng.choice(lasts)}"
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _value_generators(fake: Faker, rng: random.Random, names: list[str]):
    cities = _faker_pool(fake, "city", 300)
    companies = _faker_pool(fake, "company", 300)
    streets = _faker_pool(fake, "street_name", 300)
    birth_year: dict[int, int] = {}

    def date(year: int) -> str:
        return f"{rng.choice(MONTHS)} {rng.randint(1, 28)}, {year}"

    def birth(pid):
        birth_year[pid] = rng.randint(1900, 1960)
        return date(birth_year[pid])

    def death(pid):  # after the birth date, since relations are generated in order
        start = birth_year.get(pid, 1900) + 20
        return date(rng.randint(start, start + 60))

    def email(pid):
        first, last = names[pid].lower().split(" ", 1)
        return f"{first}.{last.replace(' ', '')}{rng.randint(1, 99)}@{rng.choice(('mail.com', 'post.net', 'inbox.org'))}"

    def phone(_pid):
        return "".join(str(rng.randint(0, 9)) for _ in range(10))

    gens = {name: (lambda _pid, pool=pool: rng.choice(pool)) for name, pool in VALUE_POOLS.items()}
    gens.update({
        "birth_date": birth,
        "death_date": death,
        "email": email,
        "phone": phone,
        "city": lambda _pid: rng.choice(cities),
        "company": lambda _pid: rng.choice(companies),
        "address": lambda _pid: f"{rng.randint(1, 9999)} {rng.choice(streets)}",
    })
    return gens


def _derangement(items: list[int], rng: random.Random) -> dict[int, int]:
    """A random permutation with no fixed points: one cycle through shuffled items."""
    order = list(items)
    rng.shuffle(order)
    if len(order) < 2:
        return {}
    return {order[i]: order[(i + 1) % len(order)] for i in range(len(order))}


def _matching(items: list[int], rng: random.Random) -> dict[int, int]:
    order = list(items)
    rng.shuffle(order)
    out: dict[int, int] = {}
    for a, b in zip(order[0::2], order[1::2]):
        out[a], out[b] = b, a
    return out


def build_world(n_parametric: int, n_contextual: int, seed: int, locale: str = "en_US",
                noun_sentences: bool = False) -> World:
    """Deterministic in (sizes, seed, locale); noun_sentences changes only how facts are worded."""
    n_reused = n_contextual // 2
    n_new = n_contextual - n_reused
    rng = random.Random(f"world-{seed}")
    fake = Faker(locale)
    fake.seed_instance(seed)
    names = _names(n_parametric + n_new, rng, fake)
    parametric = list(range(n_parametric))
    contextual = list(range(n_reused)) + list(range(n_parametric, n_parametric + n_new))
    members = {PARAMETRIC: parametric, CONTEXTUAL: contextual}
    in_group = {PARAMETRIC: set(parametric), CONTEXTUAL: set(contextual)}

    gens = _value_generators(fake, rng, names)

    facts: dict[str, dict[int, int | str]] = {}
    for rel in RELATIONS:
        if rel.name in facts:
            continue
        people = members[rel.group]
        if rel.symmetric:
            facts[rel.name] = _matching(people, rng)  # type: ignore[assignment]
        elif rel.inverse:
            # One permutation states both directions; each knowledge base keeps the facts
            # whose subject and object are both its members. It permutes within the blocks
            # reused / parametric-only / new so both knowledge bases cover all their people.
            sigma: dict[int, int] = {}
            for block in (parametric[:n_reused], parametric[n_reused:], contextual[n_reused:]):
                sigma.update(_derangement(block, rng))
            inv = BY_NAME_INV[rel.name]
            facts[rel.name] = {a: b for a, b in sigma.items() if a in in_group[rel.group] and b in in_group[rel.group]}
            facts[inv.name] = {b: a for a, b in sigma.items() if a in in_group[inv.group] and b in in_group[inv.group]}
        else:
            gen = gens[rel.values]  # type: ignore[index]
            facts[rel.name] = {p: gen(p) for p in people}

    phrasing = {rel.name: {p: rng.randrange(len(rel.templates)) for p in facts[rel.name]} for rel in RELATIONS}
    bio_order = {}
    ctx_rels = [r.name for r in RELATIONS if r.group == CONTEXTUAL]
    for p in contextual:
        order = [r for r in ctx_rels if p in facts[r]]
        rng.shuffle(order)
        bio_order[p] = order
    return World(names=names, n_parametric=n_parametric, contextual=contextual, facts=facts,
                 phrasing=phrasing, bio_order=bio_order, noun_sentences=noun_sentences)


def _inverse_index() -> dict[str, Relation]:
    from .relations import BY_NAME

    return {r.name: BY_NAME[r.inverse] for r in RELATIONS if r.inverse}


BY_NAME_INV = _inverse_index()
