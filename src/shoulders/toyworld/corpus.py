"""The pre-training corpus: the world's facts said many ways, plus everyday text.

A small LM stores a fact as knowledge (retrievable by a question it never saw
verbatim) only if it meets the fact many times in varied wording. So the corpus is
built in *passes*: each pass restates every fact (encyclopedic paragraphs, Q/A lines,
dialogues, lists) with freshly drawn paraphrases, and adds general-skill text: reviews
with sentiment, headlines, copy-from-context reading drills with invented names (where
copying is the only way to answer), records rendered as sentences, summaries.
One epoch over the corpus is then many varied exposures per fact. 2-hop chains are
never written down: 2-hop questions must be answered by composing two stored facts.
"""
from __future__ import annotations

import random

from pydantic import Field

from shoulders.toyworld import genres, reading
from shoulders.toyworld.lexicon import PROFESSIONS, article
from shoulders.toyworld.names import NameMaker
from shoulders.toyworld.relations import QUESTIONS, STATEMENTS, ask, state
from shoulders.toyworld.world import RELATIONS, Fact, World, world_stems
from shoulders.utils.strict_model import CountRange, StrictModel

LIST_HEADS = {"born_in": "People born in {o}", "works_for": "Employees of {o}", "studied_at": "Graduates of {o}",
              "located_in": "Cities in {o}", "founded_by": "Companies founded by {o}",
              "headquartered_in": "Companies based in {o}", "made_by": "Products made by {o}",
              "campus_in": "Schools in {o}"}


class CorpusConfig(StrictModel):
    """How much of each kind of text one pass holds; n_passes sets the corpus size."""

    n_passes: int = Field(60, ge=1, description="each pass restates every fact in fresh paraphrases "
                          "(~21k tokens a pass)")
    qa_lines_per_doc: CountRange = Field((3, 8), description='"Q: ... A: ..." lines per Q/A document (lo, hi)')
    dialogue_share: float = Field(0.3, ge=0, le=1, description="share of facts also said in a two-speaker "
                                  "dialogue per pass")
    reviews: int = Field(40, ge=0, description="product reviews per pass")
    posts: int = Field(15, ge=0, description="city posts per pass")
    headlines: int = Field(20, ge=0, description="topic headlines per pass")
    reading: int = Field(20, ge=0, description="passage + question docs about world entities per pass")
    fiction: int = Field(25, ge=0, description="passage + question docs with invented names (pure copying) per pass")
    multi_reading: int = Field(15, ge=0, description="several short passages, one question about one of them, "
                               "per pass")
    records: int = Field(15, ge=0, description="record -> sentence docs per pass")
    summaries: int = Field(15, ge=0, description='paragraph -> "In short:" docs per pass')
    paraphrases: int = Field(15, ge=0, description='"X. In other words, Y." docs per pass')
    # Measured on dev probes (docs/backbones.md): with document masking the reading and copy
    # drills raise reading and 2-hop and keep 1-hop knowledge; without it they cost knowledge.
    unseen_reading: int = Field(150, ge=0, description="reader-format drill docs about invented subjects per pass "
                                "(see reading.py)")
    copy_spans: int = Field(40, ge=0, description='"List: ... / Again: ..." repeated-span docs per pass')
    reading_items_per_doc: CountRange = Field((1, 3), description="unseen_reading docs hold this many items "
                                              "(lo, hi), few-shot style")
    reading_passages: CountRange | None = Field(None, description="passages per drill item (lo, hi); None = 1-3, "
                                                "as the reading probe shows them. Only items with 2+ passages "
                                                "need the subject matched; one-passage items need just the "
                                                "relation found")
    multi_question: int | None = Field(None, ge=0, description="multi-question drills per pass (None = 0): 2-3 "
                                       "passages, then a question about each of 2-3 of their subjects "
                                       "(reading.multi_question_drill); only the name tells which passage answers")
    assoc_recall: int | None = Field(None, ge=0, description="associative-recall drills per pass (None = 0): "
                                     "invented subjects paired with objects, then some subjects again with their "
                                     "objects (reading.assoc_recall_drill): the subject match alone, in a few "
                                     "dozen tokens")
    reading_names: int = Field(1000, ge=1, description="invented last names / brands the drills draw from. A "
                               "small pool turns every name into one token (the BPE merges it), while unseen "
                               "names, as the probe's, split into pieces")

    @classmethod
    def quick(cls) -> "CorpusConfig":
        """For the quick world: fewer passes, a quarter of the everyday text per pass."""
        return cls(n_passes=32, reviews=10, posts=4, headlines=5, reading=5, fiction=6, multi_reading=4,
                   records=4, summaries=4, paraphrases=4, unseen_reading=40, copy_spans=10)


