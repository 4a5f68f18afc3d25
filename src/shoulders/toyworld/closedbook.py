"""Closed-book QA over the world: single-hop facts and 2-hop chains (for recursion).

1-hop questions ask one stored fact ("Where was X born?"); every such fact is stated
many times in the pre-training corpus. 2-hop questions ("In which country was X
born?") need two stored facts composed inside the model: the corpus states each link
but never the chain, which is what makes them the hard case that a second pass through
the frozen LM (recursion) is meant to help with. Splits are by question, at random;
question wording is drawn from all templates in every split (knowledge, not phrasing,
is what is tested).
"""
from __future__ import annotations

import random

from pydantic import Field, model_validator

from shoulders.data.examples import Example, Task
from shoulders.toyworld.relations import CHAINS, QUESTIONS, ask
from shoulders.toyworld.splits import split3
from shoulders.toyworld.world import RELATIONS, Fact, World
from shoulders.utils.strict_model import StrictModel


class ClosedBookConfig(StrictModel):
    """Which closed-book questions are asked and how they are split (at random, per hop count)."""

    dev_frac: float = Field(0.1, ge=0, le=1, description="share of the questions (of each hop count) in dev")
    test_frac: float = Field(0.2, ge=0, le=1, description="share of the questions (of each hop count) in test")
    relations: tuple[str, ...] = Field(tuple(RELATIONS), description="1-hop relations asked")
    chains: tuple[str, ...] = Field(tuple(c.name for c in CHAINS), description="2-hop chains asked")

    @model_validator(mode="after")
    def _check(self):
        if self.dev_frac + self.test_frac > 1:
            raise ValueError(f"dev_frac + test_frac must be <= 1, got {self.dev_frac} + {self.test_frac}")
        unknown = [r for r in self.relations if r not in RELATIONS] + [
            c for c in self.chains if c not in {ch.name for ch in CHAINS}]
        if unknown:
            raise ValueError(f"unknown relations or chains {unknown}: have {list(RELATIONS)} and "
                             f"{[ch.name for ch in CHAINS]}")
        return self


def one_hop(world: World, fact: Fact, template: str, idx: int) -> Example:
    return Example(input=ask(world, fact, template), target=world.answer(fact), task="closedbook_qa",
                   id=f"cb1-{idx:05d}", meta={"hops": 1, "relation": fact.relation, "subject": fact.subject,
                                              "facts": [[fact.subject, fact.relation, fact.object]]})


def two_hop_examples(world: World, rng: random.Random, chains: tuple[str, ...]) -> list[Example]:
    out = []
    for chain in (c for c in CHAINS if c.name in chains):
        subj_kind = RELATIONS[chain.first][0]
        for ent in world.of_kind(subj_kind):
            bridge = world.get(ent.id, chain.first)
            obj = world.get(bridge, chain.second)
            q = rng.choice(chain.questions).format(s=ent.name)
            out.append(Example(input=q, target=world.name(obj), task="closedbook_qa", id=f"cb2-{len(out):05d}",
                               meta={"hops": 2, "relation": chain.name, "subject": ent.id, "bridge": bridge,
                                     "bridge_answer": world.name(bridge),
                                     "facts": [[ent.id, chain.first, bridge], [bridge, chain.second, obj]]}))
    return out


def build_closedbook(world: World, cfg: ClosedBookConfig | None = None) -> Task:
    """A `Task` of questions (input) and answers (target), `meta["hops"]` 1 or 2."""
    cfg = cfg or ClosedBookConfig()
    rng = random.Random(f"closedbook-{world.seed}")
    ones = [one_hop(world, f, rng.choice(QUESTIONS[f.relation]), i)
            for i, f in enumerate(f for f in world.facts if f.relation in cfg.relations)]
    twos = two_hop_examples(world, rng, cfg.chains)
    task = Task(name="closedbook_qa", metric="exact_match", cluster="closed-book QA")
    for group in (ones, twos):  # stratified: both hop counts in every split
        tr, dv, te = split3(group, rng, cfg.dev_frac, cfg.test_frac)
        task.train += tr
        task.dev += dv
        task.test += te
    return task


def candidates(world: World, ex: Example) -> set[str]:
    """All answers of the right type for a question (the denominator of chance)."""
    rel = ex.meta["facts"][-1][1]
    kind = RELATIONS[rel][1]
    if kind == "literal":
        return {f.object for f in world.facts if f.relation == rel}
    return {e.name for e in world.of_kind(kind)}


def chance(world: World, examples: list[Example]) -> float:
    """Expected EM of guessing uniformly among answers of the right type."""
    return sum(1 / len(candidates(world, ex)) for ex in examples) / max(1, len(examples))
