"""Read a built mixture from a training job, without loading it all."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from sftmix.record import HUB_SPELLINGS, SCHEMA, licence_id, licence_problem

SPLITS = ("train", "validation")
# In a mixture directory while a mixing puts its splits in place, one after the other: until it is
# removed, the splits may be of two mixings (a holdout overlapping train).
MIXING_STOPPED = ".mixing-stopped"
CARD = "README.md"  # the dataset card, beside the splits it describes


def shard_files(path: Path | str, split: str = "train") -> list[Path]:
    """`path` is a mixture directory (`<out>/<mixture>`), a split directory or one shard. A split
    directory of the other split is refused: reading `.../train` for `split="validation"` would
    train on the holdout's rows or evaluate on training rows. So is a split of a mixture whose
    last mixing stopped part way (`MIXING_STOPPED`)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    root = Path(path).resolve()  # "." inside a split directory has no name to check
    other = _other_split(split)
    if root.is_file():
        if root.parent.name in SPLITS and root.parent.name != split:  # one shard of the other split's directory
            raise ValueError(f"{root} is a shard of the {root.parent.name} split, not the {split} split")
        files, split_dir = [root], root.parent
    else:
        mixture = (root / split).is_dir() or (root / other).is_dir() or (root / MIXING_STOPPED).exists()
        if not mixture and root.name in SPLITS and root.name != split:  # (a mixture may be named "validation")
            raise ValueError(f"{root} is the {root.name} split, not the {split} split")
        split_dir = root / split if mixture else root
        files = sorted(split_dir.glob("part-*.parquet"))
    if split_dir.name in SPLITS and (split_dir.parent / MIXING_STOPPED).exists():
        raise ValueError(f"{split_dir.parent}: its last mixing was stopped part way, so its splits may be of two "
                         "mixings (its holdout overlapping train): mix it again first")
    if not files:
        raise FileNotFoundError(f"no {split} split in {root}" if split_dir == root / split and not split_dir.is_dir()
                                else f"no shards (part-*.parquet) under {split_dir}")
    return files


def _other_split(split: str) -> str:
    return next(name for name in SPLITS if name != split)


def training_shards(path: Path | str, split: str = "train") -> list[Path]:
    """`shard_files`, refused also when the split's shards (or the other split's) are of two
    builds, as a copy over an older mixture leaves them (rows read twice, holdout rows trained
    on), or a split directory lacks some of its build's shards."""
    files = shard_files(path, split)
    split_dir = files[0].parent
    other = split_dir.parent / _other_split(split)
    whole_split = Path(path).resolve() != files[0]
    _of_one_build(files, sorted(other.glob("part-*.parquet"))[:1] if split_dir.name in SPLITS else [], whole_split)
    return files


def _of_one_build(files: list[Path], other_split: list[Path], whole_split: bool) -> None:
    """ValueError when the shards (and a shard of the other split) are of different builds: their
    manifest hash or their rows digest differ (the rows digest tells apart two builds of one
    manifest, a raw file or the code changed between them); or, for a `whole_split`, when its
    shards are not those its build wrote (`split_shards` of them).
    A file sftmix did not write (no hash) or cannot read is left to the reading, which names it; a
    shard of an sftmix that wrote no rows digest has none to compare."""
    builds: dict[tuple[bytes, bytes | None], list[Path]] = {}
    split_shards = None
    for index, shard in enumerate(files + other_split):
        try:
            footer = pq.read_schema(shard).metadata or {}
        except (OSError, pa.ArrowException):
            continue
        if b"manifest_hash" in footer:
            builds.setdefault((footer[b"manifest_hash"], footer.get(b"rows_digest")), []).append(shard)
            if index < len(files) and b"split_shards" in footer:  # (the other split's shard counts its own)
                split_shards = int(footer[b"split_shards"])
    if len(builds) > 1:
        named = "; ".join(f"{_names_of(shards)} (manifest hash {manifest_hash.decode()}, rows digest "
                          f"{rows_digest.decode() if rows_digest else 'none'})"
                          for (manifest_hash, rows_digest), shards in builds.items())
        raise ValueError(f"shards of {len(builds)} builds side by side: {named}. A copy over an older mixture left "
                         "its shards; copy the mixture again into an empty directory")
    if whole_split and split_shards is not None:
        split_dir = files[0].parent
        written = {split_dir / f"part-{i:05d}.parquet" for i in range(split_shards)}
        missing, stray = sorted(written - set(files)), [shard for shard in files if shard not in written]
        if missing or stray:
            raise ValueError(f"{split_dir} is not the {split_shards} shards its build wrote"
                             + (f"; missing: {_names_of(missing)}" if missing else "")
                             + (f"; not of it: {_names_of(stray)}" if stray else "")
                             + ": copy the mixture again into an empty directory")


