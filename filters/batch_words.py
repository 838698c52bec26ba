"""The words of a batch of texts as columns, and hashes of their n-grams.

Rules that compare word n-grams (repetition, decontamination) take their rows a batch at a time:
polars splits and hashes every word of the batch at once, and numpy makes each n-gram's hash from
its words' hashes, where a per-text loop would run a few numpy calls (or a Python step per word) for
every text. The hashes are equality proxies within one process (polars does not promise the same
hash across its versions): never store them.
"""

from __future__ import annotations

import numpy as np
import polars as pl

_GRAM_BASE = np.uint64(0xC2B2AE3D27D4EB4F)
CHUNK_BYTES = 1 << 20  # words put in one BatchWords: its columns take some 20 to 40 bytes a byte


def word_rows(word_bytes: list[bytes]) -> pl.DataFrame:
    """One row per word of the texts given as `word_bytes` (see `BatchWords`): `text`, the text's
    index (Int64), and `word`."""
    return (pl.DataFrame({"word": pl.Series(word_bytes, dtype=pl.Binary).cast(pl.String)})
            .with_row_index("text")
            .select(pl.col("text").cast(pl.Int64), pl.col("word").str.split(" ")).explode("word")
            .filter(pl.col("word") != ""))


class BatchWords:
    """The words of texts given as `word_bytes`: per text, its words in UTF-8 separated by runs of
    spaces (`filters.words.WordFinder.word_bytes`)."""

    def __init__(self, word_bytes: list[bytes]):
        words = word_rows(word_bytes).select("text", pl.col("word").hash().alias("hash"),
                                             pl.col("word").str.len_chars().cast(pl.Int64).alias("chars"))
        self.texts = len(word_bytes)
        self.text_of_word = words["text"].to_numpy()
        self.words = np.bincount(self.text_of_word, minlength=self.texts)  # per text
        self.hashes = words["hash"].to_numpy()
        self.chars_before = np.zeros(len(words) + 1, np.int64)  # characters of the words before word i
        np.cumsum(words["chars"].to_numpy(), out=self.chars_before[1:])
        self.first_word = np.cumsum(self.words) - self.words  # per text
        self.words_left = (self.first_word + self.words)[self.text_of_word] - np.arange(len(words))  # from word i on, in its text
        self._ngram_hashes = {1: self.hashes}

    def ngram_hashes(self, n: int) -> np.ndarray:
        """A hash of the n words from each position: sum(h[i + k] * B^(n-1-k)) modulo 2^64, made from
        the longest shorter n-grams' already made (H_n[i] = H_(n-1)[i] * B + h[i + n - 1]). Positions
        whose n words run past their text's end (`words_left` < n) mix two texts: callers mask them."""
        if n not in self._ngram_hashes:
            shorter = max(k for k in self._ngram_hashes if k < n)
            hashes = self._ngram_hashes[shorter]
            for size in range(shorter + 1, n + 1):
                windows = max(len(self.hashes) - size + 1, 0)
                hashes = hashes[:windows] * _GRAM_BASE
                hashes += self.hashes[size - 1:size - 1 + windows]
                self._ngram_hashes[size] = hashes
        return self._ngram_hashes[n]


def chunks_of_bytes(items: list[tuple[int, bytes]], limit: int):
    """Runs of consecutive (index, word bytes) items of about `limit` bytes each, so that a batch
    of long texts is taken a part at a time."""
    chunk, size = [], 0
    for item in items:
        chunk.append(item)
        size += len(item[1]) + 1
        if size >= limit:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk
