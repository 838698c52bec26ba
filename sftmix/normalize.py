"""The one path a row takes: raw file -> converter -> record -> rule filters -> Parquet.

Used by `sftmix normalize` and by the Dagster assets alike. Rows stream through as datatrove
`Document`s carrying the record in their metadata; output is written in Arrow batches, so memory
stays flat whatever the size of the source. Every row read is kept or dropped with a reason
(`Counts.check`), and every drop is written to the rejected file.
"""

from __future__ import annotations

import heapq
import json
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from operator import itemgetter
from typing import Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
from datatrove.data import Document

import filters as rule_filters
from filters.base import record_document
from filters.language_id import detect_language
from sftmix.counts import Counts
from sftmix.raw import positioned_raw_rows
from sftmix.record import COLUMNS, SCHEMA, input_licences, licence_id, licence_problem, make_record, schema_problem
from sftmix.rejected import RejectedSink
from sftmix.shards import AtomicParquetWriter, UnreadableParquet, file_metadata, parquet_batches, parquet_schema
from sftmix.sources import Converted, Drop, get_converter
from sftmix.sources.common import iso639_1

WRITE_BATCH_ROWS = 2048
# Files of records (a stage's parts) also hold each record's `position`: that of the raw row it was
# made from among all its source's rows, with the record's place among that row's (`documents`; a
# generator's: the order it made them), in which each part holds its rows. `records_in_order` merges
# a stage's parts into the order one worker would have written them, so a generator that takes the
# first records it can use takes the same ones whatever the number of workers.
RECORDS_FILE_SCHEMA = SCHEMA.append(pa.field("position", pa.uint64(), nullable=False))
# A raw row's position, shifted, leaves room for this many bits of records made from it: 2^40 raw
# rows, and 2^24 records from one row (or from a whole source read first) before positions could meet.
SUB_POSITION_BITS = 24
PART_BATCH_ROWS = 256  # rows of a stage's parts read at once, over all of them (`_positioned_records`)
# The stages of the rejected rows that never became records (`_raw_stream`, `documents`).
CONVERTER_STAGES = pa.array(["read", "convert"])


@dataclass
class SourceInfo:
    """What the pipeline stamps on every row of one source."""

    key: str
    converter: str
    licence: str | None = None  # None: the converter must give one per row
    language: str | None = None  # None: the converter's per-row language, else detected
    origin: dict = field(default_factory=dict)  # hub id, revision, split...
    filters: dict | None = None  # filter config; None = every rule with its defaults
    manifest_hash: str | None = None


def _detect_language(text: str) -> str | None:
    from langdetect.lang_detect_exception import LangDetectException

    try:
        # The row's only language label: worth langdetect's full 7 trials on a longer sample.
        return iso639_1(detect_language(text[:2000], trials=7)[0])
    except LangDetectException:
        return None


class _LastRead:
    """The position of the raw row a converter was last given: a one-row converter's output is made
    from it (the others read their source in one task, where any order-keeping position serves)."""

    position = 0


def _raw_stream(info: SourceInfo, inputs: list[Path], sink: RejectedSink, counts: Counts, rank: int, world_size: int,
                last_read: _LastRead):
    """The converter's output over (this worker's share of) the raw files; rows the reader could
    not decode are dropped here."""

    def raw_rows() -> Iterator[tuple[str, dict]]:
        for position, key, row in positioned_raw_rows(inputs, rank, world_size):
            if isinstance(row, Drop):
                counts.read += 1
                sink.reject("read", row.reason, row.raw, detail=row.detail, key=key)
            else:
                last_read.position = position
                yield key, row

    return get_converter(info.converter)(raw_rows())


def documents(info: SourceInfo, stream: Iterable[tuple[str, Converted | Drop]], sink: RejectedSink, counts: Counts,
              stage: str = "convert", position: Callable[[], int] | None = None) -> Iterator[Document]:
    """Records from a converter's (or a generator's) output, as documents for the filters, each with
    its `position`: the order of the output, or from `position()`, the raw row's, and below it the
    record's place among the records made from that row (`SUB_POSITION_BITS`). Equal positions
    were a part's records made from one row, or every record of a converter that reads its whole
    source first (flores, oasst2): the next stage deals a part's batches to its workers, and merged
    again, equal positions came back in another order with another number of workers."""
    previous, sub = None, 0
    for key, result in stream:
        counts.read += 1
        if isinstance(result, Drop):
            sink.reject(stage, result.reason, result.raw, detail=result.detail, key=str(key), licences=result.licences)
            continue
        record = _to_record(info, str(key), result)
        if isinstance(record, Drop):  # kept as converted: the value at fault may be in tools or meta
            # its fields as they are: `asdict` copies each value depth-first, and a deep one is the drop's cause
            converted = {item.name: getattr(result, item.name) for item in fields(result)}
            # a generated row holds its inputs' text too: under their licences as well (`generators.base.stream`)
            sink.reject(stage, record.reason, converted, detail=record.detail, key=str(key),
                        licences=[result.licence, *input_licences(result.meta)])
            continue
        document = record_document(record)
        if position is None:
            document.metadata["position"] = counts.read - 1
        else:
            raw = position()
            sub = sub + 1 if raw == previous else 0
            previous = raw
            document.metadata["position"] = (raw << SUB_POSITION_BITS) + sub
        yield document


