"""Exact + MinHash near-dedup over synthetic chat records with planted near duplicates.

    python bench/dedup.py --rows 100000 [--workers 2] [--near-share 0.02] [--exact-share 0.005]
        [--related-share 0.01] [--seed 0]

Generates `--rows` canonical records (deterministic from `--seed`; Zipf-distributed words over a
40,000-word synthetic vocabulary, common assistant openers, 1-3 turns, ~100-400 words each) into
three sources' Parquet files. `--near-share` of the rows are near copies of an earlier row (1-3 words
replaced, punctuation changed; the copy often lands in another source), `--exact-share` are exact
copies, and `--related-share` are near-misses: another answer to an earlier row's request, its user
turns and the first 30-60% of each answer kept (random rows share almost nothing, so without them
no removal could be wrong). Then, in a child process (so that generation does not count in its
memory), the exact-id dedup across sources (as `sftmix.mixing` does it: each source's candidates'
id and messages are written to a file) and `sftmix.near_dedup.near_duplicates` on those files run,
and the figures are printed:

- rows/s: candidate rows / wall time of exact + near dedup;
- peak: the dedup process's and its workers' summed PSS, sampled (`bench/process_tree.py`), or the
  largest single resident set (getrusage) if more;
- recall: planted near pairs that end in one cluster (same kept row), target >= 0.95;
- false removal rate: removed rows whose kept row is not from their planted group, over all
  candidate rows, target <= 1%;
- keeper errors: removals whose kept row is from a later source than the removed row;
- precision: removals that are right, over all removals; related pairs made one row (each a wrong
  removal).

The last line printed is a JSON object of these figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # sftmix from this checkout, even when run from elsewhere
sys.path.insert(0, str(ROOT / "bench"))
from process_tree import run_measured  # noqa: E402

SOURCES = ("alpha", "beta", "gamma")
OPENERS = ("Sure! ", "Certainly. ", "Here is an overview. ", "Great question. ", "Of course. ", "", "", "",
           "Let me explain. ", "In short, ", "Good idea. ", "Happy to help. ")
CHUNK_ROWS = 5_000


def vocabulary(rng, size: int = 40_000) -> list[str]:
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou", "ea")]
    words = set()
    while len(words) < size:
        n = int(rng.integers(1, 5))
        words.add("".join(syllables[i] for i in rng.integers(0, len(syllables), n)))
    return sorted(words)


class Generator:
    def __init__(self, seed: int):
        import numpy as np

        self.np = np
        self.rng = np.random.default_rng(seed)
        self.vocab = vocabulary(self.rng)
        ranks = np.arange(1, len(self.vocab) + 1)
        weights = 1.0 / ranks ** 1.07
        self.p = weights / weights.sum()
        self.buffer = self.rng.choice(len(self.vocab), size=1_000_000, p=self.p)
        self.position = 0

    def words(self, n: int) -> list[str]:
        if self.position + n > len(self.buffer):
            self.buffer = self.rng.choice(len(self.vocab), size=1_000_000, p=self.p)
            self.position = 0
        idx = self.buffer[self.position:self.position + n]
        self.position += n
        return [self.vocab[i] for i in idx]

    def sentence_text(self, n: int) -> str:
        words = self.words(n)
        out, i = [], 0
        while i < len(words):
            length = int(self.rng.integers(6, 20))
            sentence = words[i:i + length]
            sentence[0] = sentence[0].capitalize()
            if len(sentence) > 8 and self.rng.random() < 0.4:
                sentence[len(sentence) // 2] += ","
            out.append(" ".join(sentence) + ("?" if self.rng.random() < 0.05 else "."))
            i += length
        return " ".join(out)

    def conversation(self) -> list[tuple[str, str]]:
        turns = 1 + int(self.rng.random() < 0.25) + int(self.rng.random() < 0.08)
        budget = int(self.rng.integers(100, 400))
        out = []
        for _ in range(turns):
            user = max(8, int(budget * self.rng.uniform(0.08, 0.3) / turns))
            assistant = max(20, budget // turns - user)
            opener = OPENERS[int(self.rng.integers(len(OPENERS)))]
            out.append(("user", self.sentence_text(user)))
            out.append(("assistant", opener + self.sentence_text(assistant)))
        return out

    def related(self, conversation: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Another answer to the same request, no near copy: the user turns and the first 30-60% of
        each answer's words kept, the rest written anew."""
        turns = []
        for role, text in conversation:
            if role == "assistant":
                words = text.split(" ")
                keep = int(len(words) * self.rng.uniform(0.3, 0.6))
                text = " ".join(words[:keep]) + " " + self.sentence_text(max(10, len(words) - keep))
            turns.append((role, text))
        return turns

    def near_copy(self, conversation: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """1-3 words replaced somewhere in the conversation, and one punctuation mark changed."""
        turns = [list(t) for t in conversation]
        for _ in range(int(self.rng.integers(1, 4))):
            turn = turns[int(self.rng.integers(len(turns)))]
            tokens = turn[1].split(" ")
            i = int(self.rng.integers(len(tokens)))
            tail = tokens[i][-1] if tokens[i][-1] in ".,?!" else ""
            tokens[i] = self.words(1)[0] + tail
            turn[1] = " ".join(tokens)
        turn = turns[int(self.rng.integers(len(turns)))]
        turn[1] = turn[1][:-1] + "!" if turn[1].endswith(".") else turn[1] + "."
        return [tuple(t) for t in turns]


def generate(rows: int, out_dir: Path, seed: int, near_share: float, exact_share: float,
             related_share: float = 0.0) -> dict:
    """Write the sources' files; return the planted groups (id -> group), exact copies and the related
    pairs (an earlier row and its `Generator.related` row, which shares much with it and is no copy)."""
    import pyarrow.parquet as pq

    from sftmix.record import SCHEMA, make_record, message, to_table

    gen = Generator(seed)
    writers = {s: pq.ParquetWriter(out_dir / f"{s}.parquet", SCHEMA, compression="zstd") for s in SOURCES}
    pending = {s: [] for s in SOURCES}
    pool: list[tuple[str, list[tuple[str, str]]]] = []  # recent originals (id, conversation)
    group: dict[str, str] = {}  # id -> id of the original of its planted group
    near_pairs, exact_copies, related = [], 0, []
    for index in range(rows):
        source = SOURCES[int(gen.rng.integers(len(SOURCES)))]
        draw = gen.rng.random()
        if pool and draw < near_share:
            original_id, conversation = pool[int(gen.rng.integers(len(pool)))]
            conversation = gen.near_copy(conversation)
            kind = "near"
        elif pool and draw < near_share + exact_share:
            original_id, conversation = pool[int(gen.rng.integers(len(pool)))]
            kind = "exact"
        elif pool and draw < near_share + exact_share + related_share:
            original_id, conversation = pool[int(gen.rng.integers(len(pool)))]
            conversation, kind = gen.related(conversation), "related"
        else:
            conversation, kind, original_id = gen.conversation(), "original", None
        record = make_record(messages=[message(r, c) for r, c in conversation], tools=[], source=source,
                             licence="apache-2.0", language="en", origin={"row": f"bench#{index}"})
        if kind == "original":
            pool.append((record["id"], conversation))
            if len(pool) > 20_000:
                pool.pop(int(gen.rng.integers(len(pool))))
        elif kind == "near" and record["id"] != original_id:
            group[original_id] = original_id
            group[record["id"]] = original_id
            near_pairs.append((original_id, record["id"]))
        elif kind == "related":
            related.append((original_id, record["id"]))
        else:
            exact_copies += 1
        pending[source].append(record)
        if len(pending[source]) >= CHUNK_ROWS:
            writers[source].write_table(to_table(pending[source]))
            pending[source].clear()
    for source, writer in writers.items():
        if pending[source]:
            writer.write_table(to_table(pending[source]))
        writer.close()
    return {"group": group, "near_pairs": near_pairs, "exact_copies": exact_copies, "related": related}


def run_dedup(data_dir: Path, work_dir: Path, workers: int, result_path: Path) -> None:
    """Child process: exact-id dedup across sources, then MinHash near dedup; timings and RSS."""
    import polars as pl
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sftmix.near_dedup import near_duplicates, write_removed

    start = time.perf_counter()
    # As the mixing does: each source's candidates (rows whose id no earlier source has) are written
    # to a file of id + messages, which is what near_duplicates reads.
    candidates_dir = work_dir.parent / "candidates"
    candidates_dir.mkdir(parents=True, exist_ok=True)
    seen = pl.Series("id", [], dtype=pl.String)
    sources, exact_removed, candidates = [], 0, 0
    for key in SOURCES:
        raw = pq.ParquetFile(data_dir / f"{key}.parquet")
        ids = pl.from_arrow(raw.read(columns=["id"]).column("id"))
        own = (~ids.is_in(seen.implode())).to_numpy()  # one hash set of the earlier ids a source
        fresh = ids.filter(own).unique(maintain_order=True)
        exact_removed += len(ids) - len(fresh)
        candidates += len(fresh)
        path, offset = candidates_dir / f"{key}.parquet", 0
        schema = pa.schema([raw.schema_arrow.field("id"), raw.schema_arrow.field("messages")])
        # Batch by batch, in row groups of the source's size: near_duplicates reads a row group's
        # messages whole (pyarrow's default of 65,536 rows a group doubled this process's peak RSS).
        with pq.ParquetWriter(path, schema) as writer:
            for batch in raw.iter_batches(batch_size=CHUNK_ROWS, columns=["id", "messages"]):
                writer.write_batch(batch.select(["id", "messages"]).filter(pa.array(own[offset:offset + batch.num_rows])))
                offset += batch.num_rows
        sources.append((key, [path]))
        seen = pl.concat([seen, fresh])
    exact_s = time.perf_counter() - start
    removed = near_duplicates(sources, work_dir, workers=workers)
    total_s = time.perf_counter() - start
    write_removed(removed, result_path.with_suffix(".parquet"))
    kb = 1024
    result_path.write_text(json.dumps({
        "candidates": candidates, "exact_removed": exact_removed, "near_removed": len(removed),
        "exact_seconds": round(exact_s, 2), "seconds": round(total_s, 2),
        "rss_self_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kb, 1),
        "rss_workers_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / kb, 1),
    }))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--near-share", type=float, default=0.02)
    parser.add_argument("--exact-share", type=float, default=0.005)
    parser.add_argument("--related-share", type=float, default=0.01,
                        help="rows sharing their request and part of the answer with an earlier row: none may go")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dedup-only", nargs=3, metavar=("DATA", "WORK", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.dedup_only:
        data, work, result = map(Path, args.dedup_only)
        run_dedup(data, work, args.workers, result)
        return {}

    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(prefix="sftmix-bench-dedup-") as tmp:
        tmp_dir = Path(tmp)
        (tmp_dir / "data").mkdir()
        start = time.perf_counter()
        planted = generate(args.rows, tmp_dir / "data", args.seed, args.near_share, args.exact_share, args.related_share)
        gen_s = time.perf_counter() - start
        print(f"generated {args.rows} rows in {gen_s:.1f}s: {len(planted['near_pairs'])} near copies, "
              f"{planted['exact_copies']} exact copies", flush=True)
        result_path = tmp_dir / "result.json"
        tree = run_measured([sys.executable, __file__, "--workers", str(args.workers), "--dedup-only",
                             str(tmp_dir / "data"), str(tmp_dir / "work"), str(result_path)], tmp_dir / "dedup.log")
        run = json.loads(result_path.read_text())
        table = pq.read_table(result_path.with_suffix(".parquet"))
        source_of = {}
        for s in ("alpha", "beta", "gamma"):
            for i in pq.read_table(tmp_dir / "data" / f"{s}.parquet", columns=["id"])["id"].to_pylist():
                source_of.setdefault(i, s)

    removed = dict(zip(table["id"].to_pylist(), table["kept_id"].to_pylist()))
    group = planted["group"]
    keeper = lambda i: removed.get(i, i)  # noqa: E731 - the kept row of i's cluster
    pairs = planted["near_pairs"]
    found = sum(keeper(a) == keeper(b) for a, b in pairs)
    false = sum(group.get(i) is None or group.get(i) != group.get(k) for i, k in removed.items())
    related_merged = sum(keeper(a) == keeper(b) for a, b in planted["related"])
    order = {s: n for n, s in enumerate(SOURCES)}
    keeper_errors = sum(order[source_of[k]] > order[source_of[i]] for i, k in removed.items())
    figures = {
        "rows": args.rows, "workers": args.workers, "candidates": run["candidates"],
        "exact_removed": run["exact_removed"], "near_removed": run["near_removed"],
        "planted_near_pairs": len(pairs),
        "seconds": run["seconds"], "rows_per_s": round(run["candidates"] / run["seconds"], 1),
        # the dedup process and its workers run side by side: their summed PSS (`bench/process_tree.py`)
        "peak_mib": round(max(tree.tree_pss_kib / 1024, run["rss_self_mib"], run["rss_workers_mib"]), 1),
        "tree_pss_mib": round(tree.tree_pss_kib / 1024, 1),
        "rss_dedup_process_mib": run["rss_self_mib"], "rss_largest_worker_mib": run["rss_workers_mib"],
        "recall": round(found / len(pairs), 4) if pairs else None,
        "false_removal_rate": round(false / run["candidates"], 5),
        "false_removals": false, "keeper_errors": keeper_errors,
        # of the removals, those right; and of the related pairs (near-misses), those made one row
        "precision": round(1 - false / len(removed), 4) if removed else None,
        "planted_related_pairs": len(planted["related"]), "related_pairs_merged": related_merged,
        "generate_seconds": round(gen_s, 1),
    }
    print(f"{figures['candidates']} candidate rows in {figures['seconds']}s = {figures['rows_per_s']} rows/s; "
          f"peak {figures['peak_mib']} MiB (process tree PSS {figures['tree_pss_mib']})")
    print(f"recall {figures['recall']} on {len(pairs)} planted pairs (target >= 0.95); false removal rate "
          f"{figures['false_removal_rate']} (target <= 0.01); keeper errors {keeper_errors}")
    print(f"precision {figures['precision']} ({false} of {len(removed)} removals wrong); related pairs made one "
          f"row: {related_merged} of {len(planted['related'])}")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