def _names_of(shards: list[Path], most: int = 4) -> str:
    """`split/part-NNNNN.parquet` of the first `most` shards, and how many more."""
    named = ", ".join(f"{shard.parent.name}/{shard.name}" for shard in shards[:most])
    return named + (f" and {len(shards) - most} more" if len(shards) > most else "")


def read_mixture(
    path: Path | str, split: str = "train", licences: list[str] | None = None, columns: list[str] | None = None,
    batch_size: int = 1024, rank: int = 0, world_size: int = 1, split_by_worker: bool | None = None,
) -> Iterator[dict]:
    """Iterate records of one split, shard by shard in Arrow batches; optionally only some licences.

    With `world_size` > 1 (data-parallel training), rank `rank` gets rows rank, rank + world_size,
    ... of the (licence-filtered) stream: the ranks' rows are disjoint, together they are the whole
    split, and their counts differ by at most one. Striding rows rather than dealing out shards keeps
    the ranks even whatever the shard sizes; only this rank's rows become Python objects.

    A PyTorch DataLoader with `num_workers` > 1 runs an IterableDataset's `__iter__` in each worker:
    unless the rows are split between them, each row comes out once per worker. Iterated in such a
    worker, `split_by_worker=True` reads its share of the rank's rows (each of the world_size ×
    num_workers readers takes every (world_size × num_workers)-th row); `False` reads all of the
    rank's, for a caller that folds the worker into `rank` and `world_size` itself, or a wrapper
    that splits between workers (`datasets.IterableDataset`). Left unset there, it is a ValueError:
    either default would silently repeat or lose rows for one of the two.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size); got rank={rank}, world_size={world_size}")
    worker = _dataloader_worker()
    if worker is not None and worker.num_workers > 1:
        if split_by_worker is None:
            raise ValueError(f"read_mixture runs in DataLoader worker {worker.id} of {worker.num_workers}: pass "
                             "split_by_worker=True for each worker to read its share of the rows, or False if "
                             "rank and world_size already count the workers (or a wrapper splits between them)")
        if split_by_worker:
            rank, world_size = rank * worker.num_workers + worker.id, world_size * worker.num_workers
    licences, columns = _licences(licences), _columns(columns)
    dataset = ds.dataset([str(f) for f in training_shards(path, split)], format="parquet")
    wanted = None if licences is None else _of_licences(licences)
    start = 0  # index in the stream of the batch's first row
    for batch in dataset.to_batches(columns=columns, filter=wanted, batch_size=batch_size):
        if world_size > 1:
            first = (rank - start) % world_size
            mine = batch.take(pa.array(range(first, batch.num_rows, world_size), pa.int64()))
            start += batch.num_rows
            batch = mine
        yield from batch.to_pylist()


def _dataloader_worker():
    """The PyTorch DataLoader worker this runs in (`torch.utils.data.get_worker_info()`), or None; torch
    is not imported here: a process that has not imported it runs no DataLoader worker."""
    torch = sys.modules.get("torch")
    return None if torch is None else torch.utils.data.get_worker_info()


def to_hf_dataset(path: Path | str, split: str = "train", licences: list[str] | None = None,
                  columns: list[str] | None = None, streaming: bool = False):
    """The split as a `datasets.Dataset` (memory-mapped Arrow, as `load_dataset("parquet")` gives),
    optionally only some licences and columns, as `read_mixture` takes them. The licence filter is
    the Parquet reader's (row groups of other licences are skipped where statistics allow).

    `streaming=True` gives an `IterableDataset` read from the shards as it is iterated, with no
    copy into the `datasets` cache first (a full mixture is gigabytes)."""
    from datasets import Dataset, Features, load_dataset

    licences, columns = _licences(licences), _columns(columns)
    files = training_shards(path, split)
    if not streaming and sum(pq.read_metadata(f).num_rows for f in files) == 0:
        # a split of no rows (`holdout: {size: 0}`): datasets says only "corresponds to no data"
        schema = pq.read_schema(files[0])
        schema = pa.schema([schema.field(name) for name in columns]) if columns else schema
        return Dataset.from_dict({name: [] for name in schema.names}, features=Features.from_arrow_schema(schema),
                                 split=split)
    selection = {}
    if licences is not None:
        present = column_counts(files, ("licence",))["licence"]
        if not set(licences) & set(present):  # datasets cannot make a split of no rows
            raise ValueError(f"no rows of licences {licences} in {files[0].parent}; "
                             f"its rows by licence: {present}")
        selection["filters"] = _of_licences(licences)
    if columns is not None:
        selection["columns"] = columns
    return load_dataset("parquet", data_files={split: [str(f) for f in files]}, split=split, streaming=streaming,
                        **selection)


def _names(value: list[str] | None, what: str) -> list[str] | None:
    """A bare string where a list of names is wanted is refused: read as a list, its letters would
    select nothing (`licences="apache-2.0"` gave no row and no error)."""
    if isinstance(value, str):
        raise TypeError(f"{what} is a list of names, e.g. [{value!r}]; got the string {value!r}")
    return None if value is None else list(value)


def _columns(value: list[str] | None) -> list[str] | None:
    """An empty list is refused too: rows of nothing (datasets said only "corresponds to no data");
    and a name that is no column of a record (datasets said "An error occurred while generating
    the dataset", Arrow "No match for FieldRef.Name")."""
    names = _names(value, "columns")
    if names == []:
        raise ValueError("columns is empty: name at least one column, or pass None for all of them")
    unknown = [name for name in names or () if name not in SCHEMA.names]
    if unknown:
        raise ValueError(f"no column {unknown[0]!r} in a mixture's rows; its columns: {', '.join(SCHEMA.names)}")
    return names


def _licences(value: list[str] | None) -> list[str] | None:
    """The `licence` values of the rows of the licences named: each as sftmix writes it (`licence_id`;
    `CC-BY-4.0`, SPDX's own spelling, selected no row of `cc-by-4.0`), and the other spellings of it
    an older sftmix wrote (`odc-by-1.0` for `odc-by`: a filter on `odc-by` read none of those rows)."""
    names = _names(value, "licences")
    if names is None:
        return None
    ids = {licence_id(name) for name in names}
    # a misspelt id ("apache 2.0") read no row, silently, where to_hf_dataset said the split had none
    if problem := next(filter(None, map(licence_problem, sorted(ids))), None):
        raise ValueError(f"licences: {problem}")
    return sorted(ids | {spelling for spelling, hub_id in HUB_SPELLINGS.items() if hub_id in ids})


def _of_licences(licences: list[str]) -> ds.Expression:
    # typed: an empty list would make a null-typed array, which Arrow refuses to compare with strings
    return ds.field("licence").isin(pa.array(licences, pa.string()))


def column_counts(files: list[Path | str] | Path | str,
                  columns: tuple[str, ...] = ("language", "licence")) -> dict[str, dict[str, int]]:
    """Rows per value of each column (e.g. by language, by licence), read column by column, of one
    shard or of several."""
    import polars as pl

    files = [files] if isinstance(files, (str, Path)) else files  # a path, not a list of its characters
    frame = pl.scan_parquet([str(f) for f in files]).select(columns).collect()
    return {c: dict(sorted(frame[c].value_counts().iter_rows())) for c in columns}
