import re

from shoulders.toyworld import build_corpus, build_world
from shoulders.toyworld.corpus import CorpusConfig


def _sentences(docs):
    return [s for d in docs for s in re.split(r"(?<=[.?!])\s+|\n", d)]


def test_corpus_is_deterministic():
    w = build_world(0, "tiny")
    cfg = CorpusConfig(n_passes=2)
    assert build_corpus(w, cfg) == build_corpus(w, cfg)
    assert build_corpus(w, cfg) != build_corpus(build_world(1, "tiny"), cfg)


def test_every_fact_is_stated_in_a_sentence_and_asked_in_a_qa_line(data):
    w, docs = data.world, data.corpus
    sentences = _sentences(docs)
    qa_lines = [line for d in docs for line in d.split("\n") if line.startswith("Q: ")]
    for f in w.facts:
        s, o = w.name(f.subject), w.answer(f)
        assert any(s in x and o in x for x in sentences), f"fact never stated: {f}"
        assert any(s in x and x.endswith(f"A: {o}") for x in qa_lines), f"fact never asked: {f}"


def test_each_pass_restates_every_fact_in_several_wordings(data):
    w = data.world
    fact = next(f for f in w.facts if f.relation == "born_in")
    s, o = w.name(fact.subject), w.answer(fact)
    hits = {x for x in _sentences(data.corpus) if s in x and o in x and not x.startswith(("Q:", "A:", "B:"))}
    assert len(hits) >= 2


def test_corpus_has_the_general_skill_genres(data):
    text = "\n".join(data.corpus)
    for marker in ("Verdict: ", "Passage: ", "Record: ", "In short: ", "In other words, ", "A: Is it true that"):
        assert marker in text, marker



def test_unseen_reading_docs_hold_several_items_few_shot_style():
    w = build_world(0, "tiny")
    docs = build_corpus(w, CorpusConfig(n_passes=1, unseen_reading=30, reading_items_per_doc=(2, 2)))
    drills = [d for d in docs if d.startswith("Passage: ") and d.count("\nQ: ") == 2]
    assert len(drills) >= 30


def test_reading_passages_sets_how_many_passages_each_drill_item_holds():
    w = build_world(0, "tiny")
    cfg = CorpusConfig(n_passes=1, unseen_reading=30, reading_items_per_doc=(1, 1), reading_passages=(3, 3),
                       reading=0, fiction=0, multi_reading=0)
    drills = [d for d in build_corpus(w, cfg) if d.startswith("Passage: ") and d.count("\nQ: ") == 1]
    assert len(drills) == 30
    assert all(d.count("Passage: ") == 3 for d in drills)
