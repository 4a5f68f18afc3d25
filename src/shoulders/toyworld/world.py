"""The synthetic world: entities, their attributes and the relations between them.

Everything downstream (the pre-training corpus, the tasks, the QA sets) is text
rendered from this one structure, so every answer can be traced back to a fact here.
Relations are functional (one object per subject and relation), which makes every
question have exactly one gold answer and every 2-hop chain well defined.
The generator uses only `random.Random(seed)`: same seed, same world, on any machine.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field

from pydantic import Field, model_validator

from shoulders.toyworld.lexicon import INDUSTRIES, PROFESSIONS, UNIVERSITY_WORDS
from shoulders.toyworld.names import NameMaker, person_names
from shoulders.utils.strict_model import StrictModel

KINDS = ("person", "city", "country", "company", "product", "university")

# relation -> (subject kind, object kind); object kind "literal" means a plain string value.
RELATIONS: dict[str, tuple[str, str]] = {
    "born_in": ("person", "city"),
    "works_for": ("person", "company"),
    "studied_at": ("person", "university"),
    "profession": ("person", "literal"),
    "birth_year": ("person", "literal"),
    "located_in": ("city", "country"),
    "capital": ("country", "city"),
    "founded_by": ("company", "person"),
    "headquartered_in": ("company", "city"),
    "founded_year": ("company", "literal"),
    "industry": ("company", "literal"),
    "made_by": ("product", "company"),
    "category": ("product", "literal"),
    "campus_in": ("university", "city"),
}


class WorldConfig(StrictModel):
    """How many entities of each kind. The defaults are the full demo world.

    Sized for what toy-small can memorise in its pre-training budget: on the same
    ~1.3M-token budget a 100-person world (758 facts, ~30 exposures each) gave 22%
    few-shot 1-hop EM, this 60-person one (478 facts, ~60 exposures) 92%.
    """

    n_people: int = Field(60, ge=1, description="people (each company's founder is one of them)")
    n_cities: int = Field(24, ge=2, description="cities, at least two per country")
    n_countries: int = Field(6, ge=1, description="countries")
    n_companies: int = Field(20, ge=1, description="companies, at most one per person (each has its own founder)")
    n_products: int = Field(30, ge=1, description="products, at least one per company")
    n_universities: int = Field(8, ge=1, description="universities")

    @model_validator(mode="after")
    def _check(self):
        if self.n_cities < 2 * self.n_countries:
            raise ValueError("need at least two cities per country (n_cities >= 2 * n_countries)")
        if self.n_companies > self.n_people:
            raise ValueError("every company needs its own founder (n_companies <= n_people)")
        if self.n_products < self.n_companies:
            raise ValueError("every company makes at least one product (n_products >= n_companies)")
        return self

    @classmethod
    def quick(cls) -> "WorldConfig":
        """A smaller world for `--quick` runs: few enough facts to be learnt in a minute."""
        return cls(n_people=24, n_cities=10, n_countries=3, n_companies=8, n_products=12, n_universities=3)

    @classmethod
    def tiny(cls) -> "WorldConfig":
        """For unit tests."""
        return cls(n_people=16, n_cities=6, n_countries=3, n_companies=5, n_products=7, n_universities=3)


@dataclass
class Entity:
    id: str  # e.g. "person_007"
    kind: str
    name: str


@dataclass(frozen=True)
class Fact:
    subject: str  # entity id
    relation: str
    object: str  # entity id, or the literal value when RELATIONS[relation][1] == "literal"

    @property
    def is_literal(self) -> bool:
        return RELATIONS[self.relation][1] == "literal"


@dataclass
class World:
    seed: int
    config: WorldConfig
    entities: dict[str, Entity] = field(default_factory=dict)
    facts: list[Fact] = field(default_factory=list)

    def __post_init__(self):
        self._index = {(f.subject, f.relation): f.object for f in self.facts}
        self._by_subject: dict[str, list[Fact]] = {}
        self._by_kind: dict[str, list[Entity]] = {}
        self._inverse: dict[tuple[str, str], list[str]] = {}
        for f in self.facts:
            self._by_subject.setdefault(f.subject, []).append(f)
            self._inverse.setdefault((f.object, f.relation), []).append(f.subject)
        for e in self.entities.values():
            self._by_kind.setdefault(e.kind, []).append(e)

    def of_kind(self, kind: str) -> list[Entity]:
        return list(self._by_kind.get(kind, []))

    def get(self, subject: str, relation: str) -> str:
        """The object of (subject, relation): an entity id or a literal value."""
        return self._index[(subject, relation)]

    def name(self, ref: str) -> str:
        """Surface form of an entity id, or the literal itself."""
        return self.entities[ref].name if ref in self.entities else ref

    def answer(self, fact: Fact) -> str:
        return self.name(fact.object)

    def facts_of(self, subject: str) -> list[Fact]:
        """The subject's facts (a fresh list: callers may shuffle it)."""
        return list(self._by_subject.get(subject, []))

    def inverse(self, obj: str, relation: str) -> list[str]:
        """Subjects whose `relation` points to `obj` (e.g. everyone born in a city)."""
        return list(self._inverse.get((obj, relation), []))

    def to_dict(self) -> dict:
        return {"seed": self.seed, "config": self.config.model_dump(),
                "entities": [asdict(e) for e in self.entities.values()],
                "facts": [asdict(f) for f in self.facts]}

    @classmethod
    def from_dict(cls, d: dict) -> "World":
        return cls(seed=d["seed"], config=WorldConfig.model_validate(d["config"]),
                   entities={e["id"]: Entity(**e) for e in d["entities"]},
                   facts=[Fact(**f) for f in d["facts"]])


