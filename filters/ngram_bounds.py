"""Upper bounds on Gopher's n-gram figures for a batch of texts, a column at a time.

Gopher's n-gram rules (datatrove's `GopherRepetitionFilter`) count every n-gram of a text as a
string. Almost every text is far below every limit, and a bound proves it without building one:
the repetition rule runs datatrove's filter only on the texts and rules a bound cannot clear.

N-grams are counted by hash (`filters.batch_words`), tagged with their text, across the whole
batch. Two different n-grams (or texts) that share a hash are counted together: counts only grow,
so every figure stays a bound.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from filters.batch_words import BatchWords

_TEXT_TAG = np.uint64(0x9E3779B97F4A7C15)


class NgramBounds:
    """Bounds for the texts whose words `word_bytes` holds (see `BatchWords`)."""

    def __init__(self, word_bytes: list[bytes]):
        self.batch = BatchWords(word_bytes)
        self.words, self.texts = self.batch.words, self.batch.texts

    def top_ngram_chars(self, sizes) -> dict[int, np.ndarray]:
        """For each n in `sizes`, per text, a bound on datatrove's top n-gram figure: the characters
        of the most frequent n-gram, joined by spaces, times its count. Only the smallest size is
        counted; a longer n-gram occurs at most as often as each of the shorter ones it holds."""
        base = min(sizes)
        counts = pl.DataFrame({"gram": self._gram_hashes(base)}).select(pl.len().over("gram")).to_series().to_numpy()
        bounds = {}
        for n in sorted(sizes):
            windows = len(self.batch.hashes) - n + 1
            if windows <= 0:
                bounds[n] = np.zeros(self.texts, np.int64)
                continue
            lowest = counts[:windows].astype(np.int64)
            for offset in range(1, n - base + 1):
                np.minimum(lowest, counts[offset:offset + windows], out=lowest)
            chars = lowest * (self.batch.chars_before[n:n + windows] - self.batch.chars_before[:windows] + n - 1)
            chars[self.batch.words_left[:windows] < n] = 0
            bounds[n] = self._per_text_max(chars)
        return bounds

    def duplicated_ngram_chars(self, sizes) -> dict[int, np.ndarray]:
        """For each n in `sizes`, per text, a bound on datatrove's duplicated n-gram characters.

        Let s be the smallest size. An n-gram datatrove counts occurred before, so the s-grams at its
        first n - s + 1 positions did too: they lie in one run of at least n - s + 1 positions whose
        s-gram occurred before, and the n-gram within that run's words. Counted n-grams do not
        overlap, so their characters are at most those of such runs."""
        smallest = min(sizes)
        windows = len(self.batch.hashes) - smallest + 1
        if windows <= 0:
            return {n: np.zeros(self.texts) for n in sizes}
        repeated = ~pl.Series(self._gram_hashes(smallest)).is_first_distinct().to_numpy()
        repeated &= self.batch.words_left[:windows] >= smallest
        continues = np.zeros(windows, bool)  # the position before is repeated, in the same text
        continues[1:] = repeated[:-1] & (self.batch.text_of_word[1:windows] == self.batch.text_of_word[:windows - 1])
        run_starts = np.flatnonzero(repeated & ~continues)
        run_lengths = np.bincount(np.cumsum(repeated & ~continues)[repeated] - 1, minlength=len(run_starts))
        run_chars = self.batch.chars_before[run_starts + run_lengths - 1 + smallest] - self.batch.chars_before[run_starts]
        run_text = self.batch.text_of_word[run_starts]
        return {n: np.bincount(run_text, weights=run_chars * (run_lengths > n - smallest), minlength=self.texts)
                for n in sizes}

    def _gram_hashes(self, n: int) -> np.ndarray:
        """`BatchWords.ngram_hashes`, tagged with the text of each position."""
        hashes = self.batch.ngram_hashes(n)
        return hashes ^ (self.batch.text_of_word[:len(hashes)].astype(np.uint64) * _TEXT_TAG)

    def _per_text_max(self, values: np.ndarray) -> np.ndarray:
        """The highest value per text over its positions (values past the end count as 0)."""
        highest = np.zeros(self.texts, np.int64)
        if len(values):
            padded = np.zeros(len(self.batch.hashes), np.int64)
            padded[:len(values)] = values
            highest[self.words > 0] = np.maximum.reduceat(padded, self.batch.first_word[self.words > 0])
        return highest
