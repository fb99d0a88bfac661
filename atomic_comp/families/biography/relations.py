"""The 39 relations of the biography world, in the paper's two disjoint groups.

Each relation knows how it is said: sentence templates (shared by biographies,
context paragraphs and chain-of-thought steps, so a model that has *read* a fact
can *write* it) and a noun for composing questions ("the boss of X", "X's boss").
"""

from __future__ import annotations

from dataclasses import dataclass

PARAMETRIC = "parametric"
CONTEXTUAL = "contextual"
GROUPS = (PARAMETRIC, CONTEXTUAL)
# template index of the noun sentence "X's {noun} is Y.", which uses the question's own word for the relation
NOUN = -1


@dataclass(frozen=True)
class Relation:
    name: str
    group: str  # parametric | contextual
    person: bool  # person->person (may be an intermediate hop) or attribute (last hop only)
    noun: str  # "the {noun} of X" / "X's {noun}"
    templates: tuple[str, ...]  # sentences with {s} (subject) and {o} (object)
    values: str | None = None  # attribute value pool name (see world.VALUE_POOLS)
    symmetric: bool = False
    inverse: str | None = None  # the relation in the other group that says the same fact backwards

    def say(self, subject: str, obj: str, template: int = 0) -> str:
        if template == NOUN:
            return f"{subject}'s {self.noun} is {obj}."
        return self.templates[template % len(self.templates)].format(s=subject, o=obj)


def _p(name, noun, templates, **kw):
    return Relation(name, PARAMETRIC, True, noun, tuple(templates), **kw)


def _c(name, noun, templates, **kw):
    return Relation(name, CONTEXTUAL, True, noun, tuple(templates), **kw)


def _pa(name, noun, values, templates):
    return Relation(name, PARAMETRIC, False, noun, tuple(templates), values=values)


def _ca(name, noun, values, templates):
    return Relation(name, CONTEXTUAL, False, noun, tuple(templates), values=values)


