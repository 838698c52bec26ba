import random
from collections import Counter

from datatrove.pipeline.filters.gopher_repetition_filter import find_top_duplicate, get_n_grams

from filters.ngram_bounds import NgramBounds
from filters.repetition import _WORDS

TOP_SIZES = {2, 3, 4}
DUPLICATED_SIZES = {5, 6, 8, 10}


def duplicated_chars(words: list[str], n: int) -> int:
    """datatrove's `find_all_duplicate`, comparing n-grams as words (see filters/repetition.py)."""
    seen, chars, i = set(), 0, 0
    while i < len(words) - n + 1:
        gram = tuple(words[i:i + n])
        if gram in seen:
            chars += sum(map(len, gram))
            i += n
        else:
            seen.add(gram)
            i += 1
    return chars


def texts(seed: int, count: int) -> list[str]:
    """Plain, looped and passage-repeating texts, some with accented and CJK words and punctuation."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(300)] + ["ñandú", "café", "日本語", "straße", "x" * 14]
    out = []
    for k in range(count):
        words = [rng.choice(vocab[: rng.randint(20, len(vocab))]) for _ in range(rng.randint(0, 160))]
        for _ in range(rng.choice((0, 1, 3, 8))):
            passage = [rng.choice(vocab) for _ in range(rng.randint(2, 12))]
            at = rng.randint(0, len(words))
            words[at:at] = passage * rng.randint(1, 3)
        out.append(rng.choice((" ", ", ", " - ", "\n")).join(words))
    return out


def test_bounds_are_at_least_datatrove_s_figures_for_every_text_of_a_batch():
    batch = texts(1, 400)
    bounds = NgramBounds([_WORDS.word_bytes(text) for text in batch])
    top, duplicated = bounds.top_ngram_chars(TOP_SIZES), bounds.duplicated_ngram_chars(DUPLICATED_SIZES)
    for i, text in enumerate(batch):
        words = _WORDS.findall(text)
        assert bounds.words[i] == len(words)
        for n in TOP_SIZES:
            grams = get_n_grams(words, n)
            exact = find_top_duplicate(grams) if grams else 0
            assert top[n][i] >= exact, (n, text)
        # the smallest size is counted, not bounded: the highest count times characters of any 2-gram
        assert top[2][i] == max((count * len(gram) for gram, count in Counter(get_n_grams(words, 2)).items()),
                                default=0), text
        for n in DUPLICATED_SIZES:
            assert duplicated[n][i] >= duplicated_chars(words, n), (n, text)


def test_a_text_s_bounds_do_not_depend_on_the_rest_of_its_batch():
    batch = texts(2, 60)
    alone = [NgramBounds([_WORDS.word_bytes(text)]) for text in batch[:20]]
    together = NgramBounds([_WORDS.word_bytes(text) for text in batch * 3])  # each text three times
    top, duplicated = together.top_ngram_chars(TOP_SIZES), together.duplicated_ngram_chars(DUPLICATED_SIZES)
    for i, single in enumerate(alone):
        single_top, single_duplicated = single.top_ngram_chars(TOP_SIZES), single.duplicated_ngram_chars(DUPLICATED_SIZES)
        for copy in (i, i + 60, i + 120):
            assert {n: top[n][copy] for n in TOP_SIZES} == {n: single_top[n][0] for n in TOP_SIZES}
            assert {n: duplicated[n][copy] for n in DUPLICATED_SIZES} == {
                n: single_duplicated[n][0] for n in DUPLICATED_SIZES}


def test_characters_not_bytes_are_counted():
    # "ñá éí" is 5 characters and 9 bytes: repeated 7 times, the top 2-gram figure is 7 * 5
    bounds = NgramBounds([_WORDS.word_bytes(" ".join(["ñá éí"] * 7))])
    assert bounds.top_ngram_chars({2})[2][0] == 35
    assert bounds.words[0] == 14


def test_texts_with_no_words_or_fewer_than_n():
    bounds = NgramBounds([b"", b"  ", b"one", b"one two three four five six seven"])
    assert bounds.words.tolist() == [0, 0, 1, 7]
    assert bounds.top_ngram_chars({2})[2].tolist() == [0, 0, 0, 10]  # every 2-gram once: "three four"
    assert bounds.duplicated_ngram_chars({5})[5].tolist() == [0, 0, 0, 0]
