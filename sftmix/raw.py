"""Read raw files exactly as the Hub stores them: Parquet, a JSON array, or JSON Lines.

The format is detected from the bytes, not the file name (`.json` files on the Hub are either a
JSON array or JSON Lines). Rows stream out one at a time with their position, so memory does not
grow with the file. Files compressed with gzip, bzip2, xz or zstd are decompressed on the fly.

A JSON Lines line that is not JSON, or not UTF-8, is that line's drop (it keeps the line for the
rejected file), as is a JSON array item with an integer longer than Python reads (4,300 digits) or
nested too deeply for json's decoder (past Python's recursion limit, as a JSON line is), and
a Parquet row with a cell Python cannot hold (a string that is not UTF-8, a date past year 9999: its
batch is then converted a row at a time); a file that cannot be read on (a broken JSON array, Parquet
file or compressed stream) is a `RawInputError` naming it. A file of nothing but whitespace holds
no rows, as a Parquet file of 0 rows or a JSON `[]` (a source of no rows at all fails its
`rows_converted` check).
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import json
import lzma
import os
import re
import zlib
from pathlib import Path
from typing import IO, Iterator

import ijson
import numpy as np
import pyarrow as pa

from sftmix.jsontext import NESTED_TOO_DEEPLY, loads, too_long_integer
from sftmix.shards import parquet_batches
from sftmix.sources.base import Drop

PARQUET_MAGIC = b"PAR1"
_NEVER_EMPTY = {".parquet", ".gz", ".gzip", ".bz2", ".xz", ".zst", ".zstd"}  # file suffixes
LFS_POINTER = b"version https://git-lfs.github.com/spec/"
BATCH_ROWS = 1024
# Compressed files by their first bytes, as the Hub holds JSON Lines (`.jsonl.gz`, `.zst`, `.bz2`, `.xz`)
_COMPRESSIONS = ((b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"))
# A compressed file cut short (an interrupted download) or damaged: its decompressor's errors, which name no file.
DECOMPRESSION_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError, OSError, pa.ArrowInvalid)


# What a reader yields for another worker's row: not None, which is a row too (a JSON `null`, a
# malformed_row drop; as None it was skipped like another worker's, and lost uncounted).
ELSEWHERE = object()


class RawInputError(Exception):
    """A raw input that cannot be read at all (missing, empty, not a known format)."""


def _compression(path: Path) -> str | None:
    with path.open("rb") as handle:
        head = handle.read(6)
    return next((kind for magic, kind in _COMPRESSIONS if head.startswith(magic)), None)


def _open(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed when it is compressed."""
    kind = _compression(path)
    if kind == "gzip":
        return gzip.open(path, "rb")
    if kind == "bz2":
        return bz2.open(path, "rb")
    if kind == "xz":
        return lzma.open(path, "rb")
    if kind == "zstd":  # no zstd in the standard library before 3.14: pyarrow's
        return io.BufferedReader(pa.CompressedInputStream(str(path), "zstd"))
    return path.open("rb")


