"""Upper bounds on Gopher's n-gram figures for a batch of texts, a column at a time.

Gopher's n-gram rules (datatrove's `GopherRepetitionFilter`) count every n-gram of a text as a
string. Almost every text is far below every limit, and a bound proves it without building one:
the repetition rule runs datatrove's filter only on the texts and rules a bound cannot clear.

polars splits and hashes the words; each n-gram gets a hash of its words' hashes (numpy), tagged
with its text, and n-grams are counted by hash across the whole batch. Two different n-grams (or
texts) that share a hash are counted together: counts only grow, so every figure stays a bound.
"""

from __future__ import annotations

import numpy as np
import polars as pl

_GRAM_BASE = np.uint64(0xC2B2AE3D27D4EB4F)
_TEXT_TAG = np.uint64(0x9E3779B97F4A7C15)


class NgramBounds:
    """Bounds for the texts whose words `word_bytes` holds: per text, its words in UTF-8 separated
    by runs of spaces (`WordFinder.word_bytes`)."""

    def __init__(self, word_bytes: list[bytes]):
        words = (pl.DataFrame({"words": pl.Series(word_bytes, dtype=pl.Binary).cast(pl.String)})
                 .with_row_index("text")
                 .select("text", pl.col("words").str.split(" ")).explode("words")
                 .filter(pl.col("words") != "")
                 .select(pl.col("text").cast(pl.Int64), pl.col("words").hash().alias("hash"),
                         pl.col("words").str.len_chars().cast(pl.Int64).alias("chars")))
        self.texts = len(word_bytes)
        self.text_of_word = words["text"].to_numpy()
        self.words = np.bincount(self.text_of_word, minlength=self.texts)  # per text
        self._word_hashes = words["hash"].to_numpy()
        self._chars_before = np.zeros(len(words) + 1, np.int64)  # characters of the words before word i
        np.cumsum(words["chars"].to_numpy(), out=self._chars_before[1:])
        first_word = np.cumsum(self.words) - self.words
        self._words_left = (first_word + self.words)[self.text_of_word] - np.arange(len(words))
        self._first_words = first_word[self.words > 0]

    def top_ngram_chars(self, sizes) -> dict[int, np.ndarray]:
        """For each n in `sizes`, per text, a bound on datatrove's top n-gram figure: the characters
        of the most frequent n-gram, joined by spaces, times its count. Only the smallest size is
        counted; a longer n-gram occurs at most as often as each of the shorter ones it holds."""
        base = min(sizes)
        counts = pl.DataFrame({"gram": self._gram_hashes(base)}).select(pl.len().over("gram")).to_series().to_numpy()
        bounds = {}
        for n in sorted(sizes):
            windows = len(self._word_hashes) - n + 1
            if windows <= 0:
                bounds[n] = np.zeros(self.texts, np.int64)
                continue
            lowest = counts[:windows].astype(np.int64)
            for offset in range(1, n - base + 1):
                np.minimum(lowest, counts[offset:offset + windows], out=lowest)
            chars = lowest * (self._chars_before[n:n + windows] - self._chars_before[:windows] + n - 1)
            chars[self._words_left[:windows] < n] = 0
            bounds[n] = self._per_text_max(chars)
        return bounds

    def duplicated_ngram_chars(self, sizes) -> dict[int, np.ndarray]:
        """For each n in `sizes`, per text, a bound on datatrove's duplicated n-gram characters.

        Let s be the smallest size. An n-gram datatrove counts occurred before, so the s-grams at its
        first n - s + 1 positions did too: they lie in one run of at least n - s + 1 positions whose
        s-gram occurred before, and the n-gram within that run's words. Counted n-grams do not
        overlap, so their characters are at most those of such runs."""
        smallest = min(sizes)
        windows = len(self._word_hashes) - smallest + 1
        if windows <= 0:
            return {n: np.zeros(self.texts) for n in sizes}
        repeated = ~pl.Series(self._gram_hashes(smallest)).is_first_distinct().to_numpy()
        repeated &= self._words_left[:windows] >= smallest
        continues = np.zeros(windows, bool)  # the position before is repeated, in the same text
        continues[1:] = repeated[:-1] & (self.text_of_word[1:windows] == self.text_of_word[:windows - 1])
        run_starts = np.flatnonzero(repeated & ~continues)
        run_lengths = np.bincount(np.cumsum(repeated & ~continues)[repeated] - 1, minlength=len(run_starts))
        run_chars = self._chars_before[run_starts + run_lengths - 1 + smallest] - self._chars_before[run_starts]
        run_text = self.text_of_word[run_starts]
        return {n: np.bincount(run_text, weights=run_chars * (run_lengths > n - smallest), minlength=self.texts)
                for n in sizes}

    def _gram_hashes(self, n: int) -> np.ndarray:
        """A hash per position of the n words from there, tagged with the text of the first. The
        last n - 1 positions of a text run into the next one: callers mask them (`_words_left`)."""
        windows = max(len(self._word_hashes) - n + 1, 0)
        hashes = self._word_hashes[:windows].copy()
        for offset in range(1, n):
            hashes *= _GRAM_BASE
            hashes += self._word_hashes[offset:offset + windows]
        return hashes ^ (self.text_of_word[:windows].astype(np.uint64) * _TEXT_TAG)

    def _per_text_max(self, values: np.ndarray) -> np.ndarray:
        """The highest value per text over its positions (values past the end count as 0)."""
        highest = np.zeros(self.texts, np.int64)
        if len(values):
            padded = np.zeros(len(self._word_hashes), np.int64)
            padded[:len(values)] = values
            highest[self.words > 0] = np.maximum.reduceat(padded, self._first_words)
        return highest
