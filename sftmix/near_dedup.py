"""Near-duplicate rows across the sources of a mixture: MinHash LSH with datatrove's minhash steps.

`near_duplicates` reads every candidate row's user + assistant text (assistant tool calls included
as `name arguments`) straight from the filtered Parquet files, Arrow batch by Arrow batch, and runs
datatrove's three minhash stages on it:

1. `MinhashDedupSignature` (subclassed, see `RecordMinhashSignature`): one signature per row
   over word 5-grams of the text normalized by datatrove's `simplify_text` (lower case,
   punctuation and diacritics removed, whitespace collapsed; numbers are *kept*, so
   "convert 255 0 0" and "convert 0 255 0" stay distinct), written per worker. Each band holds
   `rows_per_band` hashes of the whole text's shingles and `ASSISTANT_ROWS_PER_BAND` of the
   assistant text's alone.
2. `MinhashDedupBuckets`: rows whose signatures agree on a whole band are pairs: their whole texts
   AND their assistant texts are near duplicates. With 14 bands of 8 + 4 rows a pair whose texts
   (both) have Jaccard similarity 0.9 is found with p = 0.99, 0.8 with p = 0.63, 0.5 with p < 0.004;
   a pair whose answers are equal is found as by the whole text alone (0.8: p = 0.92, 0.5: 0.05). The
   assistant hashes keep different questions about one passage apart (reading-comprehension and
   RAG rows: question, passage and answer in the text, the passage most of it; long-context QA: the
   same document in every row): the passage made their whole texts near duplicates (5 questions
   on a 120-word passage: 29% of the rows were dropped), their answers are not.
3. `MinhashDedupCluster`: the pairs' connected components (`save_cluster_id`).

The clusters are then resolved here, not by datatrove's arbitrary union-find root: each cluster keeps
the row of the earliest source (the order of `sources`, i.e. manifest order), then the smallest id.
That makes the result independent of the number of workers and of the order of the files.

A row whose text has fewer words than `ngram` gets no signature and is never a near duplicate (the
exact-id dedup still applies to it). An assistant text shorter than `ngram` words is one shingle
(the empty text too): two short answers agree only when equal. Rows whose id repeats (an exact
duplicate) end up in the same cluster as the first copy; they are not reported here (mixing drops
exact duplicates before).

Memory: one Arrow batch of text at a time, the signatures of one task while datatrove sorts them
(`num_bands * (8 * (rows_per_band + ASSISTANT_ROWS_PER_BAND) + 4)` bytes per row, a band at a
time, on disk in `work_dir`), and the clusters. A task takes about `SIGNATURE_TASK_ROWS` rows at
most (there are more tasks than workers when the rows need it), so this does not grow with the rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                              MinhashDedupSignature)
from datatrove.utils.hashing import HashConfig
from datatrove.utils.text import TextNormConfig, simplify_text
from datatrove.utils.typeshelper import StatHints
from datatrove.utils.word_tokenizers import WordTokenizer

from filters.words import spaced_ideographs
from sftmix.jsontext import encoder, loads

BATCH_ROWS = 1024
SIGNATURE_BATCH_ROWS = 1024  # signatures packed and written together
# Rows of one signature task, about, at most: datatrove sorts each task's band files in memory, and the
# clusters are resolved against each task's ids, both a task at a time (about 130 bytes a row).
SIGNATURE_TASK_ROWS = 500_000
_IDS_SCHEMA = pa.schema([("id", pa.string()), ("order", pa.int32())])
# Hashes of the assistant text in each band, after the whole text's `rows_per_band`: a band agrees
# with probability J_whole^rows_per_band * J_assistant^4. Answers about one long document (J_whole
# near 1) sharing 10% of their shingles are paired with p = 0.0014 (one hash: p = 0.77, two: 0.13).
ASSISTANT_ROWS_PER_BAND = 4


class WhitespaceTokenizer(WordTokenizer):
    """Words of text already simplified by datatrove (punctuation turned into spaces).

    datatrove's default tokenizers load spaCy/NLTK per language; after `simplify_text` splitting on
    whitespace gives the same words for space-delimited scripts. Chinese and Japanese put no space
    between words: each ideograph and kana is one (a clause as one word, a one-character edit of a
    208-character conversation changed half its shingles, and no near-duplicate was found).
    """

    def __init__(self):
        super().__init__("xx")

    def word_tokenize(self, text: str) -> list[str]:
        return spaced_ideographs(text).split()

    def sent_tokenize(self, text: str) -> list[str]:
        return [text]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [(0, len(text))]


_POLY = np.uint64(0x9E3779B97F4A7C15)
_MERSENNE = np.uint64((1 << 61) - 1)  # datatrove's modulus for its permutations
_SHIFT = np.uint64(61)


class RecordMinhashSignature(MinhashDedupSignature):
    """datatrove's signature step, with the same shingles and signatures computed faster, and the
    last `ASSISTANT_ROWS_PER_BAND` hashes of each band over the shingles of the document's
    `metadata["assistant"]` text (a text that is all assistant's is signed as datatrove signs it).

    - `simplify_text` skips its per-character diacritics pass on ASCII text (a no-op there) and its
      whitespace collapsing (the text is split on whitespace next: `\\s`, what it collapses, is
      exactly what `str.split` splits at; 44 µs of 50 on a bench text of 250 words);
    - each word is hashed once (xxh3-64) and an n-gram's hash is the polynomial
      sum(h[i + k] * P^(n-1-k)) mod 2^64 of its words' hashes, computed with numpy, instead of sha1
      over the joined n-gram string: several times faster, collisions as rare (2^-64 scale);
      xxh3 rather than polars' hash (`filters.batch_words`), because signatures are written to
      files and must not change with a library version;
    - `get_signature` reduces modulo 2^61 - 1 with shifts and masks (`_min_mod_mersenne`);
    - `run` writes the signature files `SIGNATURE_BATCH_ROWS` rows at a time.
    Hash functions, bands, sorting and file formats are datatrove's.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        norm = dataclasses.replace(self.config.norm_config, norm_whitespace=False)
        self._norms = (dataclasses.replace(norm, norm_unicode_diacritics=False), norm)  # ASCII, other text
        self._signed_rows: dict[int, int] = {}  # rank -> documents signed, while `run` has datatrove sort them
        # (indices, a, b) of the hash functions that sign the whole text (each band's first ones) and of
        # those that sign the assistant text (its last ASSISTANT_ROWS_PER_BAND), sliced once
        bands = np.arange(self.num_hashes).reshape(self.config.num_buckets, -1)
        a, b = self.parameters
        self._whole_functions, self._assistant_functions = (
            (columns, a[:, columns], b[:, columns]) for columns in
            (bands[:, :-ASSISTANT_ROWS_PER_BAND].ravel(), bands[:, -ASSISTANT_ROWS_PER_BAND:].ravel()))

    def words(self, text: str) -> list[str]:
        """The words of `simplify_text(text, norm_config)`, which datatrove's shingles are made of."""
        return self.word_tokenizer.word_tokenize(simplify_text(text, self._norms[not text.isascii()]))

    def get_shingles(self, text: str) -> np.ndarray:
        return _window_hashes(self.words(text), self.config.n_grams).reshape((-1, 1))

    def assistant_shingles(self, text: str) -> np.ndarray:
        """`get_shingles`, or when `text` has fewer than `n_grams` words, its words as one shingle:
        "Paris." and "London." answering two questions about one passage differ."""
        words = self.words(text) or [""]
        return _window_hashes(words, min(self.config.n_grams, len(words))).reshape((-1, 1))

    def get_signature(self, shingles: np.ndarray) -> list[list[int]]:
        """datatrove's signature: per hash function (a, b), min((a * s + b) mod 2^64 mod (2^61 - 1))
        over the shingles s, as `num_buckets` lists (one `reshape`, where datatrove splits the array
        in 14 and converts each part). 134 -> 64 µs a bench text of 250 shingles."""
        return self._minima(shingles).reshape(self.config.num_buckets, -1).tolist()

    def _minima(self, shingles: np.ndarray, functions: tuple[np.ndarray, ...] | None = None) -> np.ndarray:
        """The signature as one array of `num_buckets * hashes_per_bucket` hashes, or its hashes by
        `functions` ((indices, a, b) of some hash functions)."""
        if self.config.hash_config.precision != 64:  # 32 bits: datatrove masks before the minimum
            minima = np.array(super().get_signature(shingles), self.config.hash_config.np_dtype).reshape(-1)
            return minima if functions is None else minima[functions[0]]
        _, a, b = functions or (None, *self.parameters)
        values = shingles * a
        values += b
        return _min_mod_mersenne(values)

    def _document_minima(self, shingles: np.ndarray, assistant_text: str) -> np.ndarray:
        """A document's signature: each band the whole text's hashes, then the assistant text's."""
        bands = self.config.num_buckets
        return np.concatenate((self._minima(shingles, self._whole_functions).reshape(bands, -1),
                               self._minima(self.assistant_shingles(assistant_text),
                                            self._assistant_functions).reshape(bands, -1)), axis=1).reshape(-1)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> None:
        """datatrove's run, with this rank's signature files written `SIGNATURE_BATCH_ROWS` rows at
        a time (datatrove packs and writes each row's bands one by one: a `struct.pack` and a file
        write each, 14 a row). datatrove then sorts and verifies the files, as it does for the files
        of an earlier run (`check_can_skip_sig_writing`)."""
        if not self.check_can_skip_sig_writing(rank)[0]:  # datatrove's own resume (skip_existing_sigs)
            with self.track_time():
                self._signed_rows[rank] = self._write_signatures(data, rank)
        try:
            super().run(data, rank, world_size)
        finally:
            self._signed_rows.pop(rank, None)

    def check_can_skip_sig_writing(self, rank: int) -> tuple[bool, int | None]:
        if rank in self._signed_rows:  # written by `run` just now
            return True, self._signed_rows[rank]
        return super().check_can_skip_sig_writing(rank)

    def _write_signatures(self, data: DocumentsPipeline, rank: int) -> int:
        """This rank's unsorted signature files, byte for byte datatrove's: per band, one record
        `<{hashes_per_bucket}{struct_format}I` (the band's hashes, then the document's index in the
        stream) for each document that has shingles. Returns the number of those documents."""
        config = self.config
        record = np.dtype([("hashes", f"<{config.hash_config.struct_format}", (config.hashes_per_bucket,)),
                           ("index", "<u4")])  # packed, as struct's "<" layout
        signed = documents = 0
        with contextlib.ExitStack() as stack:
            buckets = [stack.enter_context(self.output_folder.open(f"bucket_{band:03d}/{rank:05d}.minhash.sig", mode="wb"))
                       for band in range(config.num_buckets)]

            def write(minima: list[np.ndarray], indices: list[int]) -> int:
                if not indices:
                    return 0
                records = np.empty((len(indices), config.num_buckets), record)
                records["hashes"] = np.stack(minima).reshape(len(indices), config.num_buckets, -1)
                records["index"] = np.array(indices, np.uint32)[:, None]
                for band, bucket in enumerate(buckets):
                    bucket.write(records[:, band].tobytes())
                return len(indices)

            minima, indices = [], []
            for doc in data:
                shingles = self.get_shingles(doc.text)
                if shingles.size != 0:
                    minima.append(self._document_minima(shingles, doc.metadata["assistant"]))
                    indices.append(documents)
                    if len(indices) == SIGNATURE_BATCH_ROWS:
                        signed += write(minima, indices)
                        minima, indices = [], []
                documents += 1
            signed += write(minima, indices)
        if documents:
            self.stat_update(StatHints.total, value=documents)
        return signed


def _window_hashes(words: list[str], n: int) -> np.ndarray:
    """The 64-bit hash of every run of `n` consecutive words (none when there are fewer)."""
    hashes = np.fromiter(map(xxhash.xxh3_64_intdigest, map(str.encode, words)), np.uint64, len(words))
    count = len(hashes) - n + 1
    if count <= 0:
        return np.empty(0, np.uint64)
    windows = hashes[:count].copy()
    for k in range(1, n):
        windows *= _POLY
        windows += hashes[k:k + count]
    return windows


def _min_mod_mersenne(values: np.ndarray) -> np.ndarray:
    """`np.min(values % (2^61 - 1), axis=0)`; `values` is overwritten.

    x = hi * 2^61 + lo is congruent to lo + hi (2^61 = 1 mod 2^61 - 1), which is below 2^61 + 7:
    that is x's remainder unless it reaches 2^61 - 1, which for random x happens about once in 2^58,
    and then the exact remainder is taken. numpy's `%` on uint64 divides: 59 µs for 250 x 112
    values, against about 34 µs for this and the minimum together."""
    high = values >> _SHIFT
    values &= _MERSENNE
    values += high
    if (values >= _MERSENNE).any():
        values %= _MERSENNE
    return values.min(axis=0)


def minhash_config(threshold_bands: int = 14, rows_per_band: int = 8, ngram: int = 5) -> MinhashConfig:
    """Bands x (rows + `ASSISTANT_ROWS_PER_BAND`) 64-bit hashes over word n-grams; numbers kept (not
    normalized to 0).

    The hash function named here is not used by `RecordMinhashSignature` (it hashes words itself);
    sha1 because datatrove's xxhash wrapper passes str, which xxhash >= 4 rejects."""
    return MinhashConfig(n_grams=ngram, num_buckets=threshold_bands,
                         hashes_per_bucket=rows_per_band + ASSISTANT_ROWS_PER_BAND, seed=1,
                         norm_config=TextNormConfig(norm_numbers=False),
                         hash_config=HashConfig(precision=64, hash_fc="sha1"))


_SORTED_KEYS = encoder(ensure_ascii=False, sort_keys=True)


def _arguments_text(arguments: str | None) -> str:
    """A call's arguments with their keys sorted: the same call written `{"unit", "city"}` by one
    source and `{"city", "unit"}` by another shared few shingles, and both copies were kept."""
    try:
        value = loads(arguments or "")
    except (ValueError, RecursionError):
        return arguments or ""
    return _SORTED_KEYS(value) if isinstance(value, dict) else arguments


def batch_texts(messages: pa.Array) -> list[tuple[str, str]]:
    """(user + assistant text, assistant text) of each row of a `messages` column chunk (turns
    joined by newlines); an assistant tool call contributes `name arguments`, the arguments' keys
    sorted."""
    n = len(messages)
    parts: list[list[str]] = [[] for _ in range(n)]
    assistant_parts: list[list[str]] = [[] for _ in range(n)]
    if n == 0:
        return []
    flat = pc.list_flatten(messages)
    parents = pc.list_parent_indices(messages).to_pylist()
    roles = pc.struct_field(flat, "role").to_pylist()  # struct_field honours slice offsets
    contents = pc.struct_field(flat, "content").to_pylist()
    calls = pc.struct_field(flat, "tool_calls")
    call_text: dict[int, list[str]] = {}
    if calls.null_count < len(calls):
        call_flat = pc.list_flatten(calls)
        if len(call_flat):
            call_parents = pc.list_parent_indices(calls).to_pylist()
            names = pc.struct_field(call_flat, ["function", "name"]).to_pylist()
            arguments = pc.struct_field(call_flat, ["function", "arguments"]).to_pylist()
            for msg, name, args in zip(call_parents, names, arguments):
                call_text.setdefault(msg, []).append(f"{name or ''} {_arguments_text(args)}")
    for index, (row, role, content) in enumerate(zip(parents, roles, contents)):
        if role == "user":
            if content:
                parts[row].append(content)
        elif role == "assistant":
            turn = [content] if content else []
            turn += call_text.get(index, ())
            parts[row] += turn
            assistant_parts[row] += turn
    return [("\n".join(p), "\n".join(a)) for p, a in zip(parts, assistant_parts)]


class RecordTextReader(PipelineStep):
    """Documents (id, user + assistant text, `metadata["assistant"]`: the assistant text) from
    canonical-record Parquet files, read in Arrow batches.

    Work is dealt round-robin by row group over all sources' files, so workers get similar shares
    whatever the file sizes. Task `rank` also writes `<ids_dir>/<rank>.parquet`: the id and source
    order of every document it emits, in emission order, which maps the signature step's document
    index back to the record.
    """

    name = "canonical records (id, text)"
    type = "📖 - READER"

    def __init__(self, sources: list[tuple[str, list[str]]], ids_dir: str, batch_rows: int = BATCH_ROWS):
        super().__init__()
        self.sources, self.ids_dir, self.batch_rows = sources, ids_dir, batch_rows

    def units(self) -> list[tuple[int, str, int, int]]:
        """(source order, file, row group, its rows) of every row group: task `rank` of `world_size`
        reads every `world_size`-th of them."""
        units = []
        for order, (_, files) in enumerate(self.sources):
            for path in files:
                metadata = pq.ParquetFile(path).metadata
                units += [(order, str(path), group, metadata.row_group(group).num_rows)
                          for group in range(metadata.num_row_groups)]
        return units

    def run(self, data=None, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        if data:
            yield from data
        ids_path = Path(self.ids_dir) / f"{rank:05d}.parquet"
        ids_path.parent.mkdir(parents=True, exist_ok=True)
        with pq.ParquetWriter(ids_path, _IDS_SCHEMA) as ids_writer:
            for index, (order, path, group, _) in enumerate(self.units()):
                if index % world_size != rank:
                    continue
                parquet = pq.ParquetFile(path)
                for batch in parquet.iter_batches(batch_size=self.batch_rows, row_groups=[group],
                                                  columns=["id", "messages"]):
                    if not batch.num_rows:
                        continue
                    ids = batch.column("id")
                    ids_writer.write_table(pa.table({"id": ids, "order": pa.array(np.full(len(ids), order, np.int32))},
                                                    schema=_IDS_SCHEMA))
                    self.stat_update("documents", value=batch.num_rows)  # once a batch: 0.7 µs a call
                    for row_id, (text, assistant) in zip(ids.to_pylist(), batch_texts(batch.column("messages"))):
                        yield Document(text=text, id=row_id, metadata={"assistant": assistant})


def _run_steps(pipeline: list[PipelineStep], tasks: int, workers: int, logging_dir: Path) -> None:
    """Run `pipeline` as `tasks` tasks: in this process when there is one worker, else through
    datatrove's local executor (one process per worker)."""
    if workers <= 1:
        for rank in range(tasks):
            data = None
            for step in pipeline:
                data = step(data, rank, tasks)
            if data is not None:
                for _ in data:
                    pass
        return
    from datatrove.executor import LocalPipelineExecutor

    LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=min(workers, tasks), logging_dir=str(logging_dir),
                          skip_completed=False).run()


def _read_clusters(cluster_dir: Path) -> pl.DataFrame:
    """(rank, doc, cluster) of every row that is in a cluster of two or more."""
    frames = []
    for path in sorted(cluster_dir.glob("*.clusters")):
        pairs = np.frombuffer(path.read_bytes(), dtype="<u4").reshape(-1, 2)
        frames.append(pl.DataFrame({"rank": np.full(len(pairs), int(path.stem), np.int32),
                                    "doc": pairs[:, 0].astype(np.int64), "cluster": pairs[:, 1].astype(np.int64)}))
    if not frames:
        return pl.DataFrame(schema={"rank": pl.Int32, "doc": pl.Int64, "cluster": pl.Int64})
    return pl.concat(frames)


def near_duplicates(
    sources: list[tuple[str, list[Path]]],
    work_dir: Path,
    *,
    threshold_bands: int = 14,
    rows_per_band: int = 8,
    ngram: int = 5,
    workers: int = 1,
) -> dict[str, tuple[str, str]]:
    """Removed record id -> (kept record id, kept record's source) for every near-duplicate cluster.

    `sources` are (source key, Parquet files of the rows to compare: `id` and `messages`) in
    manifest order; in each cluster the row of the earliest source is kept, then the smallest id.
    The caller writes only the rows it may select (the mixing: its candidates after the licence and
    exact-id checks), so a row is never removed in favour of one that will not be selected anyway.
    `work_dir` holds the signatures while this runs (emptied first, intermediate files removed at
    the end).
    """
    if threshold_bands < 1 or rows_per_band < 1 or ngram < 1:
        raise ValueError("threshold_bands, rows_per_band and ngram must be positive")
    work_dir = Path(work_dir)
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    config = minhash_config(threshold_bands, rows_per_band, ngram)
    dirs = {name: work_dir / name for name in ("ids", "signatures", "buckets", "clusters", "logs")}
    keys = [key for key, _ in sources]
    if len(set(keys)) != len(keys):
        raise ValueError("source keys must be unique")
    plain_sources = [(key, [str(f) for f in files]) for key, files in sources]
    workers = max(1, int(workers))

    reader = RecordTextReader(plain_sources, str(dirs["ids"]))
    units = reader.units()
    # At least a task a worker, and enough that each holds about SIGNATURE_TASK_ROWS rows' signatures
    # and ids at most (row groups go round the tasks): memory then stays flat in the number of rows.
    tasks = max(1, min(len(units), max(workers, -(-sum(rows for *_, rows in units) // SIGNATURE_TASK_ROWS))))
    signature = RecordMinhashSignature(str(dirs["signatures"]), config=config, language=WhitespaceTokenizer())
    _run_steps([reader, signature],
               tasks, workers, dirs["logs"] / "signatures")
    _run_steps([MinhashDedupBuckets(str(dirs["signatures"]), str(dirs["buckets"]), config=config)],
               threshold_bands, workers, dirs["logs"] / "buckets")
    _run_steps([MinhashDedupCluster(str(dirs["buckets"]), str(dirs["clusters"]), config=config, save_cluster_id=True)],
               1, 1, dirs["logs"] / "clusters")

    clusters = _read_clusters(dirs["clusters"])
    removed: dict[str, tuple[str, str]] = {}
    if len(clusters):
        members = []
        for rank in sorted(set(clusters["rank"].to_list())):
            ids = pl.read_parquet(dirs["ids"] / f"{rank:05d}.parquet").with_row_index("doc")
            part = clusters.filter(pl.col("rank") == rank).join(
                ids.with_columns(pl.col("doc").cast(pl.Int64)), on="doc", how="inner")
            if len(part) != int((clusters["rank"] == rank).sum()):
                raise RuntimeError(f"minhash task {rank}: cluster rows do not match the documents it read")
            members.append(part.select("cluster", "id", "order"))
        table = pl.concat(members).sort("cluster", "order", "id")
        keepers = table.group_by("cluster", maintain_order=True).first().rename({"id": "kept", "order": "kept_order"})
        table = table.join(keepers, on="cluster").filter(pl.col("id") != pl.col("kept")).unique("id", keep="first")
        for row_id, kept, kept_order in table.select("id", "kept", "kept_order").iter_rows():
            removed[row_id] = (kept, keys[kept_order])
    for name in ("signatures", "buckets", "clusters", "ids"):
        shutil.rmtree(dirs[name], ignore_errors=True)
    return removed


def write_removed(removed: dict[str, tuple[str, str]], path: Path) -> None:
    """The removal map as Parquet (id, kept_id, kept_source), e.g. for the rejected report."""
    items = sorted(removed.items())
    pq.write_table(pa.table({"id": [i for i, _ in items], "kept_id": [k for _, (k, _) in items],
                             "kept_source": [s for _, (_, s) in items]}), path)


__all__ = ["near_duplicates", "write_removed", "batch_texts", "minhash_config", "RecordTextReader",
           "RecordMinhashSignature", "WhitespaceTokenizer"]
