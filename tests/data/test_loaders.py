"""Data loading and its error messages (file, line, field)."""
import json

import pytest

from shoulders.data.loaders import DataError, load_examples


def write(path, text, mode="w"):
    path.write_text(text) if mode == "w" else path.write_bytes(text)
    return path


def test_jsonl_csv_tsv_json(tmp_path):
    j = write(tmp_path / "a.jsonl", '{"input": "x", "target": "y"}\n\n{"input": "z", "target": ["w", "v"]}\n')
    ex = load_examples(j, task="t")
    assert [(e.input, e.target, e.gold) for e in ex] == [("x", "y", ["y"]), ("z", "w", ["w", "v"])]
    c = write(tmp_path / "a.csv", 'input,target\n"hello, world",yes\n')
    assert load_examples(c)[0].input == "hello, world"
    t = write(tmp_path / "a.tsv", "sentence\tlabel\ngood film \t1\nbad\t0\n")
    ex = load_examples(t, input_field="sentence", target_field="label", label_names=["negative", "positive"])
    assert [e.target for e in ex] == ["positive", "negative"]
    js = write(tmp_path / "a.json", json.dumps({"data": [{"input": "q", "target": "a"}]}))
    assert load_examples(js)[0].target == "a"


def test_p3_fields(tmp_path):
    rec = {"inputs_pretokenized": "Is this good? ", "targets_pretokenized": " yes", "answer_choices": ["yes", "no"]}
    ex = load_examples(write(tmp_path / "p3.jsonl", json.dumps(rec) + "\n"))[0]
    assert ex.input == "Is this good? " and ex.target == " yes" and ex.choices == ["yes", "no"]


def test_datasets_directory(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"input": ["a", "b"], "target": ["c", "d"]}).save_to_disk(str(tmp_path / "ds"))
    assert [e.target for e in load_examples(tmp_path / "ds")] == ["c", "d"]


@pytest.mark.parametrize("content,expected", [
    ('{"input": "x", "target": "y"}\n{"input": "x", "target": \n', r"bad\.jsonl:2: invalid JSON"),
    ('{"input": "x"}\n', r"bad\.jsonl:1: missing field 'target'"),
    ('{"input": "x", "target": "  "}\n', r"bad\.jsonl:1: field 'target' is empty"),
    ('{"input": 3.5, "target": {"a": 1}}\n', r"bad\.jsonl:1: field 'target' must be a string, got dict"),
    ('[1, 2]\n', r"bad\.jsonl:1: expected a JSON object"),
    ('{"id": 1, "input": "a", "target": "b"}\n{"id": 1, "input": "c", "target": "d"}\n',
     r"bad\.jsonl:2: duplicate id '1' \(first seen on line 1\)"),
])
def test_jsonl_errors_name_file_line_field(tmp_path, content, expected):
    with pytest.raises(DataError, match=expected):
        load_examples(write(tmp_path / "bad.jsonl", content))


def test_encoding_long_lines_and_columns(tmp_path):
    with pytest.raises(DataError, match=r"enc\.jsonl:2: not valid UTF-8"):
        load_examples(write(tmp_path / "enc.jsonl", b'{"input": "a", "target": "b"}\n{"input": "\xff\xfe"}\n', "wb"))
    big = '{"input": "' + "x" * (2 << 20) + '", "target": "b"}\n'
    with pytest.raises(DataError, match=r"big\.jsonl:1: line is .* bytes, over the limit"):
        load_examples(write(tmp_path / "big.jsonl", big))
    with pytest.raises(DataError, match=r"cols\.csv:3: expected 2 columns \(input, target\), got 3"):
        load_examples(write(tmp_path / "cols.csv", "input,target\na,b\na,b,c\n"))
    with pytest.raises(DataError, match="no such file"):
        load_examples(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="cannot tell the format"):
        load_examples(write(tmp_path / "x.txt", "hi"))
