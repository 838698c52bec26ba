"""What keeps a build's memory flat in the number of rows: compact exact-dedup ids, and mixing
that holds one rank partition at a time and writes shards whose bytes do not depend on it."""

import json
import random
from pathlib import Path

import pyarrow.parquet as pq
import yaml

import filters.dedup as dedup
from sftmix import mixing
from sftmix.build import Layout, build
from sftmix.manifest import load

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
    many = mixing.build(manifest, inputs, tmp_path / "many", tmp_path / "work")
    assert not (tmp_path / "work").exists()
    kept_per_copy = one.by_source["train"]["b"] // 30
    assert kept_per_copy > 0
    assert one.split_rows == many.split_rows == {"train": 150 + 30 * kept_per_copy, "validation": 10}
    assert one.excluded == many.excluded == {"a": {}, "b": {"duplicate_of:a": 30 * kept_per_copy}}
    for split in ("train", "validation"):
        files_one = sorted((tmp_path / "one" / "mini" / split).glob("*.parquet"))
        files_many = sorted((tmp_path / "many" / split).glob("*.parquet"))
        assert [f.name for f in files_one] == [f.name for f in files_many]
        assert all(a.read_bytes() == b.read_bytes() for a, b in zip(files_one, files_many))
    shard = pq.ParquetFile(tmp_path / "many" / "train" / "part-00000.parquet").metadata
    assert shard.num_rows == 70 and [shard.row_group(i).num_rows for i in range(shard.num_row_groups)] == [16] * 4 + [6]