def _to_record(info: SourceInfo, key: str, converted: Converted) -> dict | Drop:
    own = converted.licence and licence_id(converted.licence)  # SPDX's `ODC-By-1.0`: the manifest's `odc-by`
    if own and info.licence and own != info.licence:
        # not relabelled either way: the manifest's licence is the source's, and this row says otherwise
        return Drop("licence_conflict", f"the row says {converted.licence}, the manifest {info.licence}")
    if own and (problem := licence_problem(own)):  # "proprietary": no policy or derivation check can judge it
        return Drop("licence_unknown", problem)
    licence = own or info.licence
    if not licence:
        return Drop("no_licence", "neither the source nor the row names a licence")
    language = converted.language or info.language
    if not language:
        text = "\n".join(m["content"] or "" for m in converted.messages if m["role"] in ("user", "assistant"))
        language = _detect_language(text)
        if not language:
            return Drop("unknown_language")
    origin = {**info.origin, "row": key}
    if converted.key is not None:
        origin["key"] = converted.key
    if clash := origin.keys() & converted.meta.keys():  # a converter's bug, not the row's: TowerBlocks' `split`
        raise RuntimeError(f"{info.converter}: row metadata {sorted(clash)} would replace the provenance's own")
    origin.update(converted.meta)
    try:
        return make_record(messages=converted.messages, tools=converted.tools, source=info.key, licence=licence,
                           language=language, origin=origin)
    except UnicodeEncodeError as error:
        # A lone `\ud83d`-style escape in raw JSON decodes to half a surrogate pair: not text, and
        # neither hashable as UTF-8 nor storable in Parquet (in the conversation, tools or origin).
        return Drop("invalid_unicode", f"unpaired surrogate {error.object[error.start]!r} in the row")
    except (TypeError, ValueError, RecursionError) as error:
        # A value JSON cannot hold (bytes, a timestamp, a decimal from a typed Parquet column; NaN;
        # one nested too deeply to encode) that the converter passed on into the tools or the
        # origin: the row's drop, not a stopped run.
        return Drop.malformed_row(error)


def check_records(files: list[Path | str], positioned: bool = False) -> None:
    """UnreadableParquet naming the first file that does not hold canonical records (`positioned`:
    or that has no position column, as a stage's parts have)."""
    for path in files:
        schema = parquet_schema(path)
        problem = schema_problem(schema)
        if problem:
            raise UnreadableParquet(f"{path} is not a file of records: {problem}")
        if positioned and "position" not in schema.names:
            raise UnreadableParquet(f"{path} has no position column: "
                                    "it is not a stage's part as this sftmix writes them")


def read_records(files: list[Path | str]) -> Iterator[dict]:
    """Canonical records from Parquet (a previous stage's output, shards), file after file, batch by
    batch. Every file is checked to hold records before any row is read: a raw source file given by
    mistake is named, not a crash on its first row."""
    check_records(files)
    for path in files:
        for batch in parquet_batches(path, batch_size=WRITE_BATCH_ROWS, columns=list(SCHEMA.names)):
            yield from batch.to_pylist()


def records_in_order(parts: list[Path | str]) -> Iterator[dict]:
    """The records of a stage's parts in the order of their positions: that of one worker."""
    for _, record in _positioned_records(parts):
        yield record


