import random
import re
import sys

import pytest

from filters import decontamination, language, repetition
from filters.words import WordFinder

# Each filter's finder, with the regex it stands for.
FINDERS = {"repetition": (repetition._WORDS, r"\w+"), "language": (language._WORDS, r"[^\W\d_]+"),
           "decontamination": (decontamination._WORDS, r"[^\W_]+")}
# In some classes and not in others, or in none: accented letters, CJK, a superscript two (numeric,
# not a decimal digit), Arabic-Indic one (a decimal digit), no-break and ideographic spaces, a dash,
# a curly quote, a combining accent, an emoji, a lone surrogate.
NON_ASCII = ["é", "ñ", "ç", "ß", "日本", "²", "١", "\u00a0", "\u3000", "\u2014", "\u2019", "e\u0301", "🙂", "\ud83d"]


@pytest.mark.parametrize("name", FINDERS)
def test_words_and_word_bytes_are_the_regex_findall_words(name, monkeypatch):
    finder, regex = FINDERS[name]
    reference = re.compile(regex)
    regex_calls = []

    class CountingPattern:  # the finder's fallback, counted
        def findall(self, text):
            regex_calls.append(text)
            return reference.findall(text)

    monkeypatch.setattr(finder, "pattern", CountingPattern())
    rng = random.Random(3)
    alphabet = [chr(c) for c in range(128)] + list("abc xyz 42 __ ,.") * 8
    kinds = {"ascii": 0, "fast": 0, "regex": 0}
    for k in range(4000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        for _ in range(k % 3):
            cut = rng.randint(0, len(text))
            text = text[:cut] + rng.choice(NON_ASCII if k % 4 else NON_ASCII[:5]) + text[cut:]
        calls = len(regex_calls)
        assert finder.findall(text) == reference.findall(text), repr(text)
        # the n-gram bounds' input: the same words in UTF-8, a lone surrogate as "?", split at spaces
        assert [w for w in finder.word_bytes(text).split(b" ") if w] == [
            w.encode("utf-8", "replace") for w in reference.findall(text)], repr(text)
        kinds["ascii" if text.isascii() else "regex" if len(regex_calls) > calls else "fast"] += 1
    assert min(kinds.values()) > 300, kinds  # every path is compared


@pytest.mark.parametrize("name", FINDERS)
def test_in_class_accepts_only_the_class_and_no_whitespace_is_in_it(name):
    finder, regex = FINDERS[name]
    member = re.compile(regex[:-1])
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        if finder.in_class(char):
            assert member.fullmatch(char), f"U+{code:04X}"
        if char.isspace():
            assert not member.fullmatch(char), f"U+{code:04X}"


def test_the_whitespace_list_is_all_that_str_split_cuts_at():
    from filters.words import UNICODE_WHITESPACE

    assert UNICODE_WHITESPACE == [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]


def test_a_class_holding_whitespace_is_refused():
    with pytest.raises(ValueError, match="whitespace"):
        WordFinder(r"[\w\u3000]", str.isalnum)
