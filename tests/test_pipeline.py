"""End to end: manifests built through Dagster and through `sftmix.build`, shards read back."""

import errno
import importlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from dagster import AssetKey, AssetSelection, DagsterEventType, DagsterInstance
from huggingface_hub import constants

import sftmix
from damaged_parquet import DAMAGES, damage
from hub_server import serve_hub
from assets.mixture import MIXTURE
from assets.sources import asset_prefix
from sftmix.reader import column_counts
import pipelines.definitions
from pipelines.definitions import build_definitions
import generators.base
from filters.decontamination import DecontaminationFilter
import sftmix.build
from sftmix.build import (BuildError, Layout, build, filter_config, filter_source, generate_source, mix, normalize_source,
                          raw_files, stage_settings, stage_version)
from sftmix.counts import Counts
from sftmix.executor import ExecutorConfig
from sftmix.manifest import load
from sftmix.normalize import records_in_order
from sftmix.mixing import EmptyTrainSplit, rank_keys
from sftmix.record import SCHEMA
from sftmix.shards import UnreadableParquet

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "manifests" / "sample.yaml"
FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture(scope="module")
def sample_build(tmp_path_factory):
    """The sample manifest materialized through the Dagster asset graph, in process."""
    out = tmp_path_factory.mktemp("out")
    defs = build_definitions(str(SAMPLE), str(out))
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=DagsterInstance.ephemeral())
    assert result.success
    return out / "sample", result


def _table(mixture_dir: Path, split: str):
    return pq.ParquetDataset(sorted(str(p) for p in (mixture_dir / split).glob("part-*.parquet"))).read()


def test_sample_build_writes_train_holdout_rejected_and_card(sample_build):
    mixture_dir, _ = sample_build
    manifest = load(SAMPLE)
    train, validation = _table(mixture_dir, "train"), _table(mixture_dir, "validation")
    assert validation.num_rows == manifest.holdout.size
    assert train.num_rows > 50
    assert not set(train["id"].to_pylist()) & set(validation["id"].to_pylist())
    assert len(set(train["id"].to_pylist())) == train.num_rows
    assert train.schema.remove_metadata().equals(SCHEMA.remove_metadata())
    allowed = set(manifest.licence_policy["allow"])
    assert set(train["licence"].to_pylist()) <= allowed and None not in train["licence"].to_pylist()
    # every mixed source of the sample manifest reaches the train split; its prompts and documents
    # (WildChat, FineWeb-Edu: generator input only) reach neither, but are read, filtered and on the card
    inputs_only = {"wildchat", "fineweb-edu"}
    assert {s.key for s in manifest.sources if s.is_input_only} == inputs_only
    assert set(train["source"].to_pylist()) == {s.key for s in manifest.sources} - inputs_only
    # a row with no assistant turn trains nothing (the sample mixed 12 user-only rows of them)
    for split in (train, validation):
        assert all(any(m["role"] == "assistant" for m in messages) for messages in split["messages"].to_pylist())
    card = (mixture_dir / "README.md").read_text()
    assert all(re.search(rf"^\| {key} \(generator input only\) \| \d+ \| [1-9]\d* \| [1-9]\d* \|$", card, re.M)
               for key in inputs_only)
    # rejected rows are kept, with their reasons, for every source
    rejected = list((mixture_dir / "rejected").glob("*.parquet"))
    reasons = {r for f in rejected for r in pq.read_table(f, columns=["reason"])["reason"].to_pylist()}
    assert {"unparsable_tool_call", "toxic", "malformed_json"} <= reasons


def test_shard_metadata_names_manifest_version_and_licences(sample_build):
    mixture_dir, _ = sample_build
    meta = pq.read_schema(next((mixture_dir / "train").glob("part-*.parquet"))).metadata
    assert meta[b"manifest_hash"].decode() == load(SAMPLE).hash
    assert meta[b"sftmix_version"].decode() == sftmix.__version__
    assert "apache-2.0" in json.loads(meta[b"licences"])


def test_each_shard_names_the_licences_of_its_own_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(sftmix.mixing, "PARTITION_ROWS", 3)  # shards that span rank partitions
    sources = [{"key": key, "converter": key, "licence": licence, "language": "en", "local": {"files": [str(raw)]},
                "targets": "all", "filters": {"language": False}}
               for key, licence, raw in (("glaive", "apache-2.0", FIXTURES / "glaive" / "glaive-function-calling-v2.json"),
                                         ("dolly", "cc-by-4.0", FIXTURES / "dolly" / "databricks-dolly-15k.jsonl"))]
    path = _manifest(tmp_path, sources, shard_rows=2)
    result = build(load(path), tmp_path / "out")
    named = []
    for split in ("train", "validation"):
        for shard in sorted((tmp_path / "out" / "mini" / split).glob("part-*.parquet")):
            licences = json.loads(pq.read_schema(shard).metadata[b"licences"])
            assert licences == sorted(set(pq.read_table(shard, columns=["licence"])["licence"].to_pylist()))
            named.append(licences)
    assert len(named) == -(-result.split_rows["train"] // 2) + 1 and {tuple(n) for n in named} >= {("apache-2.0",), ("cc-by-4.0",)}


def test_asset_checks_pass_and_metadata_reports_counts(sample_build):
    _, result = sample_build
    checks = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in result.get_asset_check_evaluations()}
    assert all(checks.values())
    per_source = {f"{asset_prefix(s.key)}/normalized" for s in load(SAMPLE).sources if s.generator is None}
    assert set(checks) == {("mixture", "licence_policy_respected"), ("mixture", "schema_valid"), ("mixture", "targets_met"),
                           ("holdout", "holdout_exact_and_disjoint")} | {(key, "rows_converted") for key in per_source} | {
        (key.replace("/normalized", "/filtered"), "rows_kept") for key in per_source}
    materializations = {
        m.event_specific_data.materialization.asset_key.to_user_string(): m.event_specific_data.materialization.metadata
        for m in result.get_asset_materialization_events()
    }
    glaive = materializations["glaive_function_calling_v2/filtered"]
    assert glaive["rows_in"].value == glaive["rows_out"].value + glaive["dropped"].value
    normalized = materializations["glaive_function_calling_v2/normalized"]
    assert "unparsable_tool_call" in normalized["drops_by_reason"].value
    assert glaive["by_licence"].value == {"apache-2.0": glaive["rows_out"].value}
    assert sum(materializations["aya_dataset/filtered"]["by_language"].value.values()) > 1
    assert materializations["holdout"]["rows"].value == 12
    # where each stage's time went: every default rule (dedup runs at mixing) in the filtered stage, none in normalize
    seconds = glaive["seconds_by_step"].value
    assert list(seconds) == ["setup", "read", "empty_turns", "reserved_markup", "role_order", "tool_calls", "length",
                             "boilerplate", "identity", "repetition", "language", "write", "total"]
    assert min(seconds.values()) >= 0 and seconds["total"] == pytest.approx(sum(seconds.values()) - seconds["total"], abs=0.1)
    assert list(normalized["seconds_by_step"].value) == ["setup", "read_convert", "write", "total"]


def test_the_mixture_s_upstream_holds_every_source_it_reads(tmp_path):
    """The mixing reads the filtered records of a source feeding generators only too (its intake, for
    the card), but the asset graph put only the mixed sources' before it: `--select '*mixture'` left
    out the sample's WildChat and FineWeb-Edu, which no generator there reads, and the mixing stopped
    on their missing records; with every step at once (Dagster runs them in parallel) it could start
    while they were still being filtered."""
    defs = build_definitions(str(_manifest(tmp_path, [_glaive_source(key="h"), _glaive_source(targets={})], holdout=0)),
                             str(tmp_path / "out"))
    graph = defs.resolve_asset_graph()
    assert graph.get(AssetKey("mixture")).parent_keys == {AssetKey(["h", "filtered"]), AssetKey(["g", "filtered"])}
    upstream = AssetSelection.assets("mixture").required_multi_asset_neighbors().upstream().resolve(graph)
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection=upstream)
    assert job.execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False).success
    assert json.loads((tmp_path / "out" / "mini" / "stats.json").read_text())["intake"]["g"]["filtered"]["kept"] > 0


def test_size_categories_are_the_hub_s():
    import datasets

    from sftmix.card import size_category

    known = json.loads((Path(datasets.__file__).parent / "utils" / "resources" / "size_categories.json").read_text())
    cases = {0: "n<1K", 999: "n<1K", 1000: "1K<n<10K", 728_034: "100K<n<1M", 1_424_247: "1M<n<10M", 10**13: "n>1T"}
    assert {rows: size_category(rows) for rows in cases} == cases
    assert {size_category(10**k) for k in range(14)} <= set(known)


def test_dataset_card_has_hf_header_with_both_splits(sample_build):
    mixture_dir, _ = sample_build
    text = (mixture_dir / "README.md").read_text()
    header = yaml.safe_load(text.split("---")[1])
    splits = {f["split"]: f["path"] for f in header["configs"][0]["data_files"]}
    assert splits == {"train": "train/*.parquet", "validation": "validation/*.parquet"}
    assert "cc-by-nc-4.0" in header["license"]
    assert header["size_categories"] == ["n<1K"]  # the sample's 106 rows; the Hub searches and filters by it
    assert "## Drops by reason" in text and "unparsable_tool_call" in text
    assert "in one order, by sha256 of the seed, the mixture's name and the row's id" in text


@pytest.mark.parametrize("split", ["train", "validation"])
def test_splits_mix_the_sources_in_one_rank_order(sample_build, split):
    mixture_dir, _ = sample_build
    rows = _table(mixture_dir, split).select(["id", "source"]).to_pylist()
    ranks = rank_keys(load(SAMPLE).seed, load(SAMPLE).mixture, [r["id"] for r in rows])
    assert list(ranks) == sorted(ranks)
    sources = [r["source"] for r in rows]
    changes = sum(a != b for a, b in zip(sources, sources[1:]))
    assert changes > len(set(sources)) - 1 > 5  # more changes of source than blocks of one source would have


def test_training_job_readers(sample_build):
    mixture_dir, _ = sample_build
    train = _table(mixture_dir, "train")
    records = list(sftmix.read_mixture(mixture_dir, "train"))
    assert len(records) == train.num_rows
    nc = list(sftmix.read_mixture(mixture_dir, "train", licences=["cc-by-nc-4.0"], columns=["id", "licence"]))
    assert nc and all(r["licence"] == "cc-by-nc-4.0" for r in nc) and set(nc[0]) == {"id", "licence"}
    dataset = sftmix.to_hf_dataset(mixture_dir, "validation")
    assert len(dataset) == 12
    from datasets import load_dataset

    plain = load_dataset("parquet", data_files={"train": str(mixture_dir / "train" / "*.parquet")}, split="train")
    assert len(plain) == train.num_rows
    row = next(r for r in plain if r["tools"] != "[]")
    assert isinstance(json.loads(row["tools"]), list) and row["messages"][0]["role"] in ("system", "user")


def test_a_split_directory_is_read_for_its_own_split_only_and_a_shard_as_itself(sample_build):
    """Given `.../train` and asked for validation, the readers used to hand back the training rows."""
    mixture_dir, _ = sample_build
    for split in ("train", "validation"):
        ids = [r["id"] for r in sftmix.read_mixture(mixture_dir, split, columns=["id"])]
        assert [r["id"] for r in sftmix.read_mixture(mixture_dir / split, split, columns=["id"])] == ids
        assert sftmix.to_hf_dataset(mixture_dir / split, split, columns=["id"])["id"] == ids
        other = {"train": "validation", "validation": "train"}[split]
        for read in (sftmix.read_mixture, sftmix.to_hf_dataset):
            with pytest.raises(ValueError) as error:
                next(iter(read(mixture_dir / split, other)))
            assert str(error.value) == f"{mixture_dir / split} is the {split} split, not the {other} split"
    with pytest.raises(ValueError, match=r"^split must be one of train, validation; got 'validaton'$"):
        next(sftmix.read_mixture(mixture_dir, "validaton"))
    [shard, *_] = sorted((mixture_dir / "train").glob("part-*.parquet"))  # one shard, as a training job may be given
    assert [r["id"] for r in sftmix.read_mixture(shard, columns=["id"])] == pq.read_table(shard)["id"].to_pylist()
    for read in (sftmix.read_mixture, sftmix.to_hf_dataset):  # and one shard of the other split is refused too
        with pytest.raises(ValueError) as error:
            next(iter(read(shard, "validation")))
        assert str(error.value) == f"{shard} is a shard of the train split, not the validation split"


@pytest.mark.parametrize("read", ["read_mixture", "to_hf_dataset"])
def test_a_string_where_a_list_of_names_is_wanted_is_refused(sample_build, read):
    """`licences="apache-2.0"` was read as its letters: no row, and no error."""
    mixture_dir, _ = sample_build
    reader = getattr(sftmix, read)
    for name, value in (("licences", "apache-2.0"), ("columns", "id")):
        with pytest.raises(TypeError) as error:
            next(iter(reader(mixture_dir, "train", **{name: value})))
        assert str(error.value) == f"{name} is a list of names, e.g. [{value!r}]; got the string {value!r}"
    rows = list(reader(mixture_dir, "train", licences=("apache-2.0",), columns=("id", "licence")))
    assert rows and all(row == {"id": row["id"], "licence": "apache-2.0"} for row in rows)


def test_a_split_of_no_rows_loads_as_an_empty_dataset(tmp_path):
    """`holdout: {size: 0}` writes an empty validation split: `to_hf_dataset` raised datasets'
    "corresponds to no data", and so did `load_dataset` of the mixture directory, whose card's
    configs named the split."""
    from datasets import load_dataset

    build(load(_manifest(tmp_path, [_glaive_source()], holdout=0)), tmp_path / "out")
    mixture_dir = tmp_path / "out" / "mini"
    empty = sftmix.to_hf_dataset(mixture_dir, "validation")
    assert len(empty) == 0 and empty.column_names == _table(mixture_dir, "train").column_names
    assert empty.features == sftmix.to_hf_dataset(mixture_dir, "train").features
    assert sftmix.to_hf_dataset(mixture_dir, "validation", columns=["id", "messages"]).column_names == ["id", "messages"]
    assert list(sftmix.to_hf_dataset(mixture_dir, "validation", streaming=True)) == []
    splits = load_dataset(str(mixture_dir))
    assert list(splits) == ["train"] and len(splits["train"]) == _table(mixture_dir, "train").num_rows


@pytest.mark.parametrize("licences", [["cc-by-nc-4.0"], ["cc-by-nc-4.0", "apache-2.0", "pddl"]])
def test_to_hf_dataset_takes_the_licences_and_columns_read_mixture_takes(sample_build, licences):
    mixture_dir, _ = sample_build
    expected = [(r["id"], r["licence"]) for r in sftmix.read_mixture(mixture_dir, "train", licences=licences)]
    dataset = sftmix.to_hf_dataset(mixture_dir, "train", licences=licences, columns=["id", "licence"])
    assert dataset.column_names == ["id", "licence"]
    assert list(zip(dataset["id"], dataset["licence"])) == expected
    assert 0 < len(expected) < _table(mixture_dir, "train").num_rows
    streamed = sftmix.to_hf_dataset(mixture_dir, "train", licences=licences, columns=["id", "licence"], streaming=True)
    assert type(streamed).__name__ == "IterableDataset"
    assert [(row["id"], row["licence"]) for row in streamed] == expected


def test_licence_ids_match_whatever_their_case_and_columns_must_name_one(sample_build):
    """SPDX ids match case-insensitively: `CC-BY-NC-4.0` selected no row of `cc-by-nc-4.0`."""
    mixture_dir, _ = sample_build
    lower = [r["id"] for r in sftmix.read_mixture(mixture_dir, licences=["cc-by-nc-4.0", "apache-2.0"], columns=["id"])]
    assert lower and [r["id"] for r in sftmix.read_mixture(mixture_dir, licences=["CC-BY-NC-4.0", "Apache-2.0"],
                                                           columns=["id"])] == lower
    assert sftmix.to_hf_dataset(mixture_dir, licences=["CC-BY-NC-4.0", "Apache-2.0"], columns=["id"])["id"] == lower
    for read in (sftmix.read_mixture, sftmix.to_hf_dataset):
        with pytest.raises(ValueError, match=r"^columns is empty: name at least one column, or pass None for all of them$"):
            next(iter(read(mixture_dir, columns=[])))
        # datasets said "An error occurred while generating the dataset", Arrow "No match for FieldRef.Name(text)"
        with pytest.raises(ValueError, match=r"^no column 'text' in a mixture's rows; its columns: id, source, licence, "
                                             r"language, messages, tools, origin$"):
            next(iter(read(mixture_dir, columns=["id", "text"])))
    shard = sorted((mixture_dir / "train").glob("part-*.parquet"))[0]
    assert column_counts(shard, ("licence",)) == column_counts([str(shard)], ("licence",))
    assert sum(column_counts(shard, ("licence",))["licence"].values()) == pq.read_metadata(shard).num_rows