def detect_format(path: Path) -> str:
    """'parquet', 'json' (one array) or 'jsonl'."""
    if path.is_dir():
        raise RawInputError(f"{path} is a directory: give the files in it (e.g. {path}/*.parquet)")
    if not path.is_file():
        raise RawInputError(f"input file not found: {path}")
    kind = _compression(path)
    try:
        with _open(path) as handle:
            head = handle.read(4096)
    except DECOMPRESSION_ERRORS as error:
        if kind is None:  # not a decompressor's: the file's own read failed
            raise
        raise RawInputError(f"{path}: damaged {kind} stream: {error}") from None
    if head.startswith(PARQUET_MAGIC):
        if kind:
            raise RawInputError(f"{path}: Parquet compressed with {kind}: Parquet compresses its own pages, "
                                "give the file decompressed")
        return "parquet"
    if head.startswith(LFS_POINTER):
        raise RawInputError(f"{path} is a Git LFS pointer, not the data: fetch the file (`git lfs pull`) or "
                            "name the dataset's Hub id and revision instead")
    stripped = head.lstrip(codecs.BOM_UTF8 + b" \t\r\n")
    if not stripped:
        # JSON Lines of no rows, as a writer leaves a shard that got none (0 bytes, a gzip of
        # nothing): refused, it stopped every other file of the source (a Hub glob cannot leave it
        # out). A Parquet file or a compressed stream is never 0 bytes: that is a failed copy.
        if path.stat().st_size == 0 and path.suffix.lower() in _NEVER_EMPTY:
            raise RawInputError(f"{path}: 0 bytes, which no {path.suffix} file is (a copy or download that failed?)")
        return "jsonl"
    if stripped.startswith(b"["):
        return "json"
    if stripped.startswith(b"{"):
        first_line = stripped.split(b"\n", 1)[0].rstrip()
        if b"\n" in stripped and first_line.endswith((b"{", b"[")):
            # one object spread over lines ({"data": [...]}): read as lines, each row line ending in
            # "," was a malformed_json drop and the last one a row, with no error
            raise RawInputError(f"{path}: a JSON object spread over lines, not JSON Lines (one object a line): "
                                "give its rows as a JSON array, JSON Lines or Parquet")
        return "jsonl"
    if any(line.lstrip().startswith(b"{") for line in stripped.split(b"\n")[1:]):
        # JSON Lines whose first line is not an object (`null`, a row cut at its start): that line's
        # drop, as anywhere else in the file, not the whole file refused
        return "jsonl"
    raise RawInputError(f"input file is neither Parquet, a JSON array nor JSON Lines: {path}")


def _parquet_rows(path: Path, mine) -> Iterator[object]:
    for batch in parquet_batches(path, RawInputError, batch_size=BATCH_ROWS):
        if not mine(batch.num_rows):
            yield from (ELSEWHERE for _ in range(batch.num_rows))  # another worker's rows: never decoded
            continue
        try:
            rows = batch.to_pylist()
        except (ValueError, OverflowError):  # a cell Python cannot hold: the batch a row at a time
            rows = [_parquet_row(batch, index) for index in range(batch.num_rows)]
        yield from rows


def _parquet_row(batch: pa.RecordBatch, index: int) -> dict | Drop:
    """Row `index` of `batch`, or its drop when a cell is one Python cannot hold: a string that is not
    UTF-8 (Arrow reads strings unchecked), a date past year 9999. The drop keeps the other cells."""
    row, drop = {}, None
    for name, column in zip(batch.schema.names, batch.columns):
        try:
            row[name] = column[index].as_py()
        except UnicodeDecodeError as error:
            drop = drop or Drop("invalid_unicode", f"column {name!r} is not UTF-8: {error}")
        except (ValueError, OverflowError) as error:
            drop = drop or Drop("malformed_row", f"column {name!r}: {type(error).__name__}: {error}")
    if drop is None:
        return row
    drop.raw = row
    return drop


# Surrogate escapes, a high+low pair as one match: a 6-byte match is an unpaired half. ijson's C
# backend turns a lone high surrogate into "?" and fails on a lone low one; its Python backend
# keeps both, as json.loads does.
SURROGATE_ESCAPES = re.compile(rb"\\u[dD](?:[89abAB][0-9a-fA-F]{2}(?:\\u[dD][c-fC-F][0-9a-fA-F]{2})?|[c-fC-F][0-9a-fA-F]{2})")
SCAN_BYTES = 1 << 24


def _has_lone_surrogate_escape(path: Path) -> bool:
    """Whether the file holds an unpaired surrogate escape (a backslash-escaped backslash before `u`
    can make it say yes wrongly; the slower reader it then picks is right too)."""
    carry = b""
    with _open(path) as handle:
        while True:
            chunk = handle.read(SCAN_BYTES)
            window = carry + chunk
            # A match is at most 12 bytes: one starting in the last 11 may be cut, so it waits for more.
            settled = len(window) if not chunk else max(0, len(window) - 11)
            resume = settled
            for escape in SURROGATE_ESCAPES.finditer(window):
                if escape.start() >= settled:
                    break
                if len(escape[0]) == 6:
                    return True
                resume = max(settled, escape.end())
            if not chunk:
                return False
            carry = window[resume:]


