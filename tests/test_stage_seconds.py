"""A stage reports where its time went, by step: each rule's own seconds, not those of the rules
before it (a batch rule pulls its rows from them inside its own calls)."""

import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import filters
from filters.length import LengthFilter
from sftmix.counts import Counts
from filters.base import record_document
from sftmix.normalize import SourceInfo, filter_records, normalize, read_records, records_in_order, run
from sftmix.record import SCHEMA
from sftmix.shards import UnreadableParquet

GLAIVE = Path(__file__).parent / "fixtures" / "glaive" / "glaive-function-calling-v2.json"
DELAY = 0.05


def _slow_length_rule(monkeypatch) -> list:
    calls = []
    check = LengthFilter.check

    def slow_check(self, record, doc):
        calls.append(record["id"])
        time.sleep(DELAY)
        return check(self, record, doc)

    monkeypatch.setattr(LengthFilter, "check", slow_check)
    return calls


def test_a_slow_rule_is_charged_its_own_time_and_no_other_step_is(tmp_path, monkeypatch):
    calls = _slow_length_rule(monkeypatch)
    info = SourceInfo(key="g", converter="glaive", licence="apache-2.0", language="en")
    counts = normalize(info, [GLAIVE], tmp_path / "o.parquet", tmp_path / "r.parquet")

    seconds = counts.seconds
    rules = [rule.name for rule in filters.DEFAULT_ORDER]
    assert list(seconds) == ["setup", "read_convert", *rules, "write", "total"]
    slept = len(calls) * DELAY
    assert len(calls) >= 5 and slept <= seconds["length"] < slept + 0.5
    # the repetition rule (after it, in batches) pulled the slow rows through its own calls: not charged for them
    assert all(seconds[step] < slept / 2 for step in seconds if step not in ("length", "total"))
    assert min(seconds.values()) >= 0
    assert seconds["total"] == pytest.approx(sum(s for step, s in seconds.items() if step != "total"))


def test_filtering_records_reports_reading_rules_and_writing(tmp_path, monkeypatch):
    info = SourceInfo(key="g", converter="glaive", licence="apache-2.0", language="en", filters={"language": False})
    normalize(info, [GLAIVE], tmp_path / "n.parquet", tmp_path / "n.rejected.parquet", apply_filters=False)
    calls = _slow_length_rule(monkeypatch)
    counts = filter_records(info, [tmp_path / "n.parquet"], tmp_path / "f.parquet", tmp_path / "f.rejected.parquet")

    assert list(counts.seconds) == ["setup", "read", *(r.name for r in filters.DEFAULT_ORDER if r.name != "language"),
                                    "write", "total"]
    assert counts.seconds["length"] >= len(calls) * DELAY > 0
    assert counts.seconds["read"] < len(calls) * DELAY / 2


def test_saved_counts_keep_the_seconds_and_the_cli_summary_does_not_show_them():
    worker = Counts(read=3, kept=2)
    worker.drop("toxic")
    worker.seconds.update({"read": 0.5, "length": 0.25, "total": 1.0})
    worker.matched["decontamination:bfcl"] = 2
    merged = Counts().add(Counts.from_saved(worker.saved())).add(Counts.from_saved(worker.saved()))
    assert merged.seconds == {"read": 1.0, "length": 0.5, "total": 2.0}
    assert merged.matched == {"decontamination:bfcl": 4} and "matched" not in Counts(read=1, kept=1).saved()
    assert merged.summary() == {"read": 6, "kept": 4, "dropped": {"toxic": 2}}  # `sftmix normalize`'s last line
    assert Counts.from_saved(merged.summary()).seconds == {}  # counts saved before seconds existed


def test_a_stage_writes_its_rows_in_position_order_or_stops(tmp_path):
    """A stage's parts are merged by position (`records_in_order`), which needs each in order: a step
    that reorders rows stops the stage, with nothing written."""
    info = SourceInfo(key="g", converter="glaive", licence="apache-2.0", language="en")
    normalize(info, [GLAIVE], tmp_path / "n.parquet", tmp_path / "n.rejected.parquet", apply_filters=False)
    first, second = list(read_records([tmp_path / "n.parquet"]))[:2]
    assert [r["id"] for r in records_in_order([tmp_path / "n.parquet"])][:2] == [first["id"], second["id"]]

    def swapped(sink, counts):
        for position, record in ((1, second), (0, first)):
            counts.read += 1
            document = record_document(record)
            document.metadata["position"] = position
            yield document

    with pytest.raises(RuntimeError, match="^g: a row at position 0 came after one at 1$"):
        run(swapped, info, tmp_path / "o.parquet", tmp_path / "o.rejected.parquet", None, source_step="read")
    assert not (tmp_path / "o.parquet").exists()


def test_merging_by_position_names_a_file_that_is_not_a_stage_part(tmp_path):
    """A records file without positions (a shard, a file the user wrote) or a raw file given as a
    stage's part is named before any row is read."""
    info = SourceInfo(key="g", converter="glaive", licence="apache-2.0", language="en")
    normalize(info, [GLAIVE], tmp_path / "n.parquet", tmp_path / "n.rejected.parquet", apply_filters=False)
    pq.write_table(pq.read_table(tmp_path / "n.parquet", columns=SCHEMA.names), tmp_path / "shard.parquet")
    pq.write_table(pq.read_table(tmp_path / "n.parquet", columns=["id"]), tmp_path / "ids.parquet")

    with pytest.raises(UnreadableParquet, match=r"shard\.parquet has no position column"):
        next(records_in_order([tmp_path / "n.parquet", tmp_path / "shard.parquet"]))
    with pytest.raises(UnreadableParquet, match=r"ids\.parquet is not a file of records: "):
        next(records_in_order([tmp_path / "n.parquet", tmp_path / "ids.parquet"]))
    assert len(list(records_in_order([tmp_path / "n.parquet"]))) == pq.ParquetFile(tmp_path / "n.parquet").metadata.num_rows