def _positioned_records(parts: list[Path | str], rank: int = 0, world_size: int = 1) -> Iterator[tuple[int, dict]]:
    """With `world_size` > 1, worker `rank`'s batches of each part (dealt round-robin), still merged:
    its own part is then in order too."""
    check_records(parts, positioned=True)
    # One batch of each part is held: together a few hundred rows, however many parts (a Slurm stage
    # may write hundreds); small, so that a part of a few thousand rows still splits evenly. No two
    # records have one position (`documents`): the merge's order is theirs alone.
    rows = max(64, PART_BATCH_ROWS // max(1, len(parts)))
    return heapq.merge(*(_positioned_part(path, rows, (rank + n) % world_size, world_size)
                         for n, path in enumerate(parts)), key=itemgetter(0))


def _positioned_part(path: Path | str, rows: int, first: int, world_size: int) -> Iterator[tuple[int, dict]]:
    """The part's batches `first`, `first + world_size`, ... (the others are decoded, never made objects)."""
    for index, batch in enumerate(parquet_batches(path, batch_size=rows, columns=RECORDS_FILE_SCHEMA.names)):
        if index % world_size == first:
            yield from zip(batch.column("position").to_pylist(), batch.select(SCHEMA.names).to_pylist())


def _records_as_documents(files: list[Path], sink: RejectedSink, counts: Counts, rank: int, world_size: int,
                          stage_parts: bool) -> Iterator[Document]:
    # A stage's parts are merged by position; other files are read one after another, dealt whole to
    # workers, their rows numbered so.
    if stage_parts:
        rows = _positioned_records(files, rank, world_size)
    else:
        rows = enumerate(read_records(files[rank::world_size]))
    for position, record in rows:
        counts.read += 1
        # A file not written by sftmix may hold nulls, or an origin a rule's verdict cannot be written into.
        if not stage_parts and (problem := _record_problem(record)):
            sink.reject("read", "malformed_record", record, detail=problem, key=str(position),
                        licences=[record["licence"]])
            continue
        document = record_document(record)
        document.metadata["position"] = position
        yield document


def _record_problem(record: dict) -> str | None:
    """Why a row of a file of records is none (None when it is one): a column or a message null, an
    origin that is not a JSON object (the judge writes its score into it, a rejected row is keyed by its `row`)
    or whose `input_licences` is not a list of names (a rejected file's footer takes them in)."""
    if nulls := [name for name in COLUMNS if record[name] is None]:
        return f"null {', '.join(nulls)}"
    if None in record["messages"]:
        return "a null message"
    try:
        origin = json.loads(record["origin"])
    except ValueError:
        origin = None
    if not isinstance(origin, dict):
        return f"origin {record['origin']!r:.80} is not a JSON object"
    names = origin.get("input_licences", [])
    if not (isinstance(names, list) and all(isinstance(name, str) for name in names)):
        return f"origin input_licences {names!r:.80} is not a list of licence names"
    return None


class _TimedSource:
    """The documents of a stage, with the time spent making them (`seconds`)."""

    def __init__(self, documents: Iterable[Document]):
        self.documents, self.seconds = documents, 0.0

    def __iter__(self) -> Iterator[Document]:
        clock = time.perf_counter
        start = clock()
        for doc in self.documents:
            self.seconds += clock() - start
            yield doc
            start = clock()
        self.seconds += clock() - start


def run(documents_of, info: SourceInfo, out: Path | str, rejected: Path | str, filter_config: dict | None,
        source_step: str, before_publishing: Callable[[], None] | None = None) -> Counts:
    """Drive documents through the filters (None: none) into `out`; drops go to `rejected`.

    Both files appear only when the whole source went through; on any error neither does, nor when
    `before_publishing`, called just before they are put in place, raises. The
    counts' `seconds` say where the time went: `setup` (the rules built, the files opened),
    `source_step` (making the documents), each rule by name, `write` (the kept rows written, the
    files closed) and `total`, their sum.
    """
    started = time.perf_counter()
    counts = Counts()
    metadata = file_metadata(info.manifest_hash, [info.licence] if info.licence else [], source=info.key)
    sink = RejectedSink(rejected, info.key, counts, info.manifest_hash, info.licence)
    writer = AtomicParquetWriter(out, RECORDS_FILE_SCHEMA, metadata)
    chain: list[Iterator] = []  # the stage's generators, source first
    try:
        source = _TimedSource(documents_of(sink, counts))
        chain += [source.documents, iter(source)]
        steps = rule_filters.build_filters(filter_config) if filter_config is not None else []
        for step in steps:
            step.exclusion_writer = sink.for_stage(step.name)
            chain.append(step.run(chain[-1]))
        stream: Iterable[Document] = chain[-1]
        setup = time.perf_counter() - started
        batch: list[dict] = []
        positions: list[int] = []
        last = 0
        for doc in stream:
            position = doc.metadata["position"]
            if position < last:  # a step that reorders rows: the stage's parts could not be merged in order
                raise RuntimeError(f"{info.key}: a row at position {position} came after one at {last}")
            last = position
            batch.append(doc.metadata["record"])
            positions.append(position)
            if len(batch) >= WRITE_BATCH_ROWS:
                _write_records(writer, batch, positions)
        _write_records(writer, batch, positions)
        counts.kept = writer.rows
        counts.check()
        if before_publishing is not None:
            before_publishing()
    except BaseException as error:
        # Stopped mid-stream, the generators keep their frames while the error is kept (a notebook's
        # last error): closed now, downstream first, so that an LLM stage's requests in flight are
        # cancelled, not run (and paid) by the next LLM stage's event loop (`sftmix.llm.stage_event_loop`).
        for stage in reversed(chain):
            try:
                stage.close()
            except Exception as cleanup:
                error.add_note(f"while closing the stage: {cleanup!r}")
        writer.abort()
        sink.abort()
        raise
    writer.close()
    sink.close()
    counts.matched.update({f"{step.name}:{key}": n for step in steps for key, n in step.matched.items()})
    counts.seconds.update(_seconds_by_step(setup, source_step, source.seconds, steps, time.perf_counter() - started))
    return counts


def _write_records(writer: AtomicParquetWriter, records: list[dict], positions: list[int]) -> None:
    if records:
        table = pa.Table.from_pylist(records, schema=SCHEMA)
        writer.write(table.append_column(RECORDS_FILE_SCHEMA.field("position"), pa.array(positions, pa.uint64())))
    records.clear()
    positions.clear()


def _seconds_by_step(setup: float, source_step: str, source_seconds: float, steps: list, total: float) -> dict:
    seconds = {"setup": setup, source_step: source_seconds}
    upstream = source_seconds
    for step in steps:
        seconds[step.name] = step.seconds_with_upstream - upstream
        upstream = step.seconds_with_upstream
    seconds["write"] = total - setup - upstream
    seconds["total"] = total
    return seconds


def normalize(
    info: SourceInfo, inputs: Iterable[Path | str], out: Path | str, rejected: Path | str, *, apply_filters: bool = True,
    rank: int = 0, world_size: int = 1, before_publishing: Callable[[], None] | None = None,
) -> Counts:
    """Convert one source's raw files into canonical records, with the rule filters unless told not to.

    With `world_size` > 1 this is worker `rank`'s share (see `sftmix.raw.iter_raw_rows`).
    """
    files = [Path(p) for p in inputs]
    last_read = _LastRead()
    return run(lambda sink, counts: documents(info, _raw_stream(info, files, sink, counts, rank, world_size, last_read),
                                              sink, counts, position=lambda: last_read.position),
               info, out, rejected, (info.filters or {}) if apply_filters else None, source_step="read_convert",
               before_publishing=before_publishing)


def filter_records(info: SourceInfo, inputs: Iterable[Path | str], out: Path | str, rejected: Path | str,
                   rank: int = 0, world_size: int = 1, *, stage_parts: bool = False,
                   before_publishing: Callable[[], None] | None = None) -> Counts:
    """Apply the rule filters to canonical records (the `filtered` stage after `normalized`, with
    `stage_parts`: its inputs are the normalized stage's parts; otherwise any files of records, such
    as a file given to `sftmix judge`, whose own `position` column, if any, means nothing here).
    With `world_size` > 1, to worker `rank`'s share: of each part's batches, or of the files, whole."""
    files = [Path(p) for p in inputs]
    return run(lambda sink, counts: _records_as_documents(files, sink, counts, rank, world_size, stage_parts), info,
               out, rejected, info.filters or {}, source_step="read", before_publishing=before_publishing)


def nothing_converted(counts: Counts, converter: str, rejected: Iterable[Path | str]) -> str | None:
    """Why no row converted, when rows were read and the reader or the converter dropped every one:
    most likely the files are another source's, or the converter another's. None otherwise.

    Those rows are counted drops like any others; this is what the CLI and the build warn with,
    naming the first row's problem and its columns, so a wrong converter is not taken for a bad
    source."""
    if not counts.read or counts.kept:
        return None
    first = None
    for path in rejected:
        for batch in parquet_batches(path, columns=["stage", "reason", "detail", "row"]):
            if not pc.all(pc.is_in(batch.column("stage"), CONVERTER_STAGES)).as_py():
                return None  # some rows converted, and the rules dropped them
            at = pc.index(batch.column("reason"), "malformed_row").as_py()  # the drop that shows the columns
            if at >= 0 and (first is None or first["reason"] != "malformed_row"):
                first = batch.slice(at, 1).to_pylist()[0]
            elif first is None and batch.num_rows:
                first = batch.slice(0, 1).to_pylist()[0]
    drops = ", ".join(f"{reason} {n}" for reason, n in sorted(counts.dropped.items()))
    text = f"no row converted with converter {converter!r}: all {counts.read} rows read were dropped ({drops})"
    if first is not None:
        text += f"; the first {first['reason']}: {first['detail'] or '-'}"
        row = json.loads(first["row"])  # the sink writes every row as JSON
        if isinstance(row, dict):
            text += f"; its columns: {', '.join(sorted(row)) or 'none'}"
    return text + f". Is {converter!r} the converter for these files?"
