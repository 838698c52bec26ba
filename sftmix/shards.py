"""Parquet files in and out.

Output appears atomically: written under a temporary name, renamed when complete. A crash leaves
only `*.tmp` files, which no reader globs (`*.parquet`), so a half-written shard never looks
complete; the next write of the same file removes them. Input names its file when it cannot be
read (a truncated download, a damaged part): Arrow's own errors do not.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from sftmix import __version__


class UnreadableParquet(Exception):
    """A Parquet file that cannot be read (its footer or its pages are broken, or it is gone)."""


@contextmanager
def _naming_unreadable(path: Path | str, error_type: type[Exception]) -> Iterator[None]:
    """Arrow's and the OS's errors while reading `path` become `error_type`, naming the file (the
    original error is its cause)."""
    try:
        yield
    except (pa.ArrowException, OSError) as error:
        raise error_type(f"cannot read {path}: {error}") from error


def parquet_batches(path: Path | str, error_type: type[Exception] = UnreadableParquet,
                    **iter_batches) -> Iterator[pa.RecordBatch]:
    """`path`'s rows in record batches (`pq.ParquetFile.iter_batches` arguments), read as they are
    needed (no pre-buffering: memory stays flat in the file size). A read error is `error_type`
    naming the file; only the reading is inside that: an error of the caller's loop is not raised
    at this generator's `yield`."""
    with _naming_unreadable(path, error_type):
        yield from pq.ParquetFile(path, pre_buffer=False).iter_batches(**iter_batches)


def parquet_schema(path: Path | str) -> pa.Schema:
    with _naming_unreadable(path, UnreadableParquet):
        return pq.read_schema(path)


def parquet_rows(path: Path | str) -> int:
    with _naming_unreadable(path, UnreadableParquet):
        return pq.ParquetFile(path).metadata.num_rows


def file_metadata(manifest_hash: str | None, licences: Collection[str] | None = None, **extra: str) -> dict[bytes, bytes]:
    meta = {"sftmix_version": __version__, "manifest_hash": manifest_hash or "", "licences": json.dumps(sorted(licences or []))}
    meta.update(extra)
    return {k.encode(): str(v).encode() for k, v in meta.items()}


def temporary_beside(path: Path) -> Path:
    """Where a file is written before it is renamed into place: a `*.tmp` name no reader globs.
    Those a stopped run left of the same file are removed first (`_remove_stopped_temporaries`)."""
    _remove_stopped_temporaries(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _remove_stopped_temporaries(path: Path) -> None:
    """The temporaries of `path` whose process is gone: a run killed while writing it left them
    (in a mixture's `rejected/`, beside the files the card counts). A live one is another run's."""
    for temporary in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = temporary.name[len(path.name) + 2:-len(".tmp")]
        if pid.isdigit() and not _running(int(pid)):
            temporary.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


def write_text_whole(path: Path, text: str) -> None:
    """`text` in `path`, whole or not at all: a stopped run leaves the file as it was."""
    temporary = temporary_beside(path)
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


class AtomicParquetWriter:
    """One Parquet file, fed record batches; renamed into place by `close()`, removed by `abort()`.

    `footer` gives metadata known only once the rows are written (a rejected file's licences), at
    `close()`, instead of `metadata`. Arrow stores its schema, with the metadata known when the file
    opens, in the footer, and readers take that over the footer's own: with `footer` it is not
    stored, so only for a schema Parquet's own types restore (plain strings: `REJECTED_SCHEMA`)."""

    def __init__(self, path: Path | str, schema: pa.Schema, metadata: dict[bytes, bytes] | None = None,
                 footer: Callable[[], dict[bytes, bytes]] | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temporary_beside(self.path)
        self.schema = schema.with_metadata({**(schema.metadata or {}), **(metadata or {})})
        self.footer = footer
        self._writer = pq.ParquetWriter(self.tmp, self.schema, compression="zstd", store_schema=footer is None)
        self.rows = 0

    def write(self, table: pa.Table | pa.RecordBatch) -> None:
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        self._writer.write_table(table.cast(self.schema) if table.schema != self.schema else table)
        self.rows += table.num_rows

    def write_rows(self, rows: list[dict]) -> None:
        if rows:
            self.write(pa.Table.from_pylist(rows, schema=self.schema))

    def close(self) -> Path:
        if self.footer is not None:
            self._writer.add_key_value_metadata(self.footer())
        self._writer.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        self._writer.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "AtomicParquetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
