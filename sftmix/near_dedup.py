"""Near-duplicate rows across the sources of a mixture: MinHash LSH with datatrove's minhash steps.

`near_duplicates` reads every candidate row's user + assistant text (assistant tool calls included
as `name arguments`) straight from the filtered Parquet files, Arrow batch by Arrow batch, and runs
datatrove's three minhash stages on it:

1. `MinhashDedupSignature` (subclassed, see `RecordMinhashSignature`): one signature per row
   over word 5-grams of the text normalized by datatrove's `simplify_text` (lower case,
   punctuation and diacritics removed, whitespace collapsed; numbers are *kept*, so
   "convert 255 0 0" and "convert 0 255 0" stay distinct), written per worker; and an answer
   signature (`ANSWER_HASHES` hashes of the assistant text's word `ANSWER_NGRAM`-grams) per row.
2. `MinhashDedupBuckets`: rows whose signatures agree on a whole band (`rows_per_band` hashes) are
   pairs; with 14 bands of 8 rows a pair of rows with Jaccard similarity 0.8 is found with p = 0.92,
   0.9 with p > 0.99, 0.5 with p < 0.06.
3. `MinhashDedupCluster`: the pairs' connected components (`save_cluster_id`).

The clusters are then split and resolved here, not by datatrove's arbitrary union-find root. In
each cluster, rows taken in keep order (the earliest source, i.e. manifest order, then the
smallest id) go with the first kept row whose answers are like theirs, or are kept: as many
assistant turns, and answer signatures that agree on at least `ANSWER_MATCHES` hashes (answers
with Jaccard similarity about 0.25 or more). That keeps different questions about one passage
apart (reading-comprehension and RAG rows: question, passage and answer in the text, the passage
most of it; long-context QA: the same document in every row): the passage made their whole texts
near duplicates (5 questions on a 120-word passage: 29% of the rows were dropped), their answers
are not. It also keeps a conversation extended by turns (multi-turn augmentation) apart from its
original, which it holds whole (of 300 with a 400-word answer and a 150-word turn added, 165 were
dropped for their original). The answers are checked after clustering, not in the bands, so that
a short answer edited is found as the whole text finds it (bands of whole-text and answer hashes
together found 26% of the one-typo copies of 10-25-word answers, the whole text 80%). The price:
short answers in one frame ("The answer is B." / "The answer is D.") are alike, as a typo is. The
result does not depend on the number of workers or the order of the files.

A row whose text has fewer words than `ngram` gets no signature and is never a near duplicate (the
exact-id dedup still applies to it). An answer shorter than `ANSWER_NGRAM` words is one shingle
(the empty answer too): two such answers agree only when equal. Rows whose id repeats (an exact
duplicate) end up in the same cluster as the first copy; they are not reported here (mixing drops
exact duplicates before).

Memory: one Arrow batch of text at a time, the signatures of one task while datatrove sorts them
(`num_bands * (8 * rows_per_band + 4)` bytes per row, a band at a time, on disk in `work_dir`,
with `4 * (1 + ANSWER_HASHES)` bytes a row of answers), and the clusters with their answers. A task takes about `SIGNATURE_TASK_ROWS` rows at most (there are more tasks than
workers when the rows need it), so this does not grow with the rows.
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
# The answer check. Word 3-grams, not the whole text's 5-grams: a typo in a 10-word answer changes
# 3 of its 8 trigrams (Jaccard 0.45) but 5 of its 6 five-grams (0.09). 8 of 32 hashes: answers of
# Jaccard 0.45 stay together with p = 0.99, answers sharing a quoted phrase (0.1) with p = 0.01.
ANSWER_HASHES = 32
ANSWER_NGRAM = 3
ANSWER_MATCHES = 8


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
    """datatrove's signature step, with the same shingles and signatures computed faster, that
    also writes each document's answers to `<answers_dir>/<rank>.answers`, in document order: its
    number of assistant turns (`metadata["turns"]`), then the answer signature of its assistant
    text (`metadata["assistant"]`), `1 + ANSWER_HASHES` uint32 (zeros for a document with no
    signature).

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
    Signatures, bands, sorting and file formats are datatrove's.
    """

    def __init__(self, output_folder: str, answers_dir: str, **kwargs):
        super().__init__(output_folder, **kwargs)
        self.answers_dir = answers_dir
        norm = dataclasses.replace(self.config.norm_config, norm_whitespace=False)
        self._norms = (dataclasses.replace(norm, norm_unicode_diacritics=False), norm)  # ASCII, other text
        self._signed_rows: dict[int, int] = {}  # rank -> documents signed, while `run` has datatrove sort them
        # the answer signature's hash functions (a, b), drawn apart from datatrove's
        draw = np.random.default_rng(self.config.seed).integers
        self._answer_functions = (draw(1, int(_MERSENNE), size=(1, ANSWER_HASHES), dtype=np.uint64),
                                  draw(0, int(_MERSENNE), size=(1, ANSWER_HASHES), dtype=np.uint64))

    def words(self, text: str) -> list[str]:
        """The words of `simplify_text(text, norm_config)`, which datatrove's shingles are made of."""
        return self.word_tokenizer.word_tokenize(simplify_text(text, self._norms[not text.isascii()]))

    def get_shingles(self, text: str) -> np.ndarray:
        return _window_hashes(self.words(text), self.config.n_grams).reshape((-1, 1))

    def answer_signature(self, text: str) -> np.ndarray:
        """`ANSWER_HASHES` min-hashes (their low 32 bits) of the word `ANSWER_NGRAM`-grams of `text`,
        or when it has fewer words, of its words as one shingle: "Paris." and "London." answering
        two questions about one passage differ."""
        words = self.words(text) or [""]
        values = _window_hashes(words, min(ANSWER_NGRAM, len(words))).reshape((-1, 1)) * self._answer_functions[0]
        values += self._answer_functions[1]
        return _min_mod_mersenne(values).astype(np.uint32)

    def get_signature(self, shingles: np.ndarray) -> list[list[int]]:
        """datatrove's signature: per hash function (a, b), min((a * s + b) mod 2^64 mod (2^61 - 1))
        over the shingles s, as `num_buckets` lists (one `reshape`, where datatrove splits the array
        in 14 and converts each part). 134 -> 64 µs a bench text of 250 shingles."""
        return self._minima(shingles).reshape(self.config.num_buckets, -1).tolist()

    def _minima(self, shingles: np.ndarray) -> np.ndarray:
        """The signature as one array of `num_buckets * hashes_per_bucket` hashes."""
        if self.config.hash_config.precision != 64:  # 32 bits: datatrove masks before the minimum
            return np.array(super().get_signature(shingles), self.config.hash_config.np_dtype).reshape(-1)
        a, b = self.parameters
        values = shingles * a
        values += b
        return _min_mod_mersenne(values)

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
        stream) for each document that has shingles; and its answer signatures. Returns the number
        of those documents."""
        config = self.config
        record = np.dtype([("hashes", f"<{config.hash_config.struct_format}", (config.hashes_per_bucket,)),
                           ("index", "<u4")])  # packed, as struct's "<" layout
        unsigned = np.zeros(1 + ANSWER_HASHES, np.uint32)
        answers_path = Path(self.answers_dir) / f"{rank:05d}.answers"
        answers_path.parent.mkdir(parents=True, exist_ok=True)
        signed = documents = 0
        with contextlib.ExitStack() as stack:
            buckets = [stack.enter_context(self.output_folder.open(f"bucket_{band:03d}/{rank:05d}.minhash.sig", mode="wb"))
                       for band in range(config.num_buckets)]
            answers_file = stack.enter_context(answers_path.open("wb"))

            def write(minima: list[np.ndarray], indices: list[int], answers: list[np.ndarray]) -> int:
                if answers:
                    answers_file.write(np.stack(answers).astype("<u4", copy=False).tobytes())
                if not indices:
                    return 0
                records = np.empty((len(indices), config.num_buckets), record)
                records["hashes"] = np.stack(minima).reshape(len(indices), config.num_buckets, -1)
                records["index"] = np.array(indices, np.uint32)[:, None]
                for band, bucket in enumerate(buckets):
                    bucket.write(records[:, band].tobytes())
                return len(indices)

            minima, indices, answers = [], [], []
            for doc in data:
                shingles = self.get_shingles(doc.text)
                if shingles.size != 0:
                    minima.append(self._minima(shingles))
                    indices.append(documents)
                    answers.append(np.r_[np.uint32(doc.metadata["turns"]), self.answer_signature(doc.metadata["assistant"])])
                else:
                    answers.append(unsigned)
                documents += 1
                if len(answers) == SIGNATURE_BATCH_ROWS:
                    signed += write(minima, indices, answers)
                    minima, indices, answers = [], [], []
            signed += write(minima, indices, answers)
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
    """Bands x rows of 64-bit hashes over word n-grams; numbers kept (not normalized to 0).

    The hash function named here is not used by `RecordMinhashSignature` (it hashes words itself);
    sha1 because datatrove's xxhash wrapper passes str, which xxhash >= 4 rejects."""
    return MinhashConfig(n_grams=ngram, num_buckets=threshold_bands, hashes_per_bucket=rows_per_band, seed=1,
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


def batch_texts(messages: pa.Array) -> list[tuple[str, str, int]]:
    """(user + assistant text, assistant text, assistant turns) of each row of a `messages` column
    chunk (turns joined by newlines); an assistant tool call contributes `name arguments`, the
    arguments' keys sorted."""
    n = len(messages)
    parts: list[list[str]] = [[] for _ in range(n)]
    assistant_parts: list[list[str]] = [[] for _ in range(n)]
    assistant_turns = [0] * n
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
            assistant_turns[row] += 1
    return [("\n".join(p), "\n".join(a), t) for p, a, t in zip(parts, assistant_parts, assistant_turns)]


class RecordTextReader(PipelineStep):
    """Documents (id, user + assistant text, `metadata`: `assistant`, the assistant text, and
    `turns`, its number of turns) from canonical-record Parquet files, read in Arrow batches.

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
                    for row_id, (text, assistant, turns) in zip(ids.to_pylist(), batch_texts(batch.column("messages"))):
                        yield Document(text=text, id=row_id, metadata={"assistant": assistant, "turns": turns})


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


def _alike(answers: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Whether rows' answers (assistant turns, answer signature) are alike: as many turns, and
    `ANSWER_MATCHES` hashes or more in common. A conversation extended by turns (multi-turn
    augmentation keeps the original's unchanged) is not a near copy of its original."""
    return (answers[..., 0] == other[..., 0]) & ((answers[..., 1:] == other[..., 1:]).sum(axis=-1) >= ANSWER_MATCHES)


def _kept_rows(clusters: np.ndarray, answers: np.ndarray) -> np.ndarray:
    """For rows sorted by cluster, then in keep order, and their answers: the index of the row each
    goes with (its own when it is kept). A cluster's first row is kept; each later row goes with
    the first kept row of its cluster whose answers are like its own (`_alike`), or is kept. A
    removed row's answer is then like its kept row's, not only like another removed row's."""
    kept = np.arange(len(clusters))
    starts = np.flatnonzero(np.r_[True, clusters[1:] != clusters[:-1]])
    sizes = np.diff(np.r_[starts, len(clusters)])
    pairs = starts[sizes == 2]  # most clusters: compared at once
    alike = _alike(answers[pairs], answers[pairs + 1])
    kept[pairs[alike] + 1] = pairs[alike]
    for start, size in zip(starts[sizes > 2].tolist(), sizes[sizes > 2].tolist()):
        # The kept rows so far are looked up by hash (position * 2^32 + hash): a row is compared only
        # with those it shares one with. Compared with every kept row, a cluster whose answers all
        # differ (rows sharing a long prompt) took 67 s for 32,000 rows, 0.8 s so. Ints, and lists
        # only for a hash two kept rows share: millions of small containers made the garbage
        # collector the cost. A row sharing hashes with many kept rows (answers in one template) is
        # compared with all of them at once instead.
        first_kept: dict[int, int] = {}
        more_kept: dict[int, list[int]] = {}
        leaders = np.empty(size, np.int64)  # the kept rows in keep order, and their answers
        leader_answers = np.empty((size, answers.shape[1]), answers.dtype)
        count = 0
        rows_keys = ((np.arange(ANSWER_HASHES, dtype=np.uint64) << np.uint64(32))
                     | answers[start:start + size, 1:].astype(np.uint64)).tolist()
        for row, keys in zip(range(start, start + size), rows_keys):
            shared = [key for key in keys if key in first_kept]
            if sum(len(more_kept.get(key, ())) for key in shared) + len(shared) > count // 4:
                alike = np.flatnonzero(_alike(leader_answers[:count], answers[row]))
                found = leaders[alike[0]] if len(alike) else None
            else:
                candidates = sorted({first_kept[key] for key in shared}.union(
                    *(more_kept[key] for key in shared if key in more_kept)))
                alike = np.flatnonzero(_alike(answers[candidates], answers[row])) if candidates else ()
                found = candidates[alike[0]] if len(alike) else None
            if found is not None:
                kept[row] = found
                continue
            leaders[count], leader_answers[count] = row, answers[row]
            count += 1
            for key in keys:
                if first_kept.setdefault(key, row) != row:
                    more_kept.setdefault(key, []).append(row)
    return kept


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
    manifest order; in each cluster the row of the earliest source is kept, then the smallest id,
    and the rows whose answers are not like a kept row's are kept too (`_kept_rows`). The caller writes only the rows it may select (the mixing: its candidates after the licence and
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
    dirs = {name: work_dir / name for name in ("ids", "signatures", "answers", "buckets", "clusters", "logs")}
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
    signature = RecordMinhashSignature(str(dirs["signatures"]), str(dirs["answers"]), config=config,
                                       language=WhitespaceTokenizer())
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
            members.append(part.select("cluster", "id", "order", "rank", "doc"))
        table = pl.concat(members).sort("cluster", "order", "id").unique("id", keep="first", maintain_order=True)
        answers = np.empty((len(table), 1 + ANSWER_HASHES), np.uint32)
        ranks, docs = table["rank"].to_numpy(), table["doc"].to_numpy()
        for rank in np.unique(ranks):
            rows = np.flatnonzero(ranks == rank)
            answers[rows] = np.fromfile(dirs["answers"] / f"{rank:05d}.answers", "<u4").reshape(-1, 1 + ANSWER_HASHES)[docs[rows]]
        kept = _kept_rows(table["cluster"].to_numpy(), answers)
        ids, orders = table["id"].to_list(), table["order"].to_list()
        for row in np.flatnonzero(kept != np.arange(len(kept))).tolist():
            removed[ids[row]] = (ids[kept[row]], keys[orders[kept[row]]])
    for name in ("signatures", "answers", "buckets", "clusters", "ids"):
        shutil.rmtree(dirs[name], ignore_errors=True)
    return removed


def write_removed(removed: dict[str, tuple[str, str]], path: Path) -> None:
    """The removal map as Parquet (id, kept_id, kept_source), e.g. for the rejected report."""
    items = sorted(removed.items())
    pq.write_table(pa.table({"id": [i for i, _ in items], "kept_id": [k for _, (k, _) in items],
                             "kept_source": [s for _, (_, s) in items]}), path)


__all__ = ["near_duplicates", "write_removed", "batch_texts", "minhash_config", "RecordTextReader",
           "RecordMinhashSignature", "WhitespaceTokenizer"]
