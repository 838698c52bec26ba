"""What keeps a build's memory flat in the number of rows: compact exact-dedup ids, and mixing
that holds one rank partition at a time and writes shards whose bytes do not depend on it."""

import json
import random
import re
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import filters.dedup as dedup
from damaged_parquet import DAMAGES, damage
from sftmix import mixing, read_mixture
from sftmix.build import Layout, build
from sftmix.manifest import load
from sftmix.shards import UnreadableParquet

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_sorted_ids_answer_like_a_set_across_merges(monkeypatch):
    monkeypatch.setattr(dedup, "RECENT_IDS", 50)
    rng = random.Random(0)
    pool = ([rng.getrandbits(128) for _ in range(2000)] + [(7 << 64) | low for low in range(40)]  # shared high halves
            # high halves below 2**63 that differ only beyond float64's 53 bits of precision
            + [((2**60 + k) << 64) | 5 for k in range(4)])
    ids, reference = dedup.SortedIds(), set()
    for _ in range(10_000):
        digest = rng.choice(pool)
        assert (digest in ids) == (digest in reference)
        if digest not in reference:
            ids.add(digest)
            reference.add(digest)
    assert len(ids) == len(reference) and len(ids.recent) < 50
    assert ids.high.dtype == ids.low.dtype == "uint64" and list(ids.high) == sorted(ids.high)


def test_exact_dedup_filter_drops_repeats_of_an_id():
    f = dedup.ExactDedupFilter()
    first, other = "0f" * 16, "a0" * 16
    assert [f.check({"id": i}, None) for i in (first, other, first)] == [None, None, "duplicate_id"]


def _glaive_rows(path: Path, copies: range) -> Path:
    """The glaive fixture's rows, each copy made distinct by a number in its first user turn."""
    rows = json.loads((FIXTURES / "glaive" / "glaive-function-calling-v2.json").read_text())
    path.write_text(json.dumps([dict(r, chat=r["chat"].replace("USER: ", f"USER: ({i}) ", 1)) for i in copies for r in rows]))
    return path


