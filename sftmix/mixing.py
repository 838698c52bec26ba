"""Sampling, holdout and shards: filtered sources in, `train/` + `validation/` of a mixture out.

Memory does not follow the number of rows. One pass reads every source's filtered files in Arrow
batches and spills each row, with its rank, to the partition of its rank range (Arrow IPC files
under `work_dir`); every later step holds one partition at a time (two while the shards are
written: the next one is read meanwhile):

- Rows are ranked per source x language cell by sha256(seed, mixture name, id): deterministic from the
  manifest seed, and stable when raw rows are added (a row's rank never depends on its position).
  Equal ids have equal ranks, so they share a partition: duplicates are found partition by
  partition, and partitions read in order give rows in rank order.
- The holdout takes the first ranks of each cell (its share: `_shares`), train the next `target`
  ranks; a cell short of rows gives all it has and the shortfall is a reported deficit.
- A conversation present in two sources is kept once, by the first source in manifest order that
  takes it (`_choose`): a later source's copy is dropped only when an earlier source keeps the
  conversation, so one no source's sample takes is not lost. The holdout is disjoint from train by id.
- Rows whose licence the manifest's policy does not allow are never selected, and counted.
- With near-dedup on, the candidates' id + messages go to one Parquet file per source for
  `near_duplicates`. A near-duplicate cluster is kept once too, by the first source whose sample
  takes one of its rows: `_choose` decides the sources one after another, each over all its
  partitions, and writes what it took to the partitions' `chosen` files, which the shards are
  written from.
- What grows with the rows is what duplicates need: the ids of conversations held by two sources,
  and the near-duplicate clusters' members.

The spill (runs of each source's files at once) and the shard writing (the next partition read,
the last row groups compressed) run in threads on every core: their work is Arrow calls, which let
go of the GIL.
"""

from __future__ import annotations

import hashlib
import json
import resource
import shutil
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sftmix.manifest import ANY_LANGUAGE, Manifest, Source
from sftmix.near_dedup import near_duplicates
from sftmix.plan import allocate, cells
from sftmix.reader import CARD, MIXING_STOPPED, SPLITS
from sftmix.record import SCHEMA
from sftmix.rejected import REJECTED_SCHEMA, RejectedWriter, rejected_file
from sftmix.shards import AtomicParquetWriter, file_metadata, parquet_batches, parquet_rows, write_text_whole
from sftmix.sources import carries_input_licences

STATS = "stats.json"  # the mixing's counts, beside its splits: what the card is written from
# `MIXING_STOPPED` is in the mixture directory while a mixing puts its splits, rejected files and
# stats.json in place: left there, it says they may be of two mixings (`build.write_card` and the
# readers refuse them).
HOLDOUT_DEFICIT = "*holdout*"  # the `source` of the deficit that says the holdout fell short of its size
PARTITION_ROWS = 16_384  # rows of all sources per rank partition: what one step holds at a time
MAX_PARTITIONS = 512
# Each spill write is one batch's rows of one partition: larger batches mean fewer, larger writes.
READ_BATCH_ROWS = 4096
ROW_GROUP_ROWS = 4096  # shard row groups, whatever the partitions (so shards do not depend on them)
WRITES_AHEAD = 8  # row groups cut but not yet written: what the shard writer's thread may lag behind
SPILL_SCHEMA = SCHEMA.append(pa.field("rank", pa.uint64(), nullable=False))
SPILL_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")  # lz4: the spill writes many small batches
# `copy_of`: an earlier source (manifest order) has the same conversation among its candidates; the
# row is taken only if no earlier source takes that conversation (`_choose`). `input_licences`: a
# generated row's `origin.input_licences`, null for a row that names none (`_naming_inputs`).
CANDIDATE_SCHEMA = pa.schema([("row", pa.uint32()), ("id", pa.string()), ("rank", pa.uint64()), ("cell", pa.string()),
                              ("language", pa.string()), ("licence", pa.string()), ("copy_of", pa.string()),
                              ("input_licences", pa.list_(pa.string()))])
# a partition's rows `_choose` took, with what `_shard_footers` needs of them
CHOSEN_SCHEMA = pa.schema([("row", pa.uint32()), ("split", pa.string()), ("rank", pa.uint64()), ("licence", pa.string()),
                           ("input_licences", pa.list_(pa.string()))])


# a row's `origin.input_licences`, a JSON list of names (`normalize._record_problem`); null where it names none
_INPUT_LICENCES = pl.col("origin").str.json_path_match("$.input_licences").str.json_decode(pl.List(pl.String))


