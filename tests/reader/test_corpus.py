import json

import pytest

from shoulders.reader.corpus import Passage, iter_passages, load_passages, write_passages


def _jsonl(tmp_path, rows, name="corpus.jsonl"):
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_jsonl_round_trip(tmp_path, passages):
    path = tmp_path / "out.jsonl"
    assert write_passages(passages, path) == len(passages)
    assert load_passages(path) == passages


def test_tsv_header_in_any_order_and_dpr_quotes(tmp_path):
    path = tmp_path / "psgs.tsv"
    path.write_text('id\ttext\ttitle\n1\t"He said ""hi"""\tGreeting\n2\tplain text\tOther\n', encoding="utf-8")
    assert load_passages(path) == [Passage("1", "Greeting", 'He said "hi"'), Passage("2", "Other", "plain text")]


def test_missing_field_names_file_line_and_field(tmp_path):
    path = _jsonl(tmp_path, [{"id": 1, "title": "a", "text": "x"}, {"id": 2, "title": "b"}])
    with pytest.raises(ValueError, match=r"corpus\.jsonl:2: missing field 'text' \(expected id, title, text\)"):
        load_passages(path)


def test_bad_json_names_line(tmp_path):
    path = _jsonl(tmp_path, [{"id": 1, "title": "a", "text": "x"}, "", "{not json"])
    with pytest.raises(ValueError, match=r"corpus\.jsonl:3: invalid JSON"):
        load_passages(path)


def test_duplicate_id_names_both_lines(tmp_path):
    rows = [{"id": "a", "title": "", "text": "x"}, {"id": "b", "title": "", "text": "y"}, {"id": "a", "title": "", "text": "z"}]
    with pytest.raises(ValueError, match=r"corpus\.jsonl:3: duplicate passage id 'a' \(first defined on line 1\)"):
        load_passages(_jsonl(tmp_path, rows))


def test_empty_text_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"corpus\.jsonl:1: empty 'text'"):
        load_passages(_jsonl(tmp_path, [{"id": 1, "title": "t", "text": "   "}]))


def test_tsv_wrong_column_count(tmp_path):
    path = tmp_path / "c.tsv"
    path.write_text("id\ttitle\ttext\n1\tonly two\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"c\.tsv:2: expected 3 tab-separated columns"):
        load_passages(path)


def test_streaming_reader_is_lazy(tmp_path):
    path = _jsonl(tmp_path, [{"id": 1, "title": "a", "text": "x"}, "{broken"])
    it = iter_passages(path)
    assert next(it) == Passage("1", "a", "x")  # the bad line is only read when reached
    with pytest.raises(ValueError, match=":2:"):
        next(it)