def test_shards_do_not_depend_on_the_partitions(tmp_path, monkeypatch):
    # b's first half of copies are a's second half: duplicates of a
    raws = {"a": _glaive_rows(tmp_path / "a.json", range(0, 60)), "b": _glaive_rows(tmp_path / "b.json", range(30, 90))}
    sources = [{"key": key, "converter": "glaive", "licence": "apache-2.0", "language": "en",
                "local": {"files": [str(raws[key])]}, "targets": targets} for key, targets in (("a", {"en": 150}), ("b", "all"))]
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"mixture": "mini", "seed": 3, "holdout": {"size": 10}, "shard_rows": 70,
                                    "licence_policy": {"allow": ["apache-2.0"]}, "sources": sources}))
    manifest = load(path)
    monkeypatch.setattr(mixing, "ROW_GROUP_ROWS", 16)
    one = build(manifest, tmp_path / "one")
    layout = Layout(tmp_path / "one", "mini")
    inputs = {s.key: layout.records(s.key, "filtered") for s in manifest.sources}
    monkeypatch.setattr(mixing, "PARTITION_ROWS", 25)  # many partitions, some with no rows of a source
    # each source's rows in 3 files, spilled as 3 runs at once, into files of their own
    split_inputs = {key: _split_file(files, 3, tmp_path / "split" / key) for key, files in inputs.items()}
    spilled_runs = []
    original_spill = mixing._Partitions.spill
    monkeypatch.setattr(mixing._Partitions, "spill",
                        lambda self, order, run, files, *ranking: (spilled_runs.append((order, run, len(files))),
                                                                   original_spill(self, order, run, files, *ranking)))
    many = mixing.build(manifest, split_inputs, tmp_path / "many", tmp_path / "work", threads=3)
    assert sorted(spilled_runs) == [(order, run, 1) for order in range(2) for run in range(3)]
    assert not (tmp_path / "work").exists()
    b_ids = {i for f in inputs["b"] for i in pq.read_table(f, columns=["id"])["id"].to_pylist()}
    per_copy = len(b_ids) // 60  # the fixture's rows the filters keep, in each numbered copy
    assert per_copy > 0 and len(b_ids) == 60 * per_copy
    # a takes 150 + its holdout rows of its 60 copies; b takes all the rest, shared ones a did not take
    chosen = [r for split in ("train", "validation") for r in read_mixture(tmp_path / "one" / "mini", split)]
    taken_by_a = len(b_ids & {r["id"] for r in chosen if r["source"] == "a"})
    assert 0 < taken_by_a < 30 * per_copy and len({r["id"] for r in chosen}) == len(chosen)
    holdout = one.by_source["validation"]  # spread by a's target and the rows b has
    assert holdout == many.by_source["validation"] and holdout["a"] > 0 and holdout["b"] > 0
    assert one.split_rows == many.split_rows == {"train": 150 + 60 * per_copy - taken_by_a - holdout["b"], "validation": 10}
    # a's rows beyond its target are counted (not copied); b drops only the copies a keeps
    assert one.excluded == many.excluded == {"a": {"beyond_target": 60 * per_copy - 150 - holdout["a"]},
                                             "b": {"duplicate_of:a": taken_by_a}}
    for split in ("train", "validation"):
        files_one = sorted((tmp_path / "one" / "mini" / split).glob("*.parquet"))
        files_many = sorted((tmp_path / "many" / split).glob("*.parquet"))
        assert [f.name for f in files_one] == [f.name for f in files_many]
        assert all(a.read_bytes() == b.read_bytes() for a, b in zip(files_one, files_many))
    shards = [pq.ParquetFile(f).metadata for f in sorted((tmp_path / "many" / "train").glob("*.parquet"))]
    for shard in shards[:-1]:
        assert shard.num_rows == 70 and [shard.row_group(i).num_rows for i in range(shard.num_row_groups)] == [16] * 4 + [6]
    last = [shards[-1].row_group(i).num_rows for i in range(shards[-1].num_row_groups)]
    assert len(shards) > 2 and 0 < last[-1] <= 16 and set(last[:-1]) <= {16}


def _split_file(files: list[Path], parts: int, directory: Path) -> list[Path]:
    """The rows of `files` as `parts` Parquet files of consecutive rows, in order."""
    directory.mkdir(parents=True)
    table = pa.concat_tables([pq.read_table(f) for f in files])
    size = -(-table.num_rows // parts)
    paths = [directory / f"part-{i:05d}.parquet" for i in range(parts)]
    for i, path in enumerate(paths):
        pq.write_table(table.slice(i * size, size), path)
    return paths


def test_runs_of_bytes_cut_files_in_order_into_even_runs(tmp_path):
    def files(*sizes):
        paths = []
        for size in sizes:
            paths.append(tmp_path / f"{len(list(tmp_path.iterdir())):03d}")
            paths[-1].write_bytes(b"x" * size)
        return paths

    def sizes(runs):
        return [[path.stat().st_size for path in run] for run in runs]

    assert sizes(mixing._runs_of_bytes(files(10, 10, 10, 10), 2)) == [[10, 10], [10, 10]]
    assert sizes(mixing._runs_of_bytes(files(100, 1, 1, 1), 2)) == [[100], [1, 1, 1]]
    assert sizes(mixing._runs_of_bytes(files(1, 1, 1, 100), 2)) == [[1, 1, 1], [100]]
    assert sizes(mixing._runs_of_bytes(files(9, 10, 11), 3)) == [[9], [10], [11]]
    assert sizes(mixing._runs_of_bytes(files(4, 4, 4, 4), 1)) == [[4, 4, 4, 4]]
    assert sizes(mixing._runs_of_bytes(files(5, 5, 5, 5, 5, 5), 3)) == [[5, 5], [5, 5], [5, 5]]
    assert sizes(mixing._runs_of_bytes(files(7), 4)) == [[7]]
    assert mixing._runs_of_bytes([], 2) == []


def _mini_build(tmp_path: Path):
    raw = _glaive_rows(tmp_path / "a.json", range(0, 20))
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"mixture": "mini", "seed": 3, "holdout": {"size": 10}, "shard_rows": 40,
                                    "licence_policy": {"allow": ["apache-2.0"]},
                                    "sources": [{"key": "a", "converter": "glaive", "licence": "apache-2.0",
                                                 "language": "en", "local": {"files": [str(raw)]}, "targets": "all"}]}))
    manifest = load(path)
    build(manifest, tmp_path / "one")
    files = Layout(tmp_path / "one", "mini").records("a", "filtered")
    return manifest, {"a": _split_file(files, 2, tmp_path / "split")}


