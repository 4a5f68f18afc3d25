"""Read (input, target) examples from JSONL, CSV/TSV, a `datasets` directory or P3 fields.

Every problem is reported with the file, the line and the field, and what was expected:
a data file is usually wrong in one place among thousands, and the user must find it.
"""
from __future__ import annotations

from shoulders.errors import ShouldersError

import csv
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from shoulders.data.examples import Example

# P3 / T0 field names (bigscience/P3), recognised automatically.
P3_INPUT, P3_TARGET, P3_CHOICES = "inputs_pretokenized", "targets_pretokenized", "answer_choices"
MAX_LINE_BYTES = 1 << 20  # 1 MiB per record: far above any real example, far below a runaway line


class DataError(ShouldersError):
    """A data file that cannot be read; the message names file, line and field."""


def _where(path: Path, line: int | None) -> str:
    return f"{path}:{line}" if line is not None else str(path)


def _detect_format(path: Path) -> str:
    if path.is_dir():
        return "datasets"
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    fmt = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv"}.get(suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: cannot tell the format from the extension; expected .jsonl, .json, .csv, .tsv or a datasets directory")
    return fmt


def _read_lines(path: Path, max_line_bytes: int) -> Iterator[tuple[int, str]]:
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if len(raw) > max_line_bytes:
                raise DataError(
                    f"{path}:{lineno}: line is {len(raw):,} bytes, over the limit of {max_line_bytes:,} "
                    "(a broken file? raise max_line_bytes if it is real)"
                )
            try:
                yield lineno, raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid UTF-8 (byte {e.start} of the line); re-encode the file as UTF-8") from None


