"""The reader experiment end to end at a toy size: every configuration, the result's shape,
the PNG, the markdown fragment and the saved reader `shoulders ask` uses (learning is not
checked here; the demo's numbers are)."""
import json
import math

from shoulders.experiments.reader import CONFIGS, ReaderSettings, run_reader
from shoulders.toyworld.odqa import OdqaQuestion, OdqaSet, WorldPassage

PEOPLE = [("Ana", "Paris", "red"), ("Bo", "Rome", "blue"), ("Cy", "Oslo", "green"), ("Di", "Lima", "gold"),
          ("Ed", "Kyiv", "pink"), ("Flo", "Baku", "gray")]


def _odqa() -> OdqaSet:
    passages, questions = [], []
    for i, (name, city, color) in enumerate(PEOPLE):
        passages.append(WorldPassage(f"p{2 * i}", name, f"{name} was born in {city}."))
        passages.append(WorldPassage(f"p{2 * i + 1}", name, f"{name} likes the color {color}."))
        questions.append(OdqaQuestion(f"q{i}", f"Where was {name} born?", [city], [f"p{2 * i}"],
                                      {"in_corpus": i % 2 == 0}))
        questions.append(OdqaQuestion(f"c{i}", f"Which color does {name} like?", [color], [f"p{2 * i + 1}"],
                                      {"in_corpus": True}))
    return OdqaSet(passages, train=questions[:6], dev=questions[6:8], test=questions[8:])


def test_run_reader_tiny(tiny_dirs, tmp_path):
    from tests.reader.test_reranker import build_tiny_bert

    bert = build_tiny_bert(tmp_path / "bert")
    settings = ReaderSettings(window=128, candidates=4, reranker={"encoder": bert, "max_seq_len": 32, "negatives": 2},
                              mined=3, reranker_steps=2, reranker_batch=4, reader_steps=2, reader_batch=4,
                              reader_train_questions=6, prompt_tokens=2, answer_tokens=4,
                              retriever_weights=(0.5, 1.0))  # no 0: the saved weight must be the chosen one
    result = run_reader(_odqa(), str(tiny_dirs["llama"]), seeds=[0, 1], quick=True, out_dir=tmp_path / "out",
                        progress=False, settings=settings)
    for name in CONFIGS:
        r = result[name]
        assert set(r["recall_at"]) == {"1", "5", "20"}
        for key in ("recall_in_context", "em", "em_std", "recall_in_context_std", "gold_in_context"):
            assert isinstance(r[key], float) and not math.isnan(r[key]) and 0.0 <= r[key] <= 100.0, (name, key)
    assert result["bm25"]["recall_at"]["20"] == result["bm25+rerank"]["recall_at"]["20"]  # only the top is re-ranked
    assert len(result["per_seed"]["hybrid+rerank"]) == 2 and result["bm25"]["recall_in_context_std"] == 0.0
    assert (tmp_path / "out" / "reader_recall_in_context.png").stat().st_size > 1000
    md = (tmp_path / "out" / "reader.md").read_text()
    assert "| hybrid | yes |" in md and "77.2" in md and "reader_recall_in_context.png" in md
    assert (tmp_path / "out" / "reader" / "reader" / "module.json").is_file()  # seed 0's reader for `shoulders ask`
    chosen = result["retriever_weights"]  # chosen on the two dev questions, per retriever and seed
    assert set(chosen) == {"bm25", "dense", "hybrid"} and all(len(v) == 2 for v in chosen.values())
    assert all(w in settings.retriever_weights for v in chosen.values() for w in v)
    assert len(result["dev_precision_at_1"]) == 2 and "Passages packed best last" in md
    saved = json.loads((tmp_path / "out" / "reader" / "reranker" / "module.json").read_text())
    assert saved["config"]["retriever_weight"] == chosen["hybrid"][0]  # `shoulders ask` re-ranks as chosen