def test_render_piped_into_a_reader_that_stops_ends_quietly(sample_build):
    """`sftmix render output/sample | head -1` printed a BrokenPipeError traceback and exited 1."""
    mixture_dir, _ = sample_build
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first row: every write meets a closed pipe
    process = subprocess.run([sys.executable, "-m", "sftmix.cli", "render", str(mixture_dir)], stdout=write_end,
                             stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(write_end)
    assert (process.returncode, process.stderr) == (0, "")


def test_licences_with_no_rows(sample_build):
    mixture_dir, _ = sample_build
    for licences in ([], ["pddl"]):
        assert list(sftmix.read_mixture(mixture_dir, "train", licences=licences)) == []
        with pytest.raises(ValueError, match=r"no rows of licences .* its rows by licence: \{'apache-2.0': "):
            sftmix.to_hf_dataset(mixture_dir, "train", licences=licences)
    # a misspelt id read no row, silently (an audit)
    for read in (sftmix.read_mixture, sftmix.to_hf_dataset):
        with pytest.raises(ValueError, match=r"^licences: unknown licence 'apache 2.0'; known: apache-2.0, "):
            list(read(mixture_dir, "train", licences=["apache 2.0"]))


def test_a_licence_selects_its_rows_under_any_spelling_an_older_sftmix_labelled_them(tmp_path):
    """An sftmix before the Hub's ids kept a source declared `odc-by-1.0` so in its rows: asked for
    `odc-by`, read_mixture read none of them, silently, and asked for `odc-by-1.0`, it refused."""
    path = _manifest(tmp_path, [_glaive_source(licence="odc-by")], holdout=0, licence_policy={"allow": ["odc-by"]})
    build(load(path), tmp_path / "out")
    mixture_dir = tmp_path / "out" / "mini"
    for shard in (mixture_dir / "train").glob("part-*.parquet"):  # every other row as the older sftmix labelled it
        table = pq.read_table(shard)  # its footer (manifest hash, rows digest) kept in the schema's metadata
        labels = ["odc-by-1.0" if n % 2 else licence for n, licence in enumerate(table["licence"].to_pylist())]
        pq.write_table(table.set_column(table.schema.get_field_index("licence"), SCHEMA.field("licence"),
                                        pa.array(labels, pa.string())), shard)
    assert set(column_counts(sorted((mixture_dir / "train").glob("part-*.parquet")), ("licence",))["licence"]) == {
        "odc-by", "odc-by-1.0"}
    every = [r["id"] for r in sftmix.read_mixture(mixture_dir, columns=["id"])]
    for licences in (["odc-by"], ["odc-by-1.0"], ["ODC-By-1.0"], ["odc-by", "odc-by-1.0"]):
        assert [r["id"] for r in sftmix.read_mixture(mixture_dir, licences=licences, columns=["id"])] == every
        assert sftmix.to_hf_dataset(mixture_dir, licences=licences, columns=["id"])["id"] == every
    # its stats.json counted them under both spellings: the card gives the licence one row (review5: two)
    from sftmix.build import mixed_result, write_card

    stats_path = mixture_dir / "stats.json"
    stats = json.loads(stats_path.read_text())
    labelled = column_counts(sorted((mixture_dir / "train").glob("part-*.parquet")), ("licence",))["licence"]
    stats = {k: v for k, v in stats.items() if k != "by_source_licence"}  # counted from the shards, as of an older sftmix
    stats_path.write_text(json.dumps(stats | {"by_licence": {"train": labelled, "validation": {}}}))
    (mixture_dir / "README.md").unlink()
    write_card(load(path), Layout(tmp_path / "out", "mini"), mixed_result(Layout(tmp_path / "out", "mini")))
    card = (mixture_dir / "README.md").read_text().splitlines()
    assert [line for line in card if line.startswith("| odc-by")] == [f"| odc-by | {len(every)} | 0 | odc-by |"]
    assert f"| g | {len(every)} | 0 | odc-by |" in card  # Rows by source: one spelling


@pytest.mark.parametrize("licences", [None, ["cc-by-nc-4.0", "apache-2.0"]])
def test_read_mixture_splits_rows_between_ranks(sample_build, licences):
    mixture_dir, _ = sample_build
    whole = [r["id"] for r in sftmix.read_mixture(mixture_dir, "train", licences=licences, columns=["id"])]
    # batches of 5 rows so that rows of one rank straddle batch edges
    ranks = [
        [r["id"] for r in sftmix.read_mixture(mixture_dir, "train", licences=licences, columns=["id"], batch_size=5,
                                              rank=rank, world_size=3)]
        for rank in range(3)
    ]
    assert len(whole) > 20
    assert [ranks[i % 3][i // 3] for i in range(len(whole))] == whole
    assert max(map(len, ranks)) - min(map(len, ranks)) <= 1


def test_read_mixture_in_dataloader_workers_reads_each_row_once(sample_build, monkeypatch):
    """Wrapped in a torch IterableDataset with `num_workers=3`, every worker read the rank's whole
    share: each row came out three times. `split_by_worker=True` splits it; with False, a caller's
    own split (rank and world_size folded with the worker) is not split again; unset, an error. The worker is
    `torch.utils.data.get_worker_info()` as torch documents it (a stand-in: torch is not a dependency)."""
    import types

    mixture_dir, _ = sample_build
    whole = [r["id"] for r in sftmix.read_mixture(mixture_dir, "train", columns=["id"])]
    worker = types.SimpleNamespace(id=0, num_workers=3, seed=0, dataset=None)
    torch = types.SimpleNamespace(utils=types.SimpleNamespace(data=types.SimpleNamespace(get_worker_info=lambda: worker)))
    monkeypatch.setitem(sys.modules, "torch", torch)
    readers = []
    for rank in range(2):
        for worker.id in range(3):
            readers.append([r["id"] for r in sftmix.read_mixture(mixture_dir, "train", columns=["id"], batch_size=5,
                                                                 rank=rank, world_size=2, split_by_worker=True)])
    assert [readers[i % 6][i // 6] for i in range(len(whole))] == whole and sum(map(len, readers)) == len(whole)
    folded = [[r["id"] for r in sftmix.read_mixture(mixture_dir, "train", columns=["id"], rank=reader, world_size=6,
                                                    split_by_worker=False)] for reader in range(6)]
    assert folded == readers
    # unset in a worker: either default would repeat or lose rows for someone
    with pytest.raises(ValueError, match=r"^read_mixture runs in DataLoader worker 2 of 3: pass split_by_worker=True"):
        next(sftmix.read_mixture(mixture_dir, "train"))
    worker.num_workers = 1  # one worker: nothing to split
    assert [r["id"] for r in sftmix.read_mixture(mixture_dir, "train", columns=["id"])] == whole


@pytest.mark.parametrize("rank, world_size", [(2, 2), (-1, 2), (0, 0)])
def test_read_mixture_rejects_a_rank_outside_the_world(sample_build, rank, world_size):
    with pytest.raises(ValueError, match="rank must be in"):
        next(sftmix.read_mixture(sample_build[0], "train", rank=rank, world_size=world_size))


def test_same_manifest_same_shards(tmp_path):
    first = build(load(SAMPLE), tmp_path / "a")
    second = build(load(SAMPLE), tmp_path / "b")
    for split in ("train", "validation"):
        assert _table(tmp_path / "a" / "sample", split).equals(_table(tmp_path / "b" / "sample", split))
    assert first.split_rows == second.split_rows


def test_the_same_raw_bytes_written_again_give_byte_identical_shards(tmp_path):
    """A local file's modification time is in its stage settings (so that a rewrite is seen), never in
    the shards: the same bytes rewritten, or copied to another machine, mix to the same files."""
    raw = tmp_path / "glaive.json"
    raw.write_bytes((FIXTURES / "glaive" / "glaive-function-calling-v2.json").read_bytes())
    path = _manifest(tmp_path, [_glaive_source(local={"files": [str(raw)]})])
    shards = lambda: {f.relative_to(tmp_path): f.read_bytes() for f in sorted((tmp_path / "out" / "mini").glob("*/part-*.parquet"))}
    build(load(path), tmp_path / "out")
    first = shards()
    os.utime(raw, ns=(raw.stat().st_atime_ns, raw.stat().st_mtime_ns + 10**9))
    with pytest.raises(BuildError, match="other settings"):
        mix(load(path), Layout(tmp_path / "out", "mini"))  # the rewrite is seen
    build(load(path), tmp_path / "out")
    assert len(first) == 2 and shards() == first


NEAR_DEDUP = {"threshold_bands": 14, "rows_per_band": 8}


def _manifest(tmp_path: Path, sources: list[dict], holdout: int = 2, **fields) -> Path:
    """`m.yaml` of `sources`, with any other top-level `fields` (near_dedup, shard_rows, ...)."""
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({
        "mixture": "mini", "seed": 1, "holdout": {"size": holdout},
        "licence_policy": {"allow": ["apache-2.0", "cc-by-4.0"]}, "sources": sources, **fields,
    }))
    return path


def _filtered_rows(out_dir: Path, source: str) -> int:
    """Rows of `source` the filters kept, in a build of `mini` into `out_dir`."""
    return sum(pq.read_metadata(p).num_rows for p in Layout(out_dir, "mini").records(source, "filtered"))


def test_a_source_none_of_whose_rows_convert_fails_its_check_and_is_logged(tmp_path, caplog):
    glaive = {"key": "glaive", "converter": "glaive", "licence": "apache-2.0", "language": "en",
              "local": {"files": [str(FIXTURES / "glaive" / "glaive-function-calling-v2.json")]}, "targets": "all"}
    dolly_as_toucan = {"key": "dolly-as-toucan", "converter": "toucan", "licence": "apache-2.0", "language": "en",
                       "local": {"files": [str(FIXTURES / "dolly" / "databricks-dolly-15k.jsonl")]}, "targets": "all"}
    manifest = _manifest(tmp_path, [glaive, dolly_as_toucan])
    problem = ("source 'dolly-as-toucan': no row converted with converter 'toucan': all 10 rows read were dropped "
               "(malformed_json 1, malformed_row 9); the first malformed_row: KeyError: 'messages'; its columns: "
               "category, context, instruction, response. Is 'toucan' the converter for these files?")
    result = build_definitions(str(manifest), str(tmp_path / "dagster")).resolve_implicit_global_asset_job_def() \
        .execute_in_process(instance=DagsterInstance.ephemeral())
    assert result.success  # not blocking: the rows are counted drops, and the other sources are built
    checks = {e.asset_key.to_user_string(): e for e in result.get_asset_check_evaluations() if e.check_name == "rows_converted"}
    assert {key: check.passed for key, check in checks.items()} == {"glaive/normalized": True,
                                                                     "dolly_as_toucan/normalized": False}
    assert checks["dolly_as_toucan/normalized"].metadata["problem"].value == problem
    with caplog.at_level("WARNING", logger="sftmix"):
        build(load(manifest), tmp_path / "out")
    assert problem in caplog.messages


def test_a_short_cell_fails_targets_met_and_a_source_of_no_rows_fails_rows_converted(tmp_path):
    glaive = {"key": "glaive", "converter": "glaive", "licence": "apache-2.0", "language": "en",
              "local": {"files": [str(FIXTURES / "glaive" / "glaive-function-calling-v2.json")]}, "targets": {"en": 1000}}
    (tmp_path / "empty.json").write_text("[]")  # a JSON array of no rows: read, and not one row converts
    empty = {"key": "empty", "converter": "glaive", "licence": "apache-2.0", "language": "en",
             "local": {"files": ["empty.json"]}, "targets": "all"}
    # every record dropped by a rule (8 tokens meant as 8k): a cell taking `all` has no target to miss,
    # and every check passed
    tight = {"key": "tight", "converter": "dolly", "licence": "apache-2.0", "language": "en", "targets": "all",
             "local": {"files": [str(FIXTURES / "dolly" / "databricks-dolly-15k.jsonl")]}, "filters": {"length": {"max_tokens": 8}}}
    result = build_definitions(str(_manifest(tmp_path, [glaive, empty, tight])), str(tmp_path / "out")) \
        .resolve_implicit_global_asset_job_def().execute_in_process(instance=DagsterInstance.ephemeral())
    assert result.success  # neither check blocks: the card lists the deficit, the build goes on
    checks = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}
    assert not checks[("mixture", "targets_met")].passed
    (deficit,) = checks[("mixture", "targets_met")].metadata["deficits"].value
    assert (deficit["source"], deficit["target"]) == ("glaive", 1000)
    assert checks[("mixture", "targets_met")].metadata["rows_short"].value == deficit["deficit"] > 0
    assert not checks[("empty/normalized", "rows_converted")].passed
    assert checks[("empty/normalized", "rows_converted")].metadata["problem"].value == (
        "source 'empty': its raw files hold no rows")
    assert checks[("glaive/normalized", "rows_converted")].passed
    assert [key for key, check in checks.items() if key[1] == "rows_kept" and not check.passed] == [("tight/filtered", "rows_kept")]
    assert re.fullmatch(r"source 'tight': the rules dropped all \d+ of its records \(too_long_tokens \d+.*\)",
                        checks[("tight/filtered", "rows_kept")].metadata["problem"].value)


def test_a_generated_source_whose_rules_drop_every_row_fails_rows_kept(tmp_path, monkeypatch, caplog):
    """Every answer paid for and dropped (`max_tokens: 8` meant as 8k): every check passed, and the
    source was gone from the mixture."""
    from openai_server import serve_openai

    monkeypatch.setenv("SFTMIX_LLM_API_KEY", "sk-test")
    manifest = _manifest(tmp_path, [_wildchat_source(), _responses_source(filters={"length": {"max_tokens": 8}}),
                                    _dolly_source()], holdout=0)
    problem = r"source 'responses': all \d+ rows it generated or tried were dropped \(too_long_tokens \d+.*\)"
    with serve_openai(lambda messages, body: "Here is a short and direct answer to your request.") as server:
        monkeypatch.setenv("SFTMIX_LLM_BASE_URL", server.base_url)
        result = build_definitions(str(manifest), str(tmp_path / "out")) \
            .resolve_implicit_global_asset_job_def().execute_in_process(instance=DagsterInstance.ephemeral())
        with caplog.at_level("WARNING", logger="sftmix"):
            build(load(manifest), tmp_path / "in-process")
    assert result.success  # not blocking, as for a converted source
    checks = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}
    assert [key for key, check in checks.items() if not check.passed] == [("responses/filtered", "rows_kept")]
    assert re.fullmatch(problem, checks[("responses/filtered", "rows_kept")].metadata["problem"].value)
    assert any(re.fullmatch(problem, message) for message in caplog.messages)


def test_build_makes_a_generators_inputs_first_whatever_the_manifest_order(tmp_path, monkeypatch):
    """`build` went in manifest order, and a generator listed before its input stopped on "its
    filtered stage has not completed: build that source again"; Dagster orders the assets itself."""
    from openai_server import serve_openai

    monkeypatch.setenv("SFTMIX_LLM_API_KEY", "sk-test")
    manifest = load(_manifest(tmp_path, [_responses_source(), _dolly_source(), _wildchat_source()], holdout=0))
    with serve_openai(lambda messages, body: "Here is a short and direct answer to your request.") as server:
        monkeypatch.setenv("SFTMIX_LLM_BASE_URL", server.base_url)
        result = build(manifest, tmp_path / "out")
    assert result.by_source["train"]["responses"] > 0 and result.by_source["train"]["dolly"] > 0


def test_rows_beyond_a_target_are_counted(tmp_path):
    """Every filtered row is in a split, in a rejected file or in a count: those a cell leaves
    unsampled were in none of them."""
    glaive = {"key": "glaive", "converter": "glaive", "licence": "apache-2.0", "language": "en",
              "local": {"files": [str(FIXTURES / "glaive" / "glaive-function-calling-v2.json")]}, "targets": {"en": 3}}
    result = build(load(_manifest(tmp_path, [glaive])), tmp_path / "out")  # holdout 2
    filtered = _filtered_rows(tmp_path / "out", "glaive")
    assert filtered > 5 and result.split_rows == {"train": 3, "validation": 2}
    assert result.excluded == {"glaive": {"beyond_target": filtered - 5}}
    assert json.loads((tmp_path / "out" / "mini" / "stats.json").read_text())["excluded"] == result.excluded
    assert f"| glaive | beyond_target | {filtered - 5} |" in (tmp_path / "out" / "mini" / "README.md").read_text()


def test_shortfall_is_reported_as_deficit_not_hidden(tmp_path):
    glaive = {"key": "glaive", "converter": "glaive", "licence": "apache-2.0", "language": "en",
              "local": {"files": [str(FIXTURES / "glaive" / "glaive-function-calling-v2.json")]}, "targets": {"en": 1000}}
    result = build(load(_manifest(tmp_path, [glaive])), tmp_path / "out")
    (deficit,) = result.deficits
    assert deficit["source"] == "glaive" and deficit["target"] == 1000
    assert deficit["train"] == result.split_rows["train"] and deficit["deficit"] == 1000 - deficit["train"]
    assert result.split_rows["validation"] == 2
    card = (tmp_path / "out" / "mini" / "README.md").read_text()
    assert f"| glaive | en | 1,000 | {deficit['train']} | {deficit['deficit']} |" in card
    # A holdout that no cell giving rows can fill: its deficit names the validation rows, not train
    # ones. (With a cell giving rows, it would take them all and leave train none: `EmptyTrainSplit`;
    # with none, the manifest is refused at load, so its holdout is set here.)
    manifest = load(_manifest(tmp_path, [{**glaive, "targets": {"en": 0}}], holdout=0))
    manifest.holdout.size = 1000
    result = build(manifest, tmp_path / "big")
    (holdout_short,) = result.deficits
    assert holdout_short == {"source": "*holdout*", "language": "*", "target": 1000, "validation": 0,
                             "deficit": 1000, "available": 0}
    assert result.split_rows == {"train": 0, "validation": 0}
    assert "| *holdout* | * | 1,000 | 0 | 1,000 |" in (tmp_path / "big" / "mini" / "README.md").read_text()



def _card_table(card: str, title: str) -> list[list[str]]:
    """The rows of the card's table under `## <title>`, each cell's text."""
    section = card.split(f"\n## {title}\n\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")][1:]  # after the header
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_card_and_stats_count_rows_by_source_x_language_and_name_each_sources_licences(tmp_path):
    """The card and stats.json counted rows by source, by language and by licence apart: the source
    x language cells the targets are set in, and the licences a source's rows carry (tower-blocks:
    several), were only in the shards (helper audit)."""
    from sftmix.build import mixed_result, write_card

    tower = {"key": "tower-blocks", "converter": "tower_blocks", "targets": {"en": "all", "es": 1, "pt": "all", "ca": 5},
             "local": {"files": [str(FIXTURES / "tower_blocks" / "train-00000-of-00004.parquet")]}}
    aya = {"key": "aya", "converter": "aya", "licence": "apache-2.0", "targets": "all",
           "local": {"files": [str(FIXTURES / "aya" / "train-00000-of-00001.parquet")]}}
    glaive = {"key": "glaive", "converter": "glaive", "licence": "apache-2.0", "language": "en", "targets": {"*": 3},
              "local": {"files": [str(FIXTURES / "glaive" / "glaive-function-calling-v2.json")]}}
    path = _manifest(tmp_path, [tower, aya, glaive],
                     licence_policy={"allow": ["apache-2.0", "cc-by-4.0", "cc-by-sa-4.0", "mit"]})
    layout = Layout(tmp_path / "out", "mini")
    build(load(path), tmp_path / "out")
    rows = {split: _table(layout.mixture_dir, split).select(["source", "language", "licence"]).to_pylist()
            for split in ("train", "validation")}

    def in_shards(column: str) -> dict[str, dict[str, dict[str, int]]]:  # split -> source -> value -> rows
        return {split: {source: dict(Counter(r[column] for r in split_rows if r["source"] == source))
                        for source in {r["source"] for r in split_rows}} for split, split_rows in rows.items()}

    cells, licences = in_shards("language"), in_shards("licence")
    assert len(cells["train"]["aya"]) > 1 and len(licences["train"]["tower-blocks"]) > 1 and rows["validation"]
    stats = json.loads((layout.mixture_dir / "stats.json").read_text())
    assert stats["by_cell"] == cells and stats["by_source_licence"] == licences

    card = (layout.mixture_dir / "README.md").read_text()
    # a cell of no rows is there with its target; a source's one target over all its languages beside each
    targets = {("tower-blocks", "en"): "all", ("tower-blocks", "es"): "1", ("tower-blocks", "pt"): "all",
               ("tower-blocks", "ca"): "5"}
    expected = {(source, language): [cells["train"].get(source, {}).get(language, 0),
                                     cells["validation"].get(source, {}).get(language, 0),
                                     targets.get((source, language)) or {"aya": "all (*)", "glaive": "3 (*)"}[source]]
                for source, language in targets.keys() | {(s, l) for split in cells.values() for s in split for l in split[s]}}
    assert ("tower-blocks", "ca") not in {(s, l) for split in cells.values() for s in split for l in split[s]}
    assert {(source, language): [int(train), int(validation), target] for source, language, train, validation, target
            in _card_table(card, "Rows by source × language")} == expected
    assert {source: carried for source, _, _, carried in _card_table(card, "Rows by source")} == {
        source: ", ".join(sorted({lic for split in licences.values() for lic in split.get(source, {})}))
        for source in ("tower-blocks", "aya", "glaive")}

    # a stats.json of an sftmix that did not count them: counted from the shards, not a card of empty cells
    # (nor a refusal: mixing again would first rebuild every source, as this sftmix's code is another)
    stats_path = layout.mixture_dir / "stats.json"
    stats_path.write_text(json.dumps({k: v for k, v in stats.items() if k not in ("by_cell", "by_source_licence")}))
    (layout.mixture_dir / "README.md").unlink()
    write_card(load(path), layout, mixed_result(layout))
    assert (layout.mixture_dir / "README.md").read_text() == card


# The Hugging Face Hub's licence ids: hub-docs docs/hub/repositories-licenses.md (its "region
# licenses" table, 2026-08), the list the Hub checks a card's `license:` against ("\"license\" must
# be one of [...]", huggingface_hub#4218)
HUB_LICENCES = frozenset({
    "apache-2.0", "mit", "openrail", "bigscience-openrail-m", "creativeml-openrail-m", "bigscience-bloom-rail-1.0",
    "bigcode-openrail-m", "afl-3.0", "artistic-2.0", "bsl-1.0", "bsd", "bsd-2-clause", "bsd-3-clause",
    "bsd-3-clause-clear", "c-uda", "cc", "cc0-1.0", "cc-by-2.0", "cc-by-2.5", "cc-by-3.0", "cc-by-4.0", "cc-by-sa-3.0",
    "cc-by-sa-4.0", "cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0", "cc-by-nd-4.0", "cc-by-nc-nd-3.0", "cc-by-nc-nd-4.0",
    "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0", "cdla-sharing-1.0", "cdla-permissive-1.0",
    "cdla-permissive-2.0", "wtfpl", "ecl-2.0", "epl-1.0", "epl-2.0", "etalab-2.0", "eupl-1.1", "eupl-1.2", "agpl-3.0",
    "gfdl", "gpl", "gpl-2.0", "gpl-3.0", "lgpl", "lgpl-2.1", "lgpl-3.0", "isc", "h-research", "intel-research",
    "lppl-1.3c", "ms-pl", "apple-ascl", "apple-amlr", "mpl-2.0", "odc-by", "odbl", "openmdw-1.0", "openmdw-1.1",
    "openrail++", "osl-3.0", "postgresql", "ofl-1.1", "ncsa", "unlicense", "zlib", "pddl", "lgpl-lr",
    "deepfloyd-if-license", "fair-noncommercial-research-license", "llama2", "llama3", "llama3.1", "llama3.2",
    "llama3.3", "llama4", "grok2-community", "gemma", "unknown", "other",
})


def test_every_licence_rows_carry_is_the_hubs_id_or_named_on_the_card():
    """`cc-by-sa-2.0` and `odc-by-1.0` went into the card's `license:` as the rows carried them: the
    Hub has no such ids, and refuses a card that names one."""
    from sftmix.record import HUB_SPELLINGS, KNOWN_LICENCES, NOT_ON_HUB, hub_licence

    assert KNOWN_LICENCES - NOT_ON_HUB.keys() <= HUB_LICENCES and not NOT_ON_HUB.keys() & HUB_LICENCES
    assert set(HUB_SPELLINGS.values()) <= KNOWN_LICENCES - NOT_ON_HUB.keys() and not HUB_SPELLINGS.keys() & KNOWN_LICENCES
    assert {hub_licence(licence) for licence in KNOWN_LICENCES | HUB_SPELLINGS.keys() | {"gpl-9"}} <= HUB_LICENCES
    assert (hub_licence("odc-by-1.0"), hub_licence("cc-by-sa-2.0"), hub_licence("gpl-9")) == ("odc-by", "other", "other")
    # an input licence of a stats.json written before they were read as `licence_id`s: it was `other`
    assert (hub_licence("CC-BY-4.0"), hub_licence("ODC-By-1.0")) == ("cc-by-4.0", "odc-by")


def _card_of(tmp_path: Path, own: dict[str, int], inputs: dict[str, int]) -> str:
    """The card of a mixing whose train rows carry the licences `own` and name `inputs` as input licences."""
    from sftmix.card import render
    from sftmix.mixing import MixResult

    result = MixResult(tmp_path, split_rows={"train": sum(own.values()), "validation": 0}, by_source={}, by_language={},
                       by_licence={"train": own}, by_cell={}, by_source_licence={}, by_input_licence={"train": inputs})
    return render(load(_manifest(tmp_path, [_glaive_source()])), result)


def test_the_one_licence_the_hub_has_no_id_for_is_named_with_a_link_to_its_text(tmp_path):
    """`license_link` led to the licence's deed, a summary, where the Hub asks for the licence's text."""
    card = _card_of(tmp_path, {"apache-2.0": 3, "cc-by-sa-2.0": 1}, {})
    header = yaml.safe_load(card.split("---")[1])
    assert (header["license"], header["license_name"], header["license_link"]) == (
        ["apache-2.0", "other"], "cc-by-sa-2.0", "https://creativecommons.org/licenses/by-sa/2.0/legalcode")
    assert "the header's `other` stands for" not in card.lower()


@pytest.mark.parametrize("own, inputs, stands_for", [
    ({"cc-by-sa-2.0": 3, "other": 1}, {},
     "`cc-by-sa-2.0`, which the Hub has no id for, and for the licences rows call `other`"),
    ({"cc-by-sa-2.0": 3}, {"gpl-9": 1}, "`cc-by-sa-2.0`, `gpl-9`, which the Hub has no id for"),
    ({"apache-2.0": 3, "other": 1}, {}, "the licences rows call `other`"),
])
def test_an_other_standing_for_several_licences_names_none_and_says_which(tmp_path, own, inputs, stands_for):
    """A header takes one `license_name`: with `other` standing for several licences it names none. The
    card said "The Hub has no id for `cc-by-sa-2.0`, `other`", and `other` is a Hub id itself."""
    card = _card_of(tmp_path, own, inputs)
    header = yaml.safe_load(card.split("---")[1])
    assert "other" in header["license"] and not {"license_name", "license_link"} & header.keys()
    assert (f" The header's `other` stands for {stands_for}: it names no `license_name` or `license_link`, which take "
            "one licence of known text.\n") in card


def test_the_cards_licences_are_the_hubs_ids_with_the_input_licences_of_generated_rows(tmp_path, monkeypatch):
    """The card's `license:` named the rows' own licences only: rows generated from data under another
    licence (fineweb_edu_qa's, from odc-by FineWeb-Edu documents), which the shards' footers name, were
    not there; and a licence the Hub has no id for went in as the rows spell it, with no `license_name`
    and `license_link`, which the Hub's card spec asks of `license: other`."""
    from openai_server import serve_openai

    from sftmix.build import mixed_result, write_card

    prompts = {"key": "prompts", "converter": "dolly", "licence": "cc-by-4.0", "language": "en", "targets": {},
               "local": {"files": [str(FIXTURES / "dolly" / "databricks-dolly-15k.jsonl")]}}
    responses = {"key": "responses", "generator": {"name": "wildchat_responses", "inputs": ["prompts"]},
                 "licence": "apache-2.0", "targets": {"en": 4}, "filters": {"language": False}}
    path = _manifest(tmp_path, [prompts, responses, _glaive_source(licence="cc-by-sa-2.0", targets={"*": 3})],
                     licence_policy={"allow": ["apache-2.0", "cc-by-sa-2.0"]})
    monkeypatch.setenv("SFTMIX_LLM_API_KEY", "sk-test")
    with serve_openai(lambda messages, body: "Here is a careful answer to that question.") as server:
        monkeypatch.setenv("SFTMIX_LLM_BASE_URL", server.base_url)
        build(load(path), tmp_path / "out")
    layout = Layout(tmp_path / "out", "mini")
    inputs_named = {split: Counter(licence for row in _table(layout.mixture_dir, split)["origin"].to_pylist()
                                   for licence in json.loads(row).get("input_licences", []))
                    for split in ("train", "validation")}
    assert inputs_named["train"]["cc-by-4.0"] > 0 and set(inputs_named["train"]) == {"cc-by-4.0"}
    stats = json.loads((layout.mixture_dir / "stats.json").read_text())
    assert stats["by_input_licence"] == {split: dict(counts) for split, counts in inputs_named.items()}

    card = (layout.mixture_dir / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    # the rows' apache-2.0, their inputs' cc-by-4.0, and cc-by-sa-2.0 (no Hub id) as `other`, named
    assert header["license"] == ["apache-2.0", "cc-by-4.0", "other"] and set(header["license"]) <= HUB_LICENCES
    assert (header["license_name"], header["license_link"]) == (
        "cc-by-sa-2.0", "https://creativecommons.org/licenses/by-sa/2.0/legalcode")
    assert "a licence of only these rows is an *input licence*" in card
    own = {split: Counter(_table(layout.mixture_dir, split)["licence"].to_pylist()) for split in ("train", "validation")}
    assert _card_table(card, "Rows by licence") == [
        [licence, *(str(counts[licence]) for counts in (*own.values(), *inputs_named.values())), hub_id]
        for licence, hub_id in (("apache-2.0", "apache-2.0"), ("cc-by-4.0", "cc-by-4.0"), ("cc-by-sa-2.0", "other"))]

    # a stats.json of an sftmix that did not count them: counted from the shards
    (layout.mixture_dir / "stats.json").write_text(json.dumps({k: v for k, v in stats.items() if k != "by_input_licence"}))
    write_card(load(path), layout, mixed_result(layout))
    assert (layout.mixture_dir / "README.md").read_text() == card


def _glaive_and_xlam(glaive_target, xlam_target) -> list[dict]:
    return [{"key": "glaive", "converter": "glaive", "licence": "apache-2.0", "language": "en", "targets": glaive_target,
             "local": {"files": [str(FIXTURES / "glaive" / "glaive-function-calling-v2.json")]}},
            {"key": "xlam", "converter": "xlam", "licence": "cc-by-4.0", "language": "en", "targets": xlam_target,
             "local": {"files": [str(FIXTURES / "xlam" / "xlam_function_calling_60k.json")]}}]


def test_the_holdout_keeps_its_size_before_a_cells_train_target(tmp_path):
    """A cell short of its holdout share passes the rest to rows within other cells' train targets
    once rows beyond them run out: the holdout's exact size is checked, a train target only warned of."""
    result = build(load(_manifest(tmp_path, _glaive_and_xlam({"en": 100}, {"en": 1000}))), tmp_path / "out")
    rows = {key: _filtered_rows(tmp_path / "out", key) for key in ("glaive", "xlam")}
    holdout = sum(rows.values()) - 1
    result = build(load(_manifest(tmp_path, _glaive_and_xlam({"en": 100}, {"en": 1000}), holdout=holdout)), tmp_path / "out")
    assert result.split_rows == {"train": 1, "validation": holdout}
    assert [d["source"] for d in result.deficits] == ["glaive", "xlam"]  # no *holdout* deficit
    # a target of 0 gives no row, to train or to the holdout
    result = build(load(_manifest(tmp_path, _glaive_and_xlam({"en": 0}, "all"), holdout=3)), tmp_path / "out")
    assert result.by_source == {"train": {"xlam": rows["xlam"] - 3}, "validation": {"xlam": 3}}
    assert result.excluded["glaive"] == {"language_not_targeted": rows["glaive"]}
    # nor does it keep a later source's copies of its rows from the holdout: counted as copies glaive
    # might take, they were no holdout rows, and the holdout fell short while they went to train
    glaive, _ = _glaive_and_xlam({"en": 0}, "all")
    copy = {**glaive, "key": "copy", "targets": "all"}
    result = build(load(_manifest(tmp_path, [glaive, copy], holdout=3)), tmp_path / "out")
    assert result.by_source == {"train": {"copy": rows["glaive"] - 3}, "validation": {"copy": 3}} and not result.deficits


def test_a_rebuild_removes_the_temporaries_a_killed_run_left_in_the_mixture(tmp_path):
    """A run killed while writing a rejected file or stats.json leaves `.<name>.<pid>.tmp` beside
    the files the card counts; the next run that writes that file removes it, and leaves alone the
    temporaries of a process still running."""
    glaive = {"key": "glaive", "converter": "glaive", "licence": "apache-2.0", "language": "en",
              "local": {"files": [str(FIXTURES / "glaive" / "glaive-function-calling-v2.json")]}, "targets": "all"}
    manifest = load(_manifest(tmp_path, [glaive]))
    build(manifest, tmp_path / "out")
    mixture = tmp_path / "out" / "mini"
    stopped = subprocess.Popen([sys.executable, "-c", "pass"])
    stopped.wait()
    names = ["rejected/glaive.normalized-00000.parquet", "rejected/glaive.filtered-00000.parquet",
             "rejected/glaive.mixing-00000.parquet", "stats.json"]
    left = [mixture / Path(name).parent / f".{Path(name).name}.{stopped.pid}.tmp" for name in names]
    running = mixture / "rejected" / f".glaive.mixing-00000.parquet.{os.getppid()}.tmp"
    for path in [*left, running]:
        path.write_bytes(b"PAR1")
    (tmp_path / "glaive.json").write_text("[]")  # a change to the raw input: every stage runs again
    build(load(_manifest(tmp_path, [{**glaive, "local": {"files": [
        str(FIXTURES / "glaive" / "glaive-function-calling-v2.json"), str(tmp_path / "glaive.json")]}}])), tmp_path / "out")
    assert [path for path in left if path.exists()] == [] and running.exists()


def test_a_holdout_that_would_leave_train_empty_stops_the_mixing_and_keeps_the_last_mixture(tmp_path):
    glaive = {"key": "glaive", "converter": "glaive", "licence": "apache-2.0", "language": "en",
              "local": {"files": [str(FIXTURES / "glaive" / "glaive-function-calling-v2.json")]}, "targets": "all"}
    build(load(_manifest(tmp_path, [glaive])), tmp_path / "out")
    mixture = tmp_path / "out" / "mini"

    def mixed():  # the mixing's files: the splits, stats.json, the card and the mixing's drops
        files = [p for p in mixture.rglob("*") if p.is_file() and ".normalized-" not in p.name and ".filtered-" not in p.name]
        return {p.relative_to(mixture): p.read_bytes() for p in files}

    before = mixed()
    assert {"train", "validation", "stats.json", "README.md"} <= {p.parts[0] for p in before}
    rows = _filtered_rows(tmp_path / "out", "glaive")
    message = (f"mixture 'mini': the holdout (holdout.size {{size:,}}) would take all {rows:,} rows of the cells "
               f"with a train target, and train none: set holdout.size below {rows:,}")
    for holdout in (rows, rows + 1000):
        with pytest.raises(EmptyTrainSplit) as raised:
            build(load(_manifest(tmp_path, [glaive], holdout=holdout)), tmp_path / "out")
        assert str(raised.value) == message.format(size=holdout)
    # A second source holding the same conversations: its copies of the holdout's rows are dropped,
    # so train would be empty though its share counted them.
    copy = {**glaive, "key": "copy"}
    with pytest.raises(EmptyTrainSplit, match=f"would take all {rows:,} rows"):
        build(load(_manifest(tmp_path, [glaive, copy], holdout=rows)), tmp_path / "out")
    assert mixed() == before
    # every row dropped (here: the converter changed; or a Hub file's new layout): the last mixture
    # was replaced by empty shards and a card no loader reads, with only deficits to say so
    with pytest.raises(EmptyTrainSplit, match="^mixture 'mini': the cells with a train target have no row to give "):
        build(load(_manifest(tmp_path, [{**glaive, "converter": "toucan"}])), tmp_path / "out")
    assert mixed() == before
    result = build(load(_manifest(tmp_path, [glaive], holdout=rows - 1)), tmp_path / "out")
    assert result.split_rows == {"train": 1, "validation": rows - 1}
    # with no cell wanting train rows there is nothing to refuse
    result = build(load(_manifest(tmp_path, [{**glaive, "targets": {"en": 0}}], holdout=0)), tmp_path / "out")
    assert result.split_rows == {"train": 0, "validation": 0}


def test_sampling_is_stable_when_raw_rows_are_added(tmp_path):
    """Hash-based selection: growing the raw data keeps earlier picks unless a new row outranks them."""
    rows = json.loads((FIXTURES / "glaive" / "glaive-function-calling-v2.json").read_text())
    small, large = tmp_path / "small.json", tmp_path / "large.json"
    small.write_text(json.dumps(rows[:8]))
    large.write_text(json.dumps(rows))

    def selected(path, out):
        src = {"key": "g", "converter": "glaive", "licence": "apache-2.0", "language": "en",
               "local": {"files": [str(path)]}, "targets": {"en": 2}, "filters": {"language": False}}
        build(load(_manifest(tmp_path, [src], holdout=0)), out)
        return _table(out / "mini", "train")["id"].to_pylist()

    before, after = selected(small, tmp_path / "o1"), selected(large, tmp_path / "o2")
    assert len(before) == len(after) == 2
    new_ids = set(pq.read_table(tmp_path / "o2" / ".sftmix-work" / "mini" / "filtered" / "g")["id"].to_pylist()) \
        - set(pq.read_table(tmp_path / "o1" / ".sftmix-work" / "mini" / "filtered" / "g")["id"].to_pylist())
    assert all(i in after or i in new_ids for i in before) or set(after) - set(before) <= new_ids


def test_missing_input_is_a_clear_error_and_leaves_no_split(tmp_path):
    src = {"key": "gone", "converter": "glaive", "licence": "apache-2.0", "language": "en",
           "local": {"files": [str(tmp_path / "nope.json")]}, "targets": "all"}
    with pytest.raises(BuildError, match="nope.json"):
        build(load(_manifest(tmp_path, [src])), tmp_path / "out")
    assert not (tmp_path / "out" / "mini" / "train").exists()


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_normalized_part_fails_its_filter_stage_naming_it(tmp_path, how):
    src = {"key": "g", "converter": "glaive", "licence": "apache-2.0", "language": "en",
           "local": {"files": [str(FIXTURES / "glaive" / "glaive-function-calling-v2.json")]}, "targets": "all"}
    manifest = load(_manifest(tmp_path, [src]))
    layout = Layout(tmp_path / "out", "mini")
    normalize_source(manifest, manifest.sources[0], [Path(src["local"]["files"][0])], layout)
    [part] = layout.records("g", "normalized")
    damage(part, how)
    with pytest.raises(UnreadableParquet, match=re.escape(f"cannot read {part}: ")):
        filter_source(manifest, manifest.sources[0], layout)
    assert layout.records("g", "filtered") == []


def test_hub_source_downloads_at_pinned_revision(tmp_path, monkeypatch):
    sha = "a" * 40
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    raw = (FIXTURES / "glaive" / "glaive-function-calling-v2.json").read_bytes()
    with serve_hub({"glaiveai/glaive-function-calling-v2": {"sha": sha, "files": {"glaive-function-calling-v2.json": raw}}}) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        src = {"key": "glaive", "converter": "glaive", "licence": "apache-2.0", "language": "en", "targets": "all",
               "hub": {"id": "glaiveai/glaive-function-calling-v2", "revision": sha, "files": ["*.json"]}}
        manifest = load(_manifest(tmp_path, [src]))
        result = build(manifest, tmp_path / "out")
        downloads = url.count("GET", "/resolve/")
        build(manifest, tmp_path / "out")  # a rebuild is served from the cache
        assert url.count("GET", "/resolve/") == downloads == 1
    assert result.split_rows["train"] > 0
    origin = json.loads(next(sftmix.read_mixture(tmp_path / "out" / "mini", "train"))["origin"])
    assert origin["hub_id"] == "glaiveai/glaive-function-calling-v2" and origin["revision"] == sha


def test_unpinned_hub_source_is_refused(tmp_path):
    src = {"key": "glaive", "converter": "glaive", "licence": "apache-2.0", "language": "en", "targets": "all",
           "hub": {"id": "glaiveai/glaive-function-calling-v2", "revision": None, "files": ["*.json"]}}
    with pytest.raises(BuildError, match="not pinned"):
        build(load(_manifest(tmp_path, [src])), tmp_path / "out")


def test_fc_mixture_samples_the_built_instruct_mixture(tmp_path):
    """A source may be another manifest's mixture: its train rows keep their source licence."""
    inner = load(SAMPLE)
    build(inner, tmp_path / "out")
    outer = tmp_path / "outer.yaml"
    outer.write_text(yaml.safe_dump({
        "mixture": "outer", "seed": 3, "holdout": {"size": 0},
        "licence_policy": {"allow": inner.licence_policy["allow"]},
        "sources": [{"key": "sample-of-sample", "mixture": {"manifest": str(SAMPLE)}, "targets": {"*": 10}}],
    }))
    result = build(load(outer), tmp_path / "out")
    rows = list(sftmix.read_mixture(tmp_path / "out" / "outer"))
    assert result.split_rows["train"] == len(rows) == 10
    inner_rows = {r["id"]: r for r in sftmix.read_mixture(tmp_path / "out" / "sample")}
    for row in rows:
        assert row["id"] in inner_rows and row["licence"] == inner_rows[row["id"]]["licence"]
        assert row["messages"] == inner_rows[row["id"]]["messages"]


def test_a_mixture_rebuilt_from_a_changed_raw_file_makes_the_rows_sampled_from_it_stale(tmp_path):
    """Records of another mixture were checked against its manifest's hash only, which a rewritten raw
    file (a takedown), new code or a new benchmark file leaves as it was: after the inner mixture was
    rebuilt from 12 of its 128 raw rows (48 mixed rows, now 6), the outer one mixed its 48 again."""
    rows = json.loads((FIXTURES / "glaive" / "glaive-function-calling-v2.json").read_text())
    many = [dict(row, chat=row["chat"].replace("USER: ", f"USER: ({i}) ", 1)) for i in range(8) for row in rows]
    raw = tmp_path / "glaive.json"
    raw.write_text(json.dumps(many))
    inner = _manifest(tmp_path, [_glaive_source(local={"files": [str(raw)]})], holdout=0)
    outer = tmp_path / "outer.yaml"
    outer.write_text(yaml.safe_dump({"mixture": "outer", "seed": 3, "holdout": {"size": 0},
                                     "licence_policy": {"allow": ["apache-2.0"]},
                                     "sources": [{"key": "of-inner", "mixture": {"manifest": str(inner)}, "targets": "all"}]}))
    out = tmp_path / "out"
    build(load(inner), out)
    assert build(load(outer), out).split_rows["train"] == 48

    raw.write_text(json.dumps(many[:12]))
    with pytest.raises(BuildError, match=r"^source 'of-inner' samples mixture 'mini', mixed from records its sources' "
                                         r"settings no longer make .*: build it again first$"):
        build(load(outer), out)
    with pytest.raises(BuildError, match=r"source 'of-inner': its filtered records were made with other settings .*mixed_sources"):
        mix(load(outer), Layout(out, "outer"))  # the outer mixing alone, as `--select mixture` runs it
    build(load(inner), out)
    assert build(load(outer), out).split_rows["train"] == 6
    outer_ids = {row["id"] for row in sftmix.read_mixture(out / "outer", columns=["id"])}
    assert outer_ids == {row["id"] for row in sftmix.read_mixture(out / "mini", columns=["id"])}
    stats = out / "mini" / "stats.json"  # as mixed before the settings were recorded
    stats.write_text(json.dumps({k: v for k, v in json.loads(stats.read_text()).items() if k != "mixed_sources"}))
    with pytest.raises(BuildError, match=r"^source 'of-inner' samples mixture 'mini', mixed by an sftmix that did not "
                                         r"record its sources' settings: build it again first$"):
        sftmix.build.raw_files(load(outer), load(outer).sources[0], Layout(out, "outer"), out / ".hf-cache")


def test_a_mixture_rebuilt_with_other_generated_rows_makes_the_rows_sampled_from_it_stale(tmp_path, monkeypatch):
    """A generated source refused (402) after 2 answers gave the inner mixture 2 rows; rebuilt once
    topped up, more. Its manifest and its sources' settings were as before, and the outer mixing
    alone (the README's way to learn what needs building again) published its sample of the 2 again."""
    from openai_server import Fault, serve_openai

    monkeypatch.setenv("SFTMIX_LLM_API_KEY", "sk-test")
    inner = _manifest(tmp_path, [_wildchat_prompts(tmp_path, 10), _responses_source()], holdout=0,
                      licence_policy={"allow": ["apache-2.0", "odc-by"]})
    outer = tmp_path / "outer.yaml"
    outer.write_text(yaml.safe_dump({"mixture": "outer", "seed": 3, "holdout": {"size": 0},
                                     "licence_policy": {"allow": ["apache-2.0"]},
                                     "sources": [{"key": "of-inner", "mixture": {"manifest": str(inner)}, "targets": "all"}]}))
    out = tmp_path / "out"

    def respond(messages, body):
        if server.count() == 2:  # the account runs dry: every later request is refused
            server.faults.append(Fault("server_error", status=402, count=None))
        return "Here is a short and direct answer to your request."

    with serve_openai(respond) as server:
        monkeypatch.setenv("SFTMIX_LLM_BASE_URL", server.base_url)
        build(load(inner), out)
        assert build(load(outer), out).split_rows["train"] == 2
        server.faults.clear()  # topped up
        rows = build(load(inner), out).split_rows["train"]
        assert rows == 10
        with pytest.raises(BuildError, match=r"^source 'of-inner': its filtered records were made with other settings "
                                             r"than .*outer.yaml has now \(raw\.rows_digest: \"\w+\" -> \"\w+\"\): "):
            mix(load(outer), Layout(out, "outer"))
        assert build(load(outer), out).split_rows["train"] == rows
        build(load(inner), out)  # the same rows again (its answers are cached): nothing to build again
    assert mix(load(outer), Layout(out, "outer")).split_rows["train"] == rows


def test_synthetic_source_without_api_key_fails_fast_naming_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("SFTMIX_LLM_API_KEY", raising=False)
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    glaive = {"key": "glaive", "converter": "glaive", "licence": "apache-2.0", "language": "en",
              "local": {"files": [str(FIXTURES / "glaive" / "glaive-function-calling-v2.json")]}, "targets": {}}
    synthetic = {"key": "fc", "generator": {"name": "fc_synthesis", "inputs": ["glaive"]}, "licence": "apache-2.0",
                 "targets": {"en": 5}}
    with pytest.raises(BuildError) as error:
        build(load(_manifest(tmp_path, [glaive, synthetic])), tmp_path / "out")
    message = str(error.value)
    assert "\n" not in message and "SFTMIX_LLM_API_KEY" in message and "'fc'" in message
    assert not (tmp_path / "out" / "mini" / "train").exists()


def test_shards_are_byte_identical_with_one_or_two_workers(tmp_path):
    """Workers split the rows; the mixture must not depend on how many there were."""
    rows = json.loads((FIXTURES / "glaive" / "glaive-function-calling-v2.json").read_text())
    grown = [dict(r, chat=r["chat"].replace("USER: ", f"USER: ({i}) ", 1)) for i in range(256) for r in rows]
    # Copies of rows 1024-1323 (raw block 1, worker 1 of 2) at rows 4096-4395 (block 4, worker 0): with
    # two workers each copy is first seen by a different worker, with one the original comes first.
    assert len(grown) == 4096
    grown += grown[1024:1324]
    # and copies of rows of block 0 in blocks 1 and 2: with two workers, block 2's come first
    grown[1024:1034], grown[2048:2058] = grown[0:10], grown[10:20]
    raw = tmp_path / "glaive-function-calling-v2.json"
    raw.write_text(json.dumps(grown))
    src = {"key": "g", "converter": "glaive", "licence": "apache-2.0", "language": "en",
           "local": {"files": [str(raw)]}, "targets": {"en": 900}}
    manifest = load(_manifest(tmp_path, [src], holdout=20))
    one = build(manifest, tmp_path / "w1", workers=1)
    two = build(manifest, tmp_path / "w2", workers=2)
    assert len(list((tmp_path / "w2" / ".sftmix-work" / "mini" / "normalized" / "g").glob("part-*.parquet"))) == 2
    assert one.split_rows == two.split_rows == {"train": 900, "validation": 20}
    assert one.excluded["g"]["duplicate_within_source"] == two.excluded["g"]["duplicate_within_source"] > 0
    # the stage's seconds by step are each worker's, summed
    filtered = tmp_path / "w2" / ".sftmix-work" / "mini" / "filtered"
    per_worker = [json.loads(p.read_text())["counts"]["seconds"] for p in sorted((filtered / "g").glob(".counts-*.json"))]
    saved = json.loads((filtered / "g.done.json").read_text())["counts"]["seconds"]
    assert len(per_worker) == 2 and saved.keys() == per_worker[0].keys() >= {"read", "tool_calls", "write", "total"}
    assert all(saved[step] == pytest.approx(sum(w[step] for w in per_worker), abs=0.002) for step in saved)
    # the records' digest (the stages' Dagster data version) too
    for stage in ("normalized", "filtered"):
        digests = {Layout(tmp_path / w, "mini").read_done("g", stage)["records"] for w in ("w1", "w2")}
        assert len(digests) == 1
    for split in ("train", "validation"):
        files_one = sorted((tmp_path / "w1" / "mini" / split).glob("*.parquet"))
        files_two = sorted((tmp_path / "w2" / "mini" / split).glob("*.parquet"))
        assert [f.name for f in files_one] == [f.name for f in files_two]
        assert all(a.read_bytes() == b.read_bytes() for a, b in zip(files_one, files_two))
    # and so are the rows the mixing dropped (the duplicates of the copies), in the same order
    drops_one, drops_two = (pq.read_table(tmp_path / w / "mini" / "rejected" / "g.mixing-00000.parquet") for w in ("w1", "w2"))
    assert drops_one.num_rows == one.excluded["g"]["duplicate_within_source"]
    assert drops_one.equals(drops_two)
    # built again over the same output: the stage locks are the driver's, none lives on in a worker
    assert build(manifest, tmp_path / "w2", workers=2).split_rows == two.split_rows


def test_a_generator_takes_the_same_inputs_with_one_or_two_workers(tmp_path, monkeypatch):
    """wildchat_responses takes the first prompts it can use. Raw block 0 (rows 0-1023) has none, so
    one worker's first are block 1's; two workers wrote blocks 0 and 2 to one part, block 1 to
    another, and reading the parts one after the other gave block 2's."""
    from openai_server import serve_openai

    rows = json.loads((FIXTURES / "glaive" / "glaive-function-calling-v2.json").read_text())
    grown = [dict(r, chat=r["chat"].replace("USER: ", f"USER: ({i}) ", 1)) for i in range(192) for r in rows]
    for row in grown[:1024]:
        row["chat"] = re.sub(r"USER: [^\n]*", "USER: hi", row["chat"], count=1)
    raw = tmp_path / "glaive-function-calling-v2.json"
    raw.write_text(json.dumps(grown))
    glaive = _glaive_source(local={"files": [str(raw)]}, targets={})
    responses = {"key": "responses", "generator": {"name": "wildchat_responses", "inputs": ["g"]},
                 "licence": "apache-2.0", "targets": {"en": 3}}
    manifest = load(_manifest(tmp_path, [glaive, responses], holdout=0))
    monkeypatch.setenv("SFTMIX_LLM_API_KEY", "sk-test")
    with serve_openai(lambda messages, body: "Here is a short and direct answer to your request.") as server:
        monkeypatch.setenv("SFTMIX_LLM_BASE_URL", server.base_url)
        one, two = (build(manifest, tmp_path / w, workers=n) for w, n in (("w1", 1), ("w2", 2)))
    assert len(Layout(tmp_path / "w2", "mini").records("g", "filtered")) == 2
    assert one.split_rows == two.split_rows == {"train": 3, "validation": 0}
    prompts = [r["messages"][0]["content"] for r in sftmix.read_mixture(tmp_path / "w2" / "mini", "train")]
    assert all(1024 // 16 <= int(re.match(r"\((\d+)\) ", p)[1]) < 2048 // 16 for p in prompts), prompts
    assert _table(tmp_path / "w1" / "mini", "train").equals(_table(tmp_path / "w2" / "mini", "train"))


def test_a_source_normalized_in_one_part_is_filtered_on_two_workers_in_raw_order(tmp_path):
    """Filtering deals each part's batches to the workers, each merging its own by position: a source
    in one part (a converter that runs as one task) still filters on every worker, in order."""
    rows = json.loads((FIXTURES / "glaive" / "glaive-function-calling-v2.json").read_text())
    raw = tmp_path / "glaive-function-calling-v2.json"
    raw.write_text(json.dumps([dict(r, chat=r["chat"].replace("USER: ", f"USER: ({i}) ", 1))
                               for i in range(320) for r in rows]))
    manifest = load(_manifest(tmp_path, [_glaive_source(local={"files": [str(raw)]})]))
    layout = Layout(tmp_path / "out", "mini")
    order = {}
    for normalizing, filtering in ((1, 1), (1, 2), (2, 1), (2, 2)):
        normalize_source(manifest, manifest.sources[0], [raw], layout, workers=normalizing)
        filter_source(manifest, manifest.sources[0], layout, workers=filtering)
        parts = layout.records("g", "filtered")
        assert len(parts) == filtering and all(pq.read_metadata(p).num_rows > 500 for p in parts)
        order[normalizing, filtering] = [r["id"] for r in records_in_order(parts)]
    assert len(set(map(tuple, order.values()))) == 1 and len(order[1, 1]) > 1500



def test_records_of_a_source_read_whole_first_filter_in_one_order_on_any_number_of_workers(tmp_path):
    """flores and oasst2 make their records after reading every raw row: all had one position, and
    merged by position after filtering on two workers, they came back part by part: a generator
    taking its first inputs took others (58 of 150 prompts, and shards that differed)."""
    text = {"cat": "El museu número {i} obre a les nou del matí i tanca a les sis de la tarda.",
            "eng": "Museum number {i} opens at nine in the morning and closes at six in the evening.",
            "spa": "El museo número {i} abre a las nueve de la mañana y cierra a las seis de la tarde."}
    files = []
    for language, sentence in text.items():
        files.append(tmp_path / f"{language}_Latn.jsonl")
        files[-1].write_text("".join(json.dumps({"id": i, "iso_639_3": language, "iso_15924": "Latn", "text":
                                                 sentence.format(i=i), "domain": "wikivoyage"}) + "\n" for i in range(1, 301)))
    flores = {"key": "flores", "converter": "flores", "licence": "cc-by-sa-4.0", "local": {"files": [str(f) for f in files]},
              "targets": "all", "filters": {"language": False}}
    manifest = load(_manifest(tmp_path, [flores], licence_policy={"allow": ["cc-by-sa-4.0"]}))
    layout = Layout(tmp_path / "out", "mini")
    normalize_source(manifest, manifest.sources[0], files, layout)
    order = {}
    for workers in (1, 2):
        filter_source(manifest, manifest.sources[0], layout, workers=workers)
        order[workers] = [json.loads(r["origin"])["key"] for r in records_in_order(layout.records("flores", "filtered"))]
    assert len(order[1]) == 900 and order[1] == order[2]

def test_near_duplicates_dropped_are_the_same_with_one_or_two_workers(tmp_path):
    rows = json.loads((FIXTURES / "glaive" / "glaive-function-calling-v2.json").read_text())
    # 3,072 rows in three raw blocks (worker 0 reads blocks 0 and 2, worker 1 block 1): each of 192
    # variants of a row a near-duplicate of the others
    grown = [dict(r, chat=r["chat"].replace("USER: ", f"USER: ({i}) ", 1)) for i in range(192) for r in rows]
    raw = tmp_path / "glaive-function-calling-v2.json"
    raw.write_text(json.dumps(grown))
    src = {"key": "g", "converter": "glaive", "licence": "apache-2.0", "language": "en", "local": {"files": [str(raw)]},
           "targets": "all", "filters": {"language": False}}
    path = _manifest(tmp_path, [src], holdout=0, near_dedup=NEAR_DEDUP)
    one, two = (build(load(path), tmp_path / w, workers=n) for w, n in (("w1", 1), ("w2", 2)))
    assert len(list((tmp_path / "w2" / ".sftmix-work" / "mini" / "normalized" / "g").glob("part-*.parquet"))) == 2
    assert one.excluded == two.excluded and one.excluded["g"]["near_duplicate_within_source"] > 100
    drops_one, drops_two = (pq.read_table(tmp_path / w / "mini" / "rejected" / "g.mixing-00000.parquet") for w in ("w1", "w2"))
    assert drops_one.num_rows == sum(one.excluded["g"].values()) and drops_one.equals(drops_two)
    assert _table(tmp_path / "w1" / "mini", "train").equals(_table(tmp_path / "w2" / "mini", "train"))


def _glaive_and_near_copies(tmp_path: Path, targets_a, words=("Please",)) -> list[dict]:
    """Sources a (the glaive fixture, `targets_a`) and b (taking all): each of a's conversations in
    b once per word of `words`, that word put before its first user turn (near, not exact, copies)."""
    rows = json.loads((FIXTURES / "glaive" / "glaive-function-calling-v2.json").read_text())
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps(rows))
    second.write_text(json.dumps([dict(r, chat=r["chat"].replace("USER: ", f"USER: {word}, ", 1))
                                  for word in words for r in rows]))
    return [{"key": key, "converter": "glaive", "licence": "apache-2.0", "language": "en", "local": {"files": [str(raw)]},
             "targets": targets, "filters": {"language": False}}
            for key, raw, targets in (("a", first, targets_a), ("b", second, "all"))]


def test_near_duplicates_across_sources_are_kept_once_and_counted(tmp_path):
    sources = _glaive_and_near_copies(tmp_path, "all")
    path = _manifest(tmp_path, sources, holdout=0)
    plain = build(load(path), tmp_path / "plain")
    path = _manifest(tmp_path, sources, holdout=0, near_dedup=NEAR_DEDUP)
    deduped = build(load(path), tmp_path / "dedup")
    removed = deduped.excluded["b"].get("near_duplicate_of:a", 0)
    assert removed > 0 and deduped.split_rows["train"] == plain.split_rows["train"] - removed
    assert deduped.by_source["train"]["a"] == plain.by_source["train"]["a"]  # the earlier source keeps its rows
    drops = pq.read_table(tmp_path / "dedup" / "mini" / "rejected" / "b.mixing-00000.parquet").to_pylist()
    assert Counter(d["reason"] for d in drops) == deduped.excluded["b"]  # kept for inspection, as counted
    # tagged with the source's licence, as its stages' rejected files are (the mixing's had none)
    for stage in ("mixing", "normalized"):
        footer = pq.read_schema(next((tmp_path / "dedup" / "mini" / "rejected").glob(f"b.{stage}-*.parquet"))).metadata
        assert json.loads(footer[b"licences"]) == [next(s["licence"] for s in sources if s["key"] == "b")]
    shard_ids = {r["id"] for r in sftmix.read_mixture(tmp_path / "dedup" / "mini", "train")}
    removed_ids = {d["id"] for d in drops}
    assert not removed_ids & shard_ids and removed_ids <= {r["id"] for r in sftmix.read_mixture(tmp_path / "plain" / "mini", "train")}
    first_user_turns = [next(m["content"] for m in json.loads(d["row"])["messages"] if m["role"] == "user") for d in drops]
    assert all(turn.startswith("Please, ") for turn in first_user_turns)  # b's own records, as filtered
    # each names the row it is a near duplicate of (its own id differs), one of a's in the shards
    a_ids = {r["id"] for r in sftmix.read_mixture(tmp_path / "dedup" / "mini", "train") if r["source"] == "a"}
    assert all(d["detail"].startswith("near duplicate of ") and d["detail"].split()[-1] in a_ids for d in drops)


def test_a_near_duplicate_of_a_row_that_is_no_candidate_stays(tmp_path):
    """Near-dedup compares only the candidates: a row left out for its language takes no other row with it."""
    sources = _glaive_and_near_copies(tmp_path, {"es": 5})
    result = build(load(_manifest(tmp_path, sources, holdout=0, near_dedup=NEAR_DEDUP)), tmp_path / "out")
    assert result.excluded["a"] == {"language_not_targeted": _filtered_rows(tmp_path / "out", "a")}
    assert not result.excluded["b"] and result.by_source["train"] == {"b": _filtered_rows(tmp_path / "out", "b")}


def test_a_near_duplicate_the_first_source_leaves_unsampled_is_the_next_ones(tmp_path):
    """Dropped as a near duplicate of the first source's row before sampling, it was kept zero
    times when the first source's target left that row out."""
    sources = _glaive_and_near_copies(tmp_path, {"en": 3})
    path = _manifest(tmp_path, sources, near_dedup=NEAR_DEDUP)  # holdout 2
    result = build(load(path), tmp_path / "out")
    rows = [r for split in ("train", "validation") for r in sftmix.read_mixture(tmp_path / "out" / "mini", split)]
    raw_row = {r["id"]: json.loads(r["origin"])["row"].split("#")[-1] for r in rows}
    kept = Counter((r["source"], raw_row[r["id"]]) for r in rows)
    drops = pq.read_table(tmp_path / "out" / "mini" / "rejected" / "b.mixing-00000.parquet").to_pylist()
    # b drops only near duplicates of the rows a keeps (its target and holdout share), each naming one of them
    a_kept = {r["id"]: raw_row[r["id"]] for r in rows if r["source"] == "a"}
    assert len(a_kept) == 3 + result.by_source["validation"].get("a", 0) and drops and {d["reason"] for d in drops} == {"near_duplicate_of:a"}
    assert all(d["detail"].split()[-1] in a_kept and d["key"].split("#")[-1] == a_kept[d["detail"].split()[-1]]
               for d in drops)
    # the conversations a leaves out are b's: every raw row a kept through its filters is in the mixture
    layout = Layout(tmp_path / "out", "mini")
    a_filtered = pq.read_table(layout.records("a", "filtered"), columns=["origin"])["origin"].to_pylist()
    assert {row for _, row in kept} == {json.loads(origin)["row"].split("#")[-1] for origin in a_filtered}
    b_filtered = _filtered_rows(tmp_path / "out", "b")
    assert sum(n for (source, _), n in kept.items() if source == "b") + len(drops) == b_filtered
    assert result.excluded["b"] == {"near_duplicate_of:a": len(drops)}


def test_a_later_source_keeps_one_row_of_a_cluster_no_earlier_source_took(tmp_path, monkeypatch):
    # two near duplicates of each of a's rows in b: of each cluster a leaves out, b keeps one
    sources = _glaive_and_near_copies(tmp_path, {"en": 2}, words=("Please", "Kindly"))
    path = _manifest(tmp_path, sources, near_dedup=NEAR_DEDUP)  # holdout 2
    manifest = load(path)
    result = build(manifest, tmp_path / "out")
    chosen = {r["id"]: r for split in ("train", "validation") for r in sftmix.read_mixture(tmp_path / "out" / "mini", split)}
    assert result.split_rows["validation"] == 2
    assert Counter(r["source"] for r in chosen.values())["a"] == 2 + result.by_source["validation"].get("a", 0)
    drops = pq.read_table(tmp_path / "out" / "mini" / "rejected" / "b.mixing-00000.parquet").to_pylist()
    reasons = Counter(d["reason"] for d in drops)
    assert reasons == result.excluded["b"] and reasons["near_duplicate_of:a"] > 0 and reasons["near_duplicate_within_source"] > 0
    # every drop names a row in the mixture: a's for a cluster a took, b's own (its smallest id) otherwise
    for drop in drops:
        named = chosen[drop["detail"].removeprefix("near duplicate of ")]
        assert named["source"] == ("a" if drop["reason"] == "near_duplicate_of:a" else "b")
        assert drop["reason"] == "near_duplicate_of:a" or named["id"] < drop["id"]
    # decided source after source, so the same whatever the rank partitions
    layout = Layout(tmp_path / "out", "mini")
    monkeypatch.setattr(sftmix.mixing, "PARTITION_ROWS", 3)
    many = sftmix.mixing.build(manifest, {s.key: layout.records(s.key, "filtered") for s in manifest.sources},
                               tmp_path / "many", tmp_path / "work", rejected_dir=tmp_path / "many-rejected")
    assert many.excluded == result.excluded and many.split_rows == result.split_rows
    for split in ("train", "validation"):
        assert [f.read_bytes() for f in sorted((tmp_path / "out" / "mini" / split).glob("*.parquet"))] == \
            [f.read_bytes() for f in sorted((tmp_path / "many" / split).glob("*.parquet"))]
    assert pq.read_table(tmp_path / "many-rejected" / "b.mixing-00000.parquet").to_pylist() == drops


def test_the_holdout_is_not_spread_over_rows_an_earlier_source_may_take(tmp_path):
    """A later source's near duplicate of an earlier source's row goes when the earlier row is
    taken: counted as the later source's own, it got a share of the holdout it could not give,
    and the holdout fell short while another source had rows to spare."""
    rows = json.loads((FIXTURES / "glaive" / "glaive-function-calling-v2.json").read_text())
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps(rows))
    # other tool descriptions or system prompt: another id, the same user + assistant text (what near-dedup compares)
    second.write_text(json.dumps([dict(r, system=r["system"].replace('"description": "', '"description": "Tool: ')
                                       if '"description": "' in r["system"] else r["system"].replace("helpful", "kind"))
                                  for r in rows]))
    sources = [{"key": key, "converter": converter, "licence": "apache-2.0", "language": "en", "local": {"files": [str(raw)]},
                "targets": {"en": target}, "filters": {"language": False}}
               for key, converter, raw, target in (("a", "glaive", first, 100), ("b", "glaive", second, 50),
                                                   ("c", "dolly", FIXTURES / "dolly" / "databricks-dolly-15k.jsonl", 1))]
    path = _manifest(tmp_path, sources, holdout=3, near_dedup=NEAR_DEDUP)  # by their targets: a's share 2, b's 1, c's 0
    result = build(load(path), tmp_path / "out")
    filtered = {key: _filtered_rows(tmp_path / "out", key) for key in ("a", "b", "c")}
    assert filtered["a"] == filtered["b"] > 2 and filtered["c"] > 2
    # a takes every cluster, so b has no row to give: its share of the holdout is c's; a's is too,
    # since a holds fewer rows than its train target and c has rows beyond its own
    assert result.excluded["b"] == {"near_duplicate_of:a": filtered["b"]}
    assert result.by_source["validation"] == {"c": 3} and result.split_rows["validation"] == 3


def test_the_holdout_is_spread_over_train_targets_and_the_rows_of_all_cells(tmp_path):
    """A cell taking `all` rows had no share of the holdout (its size is unknown to the plan), so a
    validation split held none of the sources most of train came from."""
    sources = [{"key": key, "converter": key, "licence": licence, "language": "en", "local": {"files": [str(raw)]},
                "targets": targets, "filters": {"language": False}}
               for key, licence, raw, targets in (
                   ("glaive", "apache-2.0", FIXTURES / "glaive" / "glaive-function-calling-v2.json", {"en": 2}),
                   ("dolly", "cc-by-4.0", FIXTURES / "dolly" / "databricks-dolly-15k.jsonl", "all"))]
    result = build(load(_manifest(tmp_path, sources, holdout=4)), tmp_path / "out")
    rows = {key: _filtered_rows(tmp_path / "out", key) for key in ("glaive", "dolly")}
    assert rows["dolly"] > 2 and rows["glaive"] >= 2 + 4
    # in proportion to glaive's target and the rows dolly has: what each gives train
    expected = {key: n for (key, _), n in sftmix.plan.allocate({("glaive", "en"): 2, ("dolly", "*"): rows["dolly"]}, 4).items()}
    assert expected["dolly"] > expected["glaive"] and result.by_source["validation"] == {k: n for k, n in expected.items() if n}
    assert result.by_source["train"] == {"glaive": 2, "dolly": rows["dolly"] - expected["dolly"]}


def _filtered_sources(tmp_path: Path, cells) -> tuple[list[dict], dict]:
    """Manifest sources and their filtered records files, for `mixing.build`: (key, targets, rows) each."""
    from sftmix.record import make_record, message, to_table

    sources, inputs = [], {}
    for key, targets, rows in cells:
        pq.write_table(to_table([make_record(messages=[message("user", f"{key} {i}?"), message("assistant", "Yes.")],
                                             tools=[], source=key, licence="apache-2.0", language="en",
                                             origin={"row": f"{key}#{i}"}) for i in range(rows)]), tmp_path / f"{key}.parquet")
        inputs[key] = [tmp_path / f"{key}.parquet"]
        sources.append({"key": key, "local": {"files": ["x.jsonl"]}, "converter": "dolly", "licence": "apache-2.0",
                        "language": "en", "targets": targets})
    return sources, inputs


def test_a_holdout_shortfall_takes_rows_beyond_targets_before_an_all_cells_train_rows(tmp_path):
    """A cell too small for its holdout share passes the rest on, first to rows beyond the other
    cells' targets. A cell taking `all` counted as having none for a target, so all its rows were
    "beyond" it: b trained on 6 of its 20 rows while 46 of a's stayed unused. And c, short of its
    target, gave its 2 rows to the holdout and trained on none while a had rows to spare."""
    from sftmix import mixing

    sources, inputs = _filtered_sources(tmp_path, (("a", {"en": 10}, 100), ("b", "all", 20), ("c", {"en": 100}, 2)))
    manifest = load(_manifest(tmp_path, sources, holdout=60))
    shares = {key: n for (key, _), n in sftmix.plan.allocate({("a", "en"): 10, ("b", "en"): 20, ("c", "en"): 100}, 60).items()}
    result = mixing.build(manifest, inputs, tmp_path / "out", tmp_path / "work")
    assert result.by_source["validation"] == {"a": 60 - shares["b"], "b": shares["b"]}
    assert result.by_source["train"] == {"a": 10, "b": 20 - shares["b"], "c": 2}


def test_a_cell_holding_just_its_target_passes_its_holdout_share_to_a_cell_taking_all(tmp_path):
    """Before the rows within any cell's target, the holdout takes an `all` cell's: it has no target
    to miss. a gave 2 of its 10 rows and missed its target while b had 80 to spare (the review)."""
    from sftmix import mixing

    sources, inputs = _filtered_sources(tmp_path, (("a", {"en": 10}, 10), ("b", "all", 100)))
    result = mixing.build(load(_manifest(tmp_path, sources, holdout=20)), inputs, tmp_path / "out", tmp_path / "work")
    assert (result.by_source["validation"], result.by_source["train"], result.deficits) == ({"b": 20}, {"a": 10, "b": 80}, [])


def test_decontamination_benchmarks_are_named_relative_to_the_manifest(tmp_path):
    bench = tmp_path / "evals"
    bench.mkdir()
    shutil.copy(FIXTURES / "benchmarks" / "ifeval" / "input_data.jsonl", bench / "input_data.jsonl")
    prompt = json.loads((bench / "input_data.jsonl").read_text().splitlines()[0])["prompt"]
    raw = tmp_path / "dolly.jsonl"
    raw.write_text("\n".join(json.dumps({"instruction": text, "context": "", "response": "Sure, here it is: " + "a b c " * 5,
                                         "category": "open_qa"}) for text in (prompt, "Name three rivers of Spain.")))
    src = {"key": "d", "converter": "dolly", "licence": "apache-2.0", "language": "en", "local": {"files": [str(raw)]},
           "targets": "all", "filters": {"language": False, "decontamination": {"benchmarks": {"ifeval": "evals/input_data.jsonl"}}}}
    result = build(load(_manifest(tmp_path, [src], holdout=0)), tmp_path / "out")
    reasons = pq.read_table(tmp_path / "out" / "mini" / "rejected", columns=["reason"])["reason"].to_pylist()
    assert reasons == ["contaminated:ifeval"] and result.split_rows["train"] == 1



@pytest.mark.parametrize("fault", ["missing", "a directory", "of no format"])
def test_a_missing_or_unreadable_benchmark_file_stops_a_source_before_its_raw_files_are_read(tmp_path, fault):
    """It was found when the first row reached the rule: after the source's download and normalize
    stage (and a generated source's paid answers: `sftmix generate` exited 2 writing nothing); a
    directory named, or a file no format is read from (BFCL's possible answers), was found there too."""
    bench = tmp_path / "evals" / "input_data.jsonl"
    if fault == "a directory":
        bench.mkdir(parents=True)
        expected = f"{bench} is a directory; name its files (a glob such as {bench}/*)"
    elif fault == "of no format":
        bench.parent.mkdir()
        bench.write_text(json.dumps({"id": "simple_0", "ground_truth": []}) + "\n")
        expected = f"{bench}: unknown benchmark format (keys ['ground_truth', 'id']); give `text_fields` for this benchmark"
    else:
        expected = f"no such file {bench}"
    src = {"key": "d", "converter": "dolly", "licence": "apache-2.0", "language": "en", "targets": "all",
           "local": {"files": [str(FIXTURES / "dolly" / "databricks-dolly-15k.jsonl")]},
           "filters": {"decontamination": {"benchmarks": {"ifeval": "evals/input_data.jsonl"}}}}
    with pytest.raises(BuildError, match=f"^source 'd': benchmark 'ifeval': {re.escape(expected)}$"):
        build(load(_manifest(tmp_path, [src], holdout=0)), tmp_path / "out")
    assert not list((tmp_path / "out").rglob("*.done.json"))  # no stage ran


def test_the_filtered_asset_reports_every_benchmark_with_its_drops_and_index(tmp_path):
    """A benchmark that removed nothing shows 0 beside how many of its prompts were usable: a set
    that yielded few prompts is told apart from one the source is clean of."""
    bench = tmp_path / "evals"
    bench.mkdir()
    shutil.copy(FIXTURES / "benchmarks" / "ifeval" / "input_data.jsonl", bench / "input_data.jsonl")
    shutil.copy(FIXTURES / "benchmarks" / "when2call" / "when2call_test_mcq.jsonl", bench / "when2call_test_mcq.jsonl")
    prompt = json.loads((bench / "input_data.jsonl").read_text().splitlines()[0])["prompt"]
    question = json.loads((bench / "when2call_test_mcq.jsonl").read_text().splitlines()[0])["question"]
    raw = tmp_path / "dolly.jsonl"
    raw.write_text("\n".join(json.dumps({"instruction": text, "context": "", "response": "Sure, here it is: " + "a b c " * 5,
                                         "category": "open_qa"})
                             for text in (prompt, "Name three rivers of Spain.", f"{question}\n\n{prompt}")))
    benchmarks = {"ifeval": "evals/input_data.jsonl", "when2call": "evals/when2call_test_*.jsonl"}
    src = {"key": "d", "converter": "dolly", "licence": "apache-2.0", "language": "en", "local": {"files": [str(raw)]},
           "targets": "all", "filters": {"language": False, "decontamination": {"benchmarks": benchmarks}}}
    path = _manifest(tmp_path, [src], holdout=0)
    result = build_definitions(str(path), str(tmp_path / "out")).resolve_implicit_global_asset_job_def() \
        .execute_in_process(instance=DagsterInstance.ephemeral())
    metadata = {e.event_specific_data.materialization.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
                for e in result.get_asset_materialization_events()}
    index = DecontaminationFilter(benchmarks=benchmarks, root=str(tmp_path)).index_stats()
    # the third row holds both benchmarks' items and is dropped in the first one's name
    assert metadata["d/filtered"]["decontamination"].value == {
        "ifeval": {"rows_dropped": 2, "rows_matched": 2, **index["ifeval"]},
        "when2call": {"rows_dropped": 0, "rows_matched": 1, **index["when2call"]}}
    assert index["ifeval"]["prompts"] == 4 and index["when2call"]["prompts"] > 0
    assert "decontamination" not in metadata["d/normalized"]


def test_a_benchmark_file_added_under_a_glob_makes_the_filtered_records_stale(tmp_path):
    """The rows the filter stage kept were checked against the evaluation sets there were then; a
    new file the glob matches may contain one of them."""
    bench = tmp_path / "evals"
    bench.mkdir()
    shutil.copy(FIXTURES / "benchmarks" / "ifeval" / "input_data.jsonl", bench / "input_data.jsonl")
    rivers = "Name three rivers of Spain and say in which mountains each one of them rises."
    raw = tmp_path / "dolly.jsonl"
    raw.write_text(json.dumps({"instruction": rivers, "context": "", "response": "Sure, here it is: " + "a b c " * 5,
                               "category": "open_qa"}))
    src = {"key": "d", "converter": "dolly", "licence": "apache-2.0", "language": "en", "local": {"files": ["dolly.jsonl"]},
           "targets": "all", "filters": {"language": False, "decontamination": {"benchmarks": {"ifeval": "evals/*.jsonl"}}}}
    path, layout = _manifest(tmp_path, [src], holdout=0), Layout(tmp_path / "out", "mini")
    assert build(load(path), tmp_path / "out").split_rows["train"] == 1
    (bench / "more.jsonl").write_text(json.dumps({"key": 9001, "prompt": rivers, "instruction_id_list": [], "kwargs": []}))
    with pytest.raises(BuildError) as error:
        mix(load(path), layout)
    assert re.fullmatch(r"source 'd': its filtered records were made with other settings than .*m\.yaml has now "
                        r'\(benchmark_files\.evals/more\.jsonl: null -> \{"bytes": \d+, "modified": "[\d-]+T[\d:.]+Z"\}\): '
                        r"build that source again .*", str(error.value))
    filter_source(load(path), load(path).sources[0], layout)
    with pytest.raises(EmptyTrainSplit, match="have no row to give"):  # its one row is now contaminated
        mix(load(path), layout)
    reasons = pq.read_table(tmp_path / "out" / "mini" / "rejected", columns=["reason"])["reason"].to_pylist()
    assert reasons == ["contaminated:ifeval"]


def test_a_sources_own_judge_settings_reach_its_judge(tmp_path, monkeypatch):
    """`llm_judge: {llm: {...}}` loaded, then the build's judge used the manifest's `llm:` only."""
    monkeypatch.delenv("SFTMIX_LLM_MODEL", raising=False)
    judged = _glaive_source(filters={"llm_judge": {"threshold": 4, "llm": {"model": "strong-judge", "budget_usd": 5.0}}})
    path = _manifest(tmp_path, [judged, _glaive_source(key="plain", filters={"llm_judge": True})], holdout=0,
                     llm={"model": "generator-model", "budget_usd": 1.0, "concurrency": 3})
    manifest, layout = load(path), Layout(tmp_path / "out", "mini")
    settings = {source.key: filter_config(manifest, source, layout)["llm_judge"]["client"].settings
                for source in manifest.sources}
    assert (settings["g"].model, settings["g"].budget_usd, settings["g"].concurrency) == ("strong-judge", 5.0, 3)
    assert (settings["plain"].model, settings["plain"].budget_usd) == ("generator-model", 1.0)
    resource = filter_config(manifest, manifest.sources[0], layout, {"budget_usd": 0.5})  # the Dagster resource's
    assert resource["llm_judge"]["client"].settings.budget_usd == 0.5


def test_a_generated_sources_drops_reach_stats_and_the_card(tmp_path, monkeypatch):
    """Only converted sources' stage counts were saved with the mixture: a generated source's
    contamination drops showed as a deficit with no cause in stats.json and the dataset card."""
    from openai_server import serve_openai

    ifeval = FIXTURES / "benchmarks" / "ifeval" / "input_data.jsonl"
    quoted = json.loads(ifeval.read_text().splitlines()[2])["prompt"]
    responses = {"key": "responses", "generator": {"name": "wildchat_responses", "inputs": ["g"]},
                 "licence": "apache-2.0", "targets": {"en": 3}, "filters": {"language": False}}
    path = _manifest(tmp_path, [_glaive_source(filters={"language": False}), responses], holdout=0,
                     filters={"decontamination": {"benchmarks": {"ifeval": str(ifeval)}}})
    monkeypatch.setenv("SFTMIX_LLM_API_KEY", "sk-test")
    with serve_openai(lambda messages, body: "Sure. " + quoted) as server:  # every answer quotes an IFEval prompt
        monkeypatch.setenv("SFTMIX_LLM_BASE_URL", server.base_url)
        build(load(path), tmp_path / "out")
    dropped = Layout(tmp_path / "out", "mini").read_counts("responses", "filtered").dropped
    assert dropped.get("contaminated:ifeval", 0) >= 3
    stats = json.loads((tmp_path / "out" / "mini" / "stats.json").read_text())
    assert stats["intake"]["responses"]["normalized"] is None
    assert stats["intake"]["responses"]["filtered"]["dropped"] == dropped
    card = (tmp_path / "out" / "mini" / "README.md").read_text()
    # its drops are in rejected/responses.generated-00000.parquet: filed under stage `filtered`, they
    # named a file that does not exist; its intake read the rows its generator made (blank before)
    assert (tmp_path / "out" / "mini" / "rejected" / "responses.generated-00000.parquet").exists()
    assert f"| responses | generated | contaminated:ifeval | {dropped['contaminated:ifeval']:,} |" in card
    made = Layout(tmp_path / "out", "mini").read_counts("responses", "filtered").read
    assert made >= 3 and f"| responses | {made} |  | 0 |" in card  # intake: made, nothing converted, none kept
    # its rows are under its own licence, and name their inputs' (the "Rows by source" licences are the rows' own)
    assert ("Rows of generated sources (`responses`) are under the licence the manifest gives their source; each names "
            "in `origin.input_licences` the licences of the records it was built from") in card
    # a mixed source of no rows is in "Rows by source" with zeros and no licence (it was missing from every split table)
    assert re.search(r"## Rows by source\n\n(\|.*\n)*\| responses \| 0 \| 0 \|  \|\n", card)


def test_synthetic_asset_materializes_through_the_llm_resource(tmp_path, monkeypatch):
    """A generator asset in the Dagster graph, against a real OpenAI-compatible server: LLM figures
    reach the asset's metadata, never the key."""
    from openai_server import serve_openai

    from pipelines.resources import LLMResource

    key = "sk-test-dagster-SECRET-42"
    monkeypatch.setenv("SFTMIX_LLM_API_KEY", key)
    wildchat = _wildchat_source()
    responses = _responses_source()
    path = _manifest(tmp_path, [wildchat, responses], holdout=0)
    with serve_openai(lambda messages, body: "Here is a short and direct answer to your request.") as server:
        monkeypatch.setenv("SFTMIX_LLM_BASE_URL", server.base_url)
        defs = build_definitions(str(path), str(tmp_path / "out"))
        job = defs.resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(instance=DagsterInstance.ephemeral(),
                                        resources={"llm": LLMResource(concurrency=4)})
        assert result.success
        sent = server.count()
    metadata = next(e.event_specific_data.materialization.metadata for e in result.get_asset_materialization_events()
                    if e.event_specific_data.materialization.asset_key.to_user_string() == "responses/filtered")
    assert metadata["llm_requests"].value == sent > 0 and metadata["rows_out"].value > 0
    assert [(e.check_name, e.passed) for e in result.get_asset_check_evaluations()
            if e.asset_key.to_user_string() == "responses/filtered"] == [("rows_kept", True), ("llm_answered", True)]
    assert key not in json.dumps({k: str(v.value) for k, v in metadata.items()})
    rows = list(sftmix.read_mixture(tmp_path / "out" / "mini", "train"))
    assert rows and all(r["source"] == "responses" and r["licence"] == "apache-2.0" for r in rows)
    assert all(json.loads(r["origin"])["generator"] == "wildchat_responses" for r in rows)


def test_an_endpoint_that_answers_nothing_fails_the_llm_check_and_is_logged(tmp_path, monkeypatch, caplog):
    """Every row a counted drop, the run goes on (issue 4); the check and the log name the cause."""
    from openai_server import Fault, serve_openai

    monkeypatch.setenv("SFTMIX_LLM_API_KEY", "sk-test-wrong")
    wildchat = _wildchat_source()
    responses = _responses_source()
    glaive = _glaive_source(filters={"llm_judge": {"threshold": 3}})
    path = _manifest(tmp_path, [wildchat, responses, glaive, _dolly_source()], holdout=0)
    with serve_openai(lambda messages, body: "unused", faults=[Fault("server_error", status=401, count=None)]) as server:
        monkeypatch.setenv("SFTMIX_LLM_BASE_URL", server.base_url)
        result = build_definitions(str(path), str(tmp_path / "out")).resolve_implicit_global_asset_job_def() \
            .execute_in_process(instance=DagsterInstance.ephemeral())
        with caplog.at_level("WARNING", logger="sftmix"):
            build(load(path), tmp_path / "in-process")
    assert result.success
    checks = {e.asset_key.to_user_string(): e for e in result.get_asset_check_evaluations() if e.check_name == "llm_answered"}
    assert {key: check.passed for key, check in checks.items()} == {"responses/filtered": False, "g/filtered": False}
    problem = re.compile(r"the LLM endpoint answered none of \d+ requests \(the last failure: http_401: .*\): "
                         r"check SFTMIX_LLM_BASE_URL, SFTMIX_LLM_MODEL and the API key")
    assert all(problem.fullmatch(check.metadata["problem"].value) for check in checks.values())
    assert sorted(m.split(":")[0] for m in caplog.messages if problem.search(m)) == ["source 'g'", "source 'responses'"]


def test_a_stage_s_data_version_holds_its_records_content_and_its_settings(tmp_path):
    """The records' ids alone made the version (review): a judge's other scores in `origin`, or other
    settings making the same rows, left the mixture fresh though its shards or its checks were stale."""
    import assets.sources

    manifest = load(_manifest(tmp_path, [_glaive_source()]))
    layout = Layout(tmp_path / "out", "mini")
    normalize_source(manifest, manifest.sources[0], [Path(_glaive_source()["local"]["files"][0])], layout)
    parts = layout.records("g", "normalized")
    before = (sftmix.build.records_digest(parts), assets.sources.records_version(layout, "g", "normalized"))
    table = pq.read_table(parts[0])
    origins = table.column("origin").to_pylist()
    pq.write_table(table.set_column(table.schema.get_field_index("origin"), "origin",
                                    pa.array([origins[0].replace("}", ', "score": 5}', 1)] + origins[1:])),
                   parts[0])
    assert sftmix.build.records_digest(parts) != before[0]
    pq.write_table(table, parts[0])  # the records as written, their settings other
    done_file = layout.done_file("g", "normalized")
    done = json.loads(done_file.read_text())
    done_file.write_text(json.dumps({**done, "settings": {**done["settings"], "edited": True}}))
    assert sftmix.build.records_digest(parts) == before[0]
    assert assets.sources.records_version(layout, "g", "normalized") != before[1]


def test_an_llm_source_materialized_again_with_other_rows_makes_the_mixture_stale(tmp_path, monkeypatch):
    """Its data version was Dagster's, derived from its code version and its inputs', which a step's
    budget (or a refused account topped up) leaves as they were: materialized again alone, without
    the budget, `responses/filtered` held more rows than the mixture had taken, which showed fresh."""
    from dagster._core.definitions.data_version import CachingStaleStatusResolver
    from dagster._core.loader import LoadingContextForTest
    from openai_server import serve_openai

    from pipelines.resources import LLMResource

    monkeypatch.setenv("SFTMIX_LLM_API_KEY", "sk-test")
    path = _manifest(tmp_path, [_wildchat_prompts(tmp_path, 4), _responses_source(), _dolly_source()], holdout=0,
                     licence_policy={"allow": ["apache-2.0", "odc-by"]})
    defs = build_definitions(str(path), str(tmp_path / "out"))
    job = defs.resolve_implicit_global_asset_job_def()
    instance = DagsterInstance.ephemeral()

    def materialize(*keys: str, **resources):
        subset = job.get_subset(asset_selection={AssetKey(key.split("/")) for key in keys}) if keys else job
        assert subset.execute_in_process(instance=instance, resources=resources).success

    def mixture_status() -> tuple[str, list[str]]:
        resolver = CachingStaleStatusResolver(instance, defs.resolve_asset_graph(), LoadingContextForTest(instance))
        return (resolver.get_status(MIXTURE).value, [cause.reason for cause in resolver.get_stale_causes(MIXTURE)])

    with serve_openai(lambda messages, body: "Here is a short and direct answer to your request.") as server:
        monkeypatch.setenv("SFTMIX_LLM_BASE_URL", server.base_url)
        materialize(llm=LLMResource(concurrency=1, budget_usd=1e-9))
        assert _filtered_rows(tmp_path / "out", "responses") == 1 and mixture_status() == ("FRESH", [])
        materialize("dolly/normalized", "dolly/filtered")  # the same records again: nothing to mix again
        assert mixture_status() == ("FRESH", [])
        materialize("responses/filtered")
    assert _filtered_rows(tmp_path / "out", "responses") == 4
    assert mixture_status() == ("STALE", ["has a new dependency data version"])


def test_the_llm_resource_sets_the_judges_budget_too(tmp_path, monkeypatch):
    """The judge's client was made from the manifest alone: the resource's budget did not cap it."""
    from openai_server import serve_openai

    from pipelines.resources import LLMResource

    monkeypatch.setenv("SFTMIX_LLM_API_KEY", "sk-test")
    path = _manifest(tmp_path, [_glaive_source(filters={"llm_judge": {"threshold": 3}})], holdout=0)
    with serve_openai(lambda messages, body: "Feedback: Fine. [RESULT] 4") as server:
        monkeypatch.setenv("SFTMIX_LLM_BASE_URL", server.base_url)
        result = build_definitions(str(path), str(tmp_path / "out")).resolve_implicit_global_asset_job_def() \
            .execute_in_process(instance=DagsterInstance.ephemeral(),
                                resources={"llm": LLMResource(concurrency=1, budget_usd=1e-9)})
        sent = server.count()
    assert result.success and sent == 1
    metadata = next(e.event_specific_data.materialization.metadata for e in result.get_asset_materialization_events()
                    if e.event_specific_data.materialization.asset_key.to_user_string() == "g/filtered")
    assert metadata["llm_requests"].value == 1
    reasons = Counter(pq.read_table(tmp_path / "out" / "mini" / "rejected", columns=["reason"])["reason"].to_pylist())
    assert _filtered_rows(tmp_path / "out", "g") == 1 and reasons["budget_exhausted"] > 0  # the one row graded is kept


@pytest.mark.parametrize("case", ["one endpoint", "the judge's dead", "a step budget"])
def test_a_generated_sources_judge_is_counted_checked_and_capped_with_its_generator(tmp_path, monkeypatch, case):
    """A generated source whose rules include the LLM judge: the judge's client was left out of the
    step's llm_* metadata and its llm_answered check, and got the whole step budget again."""
    from openai_server import serve_openai

    from pipelines.resources import LLMResource

    monkeypatch.setenv("SFTMIX_LLM_API_KEY", "sk-test")
    judge = {"threshold": 1}
    if case == "the judge's dead":
        judge["llm"] = {"base_url": "http://127.0.0.1:9/v1", "max_retries": 0}
    wildchat = _wildchat_source()
    responses = _responses_source(filters={"llm_judge": judge})

    def respond(messages, body):
        return "Feedback: Good. [RESULT] 5" if "[RESULT]" in json.dumps(messages) else "A short and direct answer."

    with serve_openai(respond) as server:
        llm = {"base_url": server.base_url}  # the manifest's, which the judge's own llm: overrides
        monkeypatch.delenv("SFTMIX_LLM_BASE_URL", raising=False)
        path = _manifest(tmp_path, [wildchat, responses, _dolly_source()], holdout=0, llm=llm,
                         licence_policy={"allow": ["apache-2.0", "odc-by"]})
        resources = {"llm": LLMResource(budget_usd=1e-9)} if case == "a step budget" else {}
        result = build_definitions(str(path), str(tmp_path / "out")).resolve_implicit_global_asset_job_def() \
            .execute_in_process(instance=DagsterInstance.ephemeral(), resources=resources)
        sent = server.count()
    metadata = next(e.event_specific_data.materialization.metadata for e in result.get_asset_materialization_events()
                    if e.event_specific_data.materialization.asset_key.to_user_string() == "responses/filtered")
    [check] = [c for c in result.get_asset_check_evaluations()
               if (c.asset_key.to_user_string(), c.check_name) == ("responses/filtered", "llm_answered")]
    if case == "one endpoint":  # a generated answer and its grade
        assert (sent, metadata["llm_requests"].value, check.passed, metadata["rows_out"].value) == (2, 2, True, 1)
    elif case == "the judge's dead":
        assert metadata["llm_requests"].value == 2 and metadata["rows_out"].value == 0  # one answer; one refused
        assert not check.passed and "answered none of 1 requests" in check.metadata["problem"].value
    else:  # the first paid answer spends the step's budget: the judge asks nothing
        assert (sent, metadata["llm_requests"].value) == (1, 1)
        assert metadata["drops_by_reason"].value.get("budget_exhausted") == 1


def test_an_llm_resource_budget_of_zero_spends_nothing_and_bad_values_are_refused(tmp_path, monkeypatch):
    """`budget_usd: 0` (as in the manifest: spend nothing) was taken for unset, and the step spent
    without a cap; `concurrency: -1` passed the run config and failed inside the step."""
    from openai_server import serve_openai
    from pydantic import ValidationError

    from pipelines.resources import LLMResource

    monkeypatch.setenv("SFTMIX_LLM_API_KEY", "sk-test")
    path = _manifest(tmp_path, [_glaive_source(filters={"llm_judge": {"threshold": 3}}), _dolly_source()], holdout=0)
    job = build_definitions(str(path), str(tmp_path / "out")).resolve_implicit_global_asset_job_def()
    with serve_openai(lambda messages, body: "Feedback: Fine. [RESULT] 4") as server:
        monkeypatch.setenv("SFTMIX_LLM_BASE_URL", server.base_url)
        result = job.execute_in_process(instance=DagsterInstance.ephemeral(),
                                        run_config={"resources": {"llm": {"config": {"budget_usd": 0.0}}}})
        sent = server.count()
    assert result.success and sent == 0 and _filtered_rows(tmp_path / "out", "g") == 0
    for setting in ({"concurrency": 0}, {"budget_usd": -1.0}):
        with pytest.raises(ValidationError):
            LLMResource(**setting)
        result = job.execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False,
                                        run_config={"resources": {"llm": {"config": setting}}})
        assert not result.success
        assert "g/filtered" not in {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
        [failure] = [e.event_specific_data.error.message for e in result.all_events
                     if e.event_type == DagsterEventType.RESOURCE_INIT_FAILURE]
        assert f"validation error for LLMResource\n{next(iter(setting))}\n" in failure  # before any request


def test_a_conversation_in_two_sources_is_kept_once_and_the_reason_names_the_other(tmp_path):
    raw = str(FIXTURES / "glaive" / "glaive-function-calling-v2.json")
    sources = [{"key": key, "converter": "glaive", "licence": "apache-2.0", "language": "en",
                "local": {"files": [raw]}, "targets": "all"} for key in ("first", "second")]
    result = build(load(_manifest(tmp_path, sources, holdout=0)), tmp_path / "out")
    assert "second" not in result.by_source["train"]
    assert result.excluded["second"] == {"duplicate_of:first": result.by_source["train"]["first"]}


def test_a_conversation_the_first_source_leaves_unsampled_is_the_next_ones(tmp_path):
    """Dropped as a copy of the first source's row before sampling, it was kept zero times when
    the first source's target left that row out."""
    raw = str(FIXTURES / "glaive" / "glaive-function-calling-v2.json")
    sources = [{"key": key, "converter": "glaive", "licence": "apache-2.0", "language": "en", "local": {"files": [raw]},
                "targets": targets} for key, targets in (("first", {"en": 3}), ("second", "all"))]
    result = build(load(_manifest(tmp_path, sources)), tmp_path / "out")  # holdout 2
    rows = [r for split in ("train", "validation") for r in sftmix.read_mixture(tmp_path / "out" / "mini", split)]
    by_source = Counter(r["source"] for r in rows)
    filtered = _filtered_rows(tmp_path / "out", "first")
    assert by_source == {"first": 5, "second": filtered - 5} and len({r["id"] for r in rows}) == filtered
    assert result.excluded == {"first": {"beyond_target": filtered - 5}, "second": {"duplicate_of:first": 5}}
    drops = pq.read_table(tmp_path / "out" / "mini" / "rejected" / "second.mixing-00000.parquet").to_pylist()
    assert {d["id"] for d in drops} == {r["id"] for r in rows if r["source"] == "first"}  # each names a row kept


def test_rows_the_mixing_drops_are_kept_in_rejected_with_their_reasons(tmp_path):
    rows = json.loads((FIXTURES / "glaive" / "glaive-function-calling-v2.json").read_text())
    raw, changed = tmp_path / "glaive.json", tmp_path / "changed.json"
    raw.write_text(json.dumps(rows))
    changed.write_text(json.dumps([dict(r, chat=r["chat"].replace("USER: ", "USER: Hi. ", 1)) for r in rows]))
    sources = [{"key": key, "converter": "glaive", "licence": licence, "language": "en",
                "local": {"files": [str(f) for f in files]}, "targets": "all"}
               for key, files, licence in (("first", [raw], "apache-2.0"), ("second", [raw], "apache-2.0"),
                                           ("twice", [changed, changed], "apache-2.0"))]
    # rows that carry their own licence, one the policy refuses
    canonical = tmp_path / "canonical.jsonl"
    lines = (FIXTURES / "openai_messages" / "data.jsonl").read_text().splitlines()[:2]
    # and a line that is not JSON: dropped before its licence is read
    canonical.write_text("".join(json.dumps({**json.loads(line), "licence": "cc-by-nc-4.0"}) + "\n" for line in lines) + "{\n")
    sources.append({"key": "nc", "converter": "openai_messages", "local": {"files": [str(canonical)]}, "targets": "all"})
    result = build(load(_manifest(tmp_path, sources, holdout=0)), tmp_path / "out")
    kept = {r["id"]: r for r in sftmix.read_mixture(tmp_path / "out" / "mini", "train")}
    rejected = {}
    for source in ("first", "second", "twice", "nc"):
        drops = pq.read_table(tmp_path / "out" / "mini" / "rejected" / f"{source}.mixing-00000.parquet").to_pylist()
        rejected[source] = drops
        assert Counter(d["reason"] for d in drops) == result.excluded.get(source, {})
        for drop in drops:  # each the record as filtered, named by id and raw row
            record = json.loads(drop["row"])
            assert (drop["stage"], drop["source"], record["source"], record["id"]) == ("mixing", source, source, drop["id"])
            assert drop["key"] == json.loads(record["origin"])["row"]
    assert {d["reason"] for d in rejected["second"]} == {"duplicate_of:first"}
    assert all(json.loads(d["row"])["messages"] == kept[d["id"]]["messages"] for d in rejected["second"])
    assert {d["reason"] for d in rejected["twice"]} == {"duplicate_within_source"}
    assert all(d["key"].startswith("changed.json#") and d["id"] in kept for d in rejected["twice"])
    assert [d["reason"] for d in rejected["nc"]] == ["licence_not_allowed"] * 2 and rejected["first"] == []
    assert len(rejected["second"]) == result.by_source["train"]["first"] > 0
    # each footer names the licences of the rows its file holds, as a shard's does: a filter by
    # footer passed on nc's refused cc-by-nc-4.0 rows under `[]`
    footers = {path.name: (json.loads(pq.read_schema(path).metadata[b"licences"]), pq.read_metadata(path).num_rows)
               for path in (tmp_path / "out" / "mini" / "rejected").glob("*.parquet")}
    assert {name: footer for name, footer in footers.items() if name.startswith(("nc.", "first.mixing"))} == {
        "nc.mixing-00000.parquet": (["cc-by-nc-4.0"], 2), "nc.normalized-00000.parquet": (["unknown"], 1),
        "nc.filtered-00000.parquet": ([], 0), "first.mixing-00000.parquet": ([], 0)}
    assert footers["second.mixing-00000.parquet"] == (["apache-2.0"], len(rejected["second"]))
    card = (tmp_path / "out" / "mini" / "README.md").read_text()
    assert "## Rows not selected\n\nDuplicates and licences the policy refuses are kept with their reason" in card



def test_a_generated_row_the_mixing_drops_is_filed_under_its_inputs_licences_too(tmp_path):
    """A generated row quoting an odc-by document, dropped as a copy: the mixing's rejected file named
    the generated source's licence alone (review)."""
    from sftmix import mixing
    from sftmix.record import make_record, message, to_table

    quoted = [message("user", "Document: A delta forms where a river drops its sediment.\n\nWhere does a delta form?"),
              message("assistant", "Where a river enters slower water and drops its sediment.")]
    records = [make_record(messages=messages, tools=[], source="qa", licence="apache-2.0", language="en",
                           origin={"row": str(row), "generator": "long_context_qa", "input_licences": ["odc-by"]})
               for row, messages in enumerate([quoted, quoted, [message("user", "Hi?"), message("assistant", "Hello.")]])]
    pq.write_table(to_table(records), tmp_path / "qa.parquet")
    source = {"key": "qa", "generator": {"name": "long_context_qa", "inputs": ["docs"]}, "licence": "apache-2.0",
              "targets": "all"}
    docs = {"key": "docs", "converter": "fineweb_edu", "licence": "odc-by", "targets": {},
            "local": {"files": [str(FIXTURES / "fineweb_edu" / "000_00000.parquet")]}}
    manifest = load(_manifest(tmp_path, [docs, source], holdout=0, licence_policy={"allow": ["apache-2.0", "odc-by"]}))
    result = mixing.build(manifest, {"qa": [tmp_path / "qa.parquet"]}, tmp_path / "out", tmp_path / "work",
                          rejected_dir=tmp_path / "rejected")
    assert result.excluded["qa"] == {"duplicate_within_source": 1}
    path = tmp_path / "rejected" / "qa.mixing-00000.parquet"
    assert json.loads(pq.read_schema(path).metadata[b"licences"]) == ["apache-2.0", "odc-by"]


def test_a_shard_names_the_input_licences_of_the_generated_rows_it_holds(tmp_path):
    """A shard holding a generated row that quotes an odc-by document named the generated source's
    licence alone, where a rejected file holding the same row named odc-by too: a shard passed on by
    its footer carried odc-by text unnamed (review6). A converted source's shards name its own."""
    from sftmix import mixing
    from sftmix.record import make_record, message, to_table

    quoted = [message("user", "Document: A delta forms where a river drops its sediment.\n\nWhere does a delta form?"),
              message("assistant", "Where a river enters slower water and drops its sediment.")]
    greeting = [message("user", "Hi?"), message("assistant", "Hello.")]
    generated = [make_record(messages=quoted, tools=[], source="qa", licence="apache-2.0", language="en",
                             origin={"row": "0", "generator": "long_context_qa", "input_licences": ["odc-by"]}),
                 make_record(messages=greeting, tools=[], source="qa", licence="apache-2.0", language="en",
                             origin={"row": "1", "generator": "long_context_qa"})]
    converted = [make_record(messages=[message("user", "Name a primary colour."), message("assistant", "Red.")],
                             tools=[], source="dolly", licence="cc-by-4.0", language="en", origin={"row": "dolly.jsonl#0"})]
    pq.write_table(to_table(generated), tmp_path / "qa.parquet")
    pq.write_table(to_table(converted), tmp_path / "dolly.parquet")
    docs = {"key": "docs", "converter": "fineweb_edu", "licence": "odc-by", "targets": {},
            "local": {"files": [str(FIXTURES / "fineweb_edu" / "000_00000.parquet")]}}
    qa = {"key": "qa", "generator": {"name": "long_context_qa", "inputs": ["docs"]}, "licence": "apache-2.0",
          "targets": "all"}
    dolly = {"key": "dolly", "converter": "dolly", "licence": "cc-by-4.0", "targets": "all",
             "local": {"files": [str(FIXTURES / "dolly" / "databricks-dolly-15k.jsonl")]}}
    manifest = load(_manifest(tmp_path, [docs, qa, dolly], holdout=0, shard_rows=1,
                              licence_policy={"allow": ["apache-2.0", "cc-by-4.0", "odc-by"]}))
    mixing.build(manifest, {"qa": [tmp_path / "qa.parquet"], "dolly": [tmp_path / "dolly.parquet"]},
                 tmp_path / "out", tmp_path / "work")
    named = []  # one row a shard: (its source, its input licences, the shard's footer)
    for shard in sorted((tmp_path / "out" / "train").glob("part-*.parquet")):
        [row] = pq.read_table(shard).to_pylist()
        named.append((row["source"], json.loads(row["origin"]).get("input_licences"),
                      json.loads(pq.read_schema(shard).metadata[b"licences"])))
    assert sorted(named, key=repr) == sorted([("qa", ["odc-by"], ["apache-2.0", "odc-by"]), ("qa", None, ["apache-2.0"]),
                                              ("dolly", None, ["cc-by-4.0"])], key=repr)


@pytest.mark.parametrize("targets", [{"ca": 100}, {"ca": 100, "oc": 0}], ids=["untargeted", "target_0"])
def test_a_copy_in_a_targeted_language_outlives_its_copy_in_an_untargeted_one(tmp_path, targets):
    """The within-source dedup kept the copy with the smallest origin, an untargeted language's,
    which the sample then left out: the conversation was in neither split. A language whose target
    is 0 gives no rows either: its copy did the same."""
    translation = [{"role": "user", "content": "Tradueix al català: 'Bon dia a tothom, benvinguts a la reunió.'"},
                   {"role": "assistant", "content": "Bon dia a tothom, benvinguts a la reunió."}]
    rows = [{"messages": translation, "language": "oc"}, {"messages": translation, "language": "ca"},
            {"messages": translation, "language": "ca"}]
    rows += [{"messages": [{"role": "user", "content": f"Quant fan {i} més {i}?"},
                           {"role": "assistant", "content": f"Fan {2 * i}."}], "language": "ca"} for i in range(1, 4)]
    raw = tmp_path / "s.jsonl"
    raw.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    source = {"key": "s", "converter": "openai_messages", "licence": "apache-2.0", "local": {"files": [str(raw)]},
              "targets": targets, "filters": {"language": False}}
    result = build(load(_manifest(tmp_path, [source], holdout=0)), tmp_path / "out")
    assert result.excluded["s"] == {"language_not_targeted": 1, "duplicate_within_source": 1}
    train = list(sftmix.read_mixture(tmp_path / "out" / "mini", "train"))
    assert sorted(json.loads(r["origin"])["row"] for r in train) == [f"s.jsonl#{row}" for row in (1, 3, 4, 5)]
    drops = pq.read_table(tmp_path / "out" / "mini" / "rejected" / "s.mixing-00000.parquet").to_pylist()
    assert [(d["reason"], d["key"]) for d in drops] == [("duplicate_within_source", "s.jsonl#2")]


@pytest.mark.parametrize("targets", [{"ca": 100}, {"ca": 100, "oc": 0}], ids=["untargeted", "target_0"])
def test_a_near_duplicate_in_an_untargeted_language_takes_no_cluster_with_it(tmp_path, targets):
    """A source keeps the smallest id of a near-duplicate cluster: labelled with a language whose
    target is 0, it was kept for a cell that gives no rows, and its cluster's targeted row dropped
    as `near_duplicate_within_source`."""
    from sftmix import mixing
    from sftmix.record import make_record, message, to_table

    answer = ("Per fer una bona escudella cal posar a bullir aigua amb sal, afegir-hi els ossos, la carn d'olla, "
              "la gallina i la botifarra, i deixar-ho coure a foc lent durant tres hores. Després s'hi afegeixen "
              "les patates, les pastanagues, la col, els cigrons i els naps, i es deixa coure mitja hora més. "
              "El brou es cola i s'hi couen les galets, que se serveixen primer; la carn i les verdures, després.")
    texts = [("Com es fa l'escudella?", answer), ("Com es fa l'escudella?", answer.replace("tres hores", "dues hores")),
             ("Quant fan 2 més 2?", "Fan 4.")]
    records = [make_record(messages=[message("user", question), message("assistant", reply)], tools=[], source="s",
                           licence="apache-2.0", language="ca", origin={"row": f"s.jsonl#{row}"})
               for row, (question, reply) in enumerate(texts)]
    min(records[:2], key=lambda record: record["id"])["language"] = "oc"  # the cluster's representative
    pq.write_table(to_table(records), tmp_path / "s.parquet")
    source = {"key": "s", "local": {"files": ["s.jsonl"]}, "converter": "openai_messages", "licence": "apache-2.0",
              "targets": targets}
    manifest = load(_manifest(tmp_path, [source], holdout=0, near_dedup=NEAR_DEDUP))
    result = mixing.build(manifest, {"s": [tmp_path / "s.parquet"]}, tmp_path / "out", tmp_path / "work")
    assert result.excluded["s"] == {"language_not_targeted": 1}
    assert result.by_language["train"] == {"ca": 2}

def test_a_source_taken_out_of_the_manifest_leaves_no_rejected_file(tmp_path):
    """The published drops are those of the sources and stages the card lists; a file sftmix did
    not name stays."""
    def source(key):
        return {"key": key, "converter": "glaive", "licence": "apache-2.0", "language": "en",
                "local": {"files": [str(FIXTURES / "glaive" / "glaive-function-calling-v2.json")]}, "targets": "all"}

    rejected = tmp_path / "out" / "mini" / "rejected"
    build(load(_manifest(tmp_path, [source("g"), source("g.v1")], holdout=0)), tmp_path / "out")
    stages = ("filtered", "mixing", "normalized")
    assert sorted(p.name for p in rejected.iterdir()) == sorted(f"{k}.{s}-00000.parquet" for k in ("g", "g.v1") for s in stages)
    (rejected / "my-notes.parquet").write_bytes(b"")
    build(load(_manifest(tmp_path, [source("g")], holdout=0)), tmp_path / "out")  # a key that is a prefix of the other's
    assert sorted(p.name for p in rejected.iterdir()) == [f"g.{s}-00000.parquet" for s in stages] + ["my-notes.parquet"]
    # a source that now only feeds generators is not mixed: its mixing drops go, its stages' stay
    build(load(_manifest(tmp_path, [source("h"), {**source("g"), "targets": {}}], holdout=0)), tmp_path / "out")
    card = (tmp_path / "out" / "mini" / "README.md").read_text()  # its intake is marked (it read as mixed rows)
    assert re.search(r"^\| g \(generator input only\) \| 16 \| \d+ \| \d+ \|$", card, re.M)
    assert re.search(r"^\| h \| 16 \| \d+ \| \d+ \|$", card, re.M) and "none of its rows is in either split" in card
    assert sorted(p.name for p in rejected.iterdir()) == (
        ["g.filtered-00000.parquet", "g.normalized-00000.parquet"] + [f"h.{s}-00000.parquet" for s in stages]
        + ["my-notes.parquet"])


def test_a_source_taken_out_for_one_mixing_comes_back_with_its_drops(tmp_path):
    """The mixing without it removed its stages' rejected files, and the one with it back reused its
    records: the card and stats.json counted drops that rejected/ no longer held (helper audit)."""
    out, layout = tmp_path / "out", Layout(tmp_path / "out", "mini")
    both = _manifest(tmp_path, [_glaive_source(), _glaive_source(key="g.v1")], holdout=0)
    build(load(both), out)
    published = {p.name: p.read_bytes() for p in layout.rejected_dir.glob("g.v1.*")}
    assert sorted(published) == [f"g.v1.{stage}-00000.parquet" for stage in ("filtered", "mixing", "normalized")]
    text = both.read_text()
    mix(load(_manifest(tmp_path, [_glaive_source()], holdout=0)), layout)  # the same file, without g.v1
    assert not list(layout.rejected_dir.glob("g.v1.*"))
    both.write_text(text)
    mix(load(both), layout)  # its records are reused: no stage runs again
    back = {p.name: p.read_bytes() for p in layout.rejected_dir.glob("g.v1.*")}
    assert back == published  # the mixing's own drops written again, the same
    assert not list(layout.work_dir.rglob("rejected"))
    stats = json.loads((layout.mixture_dir / "stats.json").read_text())
    for stage in ("normalized", "filtered"):
        rows = pq.read_metadata(layout.rejected_dir / f"g.v1.{stage}-00000.parquet").num_rows
        assert rows == sum(stats["intake"]["g.v1"][stage]["dropped"].values()) > 0


def test_a_mixing_refuses_a_normalized_run_its_filtered_records_did_not_come_from(tmp_path):
    """A converter tried on the source alone (its normalized stage only), then the manifest put
    back: the mixing took the filtered records, and the card's intake and rejected/ were the try's
    (0 converted, 7 after filters; helper audit)."""
    out, layout = tmp_path / "out", Layout(tmp_path / "out", "mini")
    for feeds_generators_only in (False, True):  # its intake is on the card either way (the second review)
        g = _glaive_source(**({"targets": {}} if feeds_generators_only else {}))
        path = _manifest(tmp_path, [_glaive_source(key="h"), g], holdout=0)
        text = path.read_text()
        build(load(path), out)
        tried = load(_manifest(tmp_path, [_glaive_source(key="h"), {**g, "converter": "xlam"}], holdout=0))
        normalize_source(tried, tried.source("g"), [FIXTURES / "glaive" / "glaive-function-calling-v2.json"], layout)
        path.write_text(text)
        with pytest.raises(BuildError, match=r"source 'g': its normalized records were made with other settings .*"
                                             r'converter: "xlam" -> "glaive"'):
            mix(load(path), layout)
    build(load(path), out)  # the source again: its normalized stage, then the mixing
    stats = json.loads((layout.mixture_dir / "stats.json").read_text())
    assert stats["intake"]["g"]["normalized"]["kept"] > 0


def test_a_raw_file_deleted_after_its_stages_is_named_as_gone(tmp_path):
    """The mixing refused with `raw.file_states.glaive.json: {...} -> null`, and building again
    could not help (helper audit)."""
    raw = tmp_path / "glaive.json"
    raw.write_bytes((FIXTURES / "glaive" / "glaive-function-calling-v2.json").read_bytes())
    path = _manifest(tmp_path, [_glaive_source(local={"files": ["glaive.json"]})], holdout=0)
    build(load(path), tmp_path / "out")
    raw.unlink()
    with pytest.raises(BuildError, match=re.escape(f"source 'g': its raw file(s) {raw} no longer exist (put them back, "
                                                   "or name others in local.files)")):
        mix(load(path), Layout(tmp_path / "out", "mini"))


def test_records_of_a_source_taken_out_of_the_manifest_are_reported_with_their_size_and_kept(tmp_path, caplog):
    """A source out of the manifest for one mixing keeps its records (no normalize run when it comes
    back), and the mixing says what it leaves and how large it is, in its log and its metadata."""
    out, layout = tmp_path / "out", Layout(tmp_path / "out", "mini")
    build(load(_manifest(tmp_path, [_glaive_source(), _glaive_source(key="g.v1")], holdout=0)), out)
    work = layout.work_dir
    logs = work / "filtered" / "g.v1" / ".datatrove-logs" / "slurm_logs"  # as a Slurm build leaves them
    logs.mkdir(parents=True)
    (logs / "1_0.out").write_text("task 0 done\n" * 100)
    (logs / "1_1.out").symlink_to(tmp_path / "gone")  # a file that went while the sizes were added: 0 bytes
    kept = {p: p.read_bytes() for p in sorted(work.rglob("*")) if p.is_file()}
    (work / "filtered" / "my-notes.txt").write_text("mine")
    path = _manifest(tmp_path, [_glaive_source()], holdout=0)  # a key that is a prefix of the other's
    with caplog.at_level("WARNING", logger="sftmix"):
        mix(load(path), layout)
    [unused] = sftmix.build.unused_work(load(path), layout)
    paths = [work / "normalized" / "g.v1", work / "normalized" / "g.v1.done.json",
             work / "filtered" / "g.v1", work / "filtered" / "g.v1.done.json"]
    moved = sorted((work / stage / "g.v1" / "rejected" / f"g.v1.{stage}-00000.parquet") for stage in ("normalized", "filtered"))
    size = (sum(len(data) for p, data in kept.items() if p in paths or any(d in p.parents for d in paths))
            + sum(path.stat().st_size for path in moved))  # its stages' drops wait beside them
    assert (unused.source, unused.stages, unused.paths, unused.bytes) == ("g.v1", ["normalized", "filtered"], paths, size)
    assert size > 2 * len(kept[paths[0] / "part-00000.parquet"])  # both stages' parts, not only the done files
    message = (f"source 'g.v1': {path} no longer builds its normalized and filtered records ({size:,} bytes): "
               f"delete {', '.join(map(str, paths))} to free the space")
    assert [m for m in caplog.messages if "no longer builds" in m] == [message]
    assert {p: p.read_bytes() for p in kept} == kept  # nothing removed
    # through Dagster: the run log and the mixture's metadata
    instance = DagsterInstance.ephemeral()
    result = build_definitions(str(path), str(out)).resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[AssetKey("mixture"), AssetKey("holdout")])
    metadata = {m.asset_key.to_user_string(): m.metadata["unused_work"].value
                for m in result.asset_materializations_for_node("mixture_and_holdout")}
    expected = {"g.v1": {"stages": ["normalized", "filtered"], "bytes": size, "paths": list(map(str, paths))}}
    assert metadata == {"mixture": expected, "holdout": expected}
    warnings = [e.user_message for e in instance.all_logs(result.run_id) if e.level == logging.WARNING]
    assert message in warnings
    # a source now generated writes no normalized records: those are unused, its filtered ones not
    generated = {**_glaive_source(key="g.v1"), "generator": {"name": "fc_synthesis", "inputs": ["g"]}, "targets": {"en": 1}}
    del generated["converter"], generated["local"], generated["language"]
    [unused] = sftmix.build.unused_work(load(_manifest(tmp_path, [_glaive_source(), generated], holdout=0)), layout)
    assert (unused.source, unused.stages, unused.paths) == ("g.v1", ["normalized"], paths[:2])
    assert sftmix.build.unused_work(load(_manifest(tmp_path, [_glaive_source(), _glaive_source(key="g.v1")])), layout) == []