def _input_licence_counts(rows: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame | pl.LazyFrame:
    """(split, licence, rows) of `rows`' input licences (their `input_licences` column)."""
    return (rows.select("split", licence=pl.col("input_licences").list.unique()).explode("licence").drop_nulls()
            .group_by("split", "licence").len())


class EmptyTrainSplit(ValueError):
    """The cells with a train target would give train no row: the holdout takes every row they
    have (the manifest's `holdout.size` must be smaller), or they have none."""


@dataclass
class MixResult:
    out_dir: Path
    split_rows: dict[str, int]
    by_source: dict[str, dict[str, int]]  # split -> source -> rows
    by_language: dict[str, dict[str, int]]
    by_licence: dict[str, dict[str, int]]
    deficits: list[dict] = field(default_factory=list)  # cells short of their target
    excluded: dict[str, dict[str, int]] = field(default_factory=dict)  # source -> reason -> rows
    files: dict[str, list[str]] = field(default_factory=dict)
    # source -> stage -> the counts (`Counts.saved()`) of the stages that made the records mixed:
    # the card's intake and drops are those of this mixing, not of stages run again since.
    intake: dict[str, dict[str, dict | None]] = field(default_factory=dict)
    manifest_hash: str = ""  # of the manifest mixed: stats.json is then known to be this mixing's
    # the settings of the records mixed (`sftmix.build.mixed_sources_digest`): not in the shards,
    # which the same manifest and raw bytes make byte-identical, whatever the files' times
    mixed_sources: str = ""
    # split -> source -> language -> rows (the cells the targets are set in), and split -> source ->
    # licence -> rows; None in the stats.json of an sftmix that did not count them
    by_cell: dict[str, dict[str, dict[str, int]]] | None = None
    by_source_licence: dict[str, dict[str, dict[str, int]]] | None = None
    # split -> licence -> rows naming it in `origin.input_licences` (generated rows' inputs', whose
    # text they hold: the card lists them beside the rows' own); None as above
    by_input_licence: dict[str, dict[str, int]] | None = None

    def to_json(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


def release_unused() -> None:
    """Hand memory Arrow freed back to the OS: its allocator keeps it otherwise, and the peak RSS
    of a build would add up what each step once held."""
    pa.default_memory_pool().release_unused()


def rank_keys(seed: int, mixture: str, ids: list[str]) -> np.ndarray:
    """The first 8 bytes of sha256(seed:mixture:id), big-endian, as uint64. The mixture's name is in
    it because a row keeps its id in every mixture: one that samples another mixture with the same
    seed (the FC mixture samples the instruct one, both seed 40) ranked its rows as that mixture had,
    and took mostly the rows of the cells it had taken a small part of (1,816 of 2,000 rows from a
    cell holding half of them)."""
    prefix = f"{seed}:{mixture}:".encode()
    digests = b"".join(hashlib.sha256(prefix + i.encode()).digest()[:8] for i in ids)
    return np.frombuffer(digests, dtype=">u8").astype(np.uint64)


class _Partitions:
    """Per source (manifest order) and rank range: IPC files of rows (`SPILL_SCHEMA`) and, once
    `decide`d, of their candidates (`CANDIDATE_SCHEMA`: row index in the partition and what
    selection needs). A source's rows are spilled as up to `threads` runs of its files at once, each
    run to its own file of every partition; a partition's rows are its runs' files read in order,
    so they are in the order of the source's files, as with one run."""

    def __init__(self, directory: Path, count: int, threads: int = 1):
        self.directory, self.count, self.threads = directory, count, threads
        self.runs: dict[int, int] = {}  # source order -> runs its rows were spilled in

    def path(self, kind: str, order: int, part: int, run: int = 0) -> Path:
        return self.directory / kind / f"{order:04d}" / f"{part:06d}-{run:03d}.arrow"

    def part_of(self, ranks: np.ndarray) -> np.ndarray:
        """Partition of each rank: equal ranges of the uint64 space, in rank order."""
        return ((ranks >> np.uint64(32)) * np.uint64(self.count)) >> np.uint64(32)

    def spill_all(self, files_by_source: list[list[Path]], seed: int, mixture: str) -> None:
        """Spill every source's files (list index = source order), `threads` runs at a time,
        largest first: reading, ranking and writing are Arrow calls that let go of the GIL."""
        runs = []
        for order, files in enumerate(files_by_source):
            source_runs = _runs_of_bytes(files, self.threads)
            self.runs[order] = len(source_runs)
            runs += [(order, run, run_files) for run, run_files in enumerate(source_runs)]
        runs.sort(key=lambda item: -sum(f.stat().st_size for f in item[2]))
        with ThreadPoolExecutor(self.threads, thread_name_prefix="sftmix-spill") as pool:
            futures = [pool.submit(self.spill, order, run, run_files, seed, mixture) for order, run, run_files in runs]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise

    def spill(self, order: int, run: int, files: list[Path], seed: int, mixture: str) -> None:
        """Write one run of a source's files to its partitions' files, with each row's rank;
        within a partition rows keep their order in `files`."""
        writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}
        try:
            for path in files:
                for batch in parquet_batches(path, batch_size=READ_BATCH_ROWS, columns=SCHEMA.names, use_threads=False):
                    ranks = rank_keys(seed, mixture, batch.column("id").to_pylist())
                    parts = self.part_of(ranks)
                    by_part = np.argsort(parts, kind="stable")  # stable: rows keep their file order
                    batch = pa.RecordBatch.from_arrays([*batch.columns, pa.array(ranks)], schema=SPILL_SCHEMA)
                    bounds = np.searchsorted(parts[by_part], np.arange(self.count + 1))
                    for part in map(int, np.flatnonzero(np.diff(bounds))):
                        if part not in writers:
                            target = self.path("rows", order, part, run)
                            target.parent.mkdir(parents=True, exist_ok=True)
                            writers[part] = pa.ipc.new_file(target, SPILL_SCHEMA, options=SPILL_OPTIONS)
                        # one partition's rows at a time: a copy of the whole batch would double it
                        writers[part].write_batch(batch.take(by_part[bounds[part]:bounds[part + 1]]))
                    release_unused()
        finally:
            for writer in writers.values():
                writer.close()

    def read(self, kind: str, order: int, part: int, columns: list[str] | None = None) -> pa.Table | None:
        """A partition's rows (its runs' files in order) or candidates (None if it has none), only
        `columns` of them when given."""
        paths = [self.path(kind, order, part, run) for run in range(self.runs.get(order, 0) if kind == "rows" else 1)]
        paths = [path for path in paths if path.is_file()]
        if not paths:
            return None
        names = {"rows": SPILL_SCHEMA, "candidates": CANDIDATE_SCHEMA, "chosen": CHOSEN_SCHEMA}[kind].names
        options = pa.ipc.IpcReadOptions(included_fields=[names.index(c) for c in columns or names])
        tables = []
        for path in paths:
            with pa.OSFile(str(path)) as handle:
                tables.append(pa.ipc.open_file(handle, options=options).read_all())
        return tables[0] if len(tables) == 1 else pa.concat_tables(tables)

    def write(self, kind: str, order: int, part: int, table: pa.Table) -> None:
        path = self.path(kind, order, part)
        path.parent.mkdir(parents=True, exist_ok=True)
        with pa.ipc.new_file(path, table.schema, options=SPILL_OPTIONS) as writer:
            writer.write_table(table)


class _Rejects:
    """Rows the mixing drops for what they are (a licence the policy refuses, an exact or near
    duplicate), one rejected file per source as the stages write them: `<source>.mixing-00000.parquet`,
    each row the record as JSON, the footer naming their licences (a generated row's `input_licences`
    too). Rows only left unsampled (`language_not_targeted`, beyond a target) are counted, not
    copied: they are most of a multilingual source, and nothing is wrong with them."""

    def __init__(self, directory: Path | None, manifest: Manifest, partitions: "_Partitions"):
        self.partitions = partitions
        self.writers = {} if directory is None else {
            s.key: RejectedWriter(rejected_file(directory, s.key, "mixing"), s.key, manifest.hash) for s in _mixed(manifest)}
        self.naming_inputs = _naming_inputs(manifest)

    def write(self, source: str, order: int, part: int, dropped: pl.DataFrame) -> None:
        """Drop partition `part`'s rows of `source` at `dropped["row"]`, for `dropped["reason"]`."""
        writer = self.writers.get(source)
        if writer is None or dropped.is_empty():
            return
        records = pl.from_arrow(self.partitions.read("rows", order, part, SCHEMA.names).take(dropped["row"].to_arrow()))
        writer.licences.update(records["licence"].unique())
        if source in self.naming_inputs:  # a generated row holds its inputs' text too: under their licences as well
            for names in records["origin"].str.json_path_match("$.input_licences").drop_nulls().unique():
                writer.licences.update(json.loads(names))  # a JSON list of names (`normalize._record_problem`)
        # Encoded by polars, 13 times faster than a row at a time in Python (2.8 against 35 µs a Toucan row)
        writer.write(records.select(
            source=pl.lit(source), stage=pl.lit("mixing"), reason=dropped["reason"],
            detail=dropped["detail"] if "detail" in dropped.columns else pl.lit(""),
            key=pl.col("origin").str.json_path_match("$.row"), id="id", row=pl.struct(SCHEMA.names).struct.json_encode(),
        ).to_arrow().cast(REJECTED_SCHEMA))

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()

    def abort(self) -> None:
        for writer in self.writers.values():
            writer.abort()


def _runs_of_bytes(files: list[Path], most: int) -> list[list[Path]]:
    """`files` cut into at most `most` runs of consecutive files, of about equal bytes: a file goes
    to the run whose share of the bytes holds its middle."""
    sizes = [f.stat().st_size for f in files]
    runs, run, done, total = [], [], 0, sum(sizes)
    for path, size in zip(files, sizes):
        if run and len(runs) < most - 1 and (done + size / 2) * most >= total * (len(runs) + 1):
            runs.append(run)
            run = []
        run.append(path)
        done += size
    return runs + [run] if run else runs


def _partition_count(inputs: dict[str, list[Path]], threads: int) -> int:
    """`PARTITION_ROWS` rows per partition, but no more partitions than half the open-file limit
    over the spill's threads: each keeps one file open per partition (past ~8M rows, or fewer
    under a low limit, partitions grow instead)."""
    rows = sum(parquet_rows(f) for files in inputs.values() for f in files)
    open_files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    limit = MAX_PARTITIONS if open_files == resource.RLIM_INFINITY else min(MAX_PARTITIONS, open_files // (2 * threads))
    return max(1, min(limit, -(-rows // PARTITION_ROWS)))


def _mixed(manifest: Manifest) -> list[Source]:
    return [s for s in manifest.sources if not s.is_input_only]


def _naming_inputs(manifest: Manifest) -> set[str]:
    """The sources whose rows may name input licences (generated rows, and sftmix rows re-read: another
    mixture's, or files of them through a converter that keeps them): only their origins are read for them."""
    return {s.key for s in _mixed(manifest)
            if s.generator is not None or s.mixture is not None or carries_input_licences(s.converter_name)}


def _dropped(rows: pl.DataFrame, reason: pl.Expr) -> pl.DataFrame:
    """What `_Rejects` needs of dropped rows: where they are in the partition, their order, why."""
    return rows.select("row", "rank", "origin", reason=reason)


def _decide(manifest: Manifest, partitions: _Partitions, near_dedup_dir: Path | None,
            rejects: _Rejects) -> tuple[dict[str, Counter], Counter, Counter, pl.DataFrame, list[Path]]:
    """Candidates of every partition: rows with an allowed licence, not repeated within their
    source, in a language whose cell gives rows (`_giving`); a conversation an earlier source also
    has is a candidate marked `copy_of` it. Returns exclusion counts (source -> Counter), the rows
    per (source, cell) that are the source's own and those that are copies, the ids of the copies,
    and, with near-dedup on, one Parquet file of the own candidates' id + messages per source (what
    `near_duplicates` reads)."""
    sources = _mixed(manifest)
    allowed = list(manifest.licence_policy.get("allow", []))
    plan_cells = cells(manifest)
    any_language = {c.source for c in plan_cells if c.language == ANY_LANGUAGE}
    giving = _giving(plan_cells)
    naming_inputs = _naming_inputs(manifest)
    excluded = {s.key: Counter() for s in sources}
    available: Counter = Counter()
    copies: Counter = Counter()
    copied: list[pl.DataFrame] = []
    texts = []
    if near_dedup_dir is not None:
        near_dedup_dir.mkdir(parents=True, exist_ok=True)
        schema = pa.schema([SCHEMA.field("id"), SCHEMA.field("messages")])
        texts = [pq.ParquetWriter(near_dedup_dir / f"{order:04d}.parquet", schema)
                 for order in range(len(sources))]
    try:
        for part in range(partitions.count):
            seen = pl.DataFrame(schema={"id": pl.String, "kept_in": pl.String})  # earlier sources' own ids, and whose
            for order, source in enumerate(sources):
                counts = excluded[source.key]
                selection = ["id", "language", "licence", "rank", "origin"]
                # One read of the partition; its messages only when near-dedup needs them.
                rows = partitions.read("rows", order, part, selection + (["messages"] if texts else []))
                if rows is None:
                    continue
                frame = pl.from_arrow(rows.select(selection)).with_row_index("row")
                dropped = [_dropped(frame.filter(~frame["licence"].is_in(allowed)), pl.lit("licence_not_allowed"))]
                frame = frame.filter(frame["licence"].is_in(allowed))
                # A target of 0 gives no rows: its language is as untargeted as one the targets leave out.
                languages = [language for key, language in giving if key == source.key]
                if ANY_LANGUAGE not in languages:
                    # before the dedup: a copy labelled with an untargeted language would take its
                    # conversation with it, the targeted copy dropped as its duplicate (a near
                    # duplicate, as its cluster's representative, would take the cluster)
                    targeted = frame["language"].is_in(languages)
                    counts["language_not_targeted"] += int((~targeted).sum())
                    frame = frame.filter(targeted)
                # Of equal conversations the one with the smallest origin stays: a choice that does not
                # depend on how the rows were split across workers (which copy a worker saw first does).
                unique = frame.sort("id", "origin").unique("id", keep="first", maintain_order=True).sort("row")
                dropped.append(_dropped(frame.join(unique, on="row", how="anti"), pl.lit("duplicate_within_source")))
                frame = unique.join(seen.rename({"kept_in": "copy_of"}), on="id", how="left", maintain_order="left")
                # in rank order: the rejected file does not depend on how workers split the rows
                dropped = pl.concat(dropped).sort("rank", "origin")
                counts.update(dict(dropped.group_by("reason").len().iter_rows()))
                rejects.write(source.key, order, part, dropped)
                own = frame["copy_of"].is_null()
                seen = pl.concat([seen, frame.filter(own).select("id", pl.lit(source.key).alias("kept_in"))])
                copied.append(frame.filter(~own).select("id"))
                frame = frame.with_columns(
                    pl.lit(ANY_LANGUAGE).alias("cell") if source.key in any_language else pl.col("language").alias("cell"),
                    # a JSON list of names (`normalize._record_problem`), for the footer of the shard a row goes to
                    input_licences=_INPUT_LICENCES if source.key in naming_inputs else pl.lit(None, pl.List(pl.String)))
                for cell, is_own, n in frame.group_by("cell", own.alias("own")).len().iter_rows():
                    (available if is_own else copies)[(source.key, cell)] += n
                partitions.write("candidates", order, part,
                                 frame.select(CANDIDATE_SCHEMA.names).to_arrow().cast(CANDIDATE_SCHEMA))
                own_rows = frame.filter(own)["row"]
                if texts and len(own_rows):  # a copy's text is its original's: near-dedup reads it once
                    texts[order].write_table(rows.select(["id", "messages"]).take(own_rows.to_arrow()))
    finally:
        for writer in texts:
            writer.close()
    copied = pl.concat(copied).unique() if copied else pl.DataFrame(schema={"id": pl.String})
    return excluded, available, copies, copied, [near_dedup_dir / f"{order:04d}.parquet" for order in range(len(texts))]


def _near_duplicate_members(manifest: Manifest, partitions: _Partitions, text_files: list[Path], work_dir: Path,
                            available: Counter, copies: Counter) -> list[pl.DataFrame]:
    """MinHash clusters among the own candidates, as each source's members (list index = source
    order): `id`, `cluster` (the id of the cluster's row in its earliest source) and
    `representative` (the source's member with the smallest id). Of a source's members only its
    representative may be taken, and only if no earlier source takes a member of the cluster
    (`_choose`), so a cluster whose earlier rows are left unsampled is not lost. The other members
    go out of `available` and `copies`; a representative an earlier source may pre-empt counts
    as a copy, not as the source's own row."""
    sources = _mixed(manifest)
    removed = near_duplicates([(s.key, [f]) for s, f in zip(sources, text_files)], work_dir,
                              **manifest.near_dedup.model_dump())
    clusters = pl.DataFrame({"id": list(removed), "cluster": [kept for kept, _ in removed.values()],
                             "first_in": [source for _, source in removed.values()]},
                            schema={"id": pl.String, "cluster": pl.String, "first_in": pl.String})
    clusters = pl.concat([clusters, clusters.select(pl.col("cluster").alias("id"), "cluster", "first_in").unique()])
    members = []
    for order, source in enumerate(sources):
        found = []
        for part in range(partitions.count):
            candidates = partitions.read("candidates", order, part, ["id", "cell", "copy_of"])
            if candidates is not None:  # a copy's id is its original's: a member wherever it is held
                found.append(pl.from_arrow(candidates).join(clusters, on="id", how="inner"))
        held = pl.concat(found) if found else pl.DataFrame(schema={"id": pl.String, "cell": pl.String, "copy_of": pl.String,
                                                                  "cluster": pl.String, "first_in": pl.String})
        held = held.with_columns(representative=pl.col("id").min().over("cluster"))
        for cell, own, is_representative, first, n in held.group_by(
                "cell", pl.col("copy_of").is_null().alias("own"), pl.col("id") == pl.col("representative"),
                pl.col("first_in") == source.key).len().iter_rows():
            if not is_representative:
                (available if own else copies)[(source.key, cell)] -= n
            elif own and not first:
                available[(source.key, cell)] -= n
                copies[(source.key, cell)] += n
        members.append(held.select("id", "cluster", "representative"))
    return members


def _giving(plan_cells: list) -> list[tuple[str, str]]:
    """The (source, language) of the cells that give rows: a target of 0 gives none, to train or to
    the holdout."""
    return [(c.source, c.language) for c in plan_cells if c.target != 0]


def _shares(manifest: Manifest, available: Counter, copies: Counter) -> tuple[dict, list[dict]]:
    """(holdout, train) rows of each (source, cell), and the holdout's deficit if it falls short.
    The holdout is spread over the own rows (`available`) of the cells that give rows (`_giving`),
    which no earlier source can take; train may also take copies (`copies`) that no
    earlier source takes, so its share is an upper bound, and a cell's deficit is known once
    `_choose` has taken its rows."""
    plan_cells = cells(manifest)
    # In proportion to what each cell gives train: its target, or all its rows for a cell taking
    # `all` (the plan gives those none: their size is known only now). Without such cells this is
    # the plan's share.
    weights = {(c.source, c.language): available[(c.source, c.language)] if c.target is None else c.target
               for c in plan_cells}
    proportional = allocate(weights, manifest.holdout.size)
    # A cell's share comes first from its rows beyond its train target (a cell taking `all` has no
    # target to keep: all its rows may go); the rest passes on, first to rows beyond other cells'
    # targets, then to the other rows of cells taking `all`, then back to the cells' own shares, then
    # to rows within any cell's target, as the holdout's exact size comes before the targets
    # (`targets_met` only warns). A cell holding just its target (Toucan: 119,287 rows for 119,079)
    # gave its share from train and missed it while others had rows to spare. So the holdout falls
    # short only when every row is in it.
    target = {(c.source, c.language): available[(c.source, c.language)] if c.target is None else c.target
              for c in plan_cells}
    all_rows = {(c.source, c.language) for c in plan_cells if c.target is None}
    holdout = {key: min(share, available[key] if key in all_rows else max(0, available[key] - target[key]))
               for key, share in proportional.items()}
    giving = _giving(plan_cells)
    room = (lambda key: available[key] - holdout[key] - target[key],  # beyond the targets
            lambda key: available[key] - holdout[key] if key in all_rows else 0,  # no target to keep
            lambda key: min(proportional[key], available[key]) - holdout[key],  # the cell's own share
            lambda key: available[key] - holdout[key])  # within the targets
    for spare_of in room:
        missing = manifest.holdout.size - sum(holdout.values())
        spare = {key: n for key in giving if (n := spare_of(key)) > 0}
        for key, extra in allocate(spare, min(missing, sum(spare.values()))).items():
            holdout[key] += extra
    shares = {}
    for cell in plan_cells:
        key = (cell.source, cell.language)
        most = available[key] + copies[key] - holdout[key]
        shares[key] = (holdout[key], most if cell.target is None else min(cell.target, most))
    holdout_total = sum(holdout.values())
    if holdout_total == manifest.holdout.size:
        return shares, []
    return shares, [{"source": HOLDOUT_DEFICIT, "language": ANY_LANGUAGE, "target": manifest.holdout.size,
                     "validation": holdout_total, "deficit": manifest.holdout.size - holdout_total,
                     "available": holdout_total}]


def _refuse_empty_train(manifest: Manifest, train: Counter, held: Counter) -> None:
    """EmptyTrainSplit when train gets no row from the cells that want some: a mixture the training
    job cannot use, refused before its shards replace the last ones. Without rows at all (every row
    dropped after a converter change, or a Hub file's new layout), the last good mixture was
    replaced by empty shards and a card no loader reads, with only deficits to say so."""
    wanted = _giving(cells(manifest))
    if not wanted or sum(train[key] for key in wanted):
        return
    if rows := sum(held[key] for key in wanted):
        raise EmptyTrainSplit(f"mixture {manifest.mixture!r}: the holdout (holdout.size {manifest.holdout.size:,}) "
                              f"would take all {rows:,} rows of the cells with a train target, and train none: "
                              f"set holdout.size below {rows:,}")
    raise EmptyTrainSplit(f"mixture {manifest.mixture!r}: the cells with a train target have no row to give "
                          "(see their sources' counts and rejected files); the last mixture is left as it was")


def _choose(partitions: _Partitions, sources: list[Source], shares: dict, copied: pl.DataFrame,
            members: list[pl.DataFrame], tally: _Tally) -> Iterator[tuple[int, pl.DataFrame]]:
    """Source by source in manifest order, partition by partition in rank order: (source order,
    chosen rows in rank order: row, split, cell, language, licence, input_licences), each also written as the
    partition's `chosen` file. A source's sample is decided after every earlier source's: a
    conversation an earlier source took is dropped as `duplicate_of:<that source>`, a row of a
    near-duplicate cluster an earlier source took a member of as `near_duplicate_of:<that
    source>`, and any other member than the source's representative as
    `near_duplicate_within_source`; what no earlier source took is this source's to take. The i-th
    rank of a cell, among the rows left to it, goes to validation below its holdout, to train below
    holdout + train. The drops and the rows each cell had are counted in `tally`."""
    kept = pl.DataFrame(schema={"id": pl.String, "kept_in": pl.String})  # taken conversations later sources hold
    clusters = pl.DataFrame(schema={"cluster": pl.String, "kept_in": pl.String, "kept_id": pl.String})  # taken clusters
    for order, source in enumerate(sources):
        own = {cell: share for (key, cell), share in shares.items() if key == source.key}
        limits = pl.DataFrame({"cell": list(own), "holdout": [h for h, _ in own.values()], "train": [t for _, t in own.values()]},
                              schema={"cell": pl.String, "holdout": pl.Int64, "train": pl.Int64})
        taken = Counter()  # rows of each cell in earlier (lower-ranked) partitions
        source_members = members[order] if members else None
        kept_here, clusters_here = [], []
        for part in range(partitions.count):
            candidates = partitions.read("candidates", order, part)
            if candidates is None:
                continue
            frame = pl.from_arrow(candidates)
            drops = [frame.join(kept, on="id", how="inner").select(
                "row", "id", "rank", reason="duplicate_of:" + pl.col("kept_in"), detail=pl.lit(""))]
            frame = frame.join(kept, on="id", how="anti")
            if source_members is not None:
                near = frame.join(source_members, on="id", how="inner").join(clusters, on="cluster", how="left")
                drops.append(near.filter(pl.col("kept_in").is_not_null() | (pl.col("id") != pl.col("representative"))).select(
                    "row", "id", "rank",
                    reason=pl.when(pl.col("kept_in").is_not_null()).then("near_duplicate_of:" + pl.col("kept_in"))
                    .otherwise(pl.lit("near_duplicate_within_source")),
                    detail="near duplicate of " + pl.coalesce("kept_id", "representative")))
            drops = pl.concat(drops).sort("rank", "id")
            tally.drop(source.key, order, part, drops)
            frame = frame.join(drops, on="row", how="anti").sort("rank")
            frame = frame.with_columns(
                (pl.int_range(pl.len()).over("cell")
                 + pl.col("cell").replace_strict(taken, default=0, return_dtype=pl.Int64)).alias("index"))
            had = dict(frame.group_by("cell").len().iter_rows())
            taken.update(had)
            tally.candidates.update({(source.key, cell): n for cell, n in had.items()})
            frame = frame.join(limits, on="cell", how="inner", maintain_order="left").with_columns(
                pl.when(pl.col("index") < pl.col("holdout")).then(pl.lit("validation"))
                .when(pl.col("index") < pl.col("holdout") + pl.col("train")).then(pl.lit("train"))
                .alias("split"))
            chosen = frame.filter(pl.col("split").is_not_null())
            if chosen.is_empty():
                continue
            kept_here.append(chosen.join(copied, on="id", how="semi").select("id", kept_in=pl.lit(source.key)))
            if source_members is not None:
                clusters_here.append(chosen.join(source_members, on="id", how="inner").select(
                    "cluster", kept_in=pl.lit(source.key), kept_id="id"))
            partitions.write("chosen", order, part, chosen.select(CHOSEN_SCHEMA.names).to_arrow().cast(CHOSEN_SCHEMA))
            yield order, chosen.select("row", "split", "cell", "language", "licence", "input_licences")
        # a source's own takings do not drop its rows: they join the earlier sources' once it is done
        kept = pl.concat([kept, *kept_here])
        clusters = pl.concat([clusters, *clusters_here])


@dataclass
class _Tally:
    """What `_choose` counts: rows dropped (counted in `excluded`, written to `rejects`) and the
    rows each (source, cell) had to choose from."""

    excluded: dict[str, Counter]
    rejects: _Rejects
    candidates: Counter = field(default_factory=Counter)

    def drop(self, source: str, order: int, part: int, dropped: pl.DataFrame) -> None:
        for reason, n in dropped.group_by("reason").len().iter_rows():
            self.excluded[source][reason] += n
        self.rejects.write(source, order, part, dropped)


def _mixed_partitions(partitions: _Partitions, sources: list[Source]) -> Iterator[tuple[pa.Table, dict[str, pa.Array]]]:
    """Per partition: the chosen rows of every source (without their rank) and, per split, the
    indices of its rows in rank order. The sort is stable: rows of equal rank keep the manifest's
    source order."""
    for part in range(partitions.count):
        tables, splits = [], []
        for order in range(len(sources)):
            chosen = partitions.read("chosen", order, part, ["row", "split"])
            if chosen is not None:
                tables.append(partitions.read("rows", order, part).take(chosen["row"]))
                splits.append(chosen["split"])
        if not tables:
            continue
        rows = pa.concat_tables(tables)
        by_rank = pc.sort_indices(rows["rank"])
        split_by_rank = pa.chunked_array([c for split in splits for c in split.chunks]).take(by_rank)
        yield rows.drop_columns("rank"), {split: by_rank.filter(pc.equal(split_by_rank, split)) for split in SPLITS}
        release_unused()  # here too: the allocator keeps freed memory per thread, and this may run in another


def _shard_footers(partitions: _Partitions, sources: list[Source], manifest: Manifest) -> dict[str, list[dict[bytes, bytes]]]:
    """Per split, the Parquet metadata of each shard, known before the shards are written (their
    metadata is written first): rows go out as `_mixed_partitions` orders them, partition by
    partition and by rank within one (a stable sort, as there), and a shard is every `shard_rows`.

    Besides the licences of its own rows (and of the inputs its generated rows hold: their text is
    in the shard too), a shard names the mixing that wrote it: `split_shards`,
    the number of shards of its split, and `rows_digest`, of both splits' rows (their ranks, which
    their ids make, in order). A reader tells by them the shards of two mixings of one manifest
    apart (a raw file changed between them), which a copy over an older mixture leaves side by
    side. The ranks of a split are hashed as one stream: the digest does not depend on the
    partitions, so not on the number of threads."""
    shard_rows = manifest.shard_rows
    before = Counter()  # rows of each split in earlier partitions
    licences: dict[str, dict[int, set[str]]] = {split: {} for split in SPLITS}
    ranks = {split: hashlib.sha256() for split in SPLITS}
    for part in range(partitions.count):
        chosen = [pl.from_arrow(table) for order in range(len(sources))
                  if (table := partitions.read("chosen", order, part, ["split", "rank", "licence", "input_licences"]))
                  is not None]
        if not chosen:
            continue
        frame = pl.concat(chosen).sort("rank", maintain_order=True)
        for split in SPLITS:
            rows = frame.filter(pl.col("split") == split).with_columns(
                shard=(pl.int_range(pl.len()) + before[split]) // shard_rows)
            shards = pl.concat([rows.select("shard", "licence"),
                                rows.select("shard", licence="input_licences").explode("licence").drop_nulls()]).unique()
            for shard, licence in shards.iter_rows():
                licences[split].setdefault(shard, set()).add(licence)
            ranks[split].update(rows["rank"].to_numpy().tobytes())
            before[split] += len(rows)
    rows_digest = hashlib.sha256(b"".join(ranks[split].digest() for split in SPLITS)).hexdigest()[:16]
    footers = {}
    for split, by_shard in licences.items():
        shards = [sorted(by_shard[i]) for i in range(len(by_shard))] or [[]]  # an empty split is one shard of no rows
        footers[split] = [file_metadata(manifest.hash, shard, mixture=manifest.mixture, rows_digest=rows_digest,
                                        split_shards=len(shards)) for shard in shards]
    return footers


_END = object()  # the end of a prefetched iterator
T = TypeVar("T")


def _prefetched(items: Iterator[T]) -> Iterator[T]:
    """`items`, each made in a second thread while the caller works on the one before: the next
    partition is read and ordered while this one's shards are compressed (Arrow lets go of the GIL)."""
    with ThreadPoolExecutor(1, thread_name_prefix="sftmix-prefetch") as pool:
        pending = pool.submit(next, items, _END)
        while (item := pending.result()) is not _END:
            pending = pool.submit(next, items, _END)
            yield item


class _SplitWriter:
    """Rotating `part-NNNNN.parquet` shards of one split, each written atomically, in row groups of
    `ROW_GROUP_ROWS` (fewer where a shard ends) whatever the tables written: the bytes depend only on
    the rows. Row groups are compressed and written by `pool` (one thread, so in order), while the
    caller cuts the next ones; at most `WRITES_AHEAD` wait for it."""

    def __init__(self, directory: Path, shard_rows: int, footers: list[dict[bytes, bytes]], pool: ThreadPoolExecutor):
        self.directory, self.shard_rows, self.footers, self.pool = directory, shard_rows, footers, pool
        self.files: list[Path] = []
        self._writer: AtomicParquetWriter | None = None
        self._rows_in_shard = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._writes: deque[Future] = deque()

    def write(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._pending_rows += table.num_rows
        while self._pending_rows >= self._group_rows():
            self._write_group(self._group_rows())

    def _group_rows(self) -> int:
        return min(ROW_GROUP_ROWS, self.shard_rows - self._rows_in_shard)

    def _submit(self, write, *args) -> None:
        self._writes.append(self.pool.submit(write, *args))
        while len(self._writes) > WRITES_AHEAD:
            self._writes.popleft().result()  # raises the write's error, if any

    def _write_group(self, rows: int) -> None:
        table = pa.concat_tables(self._pending)
        rest = table.slice(rows)
        self._pending, self._pending_rows = [rest], rest.num_rows
        if self._writer is None:
            self._writer = AtomicParquetWriter(self.directory / f"part-{len(self.files):05d}.parquet", SCHEMA,
                                               self.footers[len(self.files)])
        self._submit(self._writer.write, table.slice(0, rows).combine_chunks())
        self._rows_in_shard += rows
        if self._rows_in_shard >= self.shard_rows:
            self._submit(self._writer.close)
            self.files.append(self._writer.path)
            self._writer, self._rows_in_shard = None, 0

    def close(self) -> list[Path]:
        if self._pending_rows:
            self._write_group(self._pending_rows)
        if self._writer is not None:
            self._submit(self._writer.close)
            self.files.append(self._writer.path)
        while self._writes:
            self._writes.popleft().result()
        if not self.files:  # an empty split is still a readable split
            AtomicParquetWriter(self.directory / "part-00000.parquet", SCHEMA, self.footers[0]).close()
            self.files.append(self.directory / "part-00000.parquet")
        return self.files


def _breakdown(counts: Counter) -> dict[str, dict[str, int]]:
    """(split, value) -> rows as split -> value -> rows, values sorted."""
    out: dict[str, dict[str, int]] = {split: {} for split in SPLITS}
    for (split, value), n in sorted(counts.items(), key=lambda item: item[0][1]):
        out[split][value] = n
    return out


def _breakdown_by_source(counts: Counter) -> dict[str, dict[str, dict[str, int]]]:
    """(split, (source, value)) -> rows as split -> source -> value -> rows, sources and values sorted."""
    out: dict[str, dict[str, dict[str, int]]] = {split: {} for split in SPLITS}
    for (split, (source, value)), n in sorted(counts.items(), key=lambda item: item[0][1]):
        out[split].setdefault(source, {})[value] = n
    return out


def counted_in_shards(mixture_dir: Path) -> dict[str, dict]:
    """`MixResult.by_cell`, `by_source_licence` and `by_input_licence` counted from a mixture's shards: a
    stats.json written before they were recorded lacks them, and its mixture is still the one its shards hold."""
    by_cell, by_source_licence, by_input_licence = Counter(), Counter(), Counter()
    for split in SPLITS:
        files = [str(path) for path in sorted((mixture_dir / split).glob("part-*.parquet"))]
        if not files:
            continue
        shards = pl.scan_parquet(files)
        for column, counts in (("language", by_cell), ("licence", by_source_licence)):
            for source, value, n in shards.group_by("source", column).len().collect().iter_rows():
                counts[(split, (source, value))] += n
        # streamed: a split's origins are read a batch at a time, not held whole
        inputs = _input_licence_counts(shards.select(split=pl.lit(split), input_licences=_INPUT_LICENCES))
        for _, licence, n in inputs.collect(engine="streaming").iter_rows():
            by_input_licence[(split, licence)] += n
    return {"by_cell": _breakdown_by_source(by_cell), "by_source_licence": _breakdown_by_source(by_source_licence),
            "by_input_licence": _breakdown(by_input_licence)}


def _exclusions(manifest: Manifest, excluded: dict[str, Counter]) -> dict[str, dict[str, int]]:
    """Non-zero exclusion counts per source, reasons in the order the rows meet them."""
    keys = [s.key for s in _mixed(manifest)]
    order = ["licence_not_allowed", *(f"duplicate_of:{k}" for k in keys), "duplicate_within_source",
             "language_not_targeted", "near_duplicate_within_source", *(f"near_duplicate_of:{k}" for k in keys),
             "beyond_target"]
    return {key: {reason: counts[reason] for reason in order if counts[reason]} for key, counts in excluded.items()}


def build(manifest: Manifest, inputs: dict[str, list[Path]], out_dir: Path, work_dir: Path,
          threads: int | None = None, rejected_dir: Path | None = None, intake: dict | None = None,
          mixed_sources: str = "") -> MixResult:
    """Write `out_dir/train`, `out_dir/validation` and `out_dir/stats.json` (the result); each split
    directory is swapped in whole, and `MIXING_STOPPED` marks the time they are not all of one
    mixing. `work_dir` holds the partitions while this runs. The spill runs on `threads` threads (default:
    Arrow's CPU pool, the cores unless the user has set it); the shards do not depend on it. With
    `rejected_dir`, the rows dropped as duplicates or for their licence are written there (`_Rejects`).
    `intake` and `mixed_sources`: the counts and settings of the stages that made `inputs` (`MixResult`)."""
    sources = _mixed(manifest)
    for source in sources:
        if not inputs.get(source.key):
            raise FileNotFoundError(f"no filtered records for source {source.key!r}")
    shutil.rmtree(work_dir, ignore_errors=True)
    threads = threads or pa.cpu_count()
    partitions = _Partitions(work_dir / "partitions", _partition_count({s.key: inputs[s.key] for s in sources}, threads),
                             threads)
    rejects = _Rejects(rejected_dir, manifest, partitions)
    try:
        partitions.spill_all([inputs[source.key] for source in sources], manifest.seed, manifest.mixture)
        near_dedup = manifest.near_dedup is not None
        excluded, available, copies, copied, text_files = _decide(
            manifest, partitions, work_dir / "near_dedup_input" if near_dedup else None, rejects)
        members = []
        if near_dedup:
            members = _near_duplicate_members(manifest, partitions, text_files, work_dir / "near_dedup", available, copies)
        shares, holdout_deficit = _shares(manifest, available, copies)
        # What the splits hold, by source, language, licence, source x language and source x licence
        # (the breakdowns of the result)
        by = {column: Counter() for column in ("source", "language", "licence")}
        by_cell, by_source_licence = Counter(), Counter()  # (split, (source, language | licence)) -> rows
        by_input_licence = Counter()  # (split, licence) -> rows naming it in `origin.input_licences`
        tally = _Tally(excluded, rejects)
        train, held = Counter(), Counter()  # rows of each (source, cell) in train and in the holdout
        for order, chosen in _choose(partitions, sources, shares, copied, members, tally):
            key = sources[order].key
            for split, cell, language, licence, n in chosen.group_by("split", "cell", "language", "licence").len().iter_rows():
                by["source"][(split, key)] += n
                by["language"][(split, language)] += n
                by["licence"][(split, licence)] += n
                by_cell[(split, (key, language))] += n
                by_source_licence[(split, (key, licence))] += n
                (train if split == "train" else held)[(key, cell)] += n
            for split, licence, n in _input_licence_counts(chosen).iter_rows():
                by_input_licence[(split, licence)] += n
        _refuse_empty_train(manifest, train, held)
        deficits = []
        for cell in cells(manifest):
            key = (cell.source, cell.language)
            had, n_train = tally.candidates[key], train[key]
            if cell.target is not None and n_train < cell.target:
                deficits.append({"source": cell.source, "language": cell.language, "target": cell.target,
                                 "train": n_train, "deficit": cell.target - n_train, "available": had})
            # Rows a cell had beyond its holdout + train: left unsampled, counted (not copied), so
            # that every filtered row is in a split, in a rejected file or in a count.
            if unsampled := had - shares[key][0] - n_train:
                excluded[cell.source]["beyond_target"] += unsampled
        deficits += holdout_deficit
        footers = _shard_footers(partitions, sources, manifest)
        staging = {split: out_dir / f".{split}.staging" for split in SPLITS}
        for directory in staging.values():
            shutil.rmtree(directory, ignore_errors=True)
        # All sources' rows go out in one rank order, partition by partition: a training job that
        # reads a split in order (or a rank's stride of it) meets the sources mixed, not one after
        # another. Shards are the same whatever the number and order of the workers' part files.
        # Three threads at once: the next partition is read, this one's row groups are cut, and
        # the last ones are compressed.
        # closing: on an error, the prefetch thread is joined before `work_dir` is removed under it.
        with (ThreadPoolExecutor(1, thread_name_prefix="sftmix-shards") as shard_pool,
              closing(_prefetched(_mixed_partitions(partitions, sources))) as mixed):
            writers = {split: _SplitWriter(staging[split], manifest.shard_rows, footers[split], shard_pool)
                       for split in SPLITS}
            for rows, in_rank_order in mixed:
                for split, indices in in_rank_order.items():
                    for start in range(0, len(indices), ROW_GROUP_ROWS):  # copies of a row group at a time
                        writers[split].write(rows.take(indices.slice(start, ROW_GROUP_ROWS)))
                del rows
                release_unused()
            for writer in writers.values():
                writer.close()
        # From here until stats.json is written, the mixture directory may hold the splits, rejected
        # files and stats.json of two mixings (a run stopped between its renames): the marker says so.
        write_text_whole(out_dir / MIXING_STOPPED, manifest.hash)
        # the last mixing's card describes the splits being replaced: none until this one's is written
        (out_dir / CARD).unlink(missing_ok=True)
        files = {}
        for split, writer in writers.items():
            final = out_dir / split
            shutil.rmtree(final, ignore_errors=True)
            staging[split].rename(final)
            files[split] = [str(final / f.name) for f in writer.files]
        rejects.close()
    except BaseException:
        rejects.abort()
        raise
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    split_rows = Counter()
    for (split, _), n in by["source"].items():
        split_rows[split] += n
    result = MixResult(
        out_dir=out_dir,
        split_rows={s: split_rows[s] for s in SPLITS},
        by_source=_breakdown(by["source"]),
        by_language=_breakdown(by["language"]),
        by_licence=_breakdown(by["licence"]),
        by_cell=_breakdown_by_source(by_cell),
        by_source_licence=_breakdown_by_source(by_source_licence),
        by_input_licence=_breakdown(by_input_licence),
        deficits=deficits,
        excluded=_exclusions(manifest, excluded),
        files=files,
        manifest_hash=manifest.hash,
        mixed_sources=mixed_sources,
        intake=intake or {},
    )
    write_text_whole(out_dir / STATS, json.dumps(result.to_json(), indent=2, ensure_ascii=False))
    (out_dir / MIXING_STOPPED).unlink()
    return result
