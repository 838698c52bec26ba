"""Drop assistant text with excessive repetition: Gopher's n-gram and duplicate-line rules.

The rules and thresholds are datatrove's `GopherRepetitionFilter` (duplicate lines/paragraphs,
top n-gram share, duplicated n-gram share); we only feed it the assistant text and a regex word
tokenizer, because datatrove's default tokenizers pull in spaCy for every language. Texts shorter
than `min_words` are not judged: n-gram shares are meaningless on a two-line answer.

Gopher's n-gram rules join every n-gram into a string, 9 passes per text. The rule takes its rows
in batches instead: `filters.ngram_bounds` bounds every n-gram figure of a batch's texts at once
in numpy, and datatrove's filter runs only on the texts where a bound reaches its limit or a line
or paragraph repeats, with only the n-gram rules whose bound reaches their limit (the others cannot
fire, so its first firing rule is the full filter's). The verdict is datatrove's either way (tests
check it against datatrove's own filter), with one exception: datatrove joins a duplicated
n-gram's words with no separator, so "alph abeta" repeats "alpha beta" there, while the bounds
compare words. Only a passage repeated with a word boundary moved in every 4 words tells them apart
(it is kept here, dropped by datatrove). Comparing joined strings instead sent 61% of the bench's
glaive rows down the full path (98 -> 283 µs a row).
"""

import re

import numpy as np
from datatrove.data import Document
from datatrove.pipeline.filters import GopherRepetitionFilter
from datatrove.utils.word_tokenizers import WordTokenizer

from filters.base import BatchRecordFilter, Count
from filters.batch_words import CHUNK_BYTES, chunks_of_bytes
from filters.ngram_bounds import NgramBounds
from filters.words import WordFinder

_WORDS = WordFinder(r"\w", str.isalnum)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class RegexWordTokenizer(WordTokenizer):
    """Language-agnostic word splitter; good enough for repetition statistics."""

    def word_tokenize(self, text: str) -> list[str]:
        return _WORDS.findall(text)

    def sent_tokenize(self, text: str) -> list[str]:
        return [s for s in _SENTENCE_END.split(text) if s]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _WORDS.pattern.finditer(text)]


class RepetitionFilter(BatchRecordFilter):
    name = "repetition"

    def __init__(self, min_words: Count = 50, **gopher_thresholds):
        super().__init__()
        self.min_words = min_words
        self.tokenizer = RegexWordTokenizer()  # one instance: datatrove's word cache is keyed by it
        self.gopher = GopherRepetitionFilter(language=self.tokenizer, **gopher_thresholds)
        for kind in ("top_n_grams", "dup_n_grams"):  # checked here: a manifest is loaded before any row is read
            for rule in getattr(self.gopher, kind):
                if not _is_rule(rule):
                    raise ValueError(f"repetition filter: {kind} entry {rule!r} is not a pair [n, limit] "
                                     "with n a positive integer and limit a number")
        for kind in ("dup_line_frac", "dup_para_frac", "dup_line_char_frac", "dup_para_char_frac"):
            # A negative limit would fire on a text without duplicates, which the screen lets through.
            limit = getattr(self.gopher, kind)
            if limit is not None and not (_is_number(limit) and limit >= 0):
                raise ValueError(f"repetition filter: {kind} must be a number >= 0 or null, not {limit!r}")
        self._gopher_thresholds = gopher_thresholds
        self._gophers: dict[tuple[tuple, tuple], GopherRepetitionFilter] = {}

    def reasons(self, docs: list[Document]) -> list[str | None]:
        reasons = []
        for doc, rules in zip(docs, self.ngram_rules_that_may_fire([doc.text for doc in docs])):
            if rules is None or (not any(rules) and not _lines_or_paragraphs_may_repeat(doc.text)):
                reasons.append(None)  # too short to judge, or no rule can fire
                continue
            result = self._gopher_with(*rules).filter(doc)
            reasons.append(None if result is True else f"repetition_{result[1]}")
        return reasons

    def ngram_rules_that_may_fire(self, texts: list[str]) -> list[tuple[tuple, tuple] | None]:
        """Per text, the (top, duplicated) n-gram rules, in datatrove's order, whose bound reaches
        their limit; None for a text of fewer than `min_words` words, which is not judged."""
        top_rules = [tuple(rule) for rule in self.gopher.top_n_grams]
        dup_rules = [tuple(rule) for rule in self.gopher.dup_n_grams]
        may_fire: list = [None] * len(texts)
        # min_words words take at least 2 * min_words - 1 characters: shorter texts are not judged
        long_texts = [(i, _WORDS.word_bytes(text)) for i, text in enumerate(texts) if len(text) >= 2 * self.min_words - 1]
        for chunk in chunks_of_bytes(long_texts, CHUNK_BYTES):
            bounds = NgramBounds([words for _, words in chunk])
            chars = np.array([len(texts[i]) for i, _ in chunk], np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):  # an empty text: nothing fires
                top = bounds.top_ngram_chars({n for n, _ in top_rules}) if top_rules else {}
                dup = bounds.duplicated_ngram_chars({n for n, _ in dup_rules}) if dup_rules else {}
                # compared as datatrove does (figure / characters > limit), so rounding cannot differ
                top_fires = [top[n] / chars > limit for n, limit in top_rules]
                dup_fires = [dup[n] / chars > limit for n, limit in dup_rules]
            any_fires = np.zeros(len(chunk), bool)
            for fires in top_fires + dup_fires:
                any_fires |= fires
            judged = bounds.words >= self.min_words
            for row, ((i, _), is_judged, fires) in enumerate(zip(chunk, judged.tolist(), any_fires.tolist())):
                if is_judged:
                    may_fire[i] = ((tuple(rule for rule, f in zip(top_rules, top_fires) if f[row]),
                                    tuple(rule for rule, f in zip(dup_rules, dup_fires) if f[row])) if fires else ((), ()))
        return may_fire

    def _gopher_with(self, top_n_grams: tuple, dup_n_grams: tuple) -> GopherRepetitionFilter:
        """datatrove's filter with the line and paragraph rules and only these n-gram rules: the
        others cannot fire, so its first firing rule is the full filter's."""
        gopher = self._gophers.get((top_n_grams, dup_n_grams))
        if gopher is None:  # at most one per subset of the configured rules
            gopher = self._gophers[top_n_grams, dup_n_grams] = GopherRepetitionFilter(
                language=self.tokenizer, **{**self._gopher_thresholds, "top_n_grams": top_n_grams,
                                            "dup_n_grams": dup_n_grams})
        return gopher


def _is_rule(rule) -> bool:
    if not isinstance(rule, (list, tuple)) or len(rule) != 2:
        return False
    n, limit = rule
    return isinstance(n, int) and not isinstance(n, bool) and n > 0 and _is_number(limit)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _lines_or_paragraphs_may_repeat(text: str) -> bool:
    """Whether datatrove's line and paragraph rules may find a duplicate, with `str.split` (in C)
    where datatrove splits with regexes (19 µs on the bench's Toucan answers, which have no line
    break). Its lines are the pieces of `\n+`: exactly those below. Its paragraphs are the pieces
    of `\n{2,}` in the stripped text; two equal ones begin with equal non-empty lines of it."""
    if "\n" not in text:
        return False
    lines = text.split("\n")
    pieces = [lines[0], *filter(None, lines[1:-1]), lines[-1]]
    if len(set(pieces)) < len(pieces):
        return True
    stripped_lines = [line for line in text.strip().split("\n") if line]
    return len(set(stripped_lines)) < len(stripped_lines)