def _wildchat_source(**changes) -> dict:
    return {"key": "wildchat", "converter": "wildchat", "licence": "odc-by", "targets": {},
            "local": {"files": [str(FIXTURES / "wildchat" / "train-00000-of-00014.parquet")]}, **changes}


def _wildchat_prompts(tmp_path: Path, n: int) -> dict:
    """`_wildchat_source` of `n` English prompts, each a row of its fixture with another prompt and hash."""
    table = pq.read_table(FIXTURES / "wildchat" / "train-00000-of-00014.parquet")
    row = table.slice(0, 1).to_pylist()[0]
    rows = [{**row, "conversation_hash": f"h{i}", "conversation": [
        {**row["conversation"][0], "content": f"Write a short poem about the number {i} and the sea."},
        *row["conversation"][1:]]} for i in range(n)]
    path = tmp_path / "wildchat-prompts.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    return _wildchat_source(local={"files": [str(path)]})


def _responses_source(**changes) -> dict:
    """A generated source answering `_wildchat_source`'s prompts."""
    return {"key": "responses", "generator": {"name": "wildchat_responses", "inputs": ["wildchat"]},
            "licence": "apache-2.0", "targets": {"en": "all"}, **changes}


def _dolly_source(**changes) -> dict:
    """A source the LLM has no part in: the mixture has rows when an endpoint's source has none
    (a mixture of no rows is refused, `EmptyTrainSplit`)."""
    return {"key": "dolly", "converter": "dolly", "licence": "apache-2.0", "language": "en", "targets": "all",
            "local": {"files": [str(FIXTURES / "dolly" / "databricks-dolly-15k.jsonl")]}, "filters": {"language": False},
            **changes}


