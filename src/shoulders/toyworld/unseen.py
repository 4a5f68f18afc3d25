"""Entities the backbone never read about: the part of open-domain QA that needs reading.

The toy backbones memorise every corpus fact, so an open-domain QA set built only on
corpus facts could be answered closed-book and retrieval would not matter. Like the
real world (where a reader meets facts its LM never saw), some people and products
exist only in the passage collection. They live in the corpus' cities and work for its
companies, and newcomers reuse the first names of corpus people, so they look alike to
a lexical retriever.
"""
from __future__ import annotations

import random

from pydantic import Field

from shoulders.toyworld.lexicon import INDUSTRIES, PROFESSIONS
from shoulders.toyworld.names import NameMaker
from shoulders.toyworld.world import Entity, Fact, World, world_stems
from shoulders.utils.strict_model import StrictModel


class UnseenConfig(StrictModel):
    """How many entities exist only in the open-domain passages."""

    people_ratio: float = Field(1.0, ge=0, description="unseen people per corpus person (they appear only in the "
                                "passages)")
    products_ratio: float = Field(0.67, ge=0, description="unseen products per corpus product")


def extend_with_unseen(world: World, cfg: UnseenConfig) -> tuple[World, set[str]]:
    """(the world plus unseen entities, the ids of the unseen ones). The base world is untouched."""
    rng = random.Random(f"unseen-{world.seed}")
    maker = NameMaker(rng, used=world_stems(world))
    firsts = sorted({e.name.split()[0] for e in world.of_kind("person")})
    n_people = round(cfg.people_ratio * len(world.of_kind("person")))
    n_products = round(cfg.products_ratio * len(world.of_kind("product")))
    lasts = maker.pool("last", max(6, n_people // 2))
    names: list[str] = []
    taken = {e.name for e in world.of_kind("person")}
    while len(names) < n_people:
        name = f"{rng.choice(firsts)} {rng.choice(lasts)}"
        if name not in taken:
            taken.add(name)
            names.append(name)
    ents, facts = dict(world.entities), list(world.facts)
    ids = {k: [e.id for e in world.of_kind(k)] for k in ("city", "company", "university")}
    for i, name in enumerate(names):
        eid = f"person_u{i:03d}"
        ents[eid] = Entity(eid, "person", name)
        facts += [Fact(eid, "born_in", rng.choice(ids["city"])), Fact(eid, "works_for", rng.choice(ids["company"])),
                  Fact(eid, "studied_at", rng.choice(ids["university"])),
                  Fact(eid, "profession", rng.choice(PROFESSIONS)),
                  Fact(eid, "birth_year", str(rng.randint(1940, 1999)))]
    for i in range(n_products):
        eid = f"product_u{i:03d}"
        ents[eid] = Entity(eid, "product", maker.word("brand", (1, 2)))
        company = rng.choice(ids["company"])
        industry = world.get(company, "industry")
        facts += [Fact(eid, "made_by", company), Fact(eid, "category", rng.choice(INDUSTRIES[industry][1]))]
    unseen = set(ents) - set(world.entities)
    return World(seed=world.seed, config=world.config, entities=ents, facts=facts), unseen
