import random
import re

import pytest

from filters.words import WordFinder

# The filters' word classes, and the regexes they used before WordFinder.
CLASSES = {r"\w": r"\w+", r"[^\W\d_]": r"[^\W\d_]+", r"[^\W_]": r"[^\W_]+"}


@pytest.mark.parametrize("word_class", CLASSES)
def test_words_are_the_regex_findall_words(word_class):
    reference = re.compile(CLASSES[word_class])
    finder = WordFinder(word_class)
    rng = random.Random(3)
    alphabet = [chr(c) for c in range(128)] + list("abc xyz 42 __ ,.") * 8
    non_ascii = ["é", "ñ", "ç", "\u00a0", "\u2014", "١", "\u3000", "ß"]
    ascii_texts = 0
    for k in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        if k % 3 == 0:
            text = text[: len(text) // 2] + rng.choice(non_ascii) + text[len(text) // 2:]
        ascii_texts += text.isascii()
        assert finder.findall(text) == reference.findall(text), repr(text)
    assert ascii_texts > 1500  # both paths are compared


def test_a_class_holding_whitespace_is_refused():
    with pytest.raises(ValueError, match="whitespace"):
        WordFinder(r"[\w ]")