RELATIONS: tuple[Relation, ...] = (
    # --- parametric, person -> person ---
    _p("boss", "boss", ["{o} is the boss of {s}.", "{s} reports to {o}.", "{s} works under {o}."],
       inverse="boss_of"),
    _p("child", "child", ["{o} is the child of {s}.", "{s} has a child named {o}.", "{s} brought up {o} as their child."],
       inverse="parent"),
    _p("classmate", "classmate", ["{s} was a classmate of {o}.", "{s} and {o} were classmates.", "{s} went to school with {o}."],
       symmetric=True),
    _p("influenced_by", "inspiration", ["{s} was influenced by {o}.", "{s} drew inspiration from {o}.", "{s} found a role model in {o}."],
       inverse="influence"),
    _p("mentoring", "mentee", ["{s} mentored {o}.", "{s} was a mentor to {o}.", "{s} guided {o} as a mentee."],
       inverse="mentored_by"),
    _p("roommate", "roommate", ["{s} shared a room with {o}.", "{s} and {o} were roommates.", "{s} lived in one room with {o}."],
       symmetric=True),
    # --- parametric, attributes ---
    _pa("birth_date", "birth date", "birth_date", ["{s} was born on {o}.", "{s} celebrates a birthday on {o}.", "{s} came into the world on {o}."]),
    _pa("died_in", "place of death", "city", ["{s} died in {o}.", "{s} passed away in {o}.", "{s} spent the final days in {o}."]),
    _pa("died_on", "date of death", "death_date", ["{s} died on {o}.", "{s} passed away on {o}.", "The life of {s} ended on {o}."]),
    _pa("email", "email address", "email", ["{s} has the email address {o}.", "{s} can be emailed at {o}.", "{s} reads mail sent to {o}."]),
    _pa("favorite_food", "favorite food", "food", ["{s} likes {o} best of all foods.", "{s} loves eating {o}.", "{s} would pick {o} for every meal."]),
    _pa("first_language", "first language", "language", ["{s} grew up speaking {o}.", "{s} is a native speaker of {o}.", "{s} learned {o} as a first language."]),
    _pa("hobby", "hobby", "hobby", ["{s} enjoys {o} as a hobby.", "{s} spends free time on {o}.", "{s} has a passion for {o}."]),
    _pa("known_for", "claim to fame", "feat", ["{s} is known for {o}.", "{s} is famous for {o}.", "{s} is best remembered for {o}."]),
    _pa("occupation", "occupation", "occupation", ["{s} works as {o}.", "{s} is employed as {o}.", "{s} earns a living as {o}."]),
    _pa("pet", "pet", "pet", ["{s} owns {o}.", "{s} keeps {o} at home.", "{s} takes care of {o}."]),
    _pa("phone", "phone number", "phone", ["{s} has the phone number {o}.", "{s} can be called at {o}.", "{s} answers calls at {o}."]),
    _pa("service", "military service", "service", ["{s} served in {o}.", "{s} did military service in {o}.", "{s} was a member of {o}."]),
    _pa("university", "university", "university", ["{s} studied at {o}.", "{s} graduated from {o}.", "{s} is an alumnus of {o}."]),
    _pa("wrote", "book", "book", ["{s} wrote {o}.", "{s} is the author of {o}.", "{s} published {o}."]),
    # --- contextual, person -> person ---
    _c("best_friend", "best friend", ["{s} is best friends with {o}.", "{s} and {o} are best friends.", "{s} trusts {o} as a best friend."],
       symmetric=True),
    _c("boss_of", "subordinate", ["{s} is the boss of {o}.", "{s} manages {o}.", "{s} supervises {o}."],
       inverse="boss"),
    _c("colleague", "colleague", ["{s} is a colleague of {o}.", "{s} works alongside {o}.", "{s} and {o} are colleagues."],
       symmetric=True),
    _c("influence", "follower", ["{s} influenced {o}.", "{s} had a strong influence on {o}.", "{s} shaped the ideas of {o}."],
       inverse="influenced_by"),
    _c("mentored_by", "mentor", ["{s} was mentored by {o}.", "{s} learned the trade from {o}.", "{s} was trained by {o}."],
       inverse="mentoring"),
    _c("neighbor", "neighbor", ["{s} lives next door to {o}.", "{s} and {o} are neighbors.", "{s} is a neighbor of {o}."],
       symmetric=True),
    _c("parent", "parent", ["{o} is the parent of {s}.", "{s} was raised by {o}.", "{s} is the child of {o}."],
       inverse="child"),
    _c("rival", "rival", ["{s} is a rival of {o}.", "{s} competes fiercely with {o}.", "{s} and {o} are rivals."],
       symmetric=True),
    _c("sibling", "sibling", ["{s} is a sibling of {o}.", "{s} and {o} are siblings.", "{s} grew up with {o} as a sibling."],
       symmetric=True),
    _c("spouse", "spouse", ["{s} is married to {o}.", "{s} and {o} are spouses.", "{s} wed {o}."],
       symmetric=True),
    # --- contextual, attributes ---
    _ca("address", "home address", "address", ["{s} resides at {o}.", "{s} has a home at {o}.", "Letters for {s} go to {o}."]),
    _ca("awards", "award", "award", ["{s} received {o}.", "{s} was honored with {o}.", "{s} won {o}."]),
    _ca("birth_place", "birthplace", "city", ["{s} was born in {o}.", "{s} is a native of {o}.", "{s} first saw the light of day in {o}."]),
    _ca("leader_of", "organization", "company", ["{s} leads {o}.", "{s} is the leader of {o}.", "{s} heads {o}."]),
    _ca("lived_in", "home city", "city", ["{s} lived in {o}.", "{s} made a home in {o}.", "{s} settled down in {o}."]),
    _ca("major", "major", "major", ["{s} majored in {o}.", "{s} chose {o} as a major.", "{s} earned a degree in {o}."]),
    _ca("nationality", "nationality", "nationality", ["{s} holds {o} citizenship.", "{s} is {o} by nationality.", "{s} carries a passport that is {o}."]),
    _ca("philanthropy", "charity", "cause", ["{s} donates to {o}.", "{s} supports {o} through charity.", "{s} raises money for {o}."]),
    _ca("worked_at", "employer", "company", ["{s} worked at {o}.", "{s} was employed by {o}.", "{s} held a job at {o}."]),
)

BY_NAME: dict[str, Relation] = {r.name: r for r in RELATIONS}


def group_relations(group: str) -> list[Relation]:
    return [r for r in RELATIONS if r.group == group]