def iter_records(path: str | Path, fmt: str = "auto", *, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int | None, dict[str, Any]]]:
    """Yield (line number, record dict) from a data file of any supported format."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    fmt = _detect_format(path) if fmt == "auto" else fmt
    if fmt == "jsonl":
        for lineno, line in _read_lines(path, max_line_bytes):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(rec, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
            yield lineno, rec
    elif fmt == "json":
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except UnicodeDecodeError:
            raise DataError(f"{path}: not valid UTF-8; re-encode the file as UTF-8") from None
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON list of objects (or {{'data': [...]}})")
        for i, rec in enumerate(data):
            if not isinstance(rec, dict):
                raise DataError(f"{path}: item {i} is a {type(rec).__name__}, expected an object")
            yield i + 1, rec
    elif fmt in ("csv", "tsv"):
        yield from _csv_records(path, fmt, max_line_bytes)
    elif fmt == "datasets":
        try:
            from datasets import load_from_disk
        except ImportError:
            raise DataError(f"{path}: reading a datasets directory needs `pip install datasets`") from None
        ds = load_from_disk(str(path))
        if hasattr(ds, "keys"):
            raise DataError(f"{path}: a DatasetDict; point at one split's directory ({', '.join(ds.keys())})")
        for i, rec in enumerate(ds):
            yield i + 1, rec
    else:
        raise DataError(f"{path}: unknown format {fmt!r}; expected jsonl, json, csv, tsv or datasets")


def _csv_records(path: Path, fmt: str, max_line_bytes: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """CSV/TSV rows as dicts keyed by the header, each with the line it starts on.

    A quoted CSV field may span lines (as csv.writer writes a newline in a field); TSV has
    no quoting. Lines still pass the UTF-8 and line-length checks of `_read_lines`.
    """
    tsv = fmt == "tsv"
    if csv.field_size_limit() < max_line_bytes:  # the csv default (128 KiB) is below our line limit
        csv.field_size_limit(max_line_bytes)
    at = [0]  # number of the last line handed to the csv reader

    def lines():
        for lineno, line in _read_lines(path, max_line_bytes):
            at[0] = lineno
            yield line

    reader = csv.reader(lines(), delimiter="\t" if tsv else ",", strict=True,
                        quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL)
    header: list[str] | None = None
    while True:
        start = at[0] + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            hint = " (a quote that is never closed?)" if "end of data" in str(e) else ""
            raise DataError(f"{path}:{start}: not valid {fmt.upper()} ({e}){hint}") from None
        if header is None:
            header = [h.strip() for h in row]
            continue
        if len(row) <= 1 and not "".join(row).strip():
            continue  # a blank line
        if len(row) != len(header):
            raise DataError(f"{path}:{start}: expected {len(header)} columns ({', '.join(header)}), got {len(row)}")
        yield start, dict(zip(header, row))
    if header is None:
        raise DataError(f"{path}: empty file; expected a header line")


def _require(path, lineno, rec, field):
    if field not in rec:
        raise DataError(f"{_where(path, lineno)}: missing field {field!r} (fields present: {', '.join(map(str, rec)) or 'none'})")
    return rec[field]


def _text_value(path, lineno, field, value) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise DataError(f"{_where(path, lineno)}: field {field!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise DataError(f"{_where(path, lineno)}: field {field!r} is empty")
    return value


def load_examples(
    path: str | Path,
    *,
    task: str = "",
    fmt: str = "auto",
    input_field: str | None = None,
    target_field: str | None = None,
    answers_field: str | None = None,
    choices_field: str | None = None,
    id_field: str | None = "id",
    choices: Sequence[str] | None = None,
    label_names: Sequence[str] | None = None,
    require_target: bool = True,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> list[Example]:
    """Load examples, validating every record.

    Field names default to `input`/`target`, or to P3's `inputs_pretokenized` /
    `targets_pretokenized` (and `answer_choices`) when the file uses those. A target
    given as a list becomes the first answer, with all of them kept in `answers`.
    `label_names` maps integer labels (SST-2's 0/1) to words.
    """
    path = Path(path)
    out: list[Example] = []
    seen_ids: dict[str, int | None] = {}
    for lineno, rec in iter_records(path, fmt, max_line_bytes=max_line_bytes):
        p3 = P3_INPUT in rec
        in_f = input_field or (P3_INPUT if p3 else "input")
        tg_f = target_field or (P3_TARGET if p3 else "target")
        ch_f = choices_field or (P3_CHOICES if p3 else "choices")
        text = _text_value(path, lineno, in_f, _require(path, lineno, rec, in_f))
        golds: list[str] | None = None
        if require_target or tg_f in rec:
            raw = _require(path, lineno, rec, tg_f)
            if label_names is not None:
                try:
                    raw = label_names[int(raw)]
                except (ValueError, IndexError, TypeError):
                    raise DataError(
                        f"{_where(path, lineno)}: field {tg_f!r} is {raw!r}, expected a label index below {len(label_names)}"
                    ) from None
            if isinstance(raw, list):
                if not raw or not all(isinstance(a, str) and a.strip() for a in raw):
                    raise DataError(f"{_where(path, lineno)}: field {tg_f!r} must be a non-empty list of non-empty strings")
                golds = list(raw)
                target = raw[0]
            else:
                target = _text_value(path, lineno, tg_f, raw)
        else:
            target = ""
        if answers_field and answers_field in rec:
            ans = rec[answers_field]
            if not isinstance(ans, list) or not all(isinstance(a, str) for a in ans):
                raise DataError(f"{_where(path, lineno)}: field {answers_field!r} must be a list of strings")
            golds = ans
        ex_choices = list(choices) if choices else None
        if ch_f in rec and rec[ch_f] is not None:
            cv = rec[ch_f]
            if not isinstance(cv, list) or not cv or not all(isinstance(c, str) for c in cv):
                raise DataError(f"{_where(path, lineno)}: field {ch_f!r} must be a non-empty list of strings")
            ex_choices = cv
        ex_id = None
        if id_field and id_field in rec:
            ex_id = str(rec[id_field])
            if ex_id in seen_ids:
                raise DataError(
                    f"{_where(path, lineno)}: duplicate id {ex_id!r} (first seen on line {seen_ids[ex_id]})"
                )
            seen_ids[ex_id] = lineno
        out.append(Example(input=text, target=target, task=task, id=ex_id, answers=golds, choices=ex_choices))
    if not out:
        raise DataError(f"{path}: no examples")
    return out


def write_examples(path: str | Path, examples: Sequence[Example]) -> None:
    """Write examples as JSONL (atomically)."""
    from shoulders.utils.fs import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(ex.to_dict(), ensure_ascii=False) + "\n" for ex in examples))
