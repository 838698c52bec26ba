"""Parquet files damaged the two ways a download or a disk damages them, for the tests of the errors
that name them."""

from pathlib import Path

import pyarrow.parquet as pq

DAMAGES = ("no footer", "broken pages")


def damage(path: Path, how: str) -> None:
    """"no footer": the file is cut short (it does not open). "broken pages": the first column
    chunk's pages (header included) are overwritten and the footer kept (it opens, its first batch
    does not decode)."""
    data = bytearray(path.read_bytes())
    if how == "no footer":
        path.write_bytes(bytes(data[:-100]))
        return
    assert how == "broken pages", how
    chunk = pq.ParquetFile(path).metadata.row_group(0).column(0)
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    data[start:start + chunk.total_compressed_size] = b"\xff" * chunk.total_compressed_size
    path.write_bytes(bytes(data))
    assert pq.ParquetFile(path).metadata.num_rows > 0  # still opens
