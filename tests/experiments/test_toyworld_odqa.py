"""`shoulders experiment toyworld-odqa`: the files configs/reranker_*.yaml and reader_*.yaml read."""
import json

from shoulders.cli.main import main


def test_writes_corpus_reranker_and_reader_files(tmp_path, capsys):
    assert main(["experiment", "toyworld-odqa", "--out", str(tmp_path), "--quick", "--negatives", "3"]) == 0
    assert "rows to" in capsys.readouterr().out
    corpus = {json.loads(line)["id"] for line in (tmp_path / "corpus.jsonl").read_text().splitlines()}
    train = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    qa = [json.loads(line) for line in (tmp_path / "qa_dev.jsonl").read_text().splitlines()]
    assert corpus and train and qa and (tmp_path / "dev.jsonl").exists() and (tmp_path / "qa_train.jsonl").exists()
    assert all(ex["choices"][0] == ex["target"] and 2 <= len(ex["choices"]) <= 4 for ex in train)
    assert all(isinstance(row["target"], list) and row["input"] for row in qa)
