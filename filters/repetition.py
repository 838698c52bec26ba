"""Drop assistant text with excessive repetition: Gopher's n-gram and duplicate-line rules.

The rules and thresholds are datatrove's `GopherRepetitionFilter` (duplicate lines/paragraphs,
top n-gram share, duplicated n-gram share); we only feed it the assistant text and a regex word
tokenizer, because datatrove's default tokenizers pull in spaCy for every language. Texts shorter
than `min_words` are not judged: n-gram shares are meaningless on a two-line answer.

Gopher's n-gram rules join every n-gram into a string, 9 passes per text. A screen first bounds the
top n-gram shares (exactly where the bound is not enough) and each duplicated n-gram share; only the
n-gram rules that may fire then run, after the line and paragraph rules. When no n-gram rule may
fire and no line or paragraph repeats, datatrove's filter is not called. The verdict is datatrove's
either way (tests check it against datatrove's own filter), with one exception: datatrove joins a
duplicated n-gram's words with no separator, so "alph abeta" repeats "alpha beta" there, while the
screen compares words. Only a passage repeated with a word boundary moved in every 4 words tells
them apart (it is kept here, dropped by datatrove). Comparing joined strings instead sent 61% of the
bench's glaive rows down the full path (98 -> 283 µs a row). Words are split once per text:
datatrove's `split_into_words` keeps its last results, so Gopher reuses the screen's words. On
3,500-character answers (the bench's prose) the old single bound sent 74% of texts down every n-gram
pass; each size's own bound sends none (check 2,139 -> 409 µs a text, bench/RESULTS.md).
"""

import re
from collections import Counter
from itertools import accumulate, islice
from operator import sub

from datatrove.data import Document
from datatrove.pipeline.filters import GopherRepetitionFilter
from datatrove.utils.text import split_into_words
from datatrove.utils.word_tokenizers import WordTokenizer

from filters.base import RecordFilter
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


class RepetitionFilter(RecordFilter):
    name = "repetition"

    def __init__(self, min_words: int = 50, **gopher_thresholds):
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

    def check(self, record, doc: Document):
        words = split_into_words(doc.text, self.tokenizer)
        if len(words) < self.min_words:
            return None
        ngram_rules = self._ngram_rules_that_may_fire(words, len(doc.text))
        if not any(ngram_rules) and not _lines_or_paragraphs_may_repeat(doc.text):
            return None  # no rule can fire
        result = self._gopher_with(*ngram_rules).filter(doc)
        return None if result is True else f"repetition_{result[1]}"

    def _gopher_with(self, top_n_grams: tuple, dup_n_grams: tuple) -> GopherRepetitionFilter:
        """datatrove's filter with the line and paragraph rules and only these n-gram rules: the
        others cannot fire, so its first firing rule is the full filter's."""
        gopher = self._gophers.get((top_n_grams, dup_n_grams))
        if gopher is None:  # at most one per subset of the configured rules
            gopher = self._gophers[top_n_grams, dup_n_grams] = GopherRepetitionFilter(
                language=self.tokenizer, **{**self._gopher_thresholds, "top_n_grams": top_n_grams,
                                            "dup_n_grams": dup_n_grams})
        return gopher

    def _ngram_rules_that_may_fire(self, words: list[str], text_chars: int) -> tuple[tuple, tuple]:
        """(top, duplicated) n-gram rules, in datatrove's order, that may fire on this text.

        A top n-gram share is bounded, or computed exactly as datatrove does: the first rule whose
        share is over its limit fires (unless a line or paragraph rule fires first), and no later
        rule is reached. Otherwise the duplicated n-gram rules whose bound (`_duplicated_chars_bound`)
        reaches their limit."""
        # An n-gram occurs at most as often as its prefix, so the highest count of a shorter n-gram,
        # times the widest window of n words, bounds its share: counted only when that is not enough.
        firing = set()
        highest_count, ends = None, None
        for n, limit in sorted(self.gopher.top_n_grams):
            if highest_count is not None:
                ends = ends or [0, *accumulate(map(len, words))]
                if highest_count * (max(map(sub, ends[n:], ends), default=0) + n - 1) <= limit * text_chars:
                    continue
            grams = Counter(zip(*(words[i:] for i in range(n))))
            if grams:
                gram, highest_count = _most_common(grams)
                if (sum(map(len, gram)) + n - 1) * highest_count / text_chars > limit:
                    firing.add((n, limit))
        if firing:
            return next((tuple(rule),) for rule in self.gopher.top_n_grams if tuple(rule) in firing), ()
        if not self.gopher.dup_n_grams:
            return (), ()
        smallest = min(n for n, _ in self.gopher.dup_n_grams)
        runs = _repeat_runs(words, smallest)
        return (), tuple(tuple(rule) for rule in self.gopher.dup_n_grams
                         if _duplicated_chars_bound(words, runs, smallest, rule[0]) > rule[1] * text_chars)


def _is_rule(rule) -> bool:
    if not isinstance(rule, (list, tuple)) or len(rule) != 2:
        return False
    n, limit = rule
    return isinstance(n, int) and not isinstance(n, bool) and n > 0 and _is_number(limit)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _most_common(counts: Counter) -> tuple:
    """`counts.most_common(1)[0]`: the first counted of the most frequent keys, with its count,
    found in C (7.3 -> 3.2 µs on the bench's glaive answers)."""
    values = list(counts.values())
    highest = max(values)
    return next(islice(counts, values.index(highest), None)), highest


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


def _repeat_runs(words: list[str], smallest: int) -> list[tuple[int, int]]:
    """The maximal runs [start, end) of consecutive positions whose `smallest`-gram occurred before
    (as words: see the module's note on joined strings)."""
    grams = list(zip(*(words[i:] for i in range(smallest))))
    if len(set(grams)) == len(grams):
        return []  # no repeat at all: the common case, decided at C speed
    seen: set[tuple[str, ...]] = set()
    runs, start = [], None
    for i, gram in enumerate(grams):
        if gram in seen:
            start = i if start is None else start
        else:
            seen.add(gram)
            if start is not None:
                runs.append((start, i))
                start = None
    if start is not None:
        runs.append((start, len(grams)))
    return runs


def _duplicated_chars_bound(words: list[str], runs: list[tuple[int, int]], smallest: int, n: int) -> int:
    """An upper bound on datatrove's duplicated characters for n-grams (n >= smallest).

    An n-gram counted at word i occurred before, so the `smallest`-grams at i .. i + n - smallest
    did too: they lie in one run of at least n - smallest + 1 positions, and the n-gram within that
    run's words. Counted n-grams never overlap, so their characters are at most those of such runs.
    """
    return sum(sum(map(len, words[start:end - 1 + smallest])) for start, end in runs if end - start > n - smallest)
