"""Short labelled texts about the world: reviews, posts, headlines, entity paragraphs.

The corpus and the task suite draw on the same generators, so the backbone has seen
each genre (and its label words) in pre-training, while task examples are fresh draws
that never appear verbatim in the corpus.
"""
from __future__ import annotations

import random

from shoulders.toyworld import lexicon as lx
from shoulders.toyworld.relations import STATEMENTS, state
from shoulders.toyworld.world import World

INTROS = {
    "person": ("{n} is a person.", "This article is about {n}.", "Here is a short biography of {n}."),
    "city": ("{n} is a city.", "This article is about the city of {n}.", "{n} is a town with a long history."),
    "country": ("{n} is a country.", "This article is about the country {n}.", "{n} is a nation."),
    "company": ("{n} is a company.", "This article is about the firm {n}.", "{n} is a business."),
    "product": ("{n} is a product.", "This article is about the product {n}.", "{n} is sold in many shops."),
    "university": ("{n} is a place of learning.", "This article is about {n}.", "{n} is a school."),
}


def paragraph(world: World, eid: str, rng: random.Random, relations: tuple[str, ...] | None = None,
              intro: bool = True) -> str:
    """An encyclopedic paragraph stating the entity's own facts (each in a random paraphrase).

    Only the entity's own facts appear, never a fact about one of its objects, so no
    paragraph spells out a 2-hop chain (that must stay latent for the 2-hop questions).
    """
    ent = world.entities[eid]
    facts = [f for f in world.facts_of(eid) if relations is None or f.relation in relations]
    rng.shuffle(facts)
    sents = [state(world, f, rng.choice(STATEMENTS[f.relation])) for f in facts]
    if intro:
        sents.insert(0, rng.choice(INTROS[ent.kind]).format(n=ent.name))
    return " ".join(sents)


def review(world: World, product: str, positive: bool, rng: random.Random, author: str | None = None) -> str:
    """A 2-4 sentence product review whose overall sentiment decides the label.

    Not a bag of one polarity's words: a third of reviews concede one point of the
    other polarity ("..., but ...") and some negate the other polarity ("not awful"),
    so word counting alone does not solve the sentiment tasks.
    """
    name = world.name(product)
    pos = (lx.POSITIVE_WORDS, lx.POSITIVE_VERBS, lx.POSITIVE_CLOSERS)
    neg = (lx.NEGATIVE_WORDS, lx.NEGATIVE_VERBS, lx.NEGATIVE_CLOSERS)
    (words, verbs, closers), (other, _, _) = (pos, neg) if positive else (neg, pos)
    aspects = rng.sample(lx.ASPECTS, 2)
    sents = [rng.choice((f"I {rng.choice(verbs)} my {name}.", f"This {name} is {rng.choice(words)}.",
                         f"The {name} is {rng.choice(words)}."))]
    roll = rng.random()
    if roll < 0.35:
        sents.append(f"{aspects[0].capitalize()} is {rng.choice(other)}, but {aspects[1]} is {rng.choice(words)}.")
    elif roll < 0.55:
        sents.append(f"{aspects[0].capitalize()} is not {rng.choice(other)} at all.")
    else:
        sents.append(f"{aspects[0].capitalize()} is {rng.choice(words)}.")
    if rng.random() < 0.6:
        sents.append(rng.choice(closers))
    text = " ".join(sents)
    return f"{author}: {text}" if author else text


def city_post(world: World, city: str, positive: bool, rng: random.Random) -> str:
    """A short social-media post about a visit to a city."""
    adj = rng.choice(lx.CITY_POSITIVE if positive else lx.CITY_NEGATIVE)
    name = world.name(city)
    opener = rng.choice(("Just got back from", "Spent the weekend in", "Visited", "Stuck in"))
    end = rng.choice(("Cannot wait to go back!", "What a trip.", "Loved every minute.") if positive else
                     ("Never going back.", "What a waste of a trip.", "Glad to be home."))
    return f"{opener} {name}. Such a {adj} city. {end}"


def headline(world: World, topic: str, rng: random.Random) -> str:
    """An AG-news-like headline: a world entity plus a topic cue phrase."""
    kind = {"business": ("company",), "sports": ("person", "city"), "science": ("university", "company"),
            "travel": ("city", "country")}[topic]
    ent = rng.choice(world.of_kind(rng.choice(kind)))
    cue = rng.choice(lx.TOPICS[topic])
    subject = f"the team of {ent.name}" if topic == "sports" and ent.kind == "city" else ent.name
    return f"{subject[0].upper()}{subject[1:]} {cue} this week."


# Relation pairs never put in one sentence: together they would name both ends of a
# 2-hop chain (a founder's employer is the firm they founded: firm + founder's birthplace).
APART = ({"founded_by", "headquartered_in"}, {"born_in", "works_for"})

SUMMARY = {
    "person": "{s} is {ao_profession} born in {born_in}.",
    "company": "{s} is {ao_industry} company based in {headquartered_in}, founded in {founded_year}.",
    "product": "{s} is {ao_category} made by {made_by}.",
    "city": "{s} is a city in {located_in}.",
    "country": "{s} is a country whose capital is {capital}.",
    "university": "{s} is a school in {campus_in}.",
}

FIELD_NAMES = {"born_in": "born in", "works_for": "employer", "studied_at": "school", "profession": "job",
               "birth_year": "born", "located_in": "country", "capital": "capital", "founded_by": "founder",
               "headquartered_in": "headquarters", "founded_year": "founded", "industry": "industry",
               "made_by": "maker", "category": "type", "campus_in": "city"}


def summary(world: World, eid: str) -> str:
    """The one-sentence gist of an entity (the target of summarisation tasks)."""
    values: dict[str, str] = {"s": world.name(eid)}
    for f in world.facts_of(eid):
        o = world.answer(f)
        values[f.relation] = o
        values[f"ao_{f.relation}"] = f"{lx.article(o)} {o}"
    return SUMMARY[world.entities[eid].kind].format(**values)


def record_relations(world: World, eid: str, rng: random.Random, k: tuple[int, int] = (1, 3)) -> list[str]:
    """Up to k relations of the entity for one record, never an APART pair together."""
    rels = [f.relation for f in world.facts_of(eid) if f.relation != "birth_year"]
    rng.shuffle(rels)
    out: list[str] = []
    for r in rels:
        if len(out) < rng.randint(*k) and not any({r, o} in APART for o in out):
            out.append(r)
    return out or rels[:1]


def record(world: World, eid: str, relations: list[str]) -> str:
    """A flat WebNLG-like record: "name: X | founder: Y | headquarters: Z"."""
    fields = [f"name: {world.name(eid)}"]
    fields += [f"{FIELD_NAMES[r]}: {world.name(world.get(eid, r))}" for r in relations]
    return " | ".join(fields)


def realise(world: World, eid: str, relations: list[str]) -> str:
    """The reference sentence for a record: canonical (first) statements joined with 'and'."""
    facts = [next(f for f in world.facts_of(eid) if f.relation == r) for r in relations]
    parts = [state(world, f, STATEMENTS[f.relation][0]).rstrip(".") for f in facts]
    name = world.name(eid) + " "
    rest = [p[len(name):] if p.startswith(name) else p for p in parts[1:]]
    if not rest:
        return parts[0] + "."
    return ", ".join([parts[0], *rest[:-1]]) + f"{',' if len(rest) > 1 else ''} and {rest[-1]}."
