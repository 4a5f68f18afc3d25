import re

import bm25s
import numpy as np

from shoulders.toyworld import build_closedbook, build_odqa, build_world, chance


def test_closedbook_hops_and_two_hop_consistency(data):
    w, cb = data.world, data.closedbook
    all_q = cb.train + cb.dev + cb.test
    assert {ex.meta["hops"] for ex in all_q} == {1, 2}
    for split in (cb.train, cb.dev, cb.test):
        assert {ex.meta["hops"] for ex in split} == {1, 2}
    for ex in all_q:
        facts = ex.meta["facts"]
        for s, r, o in facts:
            assert w.get(s, r) == o
        if ex.meta["hops"] == 2:
            (s1, _, bridge), (s2, _, obj) = facts
            assert bridge == s2 == ex.meta["bridge"] and s1 == ex.meta["subject"]
        assert ex.target == w.name(facts[-1][2])


def test_closedbook_facts_are_stated_in_the_corpus(data):
    w = data.world
    sentences = [s for d in data.corpus for s in re.split(r"(?<=[.?!])\s+|\n", d)]
    for ex in data.closedbook.train + data.closedbook.test:
        for s, r, o in ex.meta["facts"]:
            assert any(w.name(s) in x and w.name(o) in x for x in sentences), (ex.input, s, r, o)
    assert 0 < chance(w, data.closedbook.test) < 0.5


def test_odqa_answers_are_in_their_positive_passages(data):
    od = data.odqa
    by_id = {p.id: p for p in od.passages}
    assert len(by_id) == len(od.passages)
    for q in od.train + od.dev + od.test:
        assert q.positive_ids
        for pid in q.positive_ids:
            assert q.answers[0] in by_id[pid].text, (q, by_id[pid])


def test_odqa_splits_do_not_share_subjects(data):
    od = data.odqa
    subj = {s: {q.meta["subject"] for q in od.split(s)} for s in ("train", "dev", "test")}
    assert od.test and not (subj["train"] & subj["test"]) and not (subj["train"] & subj["dev"])


def test_bm25_alone_is_imperfect():
    od = build_odqa(build_world(0, "quick"))
    texts = [f"{p.title} {p.text}" for p in od.passages]
    ret = bm25s.BM25()
    ret.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    qs = od.train + od.dev + od.test
    res, _ = ret.retrieve(bm25s.tokenize([q.question for q in qs], stopwords="en", show_progress=False),
                          k=20, show_progress=False)
    hit = lambda k: np.mean([any(od.passages[j].id in q.positive_ids for j in res[i, :k]) for i, q in enumerate(qs)])
    assert hit(1) < 0.8 and hit(20) > hit(1) + 0.15


def test_qa_sets_are_deterministic():
    w = build_world(7, "tiny")
    a, b = build_odqa(w), build_odqa(build_world(7, "tiny"))
    assert [vars(q) for q in a.test] == [vars(q) for q in b.test]
    assert [p.to_dict() for p in a.passages] == [p.to_dict() for p in b.passages]
    assert [e.to_dict() for e in build_closedbook(w).test] == [e.to_dict() for e in build_closedbook(w).test]


def test_no_corpus_sentence_names_both_ends_of_a_two_hop_chain(data):
    w = data.world
    sentences = [s for d in data.corpus for s in re.split(r"(?<=[.?!])\s+|\n", d) if "Is it true" not in s]
    direct = {(f.subject, f.object) for f in w.facts}
    for ex in data.closedbook.train + data.closedbook.dev + data.closedbook.test:
        s, o = ex.meta["subject"], ex.meta["facts"][-1][2]
        if ex.meta["hops"] == 2 and (s, o) not in direct:
            bad = [x for x in sentences if w.name(s) in x and w.name(o) in x]
            assert not bad, (ex.input, bad[:2])


def test_odqa_mixes_corpus_facts_and_facts_only_the_passages_hold(data):
    from shoulders.toyworld.world import world_stems

    od, text = data.odqa, "\n".join(data.corpus)
    flags = [q.meta["in_corpus"] for q in od.train + od.test]
    assert 0.2 < sum(not f for f in flags) / len(flags) < 0.7
    stems = world_stems(data.world)
    unseen_names = {p.title for p in od.passages} - {e.name for e in data.world.entities.values()}
    noise = ("Review of", "Business", "Sports", "Science", "Travel")
    unseen_names = {n for n in unseen_names if not n.startswith(noise)}
    assert unseen_names
    for name in unseen_names:  # the backbone never read about them
        assert name not in text
        assert name.split()[-1].lower() not in stems
