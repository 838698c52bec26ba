"""Drop assistant text with excessive repetition: Gopher's n-gram and duplicate-line rules.

The rules and thresholds are datatrove's `GopherRepetitionFilter` (duplicate lines/paragraphs,
top n-gram share, duplicated n-gram share); we only feed it the assistant text and a regex word
tokenizer, because datatrove's default tokenizers pull in spaCy for every language. Texts shorter
than `min_words` are not judged: n-gram shares are meaningless on a two-line answer.

Gopher's rules judge a web page, and a conversation differs in two ways:
- Each assistant turn is judged on its own (a row is dropped when one of them repeats itself).
  Turns joined into one text made the same short turn in several of them ("Let me check that for
  you." before each call, "In Paris it is currently ...") duplicated paragraphs and n-grams, and
  dropped good multi-turn tool conversations. What only the turns together show, the same answer
  given again, is the paragraph rules' limits applied to the answers (assistant turns without a
  tool call) of `MIN_REPEATED_TURN_WORDS` words or more (`dup_turn_frac`, `dup_turn_char_frac`),
  on answers of `min_words` words in all.
- The line and paragraph rules leave out lines of markup, ASCII punctuation without a word:
  markup repeats by nature (display math's `\\[` and `\\]` or `$$`, code's `}` and fences, `---`,
  a text table's `+----+` rules), and a worked math solution was a `dup_line_frac` drop. Lines of
  emoji or other symbols count: an answer ending in 300 lines of "😂😂😂" was kept. (So do 300
  lines of "!!!!", left as markup.)

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
from datatrove.pipeline.filters.gopher_repetition_filter import find_duplicates
from datatrove.utils.word_tokenizers import WordTokenizer

from filters.base import BatchRecordFilter, Count, learned_turns
from filters.batch_words import CHUNK_BYTES, chunks_of_bytes
from filters.ngram_bounds import NgramBounds
from filters.words import WordFinder

_WORDS = WordFinder(r"\w", str.isalnum)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# A line of markup: ASCII punctuation and spaces, at least one mark (lines of spaces are left, so that
# no paragraph break is made or unmade). Lines of emoji or other symbols are what a degenerate answer
# repeats ("😂😂😂" three hundred times), and count. The lookahead asks for the mark, so that one
# greedy run is tried from each line's start: linear in the line.
_MARK = r"!-/:-@\[-\^`{-~"  # ASCII punctuation but "_", a word character
_MARKUP_LINE = re.compile(rf"^(?=[^\S\n]*[{_MARK}])(?:[^\S\n]|[{_MARK}])*(?:\n|\Z)", re.MULTILINE)
LINE_RULES = ("dup_line_frac", "dup_para_frac", "dup_line_char_frac", "dup_para_char_frac")
# Shorter turns come again by nature ("Let me check that for you.", "Done."), and are not counted
# as repeated turns.
MIN_REPEATED_TURN_WORDS = 8


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
        for kind in LINE_RULES:
            # A negative limit would fire on a text without duplicates, which the screen lets through.
            limit = getattr(self.gopher, kind)
            if limit is not None and not (_is_number(limit) and limit >= 0):
                raise ValueError(f"repetition filter: {kind} must be a number >= 0 or null, not {limit!r}")
        # the n-gram rules alone, and the line and paragraph rules alone, each on one turn
        self._gopher_thresholds = {**gopher_thresholds, **dict.fromkeys(LINE_RULES)}
        self._gophers: dict[tuple[tuple, tuple], GopherRepetitionFilter] = {}
        line_thresholds = {kind: getattr(self.gopher, kind) for kind in LINE_RULES}
        self.line_gopher = (GopherRepetitionFilter(language=self.tokenizer, top_n_grams=(), dup_n_grams=(),
                                                   **line_thresholds)
                            if any(limit is not None for limit in line_thresholds.values()) else None)

    def reasons(self, docs: list[Document]) -> list[str | None]:
        # A document without a record (datatrove's own use) is one text. No turn of a text too short
        # to judge (`ngram_rules_that_may_fire`) is long enough either: its turns are not looked up.
        shortest = 2 * self.min_words - 1
        turns = [[] if len(doc.text) < shortest else
                 learned_turns(doc.metadata["record"]) if "record" in doc.metadata else [doc.text] for doc in docs]
        rules = iter(self.ngram_rules_that_may_fire([turn for texts in turns for turn in texts]))
        reasons = []
        for doc, texts in zip(docs, turns):
            reason = None
            for turn, turn_rules in zip(texts, rules):  # every turn's rules are taken, in order
                if reason is None and turn_rules is not None:  # None: too short to judge
                    reason = self._turn_reason(turn, turn_rules, doc.id)
            if reason is None and len(texts) > 1:
                reason = self._repeated_turns_reason(_answers(doc.metadata["record"]) if "record" in doc.metadata else texts)
            reasons.append(reason and f"repetition_{reason}")
        return reasons

    def _repeated_turns_reason(self, turns: list[str]) -> str | None:
        """The paragraph rules over the answers: the share of them, and of their characters, that say
        one of `MIN_REPEATED_TURN_WORDS` words or more again; on answers of `min_words` words in all."""
        said = [turn.strip() for turn in turns if len(turn.split()) >= MIN_REPEATED_TURN_WORDS]
        if len(set(said)) == len(said) or sum(len(_WORDS.findall(turn)) for turn in turns) < self.min_words:
            return None
        repeated, repeated_chars = find_duplicates(said)
        if self.gopher.dup_para_frac is not None and repeated / len(turns) > self.gopher.dup_para_frac:
            return "dup_turn_frac"
        if self.gopher.dup_para_char_frac is not None and \
                repeated_chars / sum(len(turn) for turn in turns) > self.gopher.dup_para_char_frac:
            return "dup_turn_char_frac"
        return None

    def _turn_reason(self, turn: str, rules: tuple[tuple, tuple], doc_id: str) -> str | None:
        """The first rule that fires on one turn: the line and paragraph rules on its lines but
        markup, then the n-gram rules whose bound reaches their limit."""
        if self.line_gopher is not None and "\n" in turn:
            text = _MARKUP_LINE.sub("", turn)
            if not turn.endswith("\n"):  # a last line taken out leaves its line break, an empty "line"
                text = text.rstrip("\n")
            if text.strip() and _lines_or_paragraphs_may_repeat(text):
                result = self.line_gopher.filter(Document(text=text, id=doc_id))
                if result is not True:
                    return result[1]
        if any(rules):
            result = self._gopher_with(*rules).filter(Document(text=turn, id=doc_id))
            if result is not True:
                return result[1]
        return None

    def ngram_rules_that_may_fire(self, texts: list[str]) -> list[tuple[tuple, tuple] | None]:
        """Per text, the (top, duplicated) n-gram rules, in datatrove's order, whose bound reaches
        their limit; None for a text of fewer than `min_words` words, which is not judged."""
        top_rules = [tuple(rule) for rule in self.gopher.top_n_grams]
        dup_rules = [tuple(rule) for rule in self.gopher.dup_n_grams]
        may_fire: list = [None] * len(texts)
        # min_words words take at least 2 * min_words - 1 characters: shorter texts are not judged (`reasons`)
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
        """datatrove's filter with only these n-gram rules: the others cannot fire, so its first
        firing rule is that of all the n-gram rules."""
        gopher = self._gophers.get((top_n_grams, dup_n_grams))
        if gopher is None:  # at most one per subset of the configured rules
            gopher = self._gophers[top_n_grams, dup_n_grams] = GopherRepetitionFilter(
                language=self.tokenizer, **{**self._gopher_thresholds, "top_n_grams": top_n_grams,
                                            "dup_n_grams": dup_n_grams})
        return gopher


def _answers(record: dict) -> list[str]:
    """The turns a repeated answer is looked for in: the assistant's, but for those that go with a
    tool call ("Let me check the current weather there for you." before each call is how such a
    turn reads), or the user's in rows with no assistant turn."""
    answers = [m["content"] for m in record["messages"] if m["role"] == "assistant" and not m["tool_calls"] and m["content"]]
    return answers or ([] if any(m["role"] == "assistant" for m in record["messages"]) else learned_turns(record))


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
