"""The datasets of the prompted multi-task suite: what each one asks and its templates.

Each dataset is a generator of (fields, label) from a subject entity, plus 3-4 natural
language templates in the P3/T0 manner. Classification templates carry their own
verbalizer (some ask positive/negative, others yes/no), as P3 prompts do. Generators
only ever read facts of the subject they were handed, so holding out subject entities
holds out everything an example is about.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from shoulders.toyworld import genres
from shoulders.toyworld.lexicon import PROFESSIONS, TOPICS, article
from shoulders.toyworld.names import NameMaker
from shoulders.toyworld.relations import QUESTIONS, STATEMENTS, ask, state
from shoulders.toyworld.world import RELATIONS, Fact, World, world_stems

Gen = Callable[[World, str, random.Random], tuple[dict[str, str], str]]


@dataclass(frozen=True)
class Template:
    text: str  # format string over the generator's fields
    labels: dict[str, str] | None = None  # canonical label -> word this template expects


@dataclass(frozen=True)
class TaskSpec:
    name: str
    cluster: str
    metric: str
    kinds: tuple[str, ...]  # kinds of the subject entity (held out by entity split); () = invented entities
    templates: tuple[Template, ...]
    gen: Gen
    labels: tuple[str, ...] = ()  # canonical labels of a classification task


def _review(world, eid, rng):
    pos = rng.random() < 0.5
    return {"text": genres.review(world, eid, pos, rng), "product": world.name(eid)}, ["negative", "positive"][pos]


def _post(world, eid, rng):
    pos = rng.random() < 0.5
    return {"text": genres.city_post(world, eid, pos, rng), "city": world.name(eid)}, ["negative", "positive"][pos]


def _wrong_object(world: World, fact: Fact, rng: random.Random) -> str:
    kind = RELATIONS[fact.relation][1]
    pool = ({f.object for f in world.facts if f.relation == fact.relation} if kind == "literal"
            else {e.id for e in world.of_kind(kind)}) - {fact.object}
    return rng.choice(sorted(pool))


def _fact_paraphrase(world, eid, rng):
    fact = rng.choice(world.facts_of(eid))
    a, b = rng.sample(STATEMENTS[fact.relation], 2)
    same = rng.random() < 0.5
    other = fact if same else Fact(fact.subject, fact.relation, _wrong_object(world, fact, rng))
    return {"a": state(world, fact, a), "b": state(world, other, b)}, ["no", "yes"][same]


def _question_paraphrase(world, eid, rng):
    facts = world.facts_of(eid)
    fact = rng.choice(facts)
    a, b = rng.sample(QUESTIONS[fact.relation], 2)
    same = rng.random() < 0.5
    other = fact if same else rng.choice([f for f in facts if f.relation != fact.relation])
    b = b if same else rng.choice(QUESTIONS[other.relation])
    return {"a": ask(world, fact, a), "b": ask(world, other, b)}, ["no", "yes"][same]


def _cbqa(world, eid, rng):
    fact = rng.choice(world.facts_of(eid))
    return {"q": ask(world, fact, rng.choice(QUESTIONS[fact.relation]))}, world.answer(fact)


def _reading(world, eid, rng):
    facts = world.facts_of(eid)
    fact = rng.choice(facts)
    shown = [f.relation for f in rng.sample(facts, min(3, len(facts)))]
    shown = list(dict.fromkeys([*shown[:2], fact.relation]))
    return ({"c": genres.paragraph(world, eid, rng, relations=tuple(shown), intro=False),
             "q": ask(world, fact, rng.choice(QUESTIONS[fact.relation]))}, world.answer(fact))


def _fiction(world, eid, rng):
    """Reading about an invented person: the answer can only be copied from the context."""
    maker = NameMaker(rng, used=world_stems(world))
    person = f"{maker.word('first', (1, 2))} {maker.word('last', (1, 2))}"
    facts = {"born_in": maker.word("city", (1, 2)), "works_for": f"{maker.word('brand')} Systems",
             "profession": rng.choice(PROFESSIONS)}
    facts = dict(rng.sample(sorted(facts.items()), 2))  # two facts keep the input short
    sents = [rng.choice(STATEMENTS[r]).format(s=person, o=o, ao=f"{article(o)} {o}") for r, o in facts.items()]
    rng.shuffle(sents)
    rel = rng.choice(list(facts))
    return {"c": " ".join(sents), "q": rng.choice(QUESTIONS[rel]).format(s=person)}, facts[rel]


def _headline(world, eid, rng):
    kind = world.entities[eid].kind
    topic = rng.choice({"company": ("business", "science"), "person": ("sports", "business"),
                        "city": ("travel", "sports"), "university": ("science",), "country": ("travel",)}[kind])
    name = world.name(eid)
    return {"h": f"{name} {rng.choice(TOPICS[topic])} this week."}, topic


def _entity_type(world, eid, rng):
    kind = world.entities[eid].kind
    rels = tuple(f.relation for f in rng.sample(world.facts_of(eid), min(3, len(world.facts_of(eid)))))
    return {"p": genres.paragraph(world, eid, rng, rels, intro=False)}, "school" if kind == "university" else kind


def _record(world, eid, rng):
    rels = genres.record_relations(world, eid, rng, (2, 3))
    return {"r": genres.record(world, eid, rels)}, genres.realise(world, eid, rels)


def _summary(world, eid, rng):
    text = genres.paragraph(world, eid, rng, intro=False)
    return {"p": text}, genres.summary(world, eid)


def _nli(world, eid, rng):
    facts = world.facts_of(eid)
    shown = rng.sample(facts, 2)
    premise = " ".join(state(world, f, rng.choice(STATEMENTS[f.relation])) for f in shown)
    label = rng.choice(("yes", "no", "maybe"))
    if label == "maybe":  # a relation the premise does not mention
        fact = rng.choice([f for f in facts if f not in shown])
    else:
        fact = rng.choice(shown)
        if label == "no":
            fact = Fact(fact.subject, fact.relation, _wrong_object(world, fact, rng))
    return {"p": premise, "h": state(world, fact, rng.choice(STATEMENTS[fact.relation]))[:-1]}, label


def _multiple_choice(world, eid, rng):
    fact = rng.choice([f for f in world.facts_of(eid) if RELATIONS[f.relation][1] != "literal"]
                      or world.facts_of(eid))
    options = [world.answer(fact)] + [world.name(_wrong_object(world, fact, rng)) for _ in range(2)]
    options = list(dict.fromkeys(options))
    rng.shuffle(options)
    return {"q": ask(world, fact, rng.choice(QUESTIONS[fact.relation])), "opts": ", ".join(options),
            "_choices": "|".join(options)}, world.answer(fact)


POS_NEG = {"positive": "positive", "negative": "negative"}
YES_NO_SENT = {"positive": "yes", "negative": "no"}
YES_NO = {"yes": "yes", "no": "no"}
NLI = {"yes": "yes", "maybe": "maybe", "no": "no"}
KINDS_ALL = ("person", "city", "country", "company", "product", "university")

SPECS: tuple[TaskSpec, ...] = (
    TaskSpec("product_reviews", "sentiment", "accuracy", ("product",), (
        Template("Review: {text}\nIs this review positive or negative?", POS_NEG),
        Template("{text}\nDid the customer like the {product}? Yes or no?", YES_NO_SENT),
        Template("How does the reviewer feel about {product}? {text}\nSentiment:", POS_NEG)),
        _review, ("negative", "positive")),
    TaskSpec("city_posts", "sentiment", "accuracy", ("city",), (
        Template("{text}\nIs the tone of this post positive or negative?", POS_NEG),
        Template("Post: {text}\nDid the writer enjoy {city}? Yes or no?", YES_NO_SENT),
        Template("{text}\nMood:", POS_NEG)),
        _post, ("negative", "positive")),
    TaskSpec("fact_paraphrase", "paraphrase", "accuracy", KINDS_ALL, (
        Template("Sentence 1: {a}\nSentence 2: {b}\nDo these two sentences mean the same thing? Yes or no?", YES_NO),
        Template("\"{a}\" Does that say the same as \"{b}\"? Yes or no?", YES_NO),
        Template("{a} {b} Are these two sentences paraphrases? Yes or no?", YES_NO)),
        _fact_paraphrase, ("no", "yes")),
    TaskSpec("question_paraphrase", "paraphrase", "accuracy", ("person", "company", "product"), (
        Template("Question 1: {a}\nQuestion 2: {b}\nAre these questions asking the same thing? Yes or no?", YES_NO),
        Template("Would \"{a}\" and \"{b}\" have the same answer? Yes or no?", YES_NO),
        Template("{a} / {b} Same question? Yes or no?", YES_NO)),
        _question_paraphrase, ("no", "yes")),
    TaskSpec("trivia_qa", "closed-book QA", "exact_match", KINDS_ALL, (
        Template("Q: {q} A:"), Template("Answer the question from memory. {q}"),
        Template("Trivia question: {q}\nAnswer:")), _cbqa),
    TaskSpec("reading_comprehension", "extractive QA", "f1", KINDS_ALL, (
        Template("Context: {c}\nQuestion: {q}\nAnswer:"), Template("Read the text and answer. {c} {q}"),
        Template("{c}\nQ: {q} A:")), _reading),
    TaskSpec("fiction_qa", "extractive QA", "f1", (), (
        Template("Passage: {c}\nQ: {q} A:"), Template("{c}\nAnswer from the text: {q}"),
        Template("Text: {c}\nQuestion: {q}\nAnswer:")), _fiction),
    TaskSpec("news_topic", "topic classification", "accuracy", ("company", "person", "city", "university", "country"), (
        Template("{h}\nIs this news about business, sports, science or travel?", {t: t for t in TOPICS}),
        Template("Headline: {h}\nTopic:", {t: t for t in TOPICS}),
        Template("What section of the paper does this go in? {h}", {t: t for t in TOPICS})),
        _headline, tuple(TOPICS)),
    TaskSpec("entity_type", "topic classification", "accuracy", KINDS_ALL, (
        Template("{p}\nIs this text about a person, city, country, company, product or school?",
                 {k: k for k in ("person", "city", "country", "company", "product", "school")}),
        Template("Text: {p}\nCategory:", {k: k for k in ("person", "city", "country", "company", "product", "school")}),
        Template("{p}\nWhat kind of thing is this text about?",
                 {k: k for k in ("person", "city", "country", "company", "product", "school")})),
        _entity_type, ("person", "city", "country", "company", "product", "school")),
    TaskSpec("record_to_text", "structure-to-text", "rouge_l", ("person", "company", "product"), (
        Template("Record: {r}\nText:"), Template("Turn this record into a sentence: {r}"),
        Template("Describe in words: {r}")), _record),
    TaskSpec("bio_summary", "summarisation", "rouge_l", ("person", "company", "product"), (
        Template("{p}\nIn short:"), Template("Summarise: {p}"), Template("{p}\nTL;DR:")), _summary),
    TaskSpec("fact_nli", "NLI", "accuracy", ("person", "company"), (
        Template("{p}\nQuestion: {h}? Yes, no, or maybe?", NLI),
        Template("Premise: {p}\nHypothesis: {h}.\nEntailed? Yes, no, or maybe?", NLI),
        Template("Given that {p} Does it follow that {h}? Yes, no, or maybe?", NLI)),
        _nli, ("yes", "no", "maybe")),
    TaskSpec("multiple_choice_qa", "multiple-choice QA", "accuracy", ("person", "company", "product", "city"), (
        Template("{q}\nOptions: {opts}\nAnswer:"), Template("Pick the right answer. {q} Choices: {opts}"),
        Template("{q} Is it {opts}?")), _multiple_choice),
)