def world_stems(world: World) -> set[str]:
    """Lower-cased words of every entity name: what a fresh name must not clash with."""
    return {w.lower() for e in world.entities.values() for w in e.name.split()}


def _spread(rng: random.Random, items: list, groups: list) -> dict:
    """Assign every item to a group so that each group gets at least one item."""
    if len(items) < len(groups):
        raise ValueError("fewer items than groups")
    shuffled = rng.sample(items, len(items))
    out = {item: groups[i] for i, item in enumerate(shuffled[: len(groups)])}
    out.update({item: rng.choice(groups) for item in shuffled[len(groups):]})
    return out


def build_world(seed: int = 0, size: WorldConfig | str = "full") -> World:
    """Generate the world for `seed`; `size` is a WorldConfig or one of full/quick/tiny."""
    cfg = size if isinstance(size, WorldConfig) else {
        "full": WorldConfig, "quick": WorldConfig.quick, "tiny": WorldConfig.tiny}[size]()
    rng = random.Random(f"toyworld-{seed}")
    names = NameMaker(rng)
    ents: dict[str, Entity] = {}
    facts: list[Fact] = []

    def add(kind: str, name: str) -> str:
        eid = f"{kind}_{sum(e.kind == kind for e in ents.values()):03d}"
        ents[eid] = Entity(eid, kind, name)
        return eid

    countries = [add("country", names.word("country", (1, 2))) for _ in range(cfg.n_countries)]
    cities = [add("city", names.word("city", (1, 2))) for _ in range(cfg.n_cities)]
    city_country = _spread(rng, cities, countries)
    for c in cities:
        facts.append(Fact(c, "located_in", city_country[c]))
    for k in countries:
        facts.append(Fact(k, "capital", rng.choice([c for c in cities if city_country[c] == k])))

    unis = [add("university", f"{names.word('last')} {rng.choice(UNIVERSITY_WORDS)}")
            for _ in range(cfg.n_universities)]
    facts += [Fact(u, "campus_in", rng.choice(cities)) for u in unis]

    people = [add("person", n) for n in person_names(names, cfg.n_people)]
    industries = list(INDUSTRIES)
    companies, company_industry = [], {}
    for i in range(cfg.n_companies):
        ind = industries[i % len(industries)] if i < len(industries) else rng.choice(industries)
        cid = add("company", f"{names.word('brand')} {INDUSTRIES[ind][0]}")
        companies.append(cid)
        company_industry[cid] = ind
    founders = rng.sample(people, len(companies))
    for cid, founder in zip(companies, founders):
        facts += [Fact(cid, "founded_by", founder), Fact(cid, "headquartered_in", rng.choice(cities)),
                  Fact(cid, "founded_year", str(rng.randint(1950, 2015))),
                  Fact(cid, "industry", company_industry[cid])]

    products = [add("product", names.word("brand", (1, 2))) for _ in range(cfg.n_products)]
    maker = _spread(rng, products, companies)
    for p in products:
        facts += [Fact(p, "made_by", maker[p]),
                  Fact(p, "category", rng.choice(INDUSTRIES[company_industry[maker[p]]][1]))]

    employer = dict(zip(founders, companies))  # founders work for the company they founded
    for p in people:
        facts += [Fact(p, "born_in", rng.choice(cities)),
                  Fact(p, "works_for", employer.get(p) or rng.choice(companies)),
                  Fact(p, "studied_at", rng.choice(unis)),
                  Fact(p, "profession", rng.choice(PROFESSIONS)),
                  Fact(p, "birth_year", str(rng.randint(1940, 1999)))]
    return World(seed=seed, config=cfg, entities=ents, facts=facts)
