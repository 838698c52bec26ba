"""Raw readers: the scan that picks ijson's parser for a JSON array, and `.gz` inputs."""

import codecs
import gzip
import json
import os
import random
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sftmix import raw
from sftmix.sources.base import Drop


@pytest.mark.parametrize("chunk", [1, 5, 6, 7, 11, 12, 13, 1 << 24])
def test_lone_surrogate_escape_is_found_wherever_a_read_ends(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(raw, "SCAN_BYTES", chunk)
    path = tmp_path / "a.json"
    for text, lone in ((rb'["ab \ud83d\ude00 c", "\u00e9"]', False), (rb'["ab \ud83d c"]', True),
                       (rb'["ab \ude00 c"]', True), (rb'["\ud83d\ude00\ude01"]', True), (rb'["\uD83D\uDE00"]', False)):
        path.write_bytes(text)
        found = raw._has_lone_surrogate_escape(path)
        assert found is lone, (text, chunk)



FIXTURES = Path(__file__).parent / "fixtures"
GLAIVE = FIXTURES / "glaive" / "glaive-function-calling-v2.json"  # one JSON array


def _dolly_lines(directory: Path) -> Path:
    """The dolly fixture's JSON Lines (a malformed line among them), then 300 rows of seeded random
    words in its layout: far more than the 4 KiB `detect_format` reads, even compressed, so a cut
    stream is met while rows are read."""
    rng = random.Random(5)
    words = [f"w{n}" for n in range(5000)]
    rows = [{"instruction": " ".join(rng.choices(words, k=12)), "context": "", "category": "open_qa",
             "response": " ".join(rng.choices(words, k=40))} for _ in range(300)]
    path = directory / "databricks-dolly-15k.jsonl"
    path.write_bytes((FIXTURES / "dolly" / "databricks-dolly-15k.jsonl").read_bytes().rstrip(b"\n") + b"\n"
                     + "\n".join(json.dumps(row) for row in rows).encode())
    return path


def _gzipped(source: Path, directory: Path, keep: float = 1.0) -> Path:
    """`source` gzipped, with only the first `keep` share of its compressed bytes (a download cut short)."""
    data = gzip.compress(source.read_bytes())
    path = directory / f"{source.name}.gz"
    path.write_bytes(data[:int(len(data) * keep)])
    return path


def _comparable(rows):
    return [(key, (row.reason, row.detail) if isinstance(row, raw.Drop) else row) for key, row in rows]


@pytest.mark.parametrize("layout", ["jsonl", "json array"])
def test_a_gzipped_file_reads_as_the_plain_one(tmp_path, layout):
    source = _dolly_lines(tmp_path) if layout == "jsonl" else GLAIVE
    plain = _comparable(raw.iter_raw_rows([source]))
    gzipped = _comparable(raw.iter_raw_rows([_gzipped(source, tmp_path)]))
    assert len(plain) > 5
    assert gzipped == [(key.replace(source.name, source.name + ".gz"), row) for key, row in plain]


def _compressed(source: Path, tmp_path: Path, kind: str, keep: float = 1.0) -> Path:
    import bz2
    import lzma

    data = source.read_bytes()
    if kind == "zstd":
        path = tmp_path / f"{source.name}.zst"
        with pa.CompressedOutputStream(str(path), "zstd") as out:
            out.write(data)
    else:
        path = tmp_path / f"{source.name}.{'bz2' if kind == 'bz2' else 'xz'}"
        path.write_bytes(bz2.compress(data) if kind == "bz2" else lzma.compress(data))
    packed = path.read_bytes()
    path.write_bytes(packed[:int(len(packed) * keep)])
    return path


@pytest.mark.parametrize("kind", ["bz2", "xz", "zstd"])
@pytest.mark.parametrize("layout", ["jsonl", "json array"])
def test_files_compressed_as_the_hub_holds_them_are_read_as_they_are(tmp_path, layout, kind):
    """`.jsonl.zst`, `.bz2` and `.xz` were refused as "neither Parquet, a JSON array nor JSON Lines"
    (helper audit); `datasets` reads all three."""
    source = _dolly_lines(tmp_path) if layout == "jsonl" else GLAIVE
    path = _compressed(source, tmp_path, kind)
    plain = _comparable(raw.iter_raw_rows([source]))
    assert _comparable(raw.iter_raw_rows([path])) == [(key.replace(source.name, path.name), row) for key, row in plain]
    cut = _compressed(source, tmp_path, kind, keep=0.6)
    with pytest.raises(raw.RawInputError, match=re.escape(f"{cut}: damaged {kind} stream")):
        list(raw.iter_raw_rows([cut]))


@pytest.mark.parametrize("text, name", [('{"a": 1}\nnull\n{"b": 2}\n', "rows.jsonl"),
                                        ('[{"a": 1}, null, {"b": 2}]', "rows.json"),
                                        ('[{"a": 1}, null, {"b": NaN}]', "rows.json")], ids=["jsonl", "array", "array, json's decoder"])
def test_a_null_row_is_a_counted_drop_not_another_worker_s_row(tmp_path, text, name):
    """Readers marked another worker's rows with None, so a JSON `null` row was skipped as one: lost,
    and counted nowhere."""
    path = tmp_path / name
    path.write_text(text)
    rows = list(raw.iter_raw_rows([path]))
    assert [key for key, _ in rows] == [f"{name}#0", f"{name}#1", f"{name}#2"]
    assert isinstance(rows[1][1], Drop) and (rows[1][1].reason, rows[1][1].detail) == ("malformed_row", "not an object: NoneType")
    shares = [[key for key, _ in raw.iter_raw_rows([path], rank, 2)] for rank in (0, 1)]
    assert shares == [[key for key, _ in rows], []]  # one block of rows: all the first worker's


@pytest.mark.parametrize("first", ["null", '"a": 1}', "42"])
def test_a_first_line_that_is_no_object_is_that_line_s_drop(tmp_path, first):
    """The format was judged by the first line alone: one bad line refused the whole file, where the
    same line anywhere else is that line's drop (helper audit)."""
    path = tmp_path / "rows.jsonl"
    path.write_text(first + '\n{"a": 1}\n{"b": 2}\n')
    rows = list(raw.iter_raw_rows([path]))
    assert [row for _, row in rows[1:]] == [{"a": 1}, {"b": 2}]
    assert isinstance(rows[0][1], Drop) and rows[0][1].reason in ("malformed_row", "malformed_json")


def test_a_directory_given_as_an_input_is_named_as_one(tmp_path):
    """It was "input file not found" for a folder that exists."""
    with pytest.raises(raw.RawInputError, match=re.escape(f"{tmp_path} is a directory: give the files in it")):
        list(raw.iter_raw_rows([tmp_path]))


@pytest.mark.parametrize("empty", [b"", b"\n \r\n", b"\xef\xbb\xbf\n \r\n", gzip.compress(b"")],
                         ids=["0 bytes", "whitespace", "byte order mark", "gzip of nothing"])
def test_a_json_lines_file_of_no_rows_is_read_as_none(tmp_path, empty):
    """A writer leaves such a shard for a worker that got no rows: refused as empty, it stopped every
    other file of its source, where a Parquet file of 0 rows or a JSON `[]` is read as none."""
    rows = tmp_path / "train-0.jsonl"
    rows.write_text('{"a": 1}\n{"a": 2}\n')
    (tmp_path / "train-1.jsonl").write_bytes(empty)
    assert list(raw.iter_raw_rows([rows, tmp_path / "train-1.jsonl"])) == [("train-0.jsonl#0", {"a": 1}),
                                                                           ("train-0.jsonl#1", {"a": 2})]


@pytest.mark.parametrize("name", ["train-00001.parquet", "train-1.jsonl.gz", "train-1.jsonl.zst"])
def test_a_parquet_or_compressed_file_of_0_bytes_is_an_error_naming_it(tmp_path, name):
    """No such file is 0 bytes (a gzip of nothing is 20): it is a copy or download that failed, and
    its rows are not to be read as none (review)."""
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(raw.RawInputError, match=re.escape(f"{tmp_path / name}: 0 bytes, which no ")):
        list(raw.iter_raw_rows([tmp_path / name]))


def test_a_git_lfs_pointer_and_compressed_parquet_are_named_as_such(tmp_path):
    pointer = tmp_path / "train-00000-of-00001.parquet"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 1234\n")
    with pytest.raises(raw.RawInputError, match=re.escape(f"{pointer} is a Git LFS pointer, not the data")):
        list(raw.iter_raw_rows([pointer]))
    table = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": [1]}), table)
    packed = _gzipped(table, tmp_path)
    with pytest.raises(raw.RawInputError, match=re.escape(f"{packed}: Parquet compressed with gzip")):
        list(raw.iter_raw_rows([packed]))


@pytest.mark.parametrize("layout", ["jsonl", "json array"])
def test_a_gzipped_file_cut_short_is_an_error_naming_it(tmp_path, layout):
    source = _dolly_lines(tmp_path) if layout == "jsonl" else GLAIVE
    cut = _gzipped(source, tmp_path, keep=0.6)
    with pytest.raises(raw.RawInputError, match=re.escape(f"{cut}: damaged gzip stream after row ")):
        list(raw.iter_raw_rows([cut]))


def test_a_gzip_stream_cut_in_its_first_bytes_fails_before_any_file_is_read(tmp_path):
    cut = tmp_path / "data.jsonl.gz"
    cut.write_bytes(gzip.compress(b"{}")[:12])  # the header and no stream
    with pytest.raises(raw.RawInputError, match=re.escape(f"{cut}: damaged gzip stream: ")):
        next(raw.iter_raw_rows([GLAIVE, cut]))


@pytest.mark.parametrize("layout", ["jsonl", "json array"])
@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzipped"])
def test_a_utf8_byte_order_mark_is_not_part_of_the_first_row(tmp_path, layout, compressed):
    source = _dolly_lines(tmp_path) if layout == "jsonl" else GLAIVE
    marked = tmp_path / "marked" / source.name
    marked.parent.mkdir()
    marked.write_bytes(codecs.BOM_UTF8 + source.read_bytes())
    if compressed:
        marked = _gzipped(marked, marked.parent)
    assert _comparable(raw.iter_raw_rows([marked])) == [(key.replace(source.name, marked.name), row)
                                                         for key, row in _comparable(raw.iter_raw_rows([source]))]


def test_files_of_one_name_in_two_folders_give_their_rows_distinct_keys(tmp_path):
    for folder in ("en", "ca"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "train.jsonl").write_text(f'{{"lang": "{folder}"}}\n')
    files = [tmp_path / "en" / "train.jsonl", tmp_path / "ca" / "train.jsonl"]
    assert [key for key, _ in raw.iter_raw_rows(files)] == ["en/train.jsonl#0", "ca/train.jsonl#0"]
    # files of one folder are keyed by their names, however the folder is written
    (tmp_path / "en" / "more.jsonl").write_text('{"lang": "en"}\n')
    relative = Path(os.path.relpath(tmp_path / "en" / "more.jsonl"))
    assert [key for key, _ in raw.iter_raw_rows([files[0], relative])] == ["train.jsonl#0", "more.jsonl#0"]


@pytest.mark.parametrize("surrogate", [False, True], ids=["C parser", "Python parser"])
def test_numbers_past_int64_or_double_range_read_as_json_loads_reads_them(tmp_path, surrogate):
    """ijson refuses them with use_float, and the whole file failed as a broken array. Row 1100 has
    them: in the second of the blocks two workers take turns at."""
    rows = [f'{{"a": {i}, "s": "x"}}' for i in range(2100)]
    rows[1100] = '{"big": -9223372036854775809, "huge": [1e400, 0.5], "s": "%s"}' % ("\\ud800" if surrogate else "y")
    text = "[" + ", ".join(rows) + "]"
    path = tmp_path / "rows.json"
    path.write_text(text)
    assert raw._has_lone_surrogate_escape(path) is surrogate
    expected = [(f"rows.json#{i}", row) for i, row in enumerate(json.loads(text))]
    assert expected[1100][1]["huge"][0] == float("inf")
    assert list(raw.iter_raw_rows([path])) == expected
    shares = [list(raw.iter_raw_rows([path], rank, 2)) for rank in (0, 1)]
    assert [len(share) for share in shares] == [1024 + 52, 1024]
    assert sorted(shares[0] + shares[1], key=lambda item: int(item[0].split("#")[1])) == expected
    path.write_text(text[:-1] + ', {"b": tru}]')
    with pytest.raises(raw.RawInputError, match=r"broken JSON array after row 2099: "):
        list(raw.iter_raw_rows([path]))


@pytest.mark.parametrize("chunk", [7, 1 << 20])
def test_nan_and_infinity_in_a_json_array_are_read_as_json_loads_reads_them(tmp_path, monkeypatch, chunk):
    """`json.dump` writes NaN for a missing float; ijson refuses it, and the whole source stopped
    ("broken JSON array after row 3999"), where the same rows as JSON Lines were read. json's own
    decoder reads such a file a chunk at a time: items and numbers cut at a chunk's end (7
    characters) come out whole."""
    monkeypatch.setattr(raw, "ARRAY_CHUNK_CHARS", chunk)
    rows = [{"q": f"question {i}", "score": 0.5, "n": 1234567} for i in range(3000)]
    rows[1100]["score"], rows[2500]["score"] = float("nan"), float("-inf")
    rows[2000]["q"] = "x" * 5000  # longer than many chunks
    text = "\ufeff [\n " + ",\n\t".join(json.dumps(row) for row in rows) + " ]\n"
    path = tmp_path / "rows.json"
    path.write_text(text, encoding="utf-8")
    got = list(raw.iter_raw_rows([path]))
    assert [key for key, _ in got] == [f"rows.json#{i}" for i in range(3000)]
    assert json.dumps([row for _, row in got]) == json.dumps(rows)  # NaN != NaN: compared as text
    shares = [list(raw.iter_raw_rows([path], rank, 2)) for rank in (0, 1)]
    assert sorted(key for share in shares for key, _ in share) == sorted(key for key, _ in got)
    for broken in ('{"b": NaN}, {"b": tru}]', '{"b": NaN}] x', '{"b": NaN} {"c": 1}]'):  # row 3000 read, then the fault
        path.write_text(text.rstrip()[:-1] + ", " + broken, encoding="utf-8")
        with pytest.raises(raw.RawInputError, match="broken JSON array after row 3000: "):
            list(raw.iter_raw_rows([path]))


@pytest.mark.parametrize("text", [
    '[NaN, 1.5, 2e10, -3, {"a": "x]y,\\"z"}, [1, [2]], "s", 12345678901234567890123, -Infinity, true, null]',
    '\ufeff [ {"k": Infinity} ,\n\t1.25 ]  \n', '[NaN]', '[ ]', '[NaN, 1.5E+3, 7]',
])
def test_json_s_decoder_reads_an_array_as_json_loads_wherever_its_chunks_end(tmp_path, monkeypatch, text):
    """Every chunk size moves where a chunk ends: a number cut after its "." or "e" ("1." of "1.5")
    was read as the digits before it, and the file failed (the second review)."""
    path = tmp_path / "a.json"
    path.write_text(text, encoding="utf-8")
    want = json.dumps(json.loads(text.lstrip("\ufeff")))
    for chunk in range(1, len(text) + 2):
        monkeypatch.setattr(raw, "ARRAY_CHUNK_CHARS", chunk)
        assert json.dumps(list(raw._decoded_items(path))) == want, chunk


@pytest.mark.parametrize("text, problem", [
    ('[{"a": 1}, {"b": 2}', "expected one of [',', ']'], found 'the end of the file' at character 19"),
    ('[{"a": NaN}, {"b": 2}\n', "expected one of [',', ']'], found 'the end of the file' at character 22"),
    ('[{"a": NaN}, {"b": tru}, ' + '{"c": 3}, ' * 2000 + '{}]', "Expecting value at character 19"),
], ids=["cut", "cut after NaN", "broken early"])
def test_a_json_array_cut_short_or_broken_is_an_error_naming_the_file_and_the_place(tmp_path, monkeypatch, text, problem):
    """A file cut after an item gave an IndexError (a traceback, no file named); a file broken early
    was read on to its end, into memory, before failing (the second review: 409 MB for 209 MB).
    The place is the file's character, not the chunk's."""
    monkeypatch.setattr(raw, "ARRAY_CHUNK_CHARS", 64)
    path = tmp_path / "a.json"
    path.write_text(text)
    with pytest.raises(raw.RawInputError, match=re.escape(f"{path}: broken JSON array after row ") + r"\d+: "
                       + re.escape(problem)):
        list(raw.iter_raw_rows([path]))


@pytest.mark.parametrize("head", ['{\n  "version": "1.0",\n  "data": [\n', '{"version": "1.0", "data": [\n'])
def test_one_object_spread_over_lines_is_refused_not_read_as_json_lines(tmp_path, head):
    """`{"data": [...]}` pretty-printed was read a line at a time: each row line ending in "," a
    malformed_json drop, the last one a row, and no error."""
    path = tmp_path / "data.json"
    path.write_text(head + '    {"instruction": "row 0", "response": "a"},\n    {"instruction": "row 1", "response": "b"}\n  ]\n}\n')
    with pytest.raises(raw.RawInputError, match=re.escape(f"{path}: a JSON object spread over lines, not JSON Lines")):
        list(raw.iter_raw_rows([path]))
    # JSON Lines whose first row is broken is still read, that row a counted drop
    lines = tmp_path / "rows.jsonl"
    lines.write_text('{"instruction": "row 0", "response": \n{"instruction": "row 1", "response": "b"}\n')
    assert [isinstance(row, dict) for _, row in raw.iter_raw_rows([lines])] == [False, True]


LONG_INTEGER = "7" * 5_000  # past Python's 4,300-digit limit on reading an integer


@pytest.mark.parametrize("chunk", [7, 1 << 20])
@pytest.mark.parametrize("layout", ["jsonl", "json array", "json array, json's decoder"])
def test_an_integer_past_python_s_digit_limit_is_its_row_s_drop(tmp_path, monkeypatch, layout, chunk):
    """json raises a bare ValueError for it, which nothing caught: one such row stopped the stage with
    a traceback naming no file (`sftmix normalize` wrote nothing). Row 1100 has it: in the second of
    the blocks two workers take turns at; a chunk of 7 characters cuts the number many times."""
    monkeypatch.setattr(raw, "ARRAY_CHUNK_CHARS", chunk)
    rows = [f'{{"a": {i}, "s": "x"}}' for i in range(2100)]
    rows[1100] = f'{{"a": 1100, "n": [1, -{LONG_INTEGER}], "s": "x"}}'
    if layout == "json array, json's decoder":
        rows[5] = '{"a": 5, "s": "\\ud800"}'  # a lone surrogate: ijson's C parser is not used
    path = tmp_path / ("rows.jsonl" if layout == "jsonl" else "rows.json")
    path.write_text("\n".join(rows) + "\n" if layout == "jsonl" else "[" + ",\n ".join(rows) + "]")
    got = list(raw.iter_raw_rows([path]))
    assert [key for key, _ in got] == [f"{path.name}#{i}" for i in range(2100)]
    drop = got[1100][1]
    assert isinstance(drop, Drop) and drop.reason == "malformed_json"
    assert drop.detail.startswith("Exceeds the limit (4300 digits) for integer string conversion: value has 5000 digits")
    assert drop.raw == (rows[1100] if layout == "jsonl" else {"a": "1100", "n": ["1", f"-{LONG_INTEGER}"], "s": "x"})
    assert [row for _, row in got[:1100] + got[1101:]] == [json.loads(row) for row in rows[:1100] + rows[1101:]]
    _two_workers_share_it_and_a_later_fault_is_named(path, got, layout)


def _two_workers_share_it_and_a_later_fault_is_named(path: Path, got: list, layout: str) -> None:
    """Two workers read `got` (a 2,100-row file's rows) between them; an array broken after its drop
    is still an error naming the file and the row."""
    shares = [list(raw.iter_raw_rows([path], rank, 2)) for rank in (0, 1)]
    assert _comparable(sorted(shares[0] + shares[1], key=lambda item: int(item[0].split("#")[1]))) == _comparable(got)
    if layout != "jsonl":  # a fault after it is still the file's, named with the row
        path.write_text(path.read_text()[:-1] + ', {"b": tru}]')
        with pytest.raises(raw.RawInputError, match=re.escape(f"{path}: broken JSON array after row 2099: ")):
            list(raw.iter_raw_rows([path]))


def test_a_parquet_cell_python_cannot_hold_is_its_row_s_drop(tmp_path):
    """A string that is not UTF-8 (Arrow reads strings unchecked) failed its whole 1,024-row batch's
    conversion, reported as "broken JSON array after row 0" of the Parquet file; a timestamp past year
    9999 was a bare OverflowError naming no file. Now each is its row's drop, as a JSON Lines line
    that is not UTF-8 is, and the other rows of the batch are read as a clean file's."""
    n = 2100

    def write(path: Path, text: list[bytes], stamps: list[int]) -> Path:
        binary = pa.array(text, pa.binary())
        pq.write_table(pa.table({
            "instruction": pa.Array.from_buffers(pa.string(), n, binary.buffers()),  # a string column, not validated
            "when": pa.array(stamps, pa.timestamp("us")),
            "tags": [[f"t{i}", None] for i in range(n)], "meta": [{"score": i / 2, "ok": i % 2 == 0} for i in range(n)],
        }), path)
        return path

    text, stamps = [f"question {i}".encode() for i in range(n)], [1_600_000_000_000_000 + i for i in range(n)]
    expected = [row for _, row in raw.iter_raw_rows([write(tmp_path / "clean.parquet", text, stamps)])]
    text[1100], stamps[1200] = b"bad \xff byte", 253_402_300_800_000_000  # 10000-01-01
    path = write(tmp_path / "train-00000-of-00001.parquet", text, stamps)
    got = list(raw.iter_raw_rows([path]))
    assert [key for key, _ in got] == [f"{path.name}#{i}" for i in range(n)]
    assert [row for i, (_, row) in enumerate(got) if i not in (1100, 1200)] == \
           [row for i, row in enumerate(expected) if i not in (1100, 1200)]
    bad_text, bad_time = got[1100][1], got[1200][1]
    assert isinstance(bad_text, Drop) and bad_text.reason == "invalid_unicode"
    assert bad_text.detail.startswith("column 'instruction' is not UTF-8: 'utf-8' codec can't decode byte 0xff in position 4")
    assert bad_text.raw == {key: value for key, value in expected[1100].items() if key != "instruction"}
    assert isinstance(bad_time, Drop) and bad_time.reason == "malformed_row"
    assert bad_time.detail.startswith("column 'when': OverflowError: ")
    assert bad_time.raw == {key: value for key, value in expected[1200].items() if key != "when"}
    shares = [list(raw.iter_raw_rows([path], rank, 2)) for rank in (0, 1)]
    assert _comparable(sorted(shares[0] + shares[1], key=lambda item: int(item[0].split("#")[1]))) == _comparable(got)


DEEP = "[" * 3_000 + '"a ]} \\"[ string"' + "]" * 3_000  # past json's ~1,000 levels; brackets and a quote in a string


@pytest.mark.parametrize("chunk", [7, 1 << 20])
@pytest.mark.parametrize("layout", ["jsonl", "json array", "json array, json's decoder"])
def test_an_item_nested_too_deeply_is_its_row_s_drop_as_a_json_line_is(tmp_path, monkeypatch, layout, chunk):
    """json's decoder raised a bare RecursionError on it, which nothing caught (the stage stopped
    with a traceback naming no file); ijson read it as a row, in memory growing with the square of
    its depth (20,000 levels: 1 GB). Row 1100 has it: in the second of the blocks two workers take
    turns at; a chunk of 7 characters cuts it many times, in its string too."""
    monkeypatch.setattr(raw, "ARRAY_CHUNK_CHARS", chunk)
    rows = [f'{{"a": {i}, "s": "x"}}' for i in range(2100)]
    rows[1100] = f'{{"a": 1100, "deep": {DEEP}, "s": "x"}}'
    if layout == "json array, json's decoder":
        rows[5] = '{"a": 5, "s": NaN}'  # ijson refuses NaN: json's decoder reads the file from row 5
    path = tmp_path / ("rows.jsonl" if layout == "jsonl" else "rows.json")
    path.write_text("\n".join(rows) + "\n" if layout == "jsonl" else "[" + ",\n ".join(rows) + "]")
    given_to_ijson, items = [], raw.ijson.items

    class Recorded:
        def __init__(self, handle):
            self.handle = handle

        def read(self, size):
            given_to_ijson.append(self.handle.read(size))
            return given_to_ijson[-1]

    monkeypatch.setattr(raw.ijson, "items", lambda handle, *args, **kwargs: items(Recorded(handle), *args, **kwargs))
    got = list(raw.iter_raw_rows([path]))
    assert [key for key, _ in got] == [f"{path.name}#{i}" for i in range(2100)]
    drop = got[1100][1]
    assert isinstance(drop, Drop) and drop.reason == "malformed_json"
    assert drop.detail.startswith("nested too deeply to decode")
    assert drop.raw == rows[1100]
    others = rows[:1100] + rows[1101:]
    assert json.dumps([row for _, row in got[:1100] + got[1101:]]) == json.dumps([json.loads(row) for row in others])
    assert b"[" * 1_000 not in b"".join(given_to_ijson)  # ijson never held it
    _two_workers_share_it_and_a_later_fault_is_named(path, got, layout)


@pytest.mark.parametrize("past_ijson_s", [False, True])
def test_items_holding_many_brackets_are_read_whole(tmp_path, monkeypatch, past_ijson_s):
    """Every item holds PIECE_OPENERS "[" or "{" bytes, half in a string, which ijson reads whole, or
    more than IJSON_MAX_OPENERS, which json's decoder reads: the same rows."""
    openers = raw.IJSON_MAX_OPENERS + 1 if past_ijson_s else raw.PIECE_OPENERS - 2  # with the row's and the list's
    rows = [{"i": i, "list": [{"n": [n]} for n in range(openers // 4)], "s": "{[" * (openers // 4)} for i in range(300)]
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(rows))
    if not past_ijson_s:
        monkeypatch.setattr(raw, "_decoded_items", None)  # ijson alone
    assert [row for _, row in raw.iter_raw_rows([path])] == rows
