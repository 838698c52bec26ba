"""Raw data can hold any type where a converter expects another: JSON any of its types, a typed
Parquet column bytes, timestamps or decimals, and any of them nested past Python's recursion limit
(JSON text, a value so deep, a call's literal too deep for ast's parser). Each converter's own
fixture rows, with one field at a time (and fields inside lists, objects and JSON-string columns)
replaced by a value of each kind, go through the whole normalize stage: every row is kept or a
counted drop, and the run never stops on a bad value."""

import datetime
import decimal
import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from sftmix.normalize import SourceInfo, documents, run
from sftmix.raw import iter_raw_rows
from sftmix.sources import Drop, available, filter_defaults, get_converter

FIXTURES = Path(__file__).parents[1] / "fixtures"
DEPTH = 5_000  # past Python's recursion limit: json and ast raise RecursionError, not their own errors
DEEP_JSON_TEXT = "[" * DEPTH + "]" * DEPTH  # in a JSON-string column, the whole column's text
DEEP_LITERAL = "-" * 30_000 + "1"  # ast's parser overflows on it (Python 3.11: MemoryError), as a call or an argument
JSON_VALUES = [None, 0, 1.5, True, "", "x", [], {}, [1], {"a": 1}, [None], [{}], ["x"], 2**70, float("nan"),
               float("inf"), "\x00", "\ud83d",  # what a lone `\ud83d` escape decodes to
               DEEP_JSON_TEXT, DEEP_LITERAL, f"f(a={DEEP_LITERAL})", f"[f(a={DEEP_LITERAL})]"]
DEEP_VALUE: list = []  # what a JSON array reader or a nested Parquet column gives for such text
for _ in range(DEPTH):
    DEEP_VALUE = [DEEP_VALUE]
TYPED_VALUES = [b"x", datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc), decimal.Decimal("1.5"), DEEP_VALUE]
ROWS_PER_CONVERTER = 6
# oasst2 joins rows into trees and drops a repeated message id: each changed copy gets its own id,
# so it joins its tree beside the original (a sibling reply) and goes through the tree reduction.
ROW_ID = {"oasst2": "message_id"}


def variants(value, depth: int = 0, replacements: list = JSON_VALUES + TYPED_VALUES):
    """`value` replaced whole by each replacement; inside a list, an object or a string of JSON
    (then by JSON values only), each of the first items or fields replaced (or removed) in turn,
    two levels down."""
    yield from replacements
    if depth == 2:
        return
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return
        if isinstance(parsed, (list, dict)):
            yield from (json.dumps(v) for v in variants(parsed, depth, JSON_VALUES))
    elif isinstance(value, list):
        for i, item in enumerate(value[:3]):
            yield from (value[:i] + [v] + value[i + 1:] for v in variants(item, depth + 1, replacements))
    elif isinstance(value, dict):
        for key in list(value)[:8]:
            yield from ({**value, key: v} for v in variants(value[key], depth + 1, replacements))
            yield {k: v for k, v in value.items() if k != key}


def fixture_rows(converter: str) -> list[dict]:
    files = sorted(p for p in (FIXTURES / converter).rglob("*") if p.suffix in {".json", ".jsonl", ".parquet"})
    return [row for _, row in iter_raw_rows(files) if not isinstance(row, Drop)]


@pytest.mark.parametrize("converter", available())
def test_a_value_of_another_type_is_a_counted_drop_never_a_crash(converter, tmp_path):
    originals = fixture_rows(converter)
    mutated = [{**row, key: value} for row in originals[:ROWS_PER_CONVERTER] for key in row for value in variants(row[key])]
    if converter in ROW_ID:
        id_key = ROW_ID[converter]
        mutated = [{**row, id_key: f"{row[id_key]}-{n}"} if isinstance(row[id_key], str) else row
                   for n, row in enumerate(mutated)]
    # the untouched rows first (oasst2's changed copies join their trees), as the raw reader hands rows on
    keyed = [(f"raw#{n}", row) for n, row in enumerate(originals + mutated)]
    info = SourceInfo(key="k", converter=converter, licence="apache-2.0", language="en", filters=filter_defaults(converter))

    def documents_of(sink, counts):
        return documents(info, get_converter(converter)(iter(keyed)), sink, counts)

    counts = run(documents_of, info, tmp_path / "out.parquet", tmp_path / "rejected.parquet", info.filters,
                 "read_convert")  # checks the counts
    assert counts.read == len(keyed) and len(mutated) > 100
    kept_rows = [json.loads(origin)["row"] for origin in pq.read_table(tmp_path / "out.parquet")["origin"].to_pylist()]
    # not every changed row is a bad one: a change the converter ignores still converts
    # (a conversation joined from several raw rows names them all: "raw#3+raw#12")
    assert any(int(index) >= len(originals) for row in kept_rows for index in re.findall(r"#(\d+)", row))
    # Deep JSON text is read by the depth-safe decoder (`sftmix.jsontext.loads`): the drop names the
    # converter's own reason, never the RecursionError the backstop (`MALFORMED_ROW_ERRORS`) counts.
    deep_text_keys = {key for key, row in keyed if _holds_deep_json_text(row)}
    assert deep_text_keys
    backstopped = [(drop["key"], drop["detail"][:60]) for drop in pq.read_table(tmp_path / "rejected.parquet").to_pylist()
                   if drop["detail"].startswith("RecursionError") and set(drop["key"].split("+")) & deep_text_keys]
    assert backstopped == []


def _holds_deep_json_text(value, levels: int = 4) -> bool:
    """Whether DEEP_JSON_TEXT is in `value`, as a string or inside one, down to where `variants`
    puts it (not down DEEP_VALUE, whose nesting is the point)."""
    if isinstance(value, str):
        return "[" * DEPTH in value
    if levels and isinstance(value, (list, dict)):
        return any(_holds_deep_json_text(item, levels - 1) for item in (value.values() if isinstance(value, dict) else value))
    return False