def _glaive_source(**changes) -> dict:
    return {"key": "g", "converter": "glaive", "licence": "apache-2.0", "language": "en",
            "local": {"files": [str(FIXTURES / "glaive" / "glaive-function-calling-v2.json")]}, "targets": "all", **changes}


def _step_failures(result) -> list[str]:
    """The message of each step's failure, without its exception's name."""
    errors = [e.event_specific_data.error for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    return [(error.cause or error).message.split(": ", 1)[1].strip() for error in errors]


def test_a_run_refuses_a_manifest_other_than_the_one_its_assets_were_defined_from(tmp_path):
    """The asset graph (its sources, checks and code versions) is the manifest's the definitions
    loaded. A manifest edited before they were reloaded, or another `manifest_path` in run config,
    stopped a step on `KeyError: "no source 'd' in manifest mini"`, or was built and recorded under
    the code versions of the one defined."""
    from pipelines.resources import SftmixResource

    path = _manifest(tmp_path, [_glaive_source()], holdout=0)
    job = build_definitions(str(path), str(tmp_path / "out")).resolve_implicit_global_asset_job_def()
    (tmp_path / "other").mkdir()
    other = _manifest(tmp_path / "other", [_glaive_source(key="d")], holdout=0)
    message = (r"^{edited} \(hash \w+\) is not the manifest the asset definitions were loaded from \({defined}, hash \w+\): "
               r"reload the definitions \(the web UI's Reload button, or a restart; SFTMIX_MANIFEST names the "
               r"manifest\) and materialize again$")
    result = job.execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False, resources={
        "sftmix": SftmixResource(manifest_path=str(other), output=str(tmp_path / "out"))})
    [failure] = _step_failures(result)
    assert re.match(message.format(edited=re.escape(str(other)), defined=re.escape(str(path))), failure), failure
    path.write_text(path.read_text().replace("holdout:\n  size: 0", "holdout:\n  size: 1"))  # edited, not reloaded
    result = job.execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False)
    [failure] = _step_failures(result)
    assert re.match(message.format(edited=re.escape(str(path)), defined=re.escape(str(path))), failure), failure
    assert not (tmp_path / "out" / "mini").exists()
    # reloaded, it builds
    result = build_definitions(str(path), str(tmp_path / "out")).resolve_implicit_global_asset_job_def() \
        .execute_in_process(instance=DagsterInstance.ephemeral())
    assert result.success


