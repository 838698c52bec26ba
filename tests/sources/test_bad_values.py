"""Raw JSON can hold any type where a converter expects another. Each converter's own fixture rows,
with one field at a time (and fields inside lists, objects and JSON-string columns) replaced by a
value of every JSON type, go through the whole normalize stage: every row is kept or a counted drop,
and the run never stops on a bad value."""

import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from sftmix.normalize import SourceInfo, normalize
from sftmix.raw import iter_raw_rows
from sftmix.sources import Drop, available, filter_defaults

FIXTURES = Path(__file__).parents[1] / "fixtures"
REPLACEMENTS = [None, 0, 1.5, True, "", "x", [], {}, [1], {"a": 1}, [None], [{}], ["x"]]
ROWS_PER_CONVERTER = 6
# oasst2 joins rows into trees and drops a repeated message id: each changed copy gets its own id,
# so it joins its tree beside the original (a sibling reply) and goes through the tree reduction.
ROW_ID = {"oasst2": "message_id"}


def variants(value, depth: int = 0):
    """`value` replaced whole by each of `REPLACEMENTS`; inside a list, an object or a string of
    JSON, each of the first items or fields replaced (or removed) in turn, two levels down."""
    yield from REPLACEMENTS
    if depth == 2:
        return
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return
        if isinstance(parsed, (list, dict)):
            yield from (json.dumps(v) for v in variants(parsed, depth))
    elif isinstance(value, list):
        for i, item in enumerate(value[:3]):
            yield from (value[:i] + [v] + value[i + 1:] for v in variants(item, depth + 1))
    elif isinstance(value, dict):
        for key in list(value)[:8]:
            yield from ({**value, key: v} for v in variants(value[key], depth + 1))
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
    raw = tmp_path / "raw.jsonl"  # the untouched rows first: the changed copies of oasst2's rows join their trees
    raw.write_text("".join(json.dumps(row, default=str) + "\n" for row in originals + mutated))
    info = SourceInfo(key="k", converter=converter, licence="apache-2.0", language="en",
                      filters=filter_defaults(converter))
    counts = normalize(info, [raw], tmp_path / "out.parquet", tmp_path / "rejected.parquet")  # checks the counts
    assert counts.read == len(originals) + len(mutated) and len(mutated) > 100
    kept_rows = [json.loads(origin)["row"] for origin in pq.read_table(tmp_path / "out.parquet")["origin"].to_pylist()]
    # not every changed row is a bad one: a change the converter ignores still converts
    # (a conversation joined from several raw rows names them all: "raw.jsonl#3+raw.jsonl#12")
    assert any(int(index) >= len(originals) for row in kept_rows for index in re.findall(r"#(\d+)", row))