@pytest.mark.parametrize("failing", ["third row group", "last shard's close"])
def test_a_shard_write_that_fails_fails_the_mixing_and_publishes_nothing(tmp_path, monkeypatch, failing):
    manifest, inputs = _mini_build(tmp_path)
    monkeypatch.setattr(mixing, "ROW_GROUP_ROWS", 8)
    monkeypatch.setattr(mixing, "PARTITION_ROWS", 25)  # the failure surfaces with partitions still to read
    writes = []
    original_write, original_close = mixing.AtomicParquetWriter.write, mixing.AtomicParquetWriter.close

    # in the shard writer's thread, while the caller goes on cutting row groups
    def write(self, table):
        writes.append(table.num_rows)
        if failing == "third row group" and len(writes) == 3:
            raise OSError(28, "No space left on device")
        original_write(self, table)

    def close(self):
        if failing == "last shard's close" and "validation" in str(self.path):  # the split written last
            raise OSError(28, "No space left on device")
        return original_close(self)

    threads_at_removal = []
    original_rmtree = mixing.shutil.rmtree

    def rmtree(path, *args, **kwargs):
        if Path(path) == tmp_path / "work":
            threads_at_removal.append([t.name for t in threading.enumerate() if t.name.startswith("sftmix-")])
        original_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(mixing.AtomicParquetWriter, "write", write)
    monkeypatch.setattr(mixing.AtomicParquetWriter, "close", close)
    monkeypatch.setattr(mixing.shutil, "rmtree", rmtree)
    with pytest.raises(OSError, match="No space left"):
        mixing.build(manifest, inputs, tmp_path / "out", tmp_path / "work", threads=2)
    assert len(writes) > 8  # more row groups than may wait for the writer
    assert not (tmp_path / "out" / "train").exists() and not (tmp_path / "work").exists()
    # no thread of the mixing still reads or writes when its work directory is removed
    assert threads_at_removal[-1] == []


def test_a_spill_run_that_fails_fails_the_mixing(tmp_path, monkeypatch):
    manifest, inputs = _mini_build(tmp_path)
    original_spill = mixing._Partitions.spill

    def spill(self, order, run, files, *ranking):
        if run == 1:
            raise pa.ArrowInvalid("Parquet magic bytes not found in footer")
        original_spill(self, order, run, files, *ranking)

    monkeypatch.setattr(mixing._Partitions, "spill", spill)
    with pytest.raises(pa.ArrowInvalid, match="magic bytes"):
        mixing.build(manifest, inputs, tmp_path / "out", tmp_path / "work", threads=2)
    assert not (tmp_path / "out" / "train").exists() and not (tmp_path / "work").exists()



@pytest.mark.parametrize("how", DAMAGES)
def test_an_unreadable_filtered_file_is_named_in_the_error(tmp_path, how):
    manifest, inputs = _mini_build(tmp_path)
    broken = inputs["a"][1]
    damage(broken, how)  # no footer: found while counting rows; broken pages: by a spill thread
    with pytest.raises(UnreadableParquet, match=re.escape(f"cannot read {broken}: ")) as raised:
        mixing.build(manifest, inputs, tmp_path / "out", tmp_path / "work", threads=2)
    assert isinstance(raised.value.__cause__, (pa.ArrowException, OSError))  # Arrow's own error is kept
    assert not (tmp_path / "out" / "train").exists() and not (tmp_path / "work").exists()