def test_the_card_before_any_mixing_is_one_line(tmp_path):
    path = _manifest(tmp_path, [_glaive_source()], holdout=0)
    result = build_definitions(str(path), str(tmp_path / "out")).resolve_implicit_global_asset_job_def() \
        .execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False,
                            asset_selection=[AssetKey("dataset_card")])
    assert _step_failures(result) == [f"{tmp_path / 'out' / 'mini'}: not mixed yet: materialize the mixture and "
                                      "holdout first"]


def test_the_manifests_output_is_where_a_build_goes_unless_sftmix_output_says_otherwise(tmp_path, monkeypatch):
    """`output:` was read, validated and then never used: the build went to ./output."""
    path = _manifest(tmp_path, [_glaive_source()], holdout=0)
    path.write_text(path.read_text() + f"output: {tmp_path / 'from-manifest'}\n")
    monkeypatch.chdir(tmp_path)
    assert build_definitions(str(path)).resources["sftmix"].layout.root == tmp_path / "from-manifest"
    assert build_definitions(str(path), str(tmp_path / "env")).resources["sftmix"].layout.root == tmp_path / "env"
    path.write_text(path.read_text().replace(f"output: {tmp_path / 'from-manifest'}", "output: ./relative"))
    assert build_definitions(str(path)).resources["sftmix"].layout.root == tmp_path / "relative"  # from the working directory
    monkeypatch.setenv("SFTMIX_MANIFEST", str(path))  # as `dagster asset materialize -m pipelines.definitions` loads it
    monkeypatch.delenv("SFTMIX_OUTPUT", raising=False)
    try:
        assert importlib.reload(pipelines.definitions).defs.resources["sftmix"].layout.root == tmp_path / "relative"
        monkeypatch.setenv("SFTMIX_OUTPUT", str(tmp_path / "env"))
        assert importlib.reload(pipelines.definitions).defs.resources["sftmix"].layout.root == tmp_path / "env"
    finally:
        monkeypatch.undo()
        importlib.reload(pipelines.definitions)  # the module as the other tests import it


