"""Where dropped rows go: one Parquet file of (stage, reason, detail, the row as JSON).

It is handed to datatrove filters as their `exclusion_writer` (they call `write(doc, rank)` and
set `doc.metadata["filter_reason"]`) and used directly by the reader and converter stages, so
every drop of every stage lands in the same place and the same counts.

Its footer's `licences` are those of the rows it holds, as a shard's are (`RejectedWriter`), so
that a rejected file too can be passed on or left out by its footer alone: a row is under the
source's licence where the manifest names one and under its own where it names one (a record,
and a generated one under those of its `origin.input_licences` too; a generator's dropped item:
its input records'; a row whose licence conflicts with the manifest's), else `unknown` (a raw row
of a source whose rows carry their licence, dropped before its licence was read).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable

import pyarrow as pa

from sftmix.counts import Counts
from sftmix.record import dumps, input_licences, licence_id
from sftmix.shards import AtomicParquetWriter, file_metadata

REJECTED_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("key", pa.string()),
        ("id", pa.string()),
        ("row", pa.string()),
    ]
)
FLUSH_ROWS = 2048
# `<source>.<stage>-<part>.parquet`: the name `rejected_file` gives every stage's, generator's and the mixing's file
REJECTED_FILE = re.compile(r"(?P<source>.+)\.(?P<stage>[a-z]+)-\d{5}\.parquet")


def rejected_file(directory: Path | str, source: str, stage: str, part: int = 0) -> Path:
    """Where `stage` writes the drops of `source` (of its worker `part`)."""
    return Path(directory) / f"{source}.{stage}-{part:05d}.parquet"


def rejected_files(directory: Path | str, source: str, stage: str) -> list[Path]:
    """Every worker's rejected file of `source` at `stage`, in order."""
    return sorted(Path(directory).glob(f"{source}.{stage}-*.parquet"))


# A rejected row's licence in the footer when none was read (a raw row of a source whose rows carry
# their own): `record.KNOWN_LICENCES` has it for data of no known licence, which a filter leaves out.
UNKNOWN_LICENCE = "unknown"
# What the rejected file holds for a row nested too deeply for JSON's encoder; its key names it in the raw file.
TOO_DEEP_ROW = json.dumps("(not stored: the row is nested too deeply to encode)")


def _row_json(row) -> str:
    try:
        try:
            return _text(dumps(row))
        except (TypeError, ValueError):
            return _text(json.dumps(row, ensure_ascii=False, default=repr))
    except RecursionError:
        return TOO_DEEP_ROW


def _text(value: str) -> str:
    """`value` as storable UTF-8: unpaired surrogates become backslash escapes (inside a JSON string,
    the very `\\ud83d` escape the raw file had)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


class RejectedWriter(AtomicParquetWriter):
    """`source`'s rejected file; its footer (`file_metadata`, as the shards') names the licences of
    its rows, gathered in `licences` as they are written: known only then."""

    def __init__(self, path: Path | str, source: str, manifest_hash: str | None):
        self.licences: set[str] = set()
        super().__init__(path, REJECTED_SCHEMA, footer=lambda: file_metadata(manifest_hash, self.licences, source=source))


class RejectedSink:
    """`licence`: the source's, as the manifest names it (None: its rows carry their own)."""

    def __init__(self, path: Path | str, source: str, counts: Counts, manifest_hash: str | None, licence: str | None):
        self.writer = RejectedWriter(path, source, manifest_hash)
        self.source, self.counts, self.licence = source, counts, licence
        self.buffer: list[dict] = []

    def reject(self, stage: str, reason: str, row, *, detail: str = "", key: str = "", record_id: str | None = None,
               licences: Iterable[str] = ()) -> None:
        """`licences`: the row's own, where it names them (a record, a row whose licence conflicts
        with the manifest's, a generator's dropped item: its input records'): the footer names them
        beside the source's."""
        self.counts.drop(reason)
        # as data spells them: a file of records not written by sftmix may say ODC-By-1.0
        named = [licence_id(name) for name in (self.licence, *licences) if isinstance(name, str) and name]
        self.writer.licences.update(named or [UNKNOWN_LICENCE])
        self.buffer.append(
            {"source": self.source, "stage": stage, "reason": reason, "detail": _text(detail[:2000]), "key": key,
             "id": record_id, "row": _row_json(row)}
        )
        if len(self.buffer) >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        self.writer.write_rows(self.buffer)
        self.buffer.clear()

    def for_stage(self, stage: str) -> "_StageWriter":
        return _StageWriter(self, stage)

    def close(self) -> Path:
        self.flush()
        return self.writer.close()

    def abort(self) -> None:
        self.writer.abort()


class _StageWriter:
    """The slice of datatrove's DiskWriter interface that `BaseFilter.run` uses."""

    def __init__(self, sink: RejectedSink, stage: str):
        self.sink, self.stage = sink, stage

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False  # the sink outlives each filter; its owner closes it

    def write(self, doc, rank: int = 0) -> None:
        record = doc.metadata["record"]
        origin = json.loads(record["origin"])
        key = str(origin.get("row", ""))  # the raw row key, as convert-stage drops have it
        # a generated row holds its inputs' text too (a document quoted verbatim): under their licences as well
        self.sink.reject(self.stage, doc.metadata.get("filter_reason", self.stage), record,
                         detail=doc.metadata.get("filter_detail", ""), key=key, record_id=record["id"],
                         licences=[record["licence"], *input_licences(origin)])
