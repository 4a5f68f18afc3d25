"""Reading drills and the reading probe: answerable only from the window, held out from the corpus."""
import random

import pytest

from shoulders.toyworld.corpus import CorpusConfig, build_corpus
from shoulders.toyworld.pretrain import cpu_has_bf16, resolve_precision
from shoulders.toyworld.reading import copy_drill, name_pools, reading_item, reading_probe
from shoulders.toyworld.relations import QUESTIONS
from shoulders.toyworld.world import RELATIONS, build_world


@pytest.fixture(scope="module")
def world():
    return build_world(3, "tiny")


def test_items_are_answered_by_one_passage_only(world):
    pools = name_pools(world, "corpus")
    rng = random.Random(0)
    seen_relations = set()
    for _ in range(300):
        item = reading_item(world, pools, rng)
        seen_relations.add(item.relation)
        subject = next(q for q in QUESTIONS[item.relation]
                       if _matches(q, item.question)).split("{s}")
        name = item.question[len(subject[0]):len(item.question) - len(subject[1])]
        owners = [p for p in item.passages if name in p]
        assert len(owners) == 1, (name, item.passages)
        assert item.answer in owners[0]
        assert item.render().endswith(f"\nQ: {item.question} A: {item.answer}")
        assert item.render().startswith("Passage: ")
    assert seen_relations == set(RELATIONS)  # every relation is drilled


def _matches(template: str, question: str) -> bool:
    head, tail = template.split("{s}")
    return question.startswith(head) and question.endswith(tail)


def test_probe_subjects_never_appear_in_the_corpus(world):
    corpus = "\n".join(build_corpus(world, CorpusConfig(n_passes=2, unseen_reading=50, copy_spans=10)))
    probe, corpus_pools = name_pools(world, "probe"), name_pools(world, "corpus")
    assert any(last in corpus for last in corpus_pools.lasts)  # the drills are in the corpus
    for stem in probe.lasts + probe.brands + probe.places + probe.countries:
        assert stem not in corpus
    a, b = reading_probe(world, 20, split="dev"), reading_probe(world, 20, split="test")
    assert {e.input for e in a}.isdisjoint({e.input for e in b})
    assert reading_probe(world, 20, split="dev") == a  # seeded


def test_copy_drill_repeats_its_list(world):
    text = copy_drill(world, name_pools(world, "corpus"), random.Random(1))
    first, second = text.split("\n")
    assert first.split(": ", 1)[1] == second.split(": ", 1)[1]


def test_precision_is_detected_and_checked():
    assert isinstance(cpu_has_bf16(), bool)
    assert resolve_precision("auto") == ("bf16" if cpu_has_bf16() else "fp32")
    assert resolve_precision("fp32") == "fp32"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp8")


def test_probe_names_split_apart_from_corpus_names_and_stay_put():
    from shoulders.toyworld import build_world
    from shoulders.toyworld.reading import name_pools

    world = build_world(0)
    probe = name_pools(world, "probe")
    small, big = name_pools(world, "corpus", 60), name_pools(world, "corpus", 300)
    assert name_pools(world, "probe", 300) == probe  # the corpus pool's size never moves the probe
    assert len(big.lasts) == 300 and len(small.lasts) == 60
    stems = {s.lower() for s in probe.lasts + probe.brands + probe.places}
    assert not any(a in b or b in a for a in stems for b in {s.lower() for s in big.lasts + big.brands})


def test_multi_question_drills_ask_each_subject_of_its_own_passage():
    import random

    from shoulders.toyworld import build_world
    from shoulders.toyworld.reading import multi_question_drill, name_pools

    world = build_world(0, "tiny")
    pools, rng = name_pools(world, "corpus", 200), random.Random(0)
    for _ in range(50):
        lines = multi_question_drill(world, pools, rng, with_subjects=True).split("\n")
        passages = [ln for ln in lines if ln.startswith("Passage: ")]
        questions = [ln for ln in lines if ln.startswith("Q: ")]
        assert 2 <= len(passages) <= 3 and 2 <= len(questions) <= len(passages)
        assert lines == passages + questions
        asked = [q.split("\t")[1] for q in questions]
        assert len(set(asked)) == len(asked)  # each question about a different subject
        for q, subject in zip(questions, asked):
            answer = q.split("\t")[0].split(" A: ")[1]
            own = [p for p in passages if subject in p]
            assert len(own) == 1 and answer in own[0], (q, passages)


def test_assoc_recall_drills_repeat_each_asked_subject_with_its_own_object():
    import random

    from shoulders.toyworld import build_world
    from shoulders.toyworld.reading import assoc_recall_drill, name_pools

    world = build_world(0, "tiny")
    pools, rng = name_pools(world, "corpus", 200), random.Random(0)
    for _ in range(50):
        table, queries = assoc_recall_drill(world, pools, rng).split("\n")
        pairs = [p.split(": ") for p in table.split(": ", 1)[1].rstrip(".").split(". ")]
        asked = [q.split(": ") for q in queries.split(": ", 1)[1].rstrip(".").split(". ")]
        assert 3 <= len(pairs) <= 6 and 2 <= len(asked) <= min(4, len(pairs))
        keys = [k for k, _ in pairs]
        assert len(set(keys)) == len(keys) and len({k for k, _ in asked}) == len(asked)
        assert all(dict(pairs)[k] == v for k, v in asked), (table, queries)


def test_assoc_recall_drills_only_when_asked_for():
    import re

    from shoulders.toyworld import CorpusConfig, build_corpus, build_world

    world = build_world(0, "tiny")
    cfg = CorpusConfig.quick()
    drill = re.compile(r"^(Table|Index|Pairs): [^\n]*\n(Lookup|Find|Recall): ")
    assert not any(drill.match(d) for d in build_corpus(world, cfg))
    cfg.assoc_recall = 5
    assert sum(bool(drill.match(d)) for d in build_corpus(world, cfg)) == 5 * cfg.n_passes


def test_assoc_recall_eval_scores_the_match_and_only_the_match(monkeypatch):
    from shoulders.toyworld import build_world, fewshot
    from shoulders.toyworld.reading import assoc_recall_eval

    def lookup(prompt):  # the right object: the asked subject's own pair in the table
        table, query = prompt.split("\n")
        pairs = dict(p.split(": ") for p in table.split(": ", 1)[1].rstrip(".").split(". "))
        return pairs[query.rsplit(". ", 1)[-1].split(": ")[-1].rstrip(":")] + ". More: x."

    def first(prompt):  # the first pair's object, whatever was asked
        return prompt.split("\n")[0].split(": ")[2].split(".")[0]

    world = build_world(0, "tiny")
    monkeypatch.setattr(fewshot, "_load", lambda path: (None, None))
    for answer, check in ((lookup, lambda em: em == 100), (first, lambda em: 5 < em < 60)):
        monkeypatch.setattr(fewshot, "generate_answers", lambda m, t, prompts, cfg, f=answer: [f(p) for p in prompts])
        em = assoc_recall_eval("unused", world, n=60)
        assert check(em), (answer.__name__, em)
