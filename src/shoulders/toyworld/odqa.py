"""Open-domain QA over a passage collection built from the world (retrieve, re-rank, read).

Every passage records the facts it states, so a question's positives are exactly the
passages that state its fact (its own entity's passage, and any list that names it).
The collection is made hard for a lexical retriever on purpose:
- positives are written with random paraphrases, often sharing no relation word with
  the question ("native of" for "born");
- *mention* distractors name the question's subject next to a same-relation fact
  about someone else ("X once met Y. Y was born in Z."), so BM25 ranks them high while
  their answer is wrong: a cross-encoder re-ranker can tell who the fact is about;
- people share first and last names, and same-kind entities share relation words.
About 40% of the questions (`meta["in_corpus"] == False`) ask about people and products
that exist only in the passages (see `unseen.py`): the backbone cannot know them, so
they measure reading, while the rest can also be answered from memory.
Questions are split by subject entity, so test questions ask about other subjects
than training questions.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from pydantic import Field, model_validator

from shoulders.data.examples import Example
from shoulders.toyworld import genres
from shoulders.toyworld.corpus import LIST_HEADS
from shoulders.toyworld.relations import QUESTIONS, STATEMENTS, ask, state
from shoulders.toyworld.splits import entity_splits
from shoulders.toyworld.unseen import UnseenConfig, extend_with_unseen
from shoulders.toyworld.world import Fact, World
from shoulders.utils.strict_model import CountRange, StrictModel

MENTIONS = {
    "person": ("{x} once met {y}.", "{y} is a friend of {x}.", "{x} and {y} worked on a project together."),
    "company": ("{x} is a rival of {y}.", "{y} competes with {x}.", "{y} once tried to buy {x}."),
    "product": ("{x} is often compared with {y}.", "Shops sell {y} next to {x}."),
    "city": ("{x} is twinned with {y}.", "A new road links {x} and {y}."),
    "country": ("{x} borders {y}.", "{x} and {y} signed a trade deal."),
    "university": ("{x} has an exchange programme with {y}.", "{y} competes with {x} in rowing."),
}


@dataclass
class WorldPassage:
    id: str
    title: str
    text: str
    facts: list[tuple[str, str, str]] = field(default_factory=list)  # (subject, relation, object) it states

    def to_dict(self) -> dict[str, str]:
        """The reader's corpus format: id, title, text (JSONL)."""
        return {"id": self.id, "title": self.title, "text": self.text}


@dataclass
class OdqaQuestion:
    id: str
    question: str
    answers: list[str]
    positive_ids: list[str]
    meta: dict = field(default_factory=dict)


class OdqaConfig(StrictModel):
    """The open-domain QA passage collection and its questions (split by subject entity)."""

    facts_per_passage: CountRange = Field((1, 2), description="an entity's facts are cut into passages of this "
                                          "size (lo, hi)")
    mention_rate: float = Field(1.0, ge=0, description="mention distractors per fact (fractional part = "
                                "probability)")
    noise_passages: int = Field(200, ge=0, description="reviews and headlines that answer nothing")
    questions_per_fact: int = Field(2, ge=1, description="distinct phrasings asked per fact (same split: split is "
                                    "by subject)")
    dev_frac: float = Field(0.1, ge=0, le=1, description="share of subject entities (per kind) whose questions "
                            "are dev")
    test_frac: float = Field(0.25, ge=0, le=1, description="share of subject entities (per kind) whose questions "
                             "are test")
    unseen: UnseenConfig = Field(default_factory=UnseenConfig, description="entities only the passages know")

    @model_validator(mode="after")
    def _check(self):
        if self.dev_frac + self.test_frac > 1:
            raise ValueError(f"dev_frac + test_frac must be <= 1, got {self.dev_frac} + {self.test_frac}")
        return self


@dataclass
class OdqaSet:
    passages: list[WorldPassage]
    train: list[OdqaQuestion]
    dev: list[OdqaQuestion]
    test: list[OdqaQuestion]

    def split(self, name: str) -> list[OdqaQuestion]:
        return {"train": self.train, "dev": self.dev, "test": self.test}[name]

    def examples(self, split: str) -> list[Example]:
        """A split as `Example`s (question -> answer), positives kept in `meta`."""
        return [Example(input=q.question, target=q.answers[0], task="odqa", id=q.id, answers=list(q.answers),
                        meta={"positive_ids": list(q.positive_ids), **q.meta}) for q in self.split(split)]