def qa_line(world: World, fact: Fact, rng: random.Random) -> str:
    return f"Q: {ask(world, fact, rng.choice(QUESTIONS[fact.relation]))} A: {world.answer(fact)}"


def _dialogue(world: World, fact: Fact, rng: random.Random) -> str:
    q = ask(world, fact, rng.choice(QUESTIONS[fact.relation]))
    true = state(world, fact, rng.choice(STATEMENTS[fact.relation]))
    style = rng.random()
    lower = (lambda t: t[0].lower() + t[1:-1] if t.split()[0] in ("The", "By") else t[:-1])
    if style < 0.5:
        return f"A: {q}\nB: {true}"
    kind = RELATIONS[fact.relation][1]
    pool = [e.id for e in world.of_kind(kind)] if kind != "literal" else [
        f.object for f in world.facts if f.relation == fact.relation]
    wrong = rng.choice([o for o in pool if o != fact.object] or [fact.object])
    if style < 0.75 or wrong == fact.object:
        return f"A: Is it true that {lower(true)}?\nB: Yes, that is true."
    lie = state(world, Fact(fact.subject, fact.relation, wrong), STATEMENTS[fact.relation][0])
    return f"A: Is it true that {lower(lie)}?\nB: No. {true}"


def _lists(world: World, rng: random.Random) -> list[str]:
    docs = []
    for rel, head in LIST_HEADS.items():
        for obj in sorted({f.object for f in world.facts if f.relation == rel}):
            members = [world.name(s) for s in world.inverse(obj, rel)]
            rng.shuffle(members)
            docs.append(f"{head.format(o=world.name(obj))}: {', '.join(members[:8])}.")
    return docs


def _fiction(world_used: set[str], rng: random.Random) -> str:
    """A reading drill about invented entities: the answer can only be copied."""
    maker = NameMaker(rng, used=world_used)  # invented names never clash with the world's
    person = f"{maker.word('first', (1, 2))} {maker.word('last', (1, 2))}"
    city, firm = maker.word("city", (1, 2)), f"{maker.word('brand')} {rng.choice(('Systems', 'Foods', 'Motors'))}"
    facts = {"born_in": city, "works_for": firm, "profession": rng.choice(PROFESSIONS)}
    sents = []
    for rel, o in facts.items():
        sents.append(rng.choice(STATEMENTS[rel]).format(s=person, o=o, ao=f"{article(o)} {o}"))
    rng.shuffle(sents)
    rel = rng.choice(list(facts))
    return f"Passage: {' '.join(sents)}\nQ: {rng.choice(QUESTIONS[rel]).format(s=person)} A: {facts[rel]}"


def _multi_reading(world: World, rng: random.Random, n: int = 3) -> str:
    """Reader practice: a few short passages, and a question about one fact shown in one of them."""
    shown = []
    for eid in rng.sample(list(world.entities), n):
        facts = world.facts_of(eid)
        shown.append(rng.sample(facts, min(2, len(facts))))
    passages = [f"Passage: {' '.join(state(world, f, rng.choice(STATEMENTS[f.relation])) for f in fs)}"
                for fs in shown]
    return "\n".join([*passages, qa_line(world, rng.choice(rng.choice(shown)), rng)])