def test_a_local_file_that_is_missing_or_a_directory_is_named(tmp_path):
    """A directory was reported as "input file not found", which it is not."""
    (tmp_path / "glaive").mkdir()
    for name, problem in (("glaive", "is a directory; local.files names its files"), ("gone.json", "input file not found: ")):
        manifest = load(_manifest(tmp_path, [_glaive_source(local={"files": [name]})], holdout=0))
        with pytest.raises(BuildError) as error:
            raw_files(manifest, manifest.sources[0], Layout(tmp_path / "out", "mini"), tmp_path / "hub")
        assert str(error.value) in (f"source 'g': {tmp_path / name} {problem}", f"source 'g': {problem}{tmp_path / name}")


def _stop_at_validation(monkeypatch, layout: Layout) -> None:
    """The next mixing is stopped (Ctrl-C) after it put train in place, before validation."""
    remove = shutil.rmtree

    def stopped_at_validation(target, *args, **kwargs):
        if Path(target) == layout.mixture_dir / "validation":
            monkeypatch.undo()
            raise KeyboardInterrupt
        return remove(target, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", stopped_at_validation)


def test_no_card_is_written_for_a_mixing_stopped_between_its_splits(tmp_path, monkeypatch):
    """The mixing puts train in place, then validation, then stats.json. Stopped in between, the card
    step took the new train split beside the old holdout (whose rows the new train may hold) and stats,
    also when the manifest did not change (a raw file did)."""
    from sftmix.build import mixed_result, write_card
    from sftmix.mixing import MIXING_STOPPED, MixResult

    raw = tmp_path / "glaive.json"
    raw.write_text((FIXTURES / "glaive" / "glaive-function-calling-v2.json").read_text())
    path = _manifest(tmp_path, [_glaive_source(local={"files": [str(raw)]}, targets={"en": 3})], holdout=2)
    out, layout = tmp_path / "out", Layout(tmp_path / "out", "mini")
    build(load(path), out)
    stats = lambda: mixed_result(layout)
    stopped = (rf"^{re.escape(str(layout.mixture_dir))}: its last mixing was stopped part way, so its splits, rejected "
               "files and stats.json may be of two mixings: mix it again first$")

    raw.write_text(json.dumps(json.loads(raw.read_text())[1:]))  # a row fewer: the manifest's hash stays
    _stop_at_validation(monkeypatch, layout)
    with pytest.raises(KeyboardInterrupt):
        build(load(path), out)
    with pytest.raises(BuildError, match=stopped):
        write_card(load(path), layout, stats())
    # nor do the readers hand a training job the new train split beside the old holdout
    refused = (rf"^{re.escape(str(layout.mixture_dir))}: its last mixing was stopped part way, so its splits may be of "
               r"two mixings \(its holdout overlapping train\): mix it again first$")
    for split in ("train", "validation"):
        for where in (layout.mixture_dir, layout.mixture_dir / split, layout.mixture_dir / split / "part-00000.parquet"):
            with pytest.raises(ValueError, match=refused):
                list(sftmix.read_mixture(where, split))
        with pytest.raises(ValueError, match=refused):
            sftmix.to_hf_dataset(layout.mixture_dir, split)
    mix(load(path), layout)
    assert not (layout.mixture_dir / MIXING_STOPPED).exists()
    write_card(load(path), layout, stats())
    assert len(list(sftmix.read_mixture(layout.mixture_dir, "validation"))) == 2

    path.write_text(path.read_text().replace("seed: 1", "seed: 2"))
    manifest = load(path)
    _stop_at_validation(monkeypatch, layout)
    with pytest.raises(KeyboardInterrupt):
        mix(manifest, layout)
    with pytest.raises(BuildError, match=stopped):
        write_card(manifest, layout, stats())
    (layout.mixture_dir / MIXING_STOPPED).unlink()  # as an sftmix before the marker left it: the hashes tell
    with pytest.raises(BuildError, match=rf"^{re.escape(str(layout.mixture_dir))}: its validation split is of another mixing "
                                         rf"\(hash \w+\) than its train split \(hash {manifest.hash}\), which was stopped part way: "
                                         "mix it again first$"):
        write_card(manifest, layout, stats())
    result = mix(manifest, layout)
    assert stats().manifest_hash == result.manifest_hash == manifest.hash
    write_card(manifest, layout, stats())
    with pytest.raises(BuildError, match=r": its stats.json is of another mixing \(hash none\) than its train split"):
        write_card(manifest, layout, MixResult(**{**stats().__dict__, "manifest_hash": ""}))  # one written before this check


def test_a_new_mixing_removes_the_card_of_the_last(tmp_path):
    """Mixed again (`--select 'mixture,holdout'`, or the card step failing), the last mixing's card
    stayed beside the new splits: "Train: 4 rows" over 2, with the other settings hash."""
    from sftmix.build import mixed_result, write_card

    path = _manifest(tmp_path, [_glaive_source(targets={"en": 4})], holdout=2)
    layout = Layout(tmp_path / "out", "mini")
    build(load(path), tmp_path / "out")
    assert "Train: 4 rows" in (layout.mixture_dir / "README.md").read_text()
    path.write_text(path.read_text().replace("en: 4", "en: 2"))
    mix(load(path), layout)
    assert not (layout.mixture_dir / "README.md").exists()
    write_card(load(path), layout, mixed_result(layout))
    assert "Train: 2 rows" in (layout.mixture_dir / "README.md").read_text()


def test_the_card_counts_the_stages_that_made_the_records_mixed_not_those_run_since(tmp_path):
    """Running a source's stages again without mixing, then writing only the card, paired the new
    stages' intake and drops with the old mixture's rows."""
    from sftmix.build import mixed_result, write_card

    raw = tmp_path / "glaive.json"
    rows = json.loads((FIXTURES / "glaive" / "glaive-function-calling-v2.json").read_text())
    raw.write_text(json.dumps(rows))
    manifest = load(_manifest(tmp_path, [_glaive_source(local={"files": [str(raw)]})]))
    out, layout = tmp_path / "out", Layout(tmp_path / "out", "mini")
    build(manifest, out)
    card = (layout.mixture_dir / "README.md").read_text()
    assert f"| g | {len(rows)} |" in card
    raw.write_text(json.dumps(rows + rows[:3]))
    manifest = load(manifest.path)
    source = manifest.sources[0]
    normalize_source(manifest, source, raw_files(manifest, source, layout, tmp_path / "hub"), layout, 1)
    filter_source(manifest, source, layout)
    assert layout.read_counts("g", "normalized").read == len(rows) + 3
    write_card(manifest, layout, mixed_result(layout))
    assert (layout.mixture_dir / "README.md").read_text() == card


def test_the_mixing_takes_only_records_made_from_the_settings_the_manifest_has_now(tmp_path):
    """Materializing only the mixture after a source was edited in the manifest would publish, under
    the new manifest's hash, rows made from the old settings (here: the old licence)."""
    out, layout = tmp_path / "out", Layout(tmp_path / "out", "mini")
    build(load(_manifest(tmp_path, [_glaive_source()])), out)
    # targets are the mixing's own: nothing to build again
    assert mix(load(_manifest(tmp_path, [_glaive_source(targets={"en": 3})])), layout).split_rows["train"] == 3
    path = _manifest(tmp_path, [_glaive_source(licence="cc-by-4.0", filters={"length": {"max_tokens": 20000}})])
    again = ": build that source again (its assets, or the whole manifest)"
    with pytest.raises(BuildError) as error:
        mix(load(path), layout)
    assert str(error.value) == (
        f"source 'g': its filtered records were made with other settings than {path} has now "
        '(filters.length: null -> {"max_tokens": 20000}; licence: "apache-2.0" -> "cc-by-4.0")' + again)
    with pytest.raises(BuildError) as error:
        filter_source(load(path), load(path).sources[0], layout)
    assert str(error.value) == (f"source 'g': its normalized records were made with other settings than {path} "
                                'has now (licence: "apache-2.0" -> "cc-by-4.0")' + again)
    # what a user does in the web UI: only the mixture's assets, selected
    job = build_definitions(str(path), str(out)).resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False,
                                    asset_selection=[AssetKey("mixture"), AssetKey("holdout"), AssetKey("dataset_card")])
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    assert "its filtered records were made with other settings" in failure.event_specific_data.error.cause.message
    assert {r["licence"] for r in sftmix.read_mixture(out / "mini")} == {"apache-2.0"}  # the old mixture stays
    build(load(path), out)
    assert {r["licence"] for r in sftmix.read_mixture(out / "mini")} == {"cc-by-4.0"}
    # the card alone, after the manifest changed again: it would list the new targets beside the old counts
    edited = _manifest(tmp_path, [_glaive_source(licence="cc-by-4.0", filters={"length": {"max_tokens": 20000}},
                                                 targets={"en": 3})])
    result = build_definitions(str(edited), str(out)).resolve_implicit_global_asset_job_def().execute_in_process(
        instance=DagsterInstance.ephemeral(), raise_on_error=False, asset_selection=[AssetKey("dataset_card")])
    [failure] = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    assert re.search(r"mini was mixed from another manifest \(hash \w+\) than .*m.yaml \(hash \w+\): mix it again first$",
                     failure.event_specific_data.error.cause.message)