# ijson's C parser builds every level's prefix ("item.a.item.item..."): memory grows with the square
# of an item's depth (20,000 levels in a 39 KB item: 1 GB). It is given no more of the file than lets
# the item it is reading hold IJSON_MAX_OPENERS "[" or "{" bytes (in strings or not), which bounds
# the item's depth; an item that would hold more is left to json's decoder, which decides "too deep"
# (past Python's recursion limit, some 1,000 levels) as it does for a JSON line. An item with that
# many brackets in its strings is read by json's decoder too, only slower.
IJSON_MAX_OPENERS = 768
PIECE_OPENERS = IJSON_MAX_OPENERS // 2  # an item holding fewer is never left to json's decoder
READ_BYTES = 1 << 15  # cut less often than ijson's 64 KiB (bench xlam: +7% a read against +14%)


class _NestedDeeply(Exception):
    """The item ijson is reading may be nested deeper than IJSON_MAX_OPENERS."""


class _ShallowPieces:
    """The bytes of `handle` for ijson (its `read`), in pieces of at most PIECE_OPENERS "[" or "{"
    bytes, raising `_NestedDeeply` rather than give the item being read more than IJSON_MAX_OPENERS.
    ijson yields the items a piece ends before it reads the next: `rows` counts them."""

    def __init__(self, handle: IO[bytes]):
        self.handle, self.chunk, self.start = handle, b"", 0
        self.is_opener, self.left, self.positions = None, 0, None  # of the chunk: set by _next_chunk
        self.rows = self.rows_before = 0
        self.openers = self.last_openers = 0  # in the pieces the open item may have begun in; in the last one

    def _next_chunk(self, size: int) -> None:
        self.chunk, self.start = self.handle.read(size), 0
        self.is_opener = (np.frombuffer(self.chunk, np.uint8) | 0x20) == ord("{")  # "[" is "{" less 0x20
        self.left, self.positions = int(np.count_nonzero(self.is_opener)), None

    def read(self, size: int) -> bytes:
        if not size:  # ijson asks for no bytes first, to learn their type
            return b""
        if self.rows != self.rows_before:  # an item ended in the last piece: the open one began there or later
            self.openers, self.rows_before = self.last_openers, self.rows
        if self.start == len(self.chunk):
            self._next_chunk(size)
        budget = min(PIECE_OPENERS, IJSON_MAX_OPENERS - self.openers)
        if self.left <= budget:
            piece, openers = self.chunk[self.start:], self.left
        else:  # up to the opener past the budget
            if self.positions is None:
                self.positions = np.flatnonzero(self.is_opener)
            piece, openers = self.chunk[self.start:self.positions[len(self.positions) - self.left + budget]], budget
            if not piece:
                raise _NestedDeeply
        self.start += len(piece)
        self.left -= openers
        self.openers += openers
        self.last_openers = openers
        return piece


def _json_array_rows(path: Path, mine) -> Iterator[object]:
    # ijson's C parser, unless the file has unpaired surrogates (it turns a high half into "?" and
    # fails on a low one). Where it refuses what json.loads reads (NaN, Infinity, numbers past
    # int64 or a double's range) or an item may be nested too deeply for it, json's own decoder
    # reads the file again from the row reached; a file that is broken fails there too.
    # (`python -c "json.dump(rows, f)"` writes NaN for a missing float, and such a file stopped its
    # whole source.)
    read = 0
    if not _has_lone_surrogate_escape(path):
        try:
            with _open(path) as handle:
                pieces = _ShallowPieces(_past_bom(handle))
                # the array must be parsed whole to find row boundaries; only this worker's rows are kept
                for row in ijson.items(pieces, "item", use_float=True, buf_size=READ_BYTES):  # floats, as json.loads gives
                    yield row if mine(1) else ELSEWHERE
                    read = pieces.rows = read + 1
            return
        except (ijson.JSONError, _NestedDeeply):
            pass
    for index, row in enumerate(_decoded_items(path)):
        if index >= read:
            yield row if mine(1) else ELSEWHERE


def _past_bom(handle) -> IO[bytes]:
    """`handle` past a UTF-8 byte order mark (some uploads start with one; ijson stops at it)."""
    if handle.peek(len(codecs.BOM_UTF8))[:len(codecs.BOM_UTF8)] == codecs.BOM_UTF8:
        handle.read(len(codecs.BOM_UTF8))
    return handle


