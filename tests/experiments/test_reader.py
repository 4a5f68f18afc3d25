"""The reader experiment end to end at a toy size: every configuration, the result's shape,
the PNG, the markdown fragment and the saved reader `shoulders ask` uses (learning is not
checked here; the demo's numbers are)."""
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
    return OdqaSet(passages, train=questions[:8], dev=[], test=questions[8:])


def test_run_reader_tiny(tiny_dirs, tmp_path):
    from tests.reader.test_reranker import build_tiny_bert

    bert = build_tiny_bert(tmp_path / "bert")
    settings = ReaderSettings(window=128, candidates=4, reranker={"encoder": bert, "max_seq_len": 32, "negatives": 2},
                              mined=3, reranker_steps=2, reranker_batch=4, reader_steps=2, reader_batch=4,
                              reader_train_questions=6, prompt_tokens=2, answer_tokens=4)
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
