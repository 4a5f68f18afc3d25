import pytest

from shoulders.experiments.squad import SYSTEMS, evaluate_retrievers_on_squad, load_squad, recall_table, resolve_squad_path

try:
    resolve_squad_path()
    HAVE_SQUAD = True
except FileNotFoundError:
    HAVE_SQUAD = False
needs_squad = pytest.mark.skipif(not HAVE_SQUAD, reason="shared/data/squad-v1.1-dev.json not present")


@pytest.fixture(scope="module")
def squad():
    return load_squad()


@needs_squad
def test_squad_as_open_domain_collection(squad):
    assert len(squad.passages) == 2067 and len(squad.questions) == 10570
    assert len({p.id for p in squad.passages}) == 2067
    q = squad.questions[0]
    assert q.gold_id == "Super_Bowl_50#0" and q.title == "Super Bowl 50" and "Denver Broncos" in q.answers
    texts = squad.passage_texts()
    assert all(any(a in texts[q.gold_id] for a in q.answers) for q in squad.questions[:500])


@needs_squad
def test_article_split_is_disjoint_and_seeded(squad):
    from shoulders.experiments.squad import split_articles

    a, b = split_articles(squad, 0.5, seed=0), split_articles(squad, 0.5, seed=0)
    assert a == b and not (a.train_titles & a.test_titles)
    assert a.train_titles | a.test_titles == set(squad.titles)
    train, test = a.questions(squad, "train"), a.questions(squad, "test")
    assert len(train) + len(test) == 10570
    assert not {q.title for q in train} & {q.title for q in test}
    assert split_articles(squad, 0.5, seed=1) != a


def test_env_var_and_missing_path(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOULDERS_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="SQuAD"):
        resolve_squad_path(tmp_path / "nope.json")
    (tmp_path / "squad-v1.1-dev.json").write_text(
        '{"data": [{"title": "T_x", "paragraphs": [{"context": "Alpha beta.", '
        '"qas": [{"id": "q1", "question": "What?", "answers": [{"text": "beta", "answer_start": 6}]}]}]}]}')
    c = load_squad()  # found through $SHOULDERS_DATA
    assert c.passages[0].id == "T_x#0" and c.passages[0].title == "T x" and c.questions[0].answers == ("beta",)


@needs_squad
def test_bm25_recall_on_a_slice():
    report = evaluate_retrievers_on_squad(systems=("bm25",), limit=200, ks=(1, 20), show_progress=False)
    r = report["systems"]["bm25"]
    assert 0.5 < r["answer_recall"][20] <= 1.0 and r["gold_recall"][1] <= r["gold_recall"][20]
    assert "| bm25 |" in recall_table(report)
    assert set(SYSTEMS) >= set(report["systems"])


def test_rerank_settings_parse_weight_grid():
    from shoulders.experiments.squad_rerank import settings_from_pairs

    s = settings_from_pairs(["retriever_weights=[0, 0.5, 1]", "windows=[512]"])
    assert s.retriever_weights == (0, 0.5, 1) and s.windows == (512,)
    assert settings_from_pairs(["retriever_weights=0.5"]).retriever_weights == (0.5,)