def _one_pass(world: World, cfg: CorpusConfig, rng: random.Random, used: set[str], pools) -> list[str]:
    docs = [genres.paragraph(world, eid, rng) for eid in world.entities]
    facts = list(world.facts)
    rng.shuffle(facts)
    i = 0
    while i < len(facts):
        n = rng.randint(*cfg.qa_lines_per_doc)
        docs.append("\n".join(qa_line(world, f, rng) for f in facts[i:i + n]))
        i += n
    docs += [_dialogue(world, f, rng) for f in rng.sample(facts, int(cfg.dialogue_share * len(facts)))]
    docs += _lists(world, rng)
    products, cities = world.of_kind("product"), world.of_kind("city")
    for _ in range(cfg.reviews):
        p, pos = rng.choice(products), rng.random() < 0.5
        text = genres.review(world, p.id, pos, rng)
        docs.append(rng.choice((f"Review of {p.name}: {text}", f"{text}\nVerdict: {'positive' if pos else 'negative'}.",
                                f"Customer review. {text}")))
    for _ in range(cfg.posts):
        pos = rng.random() < 0.5
        docs.append(genres.city_post(world, rng.choice(cities).id, pos, rng) +
                    (f" Mood: {'positive' if pos else 'negative'}." if rng.random() < 0.5 else ""))
    for _ in range(cfg.headlines):
        topic = rng.choice(("business", "sports", "science", "travel"))
        docs.append(rng.choice((f"{topic.capitalize()} news: ", "Headline: ")) + genres.headline(world, topic, rng))
    entities = list(world.entities)
    for _ in range(cfg.reading):
        fact = rng.choice(facts)
        docs.append(f"Passage: {genres.paragraph(world, fact.subject, rng, intro=False)}\n{qa_line(world, fact, rng)}")
    docs += [_fiction(used, rng) for _ in range(cfg.fiction)]
    docs += [_multi_reading(world, rng) for _ in range(cfg.multi_reading)]
    for _ in range(cfg.records):
        eid = rng.choice(entities)
        rels = genres.record_relations(world, eid, rng)
        docs.append(f"Record: {genres.record(world, eid, rels)}\nText: {genres.realise(world, eid, rels)}")
    for _ in range(cfg.summaries):
        eid = rng.choice(entities)
        docs.append(f"{genres.paragraph(world, eid, rng)}\nIn short: {genres.summary(world, eid)}")
    for _ in range(cfg.paraphrases):
        f = rng.choice(facts)
        a, b = rng.sample(STATEMENTS[f.relation], 2)
        docs.append(f"{state(world, f, a)} In other words, {state(world, f, b)}")
    n_passages = tuple(cfg.reading_passages or (1, 3))
    docs += ["\n".join(reading.reading_item(world, pools, rng, n_passages=n_passages).render()
                       for _ in range(rng.randint(*cfg.reading_items_per_doc))) for _ in range(cfg.unseen_reading)]
    docs += [reading.copy_drill(world, pools, rng) for _ in range(cfg.copy_spans)]
    docs += [reading.multi_question_drill(world, pools, rng) for _ in range(cfg.multi_question or 0)]
    docs += [reading.assoc_recall_drill(world, pools, rng) for _ in range(cfg.assoc_recall or 0)]
    rng.shuffle(docs)
    return docs


def build_corpus(world: World, cfg: CorpusConfig | None = None) -> list[str]:
    """The corpus as a list of documents (each later wrapped in bos ... eos)."""
    cfg = cfg or CorpusConfig()
    rng = random.Random(f"corpus-{world.seed}")
    # Fiction drills invent names too: never the probe's, or the probe would not be unseen text.
    used = world_stems(world) | reading.probe_stems(world)
    pools = reading.name_pools(world, "corpus", cfg.reading_names) if (cfg.unseen_reading or cfg.copy_spans or cfg.multi_question
                                                                         or cfg.assoc_recall) else None
    docs: list[str] = []
    for _ in range(cfg.n_passes):
        docs += _one_pass(world, cfg, rng, used, pools)
    return docs