def test_choose_weights_picks_the_weight_that_ranks_the_own_passage_first():
    """A re-ranker that prefers the wrong passage loses to the retriever's order on dev: the
    smallest weight at which the retriever's order wins is chosen; where all tie, the smallest."""
    from shoulders.experiments.reader import RETRIEVERS, _choose_weights
    from shoulders.reader.retrieval.base import Hit
    from tests.reader.test_reranker import _FixedScores

    dev = [OdqaQuestion("d0", "Where was Ana born?", ["Paris"], ["p0"], {})]
    good = [[Hit("p0", 2.0), Hit("p1", 1.0)]]
    hits = {"bm25": good, "dense": good, "hybrid": [[Hit("p1", 2.0), Hit("p0", 1.0)]]}
    wrong = _FixedScores({"p0": 0.0, "p1": 1.0})
    chosen, table = _choose_weights(wrong, dev, hits, {}, ReaderSettings(candidates=2), {})
    assert set(chosen) == set(RETRIEVERS) and chosen["bm25"] == chosen["dense"] == 1.0  # 1 and 2 tie: the smaller
    assert chosen["hybrid"] == 0.0  # the own passage is never first: all weights tie, the smallest wins
    assert table["bm25"] == {"0": 0.0, "0.5": 0.0, "1": 100.0, "2": 100.0}


class _Untouchable(list):
    """A test split that fails the test if anything reads it."""

    def __iter__(self):
        raise AssertionError("the test split was read")

    def __getitem__(self, i):
        raise AssertionError("the test split was read")

    def __len__(self):
        raise AssertionError("the test split was read")


def test_reader_dev_scores_orders_and_weights_on_dev_only(tiny_dirs, tmp_path):
    """`shoulders experiment reader-dev` at a toy size: a row per order x retriever x (no
    re-ranking + each weight), the chosen weight marked, the markdown written; the test
    questions are never read (they are removed here)."""
    from shoulders.experiments.reader_dev import run_reader_dev
    from tests.reader.test_reranker import build_tiny_bert

    bert = build_tiny_bert(tmp_path / "bert")
    settings = ReaderSettings(window=128, candidates=4, reranker={"encoder": bert, "max_seq_len": 32, "negatives": 2},
                              mined=3, reranker_steps=2, reranker_batch=4, reader_steps=2, reader_batch=4,
                              reader_train_questions=6, prompt_tokens=2, answer_tokens=4)
    odqa = _odqa()
    odqa.test = _Untouchable()
    result = run_reader_dev(odqa, str(tiny_dirs["llama"]), 0, ["descending", "ascending"], [0.25, 1.0],
                            tmp_path / "dev", world_seed=7, progress=False, settings=settings)
    rows = result["rows"]
    assert len(rows) == 2 * 3 * 3 and result["n_dev"] == 2 and result["world_seed"] == 7
    chosen = [(r["order"], r["retriever"]) for r in rows if r["chosen"]]  # the weights scored are those chosen from
    assert sorted(chosen) == sorted((o, n) for o in ("descending", "ascending") for n in ("bm25", "dense", "hybrid"))
    assert all(0.0 <= r["em"] <= 100.0 and 0.0 <= r["own_first"] <= 100.0 for r in rows)
    md = (tmp_path / "dev" / "reader_dev.md").read_text()
    assert "| best last | hybrid | no |" in md and "| best first | bm25 | yes (1)" in md
    assert set(result["weights_chosen"].values()) <= {0.25, 1.0}


def test_reader_dev_refuses_a_set_without_dev(tiny_dirs, tmp_path):
    import pytest

    from shoulders.experiments.reader_dev import run_reader_dev

    odqa = _odqa()
    odqa.dev = []
    with pytest.raises(ValueError, match="no dev|none"):
        run_reader_dev(odqa, str(tiny_dirs["llama"]), 0, ["ascending"], [0.0], tmp_path, progress=False)


def test_reader_dev_set_rejects_unknown_fields_before_any_work(capsys):
    import pytest

    from shoulders.experiments.reader_dev import main

    with pytest.raises(SystemExit) as e:
        main(["--set", "reranker_step=3"])  # a typo: no such field
    assert e.value.code == 2 and "reranker_step" in capsys.readouterr().err