def test_a_local_raw_file_rewritten_in_place_is_built_again_before_it_is_mixed(tmp_path):
    """The manifest names the same path, but the rows in it changed: mixing the records made from
    the old file would publish rows the file no longer has."""
    raw = tmp_path / "glaive.json"
    rows = json.loads((FIXTURES / "glaive" / "glaive-function-calling-v2.json").read_text())
    raw.write_text(json.dumps(rows))
    path = _manifest(tmp_path, [_glaive_source(local={"files": ["glaive.json"]}, targets="all")], holdout=0)
    out, layout = tmp_path / "out", Layout(tmp_path / "out", "mini")
    build(load(path), out)
    old_ids = {r["id"] for r in sftmix.read_mixture(out / "mini")}
    version = stage_version(load(path), load(path).sources[0], "normalized")
    raw.write_text(json.dumps(rows[2:]))  # two rows fewer: the new build keeps 4 of the 6 (the rest are quirks it drops)
    with pytest.raises(BuildError) as error:
        mix(load(path), layout)
    assert re.fullmatch(r"source 'g': its filtered records were made with other settings than .*m\.yaml has now "
                        r"\(raw\.file_states\.glaive\.json\.bytes: \d+ -> \d+; raw\.file_states\.glaive\.json\.modified: "
                        r'"[\d-]+T[\d:.]+Z" -> "[\d-]+T[\d:.]+Z"\): build that source again .*', str(error.value))
    assert stage_version(load(path), load(path).sources[0], "normalized") != version  # stale in the web UI
    build(load(path), out)
    build(load(path), tmp_path / "fresh")
    new_ids = {r["id"] for r in sftmix.read_mixture(out / "mini")}
    assert new_ids == {r["id"] for r in sftmix.read_mixture(tmp_path / "fresh" / "mini")}
    assert new_ids < old_ids and len(new_ids) == 4
    raw.unlink()
    assert stage_settings(load(path), load(path).sources[0], "normalized")["raw"]["file_states"] == {"glaive.json": None}