def _entity_passages(world: World, rng: random.Random, cfg: OdqaConfig) -> list[WorldPassage]:
    out = []
    for eid, ent in world.entities.items():
        facts = world.facts_of(eid)
        rng.shuffle(facts)
        i = 0
        while i < len(facts):
            chunk = facts[i:i + rng.randint(*cfg.facts_per_passage)]
            i += len(chunk)
            text = " ".join(state(world, f, rng.choice(STATEMENTS[f.relation])) for f in chunk)
            out.append(WorldPassage("", ent.name, text, [(f.subject, f.relation, f.object) for f in chunk]))
    return out


def _list_passages(world: World, rng: random.Random) -> list[WorldPassage]:
    out = []
    for rel, head in LIST_HEADS.items():
        for obj in sorted({f.object for f in world.facts if f.relation == rel}):
            subs = world.inverse(obj, rel)
            rng.shuffle(subs)
            subs = subs[:6]
            names = [world.name(s) for s in subs]
            text = f"{head.format(o=world.name(obj))} include {', '.join(names)}."
            out.append(WorldPassage("", world.name(obj), text, [(s, rel, obj) for s in subs]))
    return out


def _mention_passages(world: World, rng: random.Random, cfg: OdqaConfig) -> list[WorldPassage]:
    out = []
    for fact in world.facts:
        n = int(cfg.mention_rate) + (rng.random() < cfg.mention_rate % 1)
        kind = world.entities[fact.subject].kind
        others = [e.id for e in world.of_kind(kind) if e.id != fact.subject]
        for _ in range(n):
            y = rng.choice(others)
            other = Fact(y, fact.relation, world.get(y, fact.relation))
            link = rng.choice(MENTIONS[kind]).format(x=world.name(fact.subject), y=world.name(y))
            text = f"{link} {state(world, other, rng.choice(STATEMENTS[fact.relation]))}"
            out.append(WorldPassage("", world.name(y), text, [(other.subject, other.relation, other.object)]))
    return out


def _noise_passages(world: World, rng: random.Random, n: int) -> list[WorldPassage]:
    products = world.of_kind("product")
    out = []
    for i in range(n):
        if i % 2:
            p = rng.choice(products)
            out.append(WorldPassage("", f"Review of {p.name}", genres.review(world, p.id, rng.random() < 0.5, rng)))
        else:
            topic = rng.choice(("business", "sports", "science", "travel"))
            out.append(WorldPassage("", f"{topic.capitalize()} news", genres.headline(world, topic, rng)))
    return out


def build_odqa(world: World, cfg: OdqaConfig | None = None) -> OdqaSet:
    """Passages and questions; the world is extended with unseen entities first."""
    cfg = cfg or OdqaConfig()
    world, unseen = extend_with_unseen(world, cfg.unseen)
    rng = random.Random(f"odqa-{world.seed}")
    passages = (_entity_passages(world, rng, cfg) + _list_passages(world, rng)
                + _mention_passages(world, rng, cfg) + _noise_passages(world, rng, cfg.noise_passages))
    rng.shuffle(passages)
    by_fact: dict[tuple[str, str, str], list[str]] = {}
    for i, p in enumerate(passages):
        p.id = f"p{i:05d}"
        for f in p.facts:
            by_fact.setdefault(f, []).append(p.id)
    splits = entity_splits(world, cfg.dev_frac, cfg.test_frac)
    out = OdqaSet(passages, [], [], [])
    for f in world.facts:
        for template in rng.sample(QUESTIONS[f.relation], min(cfg.questions_per_fact, len(QUESTIONS[f.relation]))):
            q = OdqaQuestion("", ask(world, f, template), [world.answer(f)], by_fact[(f.subject, f.relation, f.object)],
                             {"relation": f.relation, "subject": f.subject, "in_corpus": f.subject not in unseen})
            out.split(splits[f.subject]).append(q)
    for split in ("train", "dev", "test"):
        for i, q in enumerate(out.split(split)):
            q.id = f"{split}-{i:05d}"
    return out