ARRAY_CHUNK_CHARS = 1 << 20
_SPACE = re.compile(r"[ \t\r\n]*")
# A string (its closing quote in group 1: none when the text read so far cuts it), or a bracket
_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(")?|[\[\]{}]')


class BrokenArray(ValueError):
    """Where json's decoder found a JSON array broken (a character position in the file)."""


# How near the end of the text read so far a value may be cut: a number after its "." or "e" ("1."
# of "1.5" decodes as 1), a literal part way ("Infin" of "Infinity" is not JSON yet).
_CUT_CHARS = 64


class _ArrayText:
    """A JSON array's text, read a chunk at a time, for `_decoded_items`."""

    def __init__(self, stream):
        self.stream, self.buffer, self.at, self.ended = stream, "", 0, False
        self.dropped = 0  # characters of the file before the buffer

    def _read(self, chars: int) -> None:
        chunk = self.stream.read(chars)
        self.dropped += self.at
        self.buffer, self.at, self.ended = self.buffer[self.at:] + chunk, 0, not chunk

    def broken(self, problem: str, at: int) -> BrokenArray:
        return BrokenArray(f"{problem} at character {self.dropped + at:,}")

    def next_char(self) -> str:
        """The next character that is not white space ("" at the end), not taken."""
        while True:
            self.at = _SPACE.match(self.buffer, self.at).end()
            if self.at < len(self.buffer) or self.ended:
                return self.buffer[self.at:self.at + 1]
            self._read(ARRAY_CHUNK_CHARS)

    def take(self, expected: str) -> str:
        found = self.next_char()
        if not found or found not in expected:
            raise self.broken(f"expected one of {list(expected)}, found {found[:1] or 'the end of the file'!r}", self.at)
        self.at += 1
        return found

    def value(self, decode=json.JSONDecoder().raw_decode):
        self.next_char()  # raw_decode takes no white space before the value
        chars = ARRAY_CHUNK_CHARS
        while True:
            try:
                value, end = decode(self.buffer, self.at)
            except json.JSONDecodeError as error:
                # Only a value cut by the end of the text read so far is read on: a string not closed
                # before it, or a fault near it. Any other is the file's, and reading the rest of a
                # broken file into memory would not mend it.
                cut = error.pos >= len(self.buffer) - _CUT_CHARS or error.msg.startswith("Unterminated string")
                if self.ended or not cut:
                    raise self.broken(error.msg, error.pos) from None
                end = None
            if end is not None and (self.ended or end + _CUT_CHARS < len(self.buffer)):
                self.at = end
                return value
            self._read(chars)
            chars *= 2  # an item longer than a chunk is decoded again a few times, not once per chunk

    def value_text(self) -> str:
        """The text of the array or object that starts at the next character, not decoded (json's
        decoder cannot: it is nested too deeply): up to the bracket that closes it."""
        self.next_char()
        chars = ARRAY_CHUNK_CHARS
        while True:
            depth = 0
            for token in _STRING_OR_BRACKET.finditer(self.buffer, self.at):
                if token[0] in "[{":  # a string is never one character
                    depth += 1
                elif token[0] in "]}":
                    depth -= 1
                elif token[1] is None:  # a string cut by the end of the text read so far
                    break
                if depth == 0:
                    text, self.at = self.buffer[self.at:token.end()], token.end()
                    return text
            if self.ended:
                raise self.broken("unterminated array or object", self.at)
            self._read(chars)
            chars *= 2


# json's decoder keeping integers as their text: it reads an item holding one longer than Python
# reads (which json.loads refuses with a bare ValueError), so that the item is skipped as a drop
_INTEGERS_AS_TEXT = json.JSONDecoder(parse_int=str)


def _decoded_items(path: Path) -> Iterator:
    """The items of the JSON array in `path` as json.loads reads them, decoded one at a time; an item
    json.loads refuses for an integer longer than Python reads, or nested too deeply (a
    RecursionError), is a `malformed_json` drop."""
    with _open(path) as handle:
        text = _ArrayText(io.TextIOWrapper(handle, encoding="utf-8-sig"))
        text.take("[")
        if text.next_char() == "]":
            text.take("]")
        else:
            while True:
                try:
                    yield text.value()
                except RecursionError:  # the item's text kept, as a JSON line's
                    drop = Drop("malformed_json", f"{NESTED_TOO_DEEPLY} at character {text.dropped + text.at:,}")
                    drop.raw = text.value_text()
                    yield drop
                except ValueError as error:
                    if (problem := too_long_integer(error)) is None:
                        raise
                    drop = Drop("malformed_json", problem)
                    try:
                        drop.raw = text.value(_INTEGERS_AS_TEXT.raw_decode)  # the item, its integers as text
                    except RecursionError:
                        drop.raw = text.value_text()
                    yield drop
                if text.take(",]") == "]":
                    break
        if text.next_char():
            raise text.broken("text after the array", text.at)


def _jsonl_rows(path: Path, mine) -> Iterator[object]:
    with _open(path) as handle:
        for line in handle:
            if not line.strip() or (line.startswith(codecs.BOM_UTF8) and not line[3:].strip()):
                continue
            if not mine(1):
                yield ELSEWHERE  # another worker's line: not decoded
                continue
            try:
                yield loads(line)
            except json.JSONDecodeError as error:
                yield _with_raw(Drop("malformed_json", str(error)), line)
            except UnicodeDecodeError as error:  # JSON text is UTF-8: this line is not, the next ones may be
                yield _with_raw(Drop("invalid_unicode", f"line is not UTF-8: {error}"), line)


def _with_raw(drop: Drop, line: bytes) -> Drop:
    """The line on the drop, for the rejected file (bytes that are not UTF-8 as `\\xff` escapes)."""
    drop.raw = line.rstrip(b"\r\n").decode("utf-8", "backslashreplace")
    return drop


class _Shard:
    """Which rows are this worker's: blocks of `BATCH_ROWS` consecutive rows, dealt round-robin
    across workers over all input files, so every worker gets a share whatever the file sizes."""

    def __init__(self, rank: int, world_size: int):
        self.rank, self.world_size, self.seen = rank, world_size, 0

    def __call__(self, n: int) -> bool:
        block = self.seen // BATCH_ROWS
        self.seen += n
        return block % self.world_size == self.rank


def iter_raw_rows(paths: list[Path | str], rank: int = 0, world_size: int = 1) -> Iterator[tuple[str, dict | Drop]]:
    """Rows of every input keyed `<file>#<row>` (an undecodable line comes as a Drop), the file named
    by its path below the inputs' common folder: its name when they share one folder, else e.g.
    `CC-MAIN-2013-20/train-00000-of-00014.parquet`, so that files of one name in two folders (Hub
    repos reuse names across their folders) give their rows distinct keys.

    With `world_size` > 1, only worker `rank`'s share of the rows; keys stay the same.
    """
    for _, key, row in positioned_raw_rows(paths, rank, world_size):
        yield key, row


def positioned_raw_rows(paths: list[Path | str], rank: int = 0,
                        world_size: int = 1) -> Iterator[tuple[int, str, dict | Drop]]:
    """`iter_raw_rows` with each row's position among all the inputs' rows (every worker's), which
    no worker count changes: the order one worker reads them in."""
    readers = {"parquet": _parquet_rows, "json": _json_array_rows, "jsonl": _jsonl_rows}
    files = [Path(p) for p in paths]
    absolute = [Path(os.path.abspath(f)) for f in files]  # ".." folded, symlinks (Hub snapshots) kept
    common = os.path.commonpath([f.parent for f in absolute]) if files else ""
    names = [f.relative_to(common).as_posix() for f in absolute]
    formats = [detect_format(p) for p in files]  # fail before reading anything
    mine = _Shard(rank, world_size)
    for path, name, fmt in zip(files, names, formats):
        index, start = 0, mine.seen  # every worker counts every row, its own or not
        try:
            for index, row in enumerate(readers[fmt](path, mine)):
                if row is ELSEWHERE:
                    continue
                if not isinstance(row, (dict, Drop)):
                    drop = Drop("malformed_row", f"not an object: {type(row).__name__}")
                    drop.raw = row
                    row = drop
                yield start + index, f"{name}#{index}", row
        except (ijson.JSONError, BrokenArray, UnicodeDecodeError) as error:
            raise RawInputError(f"{path}: broken JSON array after row {index}: {error}") from None
        except DECOMPRESSION_ERRORS as error:
            if (kind := _compression(path)) is None:
                raise
            raise RawInputError(f"{path}: damaged {kind} stream after row {index}: {error}") from None