def _project_copy(tmp_path: Path, monkeypatch) -> Path:
    """The record path, converters, rules and generators copied, and their digests taken from the
    copy: a test edits them there, not in the checkout."""
    code = tmp_path / "code"
    for package in ("sftmix", "filters", "generators"):
        shutil.copytree(sftmix.code_digests.ROOT / package, code / package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(sftmix.code_digests, "ROOT", code)
    monkeypatch.setattr(generators.base, "PROMPTS_DIR", code / "generators" / "prompts")
    return code


def test_an_edited_converter_or_rule_makes_the_records_it_made_stale(tmp_path, monkeypatch):
    """Mixing records that the converter or a rule no longer makes would publish them as current."""
    code = _project_copy(tmp_path, monkeypatch)
    path = _manifest(tmp_path, [_glaive_source()], holdout=0)
    manifest, layout = load(path), Layout(tmp_path / "out", "mini")
    build(manifest, tmp_path / "out")
    versions = lambda: {stage: stage_version(manifest, manifest.sources[0], stage) for stage in ("raw", "normalized", "filtered")}
    built = versions()
    # exact duplicates are removed at mixing, not by the filtered stage's dedup rule
    assert "filters/length.py" in stage_settings(manifest, manifest.sources[0], "filtered")["code"]
    assert "filters/dedup.py" not in stage_settings(manifest, manifest.sources[0], "filtered")["code"]

    converter = code / "sftmix" / "sources" / "glaive.py"
    text = converter.read_text()
    converter.write_text(text.replace('"""glaiveai/glaive-function-calling-v2:', '"""glaive:') + "\n# a comment\n")
    assert versions() == built and mix(manifest, layout).split_rows["train"] == 6  # a comment changes no record
    converter.write_text(text + "\nMAX_TURNS = 64\n")
    with pytest.raises(BuildError, match=r"^source 'g': its filtered records were made with other settings than .* "
                                         r'has now \(code\.sftmix/sources/glaive\.py: "\w{16}" -> "\w{16}"\): build'):
        mix(manifest, layout)
    edited = versions()
    assert edited["raw"] == built["raw"] and edited["normalized"] != built["normalized"] != edited["filtered"]
    with pytest.raises(BuildError, match=r"^source 'g': its normalized records were made with other settings"):
        filter_source(manifest, manifest.sources[0], layout)
    build(manifest, tmp_path / "out")

    (code / "filters" / "words.py").write_text((code / "filters" / "words.py").read_text() + "\nMAX_WORD = 64\n")
    with pytest.raises(BuildError, match=r'\(code\.filters/words\.py: "\w{16}" -> "\w{16}"\): build'):
        mix(manifest, layout)  # a module the repetition and language rules import
    assert versions()["normalized"] == edited["normalized"]  # the rules run in the filtered stage only
    filter_source(manifest, manifest.sources[0], layout)
    assert mix(manifest, layout).split_rows["train"] == 6


def test_a_judged_source_s_records_depend_on_the_llm_client(tmp_path):
    """How the client reads a reply (a finish reason, a <think> block) decides the judge's verdicts;
    a judged source's digests left `sftmix/llm.py` out, so an edit of it left its records current."""
    manifest = load(_manifest(tmp_path, [_glaive_source(filters={"llm_judge": True})], holdout=0))
    judged = stage_settings(manifest, manifest.sources[0], "filtered")["code"]
    assert "sftmix/llm.py" in judged and "filters/llm_judge.py" in judged
    plain = load(_manifest(tmp_path, [_glaive_source()], holdout=0))
    assert "sftmix/llm.py" not in stage_settings(plain, plain.sources[0], "filtered")["code"]


@pytest.mark.parametrize("module", ["sftmix/normalize.py", "sftmix/record.py", "sftmix/shards.py", "sftmix/jsonarray.py",
                                    "filters/base.py", "filters/language_id.py"])
def test_an_edited_module_of_the_record_path_makes_every_stage_stale(tmp_path, monkeypatch, module):
    """The record path every source shares (reading, the record and its id, the writers) makes the
    records too: an sftmix update that changes it must not leave records of the old code current.
    `jsonarray.py` is reached only through `sftmix/sources/common.py`, which the converter imports too.
    `filters/language_id.py` labels the rows a source gives no language, in the normalized stage."""
    code = _project_copy(tmp_path, monkeypatch)
    manifest = load(_manifest(tmp_path, [_glaive_source()], holdout=0))
    versions = lambda: {stage: stage_version(manifest, manifest.sources[0], stage) for stage in ("raw", "normalized", "filtered")}
    built = versions()
    assert module in stage_settings(manifest, manifest.sources[0], "normalized")["code"]
    assert "sftmix/mixing.py" not in stage_settings(manifest, manifest.sources[0], "filtered")["code"]
    edited = code / module
    edited.write_text(edited.read_text() + "\nEDITED = 1\n")
    now = versions()
    assert now["raw"] == built["raw"] and now["normalized"] != built["normalized"] and now["filtered"] != built["filtered"]


def test_the_judges_prompt_templates_are_in_the_filtered_settings_where_it_runs(tmp_path):
    judged = load(_manifest(tmp_path, [_glaive_source(filters={"llm_judge": {"threshold": 3}})]))
    unjudged = load(_manifest(tmp_path, [_glaive_source()]))
    templates = {"filters/llm_judge.py", "filters/prompts/judge_absolute.txt", "filters/prompts/rubric_default.txt"}
    assert templates <= stage_settings(judged, judged.sources[0], "filtered")["code"].keys()
    assert not templates & stage_settings(unjudged, unjudged.sources[0], "filtered")["code"].keys()


def test_an_edited_generator_or_prompt_template_makes_its_records_stale(tmp_path, monkeypatch):
    code = _project_copy(tmp_path, monkeypatch)
    wildchat = _wildchat_source()
    responses = _responses_source()
    manifest = load(_manifest(tmp_path, [wildchat, responses], holdout=0))
    wildchat_version, settings = (stage_version(manifest, manifest.sources[0], "filtered"),
                                  stage_settings(manifest, manifest.sources[1], "filtered"))
    assert {"generators/wildchat_responses.py", "generators/base.py", "generators/prompts/wildchat_responses_system.txt",
            "filters/language.py", "filters/dedup.py"} <= settings["code"].keys()  # a generator's rows pass every rule
    assert settings["inputs"]["wildchat"]["code"]["sftmix/sources/wildchat.py"]
    assert "sftmix/llm.py" in settings["code"] and "sftmix/llm.py" not in settings["inputs"]["wildchat"]["code"]
    for edited in (code / "generators" / "prompts" / "wildchat_responses_system.txt", code / "generators" / "wildchat_responses.py",
                   code / "sftmix" / "llm.py"):
        edited.write_text(edited.read_text() + "\nX = 1\n")
        now = stage_settings(manifest, manifest.sources[1], "filtered")
        assert [key for key in settings["code"] if settings["code"][key] != now["code"][key]] == \
               [str(edited.relative_to(code))]
        assert stage_version(manifest, manifest.sources[0], "filtered") == wildchat_version
        settings = now


@pytest.mark.parametrize("stage", ["normalized", "filtered"])
def test_a_raw_file_rewritten_while_a_stage_runs_leaves_its_records_stale(tmp_path, monkeypatch, stage):
    """The done file keeps the file's state from before the stage read it, not after."""
    raw = tmp_path / "glaive.json"
    rows = json.loads((FIXTURES / "glaive" / "glaive-function-calling-v2.json").read_text())
    raw.write_text(json.dumps(rows))
    manifest = load(_manifest(tmp_path, [_glaive_source(local={"files": ["glaive.json"]})], holdout=0))
    layout, run_stage = Layout(tmp_path / "out", "mini"), sftmix.build.run_stage
    normalize_source(manifest, manifest.sources[0], [raw], layout)

    def rewritten_meanwhile(step, config, **options):
        ran = run_stage(step, config, **options)
        raw.write_text(json.dumps(rows[1:]))  # another job finishing its write
        return ran

    monkeypatch.setattr(sftmix.build, "run_stage", rewritten_meanwhile)
    {"normalized": lambda: normalize_source(manifest, manifest.sources[0], [raw], layout),
     "filtered": lambda: filter_source(manifest, manifest.sources[0], layout)}[stage]()
    monkeypatch.undo()
    with pytest.raises(BuildError, match=f"^source 'g': its {stage} records were made with other settings .*"
                                         r"\(raw\.file_states\.glaive\.json\.bytes: "):
        filter_source(manifest, manifest.sources[0], layout) if stage == "normalized" else mix(manifest, layout)


def test_the_mixing_refuses_a_stage_that_lost_a_part(tmp_path):
    manifest, layout = load(_manifest(tmp_path, [_glaive_source()])), Layout(tmp_path / "out", "mini")
    build(manifest, tmp_path / "out")
    [part] = layout.records("g", "filtered")
    part.unlink()
    with pytest.raises(BuildError, match=f"^source 'g': its filtered part\\(s\\) {part.name} are missing: "):
        mix(manifest, layout)


@pytest.mark.parametrize("text", ["{\"counts\": {", "[]", "{\"counts\": {}, \"parts\": \"part-00000.parquet\", \"settings\": {}}"])
def test_a_damaged_done_file_is_named(tmp_path, text):
    manifest, layout = load(_manifest(tmp_path, [_glaive_source()])), Layout(tmp_path / "out", "mini")
    build(manifest, tmp_path / "out")
    layout.done_file("g", "filtered").write_text(text)
    with pytest.raises(BuildError, match=f"^{re.escape(str(layout.done_file('g', 'filtered')))} is not a done file as "
                                         r"sftmix writes it \(\w+: .*\): build source 'g' again$"):
        mix(manifest, layout)


def test_a_done_file_names_the_parts_of_its_own_runs_tasks_only(tmp_path, monkeypatch):
    """A part another run's task wrote beside this run's (a Slurm task of a killed build, which ran
    as two tasks) is no part of this run's records."""
    manifest, layout = load(_manifest(tmp_path, [_glaive_source()])), Layout(tmp_path / "out", "mini")
    run_stage = sftmix.build.run_stage

    def earlier_runs_task_ends(step, config, **options):
        ran = run_stage(step, config, **options)
        shutil.copy(Path(step.out_dir) / "part-00000.parquet", Path(step.out_dir) / "part-00001.parquet")
        return ran

    monkeypatch.setattr(sftmix.build, "run_stage", earlier_runs_task_ends)
    build(manifest, tmp_path / "out")
    for stage in ("normalized", "filtered"):
        assert layout.read_done("g", stage)["parts"] == ["part-00000.parquet"]


@pytest.mark.parametrize("stage", ["normalized", "filtered"])
def test_the_next_stage_refuses_a_stage_that_stopped_part_way(tmp_path, monkeypatch, stage):
    """A stage whose second worker failed leaves the first worker's part: reading it would publish
    part of the source, as if whole."""
    manifest, layout = load(_manifest(tmp_path, [_glaive_source()])), Layout(tmp_path / "out", "mini")
    build(manifest, tmp_path / "out")  # one worker: one part, the one the failed run rewrites
    run_stage = sftmix.build.run_stage

    def second_worker_fails(step, config, **options):
        run_stage(step, ExecutorConfig(workers=1), **options)
        raise RuntimeError(f"{step.info.key}: task 1 of the {step.stage} stage did not finish")

    monkeypatch.setattr(sftmix.build, "run_stage", second_worker_fails)
    files = [Path(_glaive_source()["local"]["files"][0])]
    run = {"normalized": lambda: normalize_source(manifest, manifest.sources[0], files, layout, workers=2),
           "filtered": lambda: filter_source(manifest, manifest.sources[0], layout, workers=2)}
    with pytest.raises(RuntimeError, match="task 1"):
        run[stage]()
    assert len(layout.records("g", stage)) == 1
    monkeypatch.undo()
    with pytest.raises(BuildError, match=f"^source 'g': its {stage} stage has not completed: "):
        run["filtered"]() if stage == "normalized" else mix(manifest, layout)


def test_a_second_run_stops_at_records_the_first_is_writing_or_reading(tmp_path):
    """Two runs over one output (Materialize clicked twice in the web UI): the second stops with a
    message instead of deleting parts the first is writing or mixing. The holds below are another
    run's: flock locks belong to each opening of the lock file."""
    manifest, layout = load(_manifest(tmp_path, [_glaive_source()])), Layout(tmp_path / "out", "mini")
    files = [Path(_glaive_source()["local"]["files"][0])]
    result = build(manifest, tmp_path / "out")
    busy = "are being written or read by another run: let it finish, then try again"
    with layout.hold(*layout.stage_lock("g", "normalized")):  # a run normalizing g
        with pytest.raises(BuildError, match=f"^source 'g': its normalized records {busy}$"):
            normalize_source(manifest, manifest.sources[0], files, layout)
        with pytest.raises(BuildError, match="^source 'g': its normalized records are being written by another run: "):
            filter_source(manifest, manifest.sources[0], layout)
    with layout.hold(*layout.stage_lock("g", "filtered"), shared=True):  # a run mixing g's records
        with pytest.raises(BuildError, match=f"^source 'g': its filtered records {busy}$"):
            filter_source(manifest, manifest.sources[0], layout)
        mix(manifest, layout)  # readers share
    with layout.hold(*layout.mixture_lock):  # a run mixing
        with pytest.raises(BuildError, match=f"^mixture 'mini': its shards {busy}$"):
            mix(manifest, layout)
        with pytest.raises(BuildError, match=f"^mixture 'mini': its shards {busy}$"):
            sftmix.build.write_card(manifest, layout, result)
    # each run lets go when it ends, failed or not
    with pytest.raises(BuildError):
        with layout.rewriting("g", "filtered"):
            raise BuildError("a stage that failed")
    build(manifest, tmp_path / "out")



def test_a_process_forked_while_a_lock_is_held_does_not_keep_it(tmp_path):
    """datatrove's manager, forked by a build, shared its lock: the build killed (SIGTERM, SIGKILL),
    that child lived on holding it, and every rebuild of the source stopped as "being written or read
    by another run"."""
    layout = Layout(tmp_path / "out", "mini")
    lock = layout.stage_lock("g", "normalized")
    read, write = os.pipe()
    started, ready = os.pipe()
    with layout.hold(*lock):
        child = os.fork()
        if child == 0:  # lives on after its parent lets go, as the orphaned manager did
            os.write(ready, b"!")
            os.read(read, 1)
            os._exit(0)
        os.read(started, 1)  # the child runs (its fork hooks ran)
    try:
        with layout.hold(*lock):  # the next run
            pass
    finally:
        os.write(write, b"!")
        os.waitpid(child, 0)
        for descriptor in (read, write, started, ready):
            os.close(descriptor)

def test_a_file_system_without_locks_builds_with_a_warning(tmp_path, monkeypatch, caplog):
    def no_locks(file, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(sftmix.build.fcntl, "flock", no_locks)
    with caplog.at_level("WARNING", logger="sftmix"):
        result = build(load(_manifest(tmp_path, [_glaive_source()])), tmp_path / "out")
    assert result.split_rows["train"] > 0
    assert any(re.fullmatch(r"cannot lock .*/filtered/\.g\.lock \(\[Errno \d+\] No locks available\): two runs of it "
                            r"at once would collide", m) for m in caplog.messages)


def test_a_generator_takes_only_inputs_made_from_the_settings_the_manifest_has_now(tmp_path, monkeypatch):
    monkeypatch.setenv("SFTMIX_LLM_API_KEY", "sk-test")
    wildchat = _wildchat_source()
    responses = _responses_source()
    layout = Layout(tmp_path / "out", "mini")
    manifest = load(_manifest(tmp_path, [wildchat, responses], holdout=0))
    reads = r"^source 'responses' \(wildchat_responses\) reads: source 'wildchat': its filtered "
    with pytest.raises(BuildError, match=reads + "stage has not completed: "):
        generate_source(manifest, manifest.sources[1], layout)
    normalize_source(manifest, manifest.sources[0], [Path(wildchat["local"]["files"][0])], layout)
    filter_source(manifest, manifest.sources[0], layout)
    edited = load(_manifest(tmp_path, [{**wildchat, "filters": {"language": False}}, responses], holdout=0))
    with pytest.raises(BuildError, match=reads + r"records were made with other settings .*"
                       r'\(code.filters/language.py: "[0-9a-f]{16}" -> null; filters.language: null -> false\)'):
        generate_source(edited, edited.sources[1], layout)
    # the inputs' settings as they were when the generator began to read them
    raw = tmp_path / "wildchat.parquet"
    shutil.copy(wildchat["local"]["files"][0], raw)
    local = load(_manifest(tmp_path, [{**wildchat, "local": {"files": [raw.name]}}, responses], holdout=0))
    normalize_source(local, local.sources[0], [raw], layout)
    filter_source(local, local.sources[0], layout)

    def rewritten_meanwhile(module, records, *args):
        raw.write_bytes(raw.read_bytes() + b"more")
        return Counts()

    monkeypatch.setattr(sftmix.build, "generate", rewritten_meanwhile)
    generate_source(local, local.sources[1], layout)
    with pytest.raises(BuildError, match=r"^source 'responses': its filtered records were made with other settings "
                                         r".*\(inputs\.wildchat\.raw\.file_states\.wildchat\.parquet\.bytes: "):
        mix(local, layout)
    # how fast and at what cost the endpoint is asked changes no answer
    fast = load(_manifest(tmp_path, [wildchat, responses], holdout=0))
    fast.llm.update(concurrency=64, budget_usd=5.0)
    assert stage_settings(fast, fast.sources[1], "filtered") == stage_settings(manifest, manifest.sources[1], "filtered")
    fast.llm.update(model="deepseek-reasoner")
    assert stage_settings(fast, fast.sources[1], "filtered")["llm"] == {"model": "deepseek-reasoner"}
    # the environment's model answers instead (as in the client), so it is the one the settings name;
    # and the judge's model decides which rows a judged source keeps
    monkeypatch.setenv("SFTMIX_LLM_MODEL", "another-model")
    assert stage_settings(fast, fast.sources[1], "filtered")["llm"] == {"model": "another-model"}
    judged = load(_manifest(tmp_path, [{**wildchat, "filters": {"llm_judge": {"threshold": 3}}}, responses], holdout=0))
    assert stage_settings(judged, judged.sources[0], "filtered")["llm"] == {"model": "another-model"}
    assert "llm" not in stage_settings(manifest, manifest.sources[0], "filtered")


def test_a_broken_generator_stops_its_stage_with_one_line_and_no_records(tmp_path, monkeypatch):
    from generators.base import GeneratorBroken

    monkeypatch.setenv("SFTMIX_LLM_API_KEY", "sk-test")
    wildchat = _wildchat_source()
    responses = _responses_source()
    layout = Layout(tmp_path / "out", "mini")
    manifest = load(_manifest(tmp_path, [wildchat, responses], holdout=0))
    normalize_source(manifest, manifest.sources[0], [Path(wildchat["local"]["files"][0])], layout)
    filter_source(manifest, manifest.sources[0], layout)

    def broken(module, records, context, info, out, rejected):
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"part of a stage")
        raise GeneratorBroken("each of its first 16 items raised KeyError: 'a' (at generators/x.py:1)")

    monkeypatch.setattr(sftmix.build, "generate", broken)
    with pytest.raises(BuildError, match=r"^source 'responses' \(wildchat_responses\): each of its first 16 items "
                                         r"raised KeyError: 'a' \(at generators/x.py:1\)$"):
        generate_source(manifest, manifest.sources[1], layout)
    assert not layout.done_file("responses", "filtered").exists()
    with pytest.raises(BuildError, match=r"^source 'responses': its filtered stage has not completed"):
        mix(manifest, layout)


def test_a_generated_target_in_a_language_the_generator_cannot_write_is_named_first(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("SFTMIX_LLM_API_KEY", "sk-test")
    wildchat = _wildchat_source()
    constrained = {"key": "constrained", "generator": {"name": "eif_augmentation", "inputs": ["wildchat"]},
                   "licence": "apache-2.0", "targets": {"en": 2, "eu": 3}}
    manifest = load(_manifest(tmp_path, [wildchat, constrained], holdout=0))
    with caplog.at_level("WARNING", logger="sftmix"), pytest.raises(BuildError, match="has not completed"):
        generate_source(manifest, manifest.sources[1], Layout(tmp_path / "out", "mini"))
    assert caplog.messages == ["source 'constrained': no row can be generated for its targets eu (3): "
                               "generator 'eif_augmentation' writes only en, es, ca"]


def test_a_target_in_a_language_no_converted_row_is_labelled_is_named_when_the_source_is_converted(tmp_path, caplog):
    # dolly's rows carry no language: every one is labelled the source's `language:`, and none meets a `ca` target
    dolly = {"key": "dolly", "converter": "dolly", "licence": "apache-2.0", "language": "en", "targets": {"ca": 3, "en": 2},
             "local": {"files": [str(FIXTURES / "dolly" / "databricks-dolly-15k.jsonl")]}}
    manifest = load(_manifest(tmp_path, [dolly], holdout=0))
    layout = Layout(tmp_path / "out", "mini")
    with caplog.at_level("WARNING", logger="sftmix"):
        normalize_source(manifest, manifest.sources[0], [Path(dolly["local"]["files"][0])], layout)
    assert caplog.messages == ["source 'dolly': no row can be converted for its targets ca (3): converter 'dolly' "
                               "gives rows no language of their own: each is labelled en (the source's `language:`)"]
    languages = Counter(r["language"] for r in records_in_order(layout.records("dolly", "normalized")))
    assert set(languages) == {"en"} and languages["en"] > 0


def test_a_mixture_sampling_another_with_the_same_seed_takes_a_proportional_sample(tmp_path):
    """A row keeps its id in every mixture, and ranks were sha256(seed:id): the FC mixture, which
    samples the instruct one with the same seed, took the instruct cells' lowest ranks again, so
    mostly the rows of cells the instruct mixture had taken a small part of (90% of the sample from
    a cell holding half the rows)."""
    from sftmix import mixing
    from sftmix.record import make_record, message, to_table

    def manifest(name: str, targets: dict[str, int]) -> Path:
        text = yaml.safe_dump({"mixture": name, "seed": 40, "holdout": {"size": 0},
                               "licence_policy": {"allow": ["apache-2.0"]},
                               "sources": [{"key": key, "local": {"files": ["x.jsonl"]}, "converter": "dolly",
                                            "licence": "apache-2.0", "language": "en", "targets": {"*": target}}
                                           for key, target in targets.items()]})
        (tmp_path / f"{name}.yaml").write_text(text)
        return load(tmp_path / f"{name}.yaml")

    inputs = {}
    for key, rows in (("big", 4_000), ("small", 400)):  # the inner mixture takes 400 of big's, all of small's
        pq.write_table(to_table([make_record(messages=[message("user", f"{key} {i}?"), message("assistant", "Yes.")],
                                             tools=[], source=key, licence="apache-2.0", language="en",
                                             origin={"row": f"{key}#{i}"}) for i in range(rows)]),
                       tmp_path / f"{key}.parquet")
        inputs[key] = [tmp_path / f"{key}.parquet"]
    mixing.build(manifest("inner", {"big": 400, "small": 400}), inputs, tmp_path / "inner", tmp_path / "work-inner")
    shards = sorted((tmp_path / "inner" / "train").glob("part-*.parquet"))
    mixing.build(manifest("outer", {"sample": 400}), {"sample": shards}, tmp_path / "outer", tmp_path / "work-outer")
    taken = Counter(r["source"] for r in sftmix.read_mixture(tmp_path / "outer", "train"))
    assert sum(taken.values()) == 400 and 150 < taken["big"] < 250, taken  # half of the inner rows are big's


def test_a_source_sampling_another_mixture_is_built_again_when_that_mixture_is(tmp_path):
    inner = _manifest(tmp_path, [_glaive_source()])
    build(load(inner), tmp_path / "out")
    outer = tmp_path / "outer.yaml"
    outer.write_text(yaml.safe_dump({"mixture": "outer", "holdout": {"size": 0}, "licence_policy": {"allow": ["apache-2.0"]},
                                     "sources": [{"key": "m", "mixture": {"manifest": str(inner)}, "targets": "all"}]}))
    build(load(outer), tmp_path / "out")
    inner.write_text(inner.read_text().replace("seed: 1", "seed: 2"))
    with pytest.raises(BuildError, match=r"^source 'm' samples mixture 'mini', mixed from another version \(hash \w+\) "
                                         r"of .*m.yaml \(hash \w+\): build it again first$"):
        build(load(outer), tmp_path / "out")
    build(load(inner), tmp_path / "out")
    with pytest.raises(BuildError, match=r"^source 'm': its filtered records were made with other settings .*"
                                         r"raw.manifest_hash: "):
        mix(load(outer), Layout(tmp_path / "out", "outer"))
    (tmp_path / "out" / "mini" / ".mixing-stopped").write_text("")  # its mixing stopped part way: one line, no traceback
    with pytest.raises(BuildError, match=r"^source 'm' samples mixture 'mini': .*/mini: its last mixing was stopped part way"):
        build(load(outer), tmp_path / "out")


def test_the_command_line_build_forks_each_step_from_a_server_with_the_pipeline_loaded(tmp_path):
    """`dagster asset materialize` (the README's main job) runs each step in its own process, forked
    from a server that imported the pipeline once; the mixture is the in-process build's."""
    from pipelines.definitions import STEP_EXECUTOR

    [config] = STEP_EXECUTOR.config_schema.resolve_config({}).value.values()
    assert config["start_method"] == {"forkserver": {"preload_modules": [
        "dagster._core.storage.base_storage", "assets.mixture", "assets.sources", "pipelines.definitions"]}}
    assert build_definitions(str(SAMPLE), str(tmp_path)).resolve_job_def("build_mixture").executor_def is STEP_EXECUTOR
    # the rest of the executor's settings are run config; they were accepted, any key, and ignored
    run_config = STEP_EXECUTOR.apply_config_mapping({"config": {"max_concurrent": 1, "retries": {"disabled": {}}}})
    config = run_config.value["config"]
    assert (config["max_concurrent"], config["retries"], list(config["start_method"])) == (1, {"disabled": {}}, ["forkserver"])
    assert not STEP_EXECUTOR.apply_config_mapping({"config": {"max_concurent": 1}}).success
    sources = [{"key": key, "converter": converter, "licence": "apache-2.0", "language": "en",
                "local": {"files": [str(FIXTURES / path)]}, "targets": "all"}
               for key, converter, path in (("g", "glaive", "glaive/glaive-function-calling-v2.json"),
                                            ("t", "toucan", "toucan/train-00000-of-00003.parquet"))]
    manifest = _manifest(tmp_path, sources)
    env = {**os.environ, "SFTMIX_MANIFEST": str(manifest), "SFTMIX_OUTPUT": str(tmp_path / "cli"),
           "DAGSTER_HOME": str(tmp_path / "dagster-home")}
    (tmp_path / "dagster-home").mkdir()
    done = subprocess.run([shutil.which("dagster") or "dagster", "asset", "materialize", "-m", "pipelines.definitions",
                           "--select", "*"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "RUN_SUCCESS" in done.stderr, done.stderr[-3000:]
    # Counted in the run's event log: Dagster's console copy of a step's last lines can miss some
    # (its `tail -F` of the captured output is stopped when the step ends; dagster-io/dagster#23336).
    with DagsterInstance.from_config(str(tmp_path / "dagster-home")) as instance:
        [run] = instance.get_runs()
        steps = instance.get_records_for_run(run.run_id, of_type=DagsterEventType.STEP_SUCCESS, limit=100).records
    assert len(steps) == 2 * 3 + 2  # raw, normalized, filtered a source; mixture; card
    build(load(manifest), tmp_path / "in-process")
    for split in ("train", "validation"):
        assert _table(tmp_path / "cli" / "mini", split).equals(_table(tmp_path / "in-process" / "mini", split))
    # the README's re-mix after a target change: the sources' records are taken as they are
    manifest = _manifest(tmp_path, [{**sources[0], "targets": {"en": 3}}, sources[1]])
    done = subprocess.run([shutil.which("dagster") or "dagster", "asset", "materialize", "-m", "pipelines.definitions",
                           "--select", "mixture,holdout,dataset_card"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and "RUN_SUCCESS" in done.stderr, done.stderr[-3000:]
    assert Counter(_table(tmp_path / "cli" / "mini", "train")["source"].to_pylist())["g"] == 3
    build(load(manifest), tmp_path / "in-process")
    assert _table(tmp_path / "cli" / "mini", "train").equals(_table(tmp_path / "in-process" / "mini", "train"))
    # the README's rebuild of one edited source and what it feeds; the re-mix alone is refused
    manifest = _manifest(tmp_path, [{**sources[0], "targets": {"en": 3}, "licence": "cc-by-4.0"}, sources[1]])
    materialize = [shutil.which("dagster") or "dagster", "asset", "materialize", "-m", "pipelines.definitions", "--select"]
    done = subprocess.run(materialize + ["mixture,holdout,dataset_card"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode != 0 and "source 'g': its filtered records were made with other settings" in done.stderr
    done = subprocess.run(materialize + ["g/raw*"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "RUN_SUCCESS" in done.stderr, done.stderr[-3000:]
    train = _table(tmp_path / "cli" / "mini", "train")
    assert {(row["source"], row["licence"]) for row in train.select(["source", "licence"]).to_pylist()} == {
        ("g", "cc-by-4.0"), ("t", "apache-2.0")}
    build(load(manifest), tmp_path / "in-process")
    assert train.equals(_table(tmp_path / "in-process" / "mini", "train"))


def test_the_readers_refuse_shards_a_copy_over_a_build_of_the_same_manifest_left(tmp_path):
    """A training job's audit: a manifest built again after its raw file shrank, copied over the
    first build's copy (cp -r, rsync without --delete), left the first build's extra train shards,
    which carry the same manifest hash: they were read too (110 train rows where stats.json says
    40), the holdout's rows among them."""
    rows = json.loads((FIXTURES / "glaive" / "glaive-function-calling-v2.json").read_text())
    many = [dict(row, chat=row["chat"].replace("USER: ", f"USER: ({i}) ", 1)) for i in range(24) for row in rows]
    raw = tmp_path / "glaive.json"
    raw.write_text(json.dumps(many))
    manifest = _manifest(tmp_path, [_glaive_source(local={"files": [str(raw)]})], holdout=10, shard_rows=20)
    out, published = tmp_path / "out", tmp_path / "published"
    build(load(manifest), out)
    shutil.copytree(out / "mini", published)
    raw.write_text(json.dumps(many[:128]))
    rebuilt = build(load(manifest), out)
    shutil.copytree(out / "mini", published, dirs_exist_ok=True)
    shards = sorted((published / "train").glob("part-*.parquet"))
    kept = len(list((out / "mini" / "train").glob("part-*.parquet")))
    assert len(shards) > kept == 2
    strays = ", ".join(f"train/{shard.name}" for shard in shards[kept:kept + 4])
    for read in (lambda: list(sftmix.read_mixture(published)), lambda: sftmix.to_hf_dataset(published, "train")):
        with pytest.raises(ValueError, match=r"^shards of 2 builds side by side: .*; " + re.escape(strays)):
            read()
    with pytest.raises(ValueError, match=rf"^shards of 2 builds side by side: train/{shards[-1].name} .*; validation/"):
        list(sftmix.read_mixture(shards[-1]))  # a stray shard read alone: not of the holdout's build
    # copied again into an empty directory: the rows stats.json counts
    shutil.rmtree(published)
    shutil.copytree(out / "mini", published)
    assert len(list(sftmix.read_mixture(published))) == rebuilt.split_rows["train"] == 38
    # a split directory that is not the shards its build wrote: one is missing, or a file beside them
    shutil.copy(published / "train" / "part-00001.parquet", published / "train" / "part-00001 (copy).parquet")
    with pytest.raises(ValueError, match=r"train is not the 2 shards its build wrote; not of it: "
                                         r"train/part-00001 \(copy\)\.parquet: copy the mixture again"):
        list(sftmix.read_mixture(published))
    (published / "train" / "part-00001.parquet").unlink()
    with pytest.raises(ValueError, match=r"train is not the 2 shards its build wrote; missing: train/part-00001\.parquet; "
                                         r"not of it: train/part-00001 \(copy\)\.parquet"):
        list(sftmix.read_mixture(published / "train"))
    assert len(list(sftmix.read_mixture(published / "train" / "part-00000.parquet"))) == 20  # a shard is read as itself


def test_the_readers_refuse_shards_of_two_builds_a_relative_other_split_and_name_a_missing_split(
        sample_build, tmp_path, monkeypatch):
    """A training job's audit: a copy over an older mixture left its shards (rows read twice,
    holdout rows trained on); "." inside validation/ read the holdout as train; a split missing
    beside the stopped-mixing marker was "no shards under" the mixture directory."""
    from sftmix.mixing import MIXING_STOPPED

    mixture_dir, _ = sample_build
    copy = tmp_path / "copy"
    shutil.copytree(mixture_dir, copy)
    older = pq.read_table(copy / "train" / "part-00000.parquet")
    pq.write_table(older.replace_schema_metadata({**older.schema.metadata, b"manifest_hash": b"0123456789abcdef"}),
                   copy / "train" / "part-00099.parquet")
    for read in (lambda: list(sftmix.read_mixture(copy, "train")), lambda: sftmix.to_hf_dataset(copy, "train")):
        with pytest.raises(ValueError, match=r"^shards of 2 builds side by side: .*; train/part-00099\.parquet "
                                             r"\(manifest hash 0123456789abcdef, "):
            read()
    (copy / "train" / "part-00099.parquet").unlink()
    assert len(list(sftmix.read_mixture(copy, "train"))) == pq.read_table(mixture_dir / "train").num_rows
    monkeypatch.chdir(copy / "validation")
    for where in (".", "part-00000.parquet"):
        with pytest.raises(ValueError, match=r" (split|shard of the validation split), not the train split$"):
            list(sftmix.read_mixture(where, "train"))
    monkeypatch.chdir(tmp_path)
    shutil.rmtree(copy / "validation")
    with pytest.raises(FileNotFoundError, match=rf"^no validation split in {re.escape(str(copy))}$"):
        list(sftmix.read_mixture(copy, "validation"))
    (copy / MIXING_STOPPED).write_text("")
    with pytest.raises(ValueError, match=r"its last mixing was stopped part way"):
        list(sftmix.read_mixture(copy, "validation"))


@pytest.mark.parametrize("named, ids", [(["odc-by"], ["odc-by"]),
                                        # SPDX's spellings: a card row of their own, `CC-BY-4.0` under `other`
                                        (["ODC-By-1.0", "CC-BY-4.0", "odc-by"], ["cc-by-4.0", "odc-by"])])
def test_rows_of_another_mixture_read_as_files_keep_naming_their_input_licences(tmp_path, named, ids):
    """Another mixture's shards read through `openai_messages` (local files, not a `mixture:` source):
    the converter keeps a generated row's `origin.input_licences`, but the mixing read them only for
    generator and mixture sources, so the shard footer and the card named apache-2.0 alone for a row
    quoting odc-by text. They are kept as `licence_id`s, as the row's own licence is."""
    from sftmix.record import make_record, message, to_table

    quoted = [message("user", "Document: A delta forms where a river drops its sediment.\n\nWhere does a delta form?"),
              message("assistant", "Where a river enters slower water and drops its sediment.")]
    rows = [make_record(messages=quoted, tools=[], source="qa", licence="apache-2.0", language="en",
                        origin={"row": "0", "generator": "long_context_qa", "input_licences": named})]
    pq.write_table(to_table(rows), tmp_path / "other-mixture.parquet")
    source = {"key": "remix", "converter": "openai_messages", "licence": "apache-2.0", "targets": "all",
              "local": {"files": [str(tmp_path / "other-mixture.parquet")]}}
    result = build(load(_manifest(tmp_path, [source], holdout=0)), tmp_path / "out")
    [shard] = (tmp_path / "out" / "mini" / "train").glob("part-*.parquet")
    assert json.loads(pq.read_table(shard)["origin"][0].as_py())["input_licences"] == ids
    assert json.loads(pq.read_schema(shard).metadata[b"licences"]) == sorted(["apache-2.0", *ids])
    assert result.by_input_licence == {"train": dict.fromkeys(ids, 1), "validation": {}}
    card = (tmp_path / "out" / "mini" / "README.md").read_text()
    assert yaml.safe_load(card.split("---")[1])["license"] == sorted(["apache-2.0", *ids])
    assert [row[0] for row in _card_table(card, "Rows by licence")] == sorted(["apache-2.0", *ids])


def test_a_file_of_records_names_its_licences_in_its_rejected_footer_as_sftmix_spells_them(tmp_path):
    """`sftmix judge` filters any file of records: a dropped row's input licences went into the rejected
    footer as the file spelt them (review5: ["CC-BY-4.0", "ODC-By-1.0", "odc-by"])."""
    import filters as rule_filters
    from sftmix.normalize import SourceInfo, filter_records
    from sftmix.record import make_record, message, to_table

    rows = [make_record(messages=[message("user", "Hi?"), message("user", "Again?")], tools=[], source="qa",
                        licence="odc-by", language="en",
                        origin={"row": "0", "generator": "g", "input_licences": ["ODC-By-1.0", "CC-BY-4.0"]})]
    pq.write_table(to_table(rows), tmp_path / "in.parquet")
    config = {name: False for name in rule_filters.FILTERS} | {"role_order": {}}
    counts = filter_records(SourceInfo(key="judged", converter="openai_messages", filters=config), [tmp_path / "in.parquet"],
                            tmp_path / "out.parquet", tmp_path / "out.rejected.parquet")
    assert counts.summary()["dropped"] == {"bad_role_order": 1}
    assert json.loads(pq.read_schema(tmp_path / "out.rejected.parquet").metadata[b"licences"]) == ["cc-by-4.0", "odc-by"]
