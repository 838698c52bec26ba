"""generators.eif: IFEval-compatible constraint checkers, descriptions and sampling.

Every verdict below is what IFEval's own `check_following` gives for the same response and
kwargs (strict evaluation); the sentence and capital-word counts are what NLTK's Punkt English
tokenizer / `word_tokenize` give.
"""

from __future__ import annotations

import itertools
import random
import re

import pytest

from own_process import stdout_of
from generators import eif
from generators.eif import (CONFLICTS, CONSTRAINTS, EXTRA_CONFLICTS, count_capital_words, count_sentences,
                            count_words, describe, sample_constraints, split_sentences, to_ifeval, verify)


def c(cid: str, **kwargs) -> dict:
    return {"id": cid, "kwargs": kwargs}


# (constraint, responses it follows, responses it does not follow)
CASES = [
    (c("keywords:existence", keywords=["river", "bridge"]),
     ["The old bridge crosses the River Ouse.", "Riverside BRIDGES."],  # substring, any case
     ["The old bridge is closed."]),
    (c("keywords:frequency", keyword="data", frequency=3, relation="at least"),
     ["Data beats opinions; data is cheap; big data wins."],
     ["data, data."]),
    (c("keywords:frequency", keyword="data", frequency=2, relation="less than"),
     ["Some data here."],
     ["data and metadata"]),  # substring occurrences count: 2 is not < 2
    (c("keywords:forbidden_words", forbidden_words=["cat", "dog"]),
     ["A category of concatenated hotdogs."],  # whole words only
     ["My Dog sleeps.", "cat"]),
    (c("keywords:letter_frequency", letter="z", let_frequency=2, let_relation="less than"),
     ["A zebra."],
     ["Zig zag."]),
    (c("keywords:letter_frequency", letter="E", let_frequency=3, let_relation="at least"),
     ["eEe"],
     ["Ee"]),
    (c("language:response_language", language="es"),
     ["Hola, esta es una respuesta escrita completamente en español para la prueba."],
     ["This answer is written entirely in English for the test."]),
    (c("length_constraints:number_sentences", num_sentences=3, relation="less than"),
     ["Mr. Smith went to Washington. He arrived at 5 p.m. on a Monday."],  # 2 sentences
     ["One. Two. Three."]),
    (c("length_constraints:number_sentences", num_sentences=3, relation="at least"),
     ["First point? Second point! Third point."],
     ["Line one\nline two\nline three", "Really?! Yes."]),  # newlines never end a sentence
    (c("length_constraints:number_paragraphs", num_paragraphs=2),
     ["First paragraph.\n***\nSecond paragraph.", "***\nA\n***\nB\n***"],
     ["A\n***\n***\nB", "Just one paragraph.", "A\n***\nB\n***\nC"]),
    (c("length_constraints:number_words", num_words=5, relation="less than"),
     ["one two three four"],
     ["one two three four five"]),  # strict
    (c("length_constraints:number_words", num_words=6, relation="at least"),
     ["It's a well-known fact."],  # It, s, a, well, known, fact
     ["It is a known fact."]),
    (c("length_constraints:nth_paragraph_first_word", num_paragraphs=2, nth_paragraph=2, first_word="Finally"),
     ['Intro text.\n\n"Finally, the end."'],
     ["Intro.\n\nThen finally.", "Intro.\n\nFinally.\n\nExtra."]),
    (c("detectable_content:number_placeholders", num_placeholders=2),
     ["Dear [name], see you at [address]."],
     ["Dear [name]."]),
    (c("detectable_content:postscript", postscript_marker="P.S."),
     ["Main text.\n\nP.S. see you", "Main text.\np. s. lower case works"],
     ["Main text. PS see you"]),
    (c("detectable_content:postscript", postscript_marker="P.P.S"),
     ["Body\nP.P.S. one more thing"],
     ["Body\nP.S. one more thing"]),
    (c("detectable_format:number_bullet_lists", num_bullets=2),
     ["Intro\n* one\n- two", "**Bold** line\n* one\n* two"],
     ["* one\n* two\n* three", "1. one\n2. two"]),
    (c("detectable_format:constrained_response"),
     ["I thought about it. My answer is maybe."],
     ["My answer is probably yes."]),
    (c("detectable_format:number_highlighted_sections", num_highlights=2),
     ["*one* and **two**"],
     ["*one* only, ** ** empty", "*not\nclosed*"]),
    (c("detectable_format:multiple_sections", section_spliter="Section", num_sections=2),
     ["Section 1\nIntro\nSection 2\nMore"],
     ["SECTION 1\nA\nSECTION 2\nB", "Section 1\nOnly one"]),
    (c("detectable_format:json_format"),
     ['```json\n{"a": 1}\n```', '  ["x", 2]  ', "```\n{}\n```"],
     ['Here is JSON: {"a": 1}', "```json\n{'a': 1}\n```"]),
    (c("detectable_format:title"),
     ["<<My Title>>\nText"],
     ["<< >> no title", "<<a\nb>>", "<title>"]),
    (c("combination:two_responses"),
     ["Answer one.\n******\nAnswer two.", "******\nA\n******\nB\n******"],
     ["Same.\n******\nSame.", "A ****** ****** B", "A\n******\nB\n******\nC"]),
    (c("combination:repeat_prompt", prompt_to_repeat="Write a haiku about rain."),
     ["write a haiku about rain. Rain falls on the roof..."],
     ["Sure! Write a haiku about rain. Rain falls..."]),
    (c("startend:end_checker", end_phrase="Any other questions?"),
     ["Here it is. any other questions?", '"Here it is. Any other questions?"'],
     ["Any other questions? Thanks."]),
    (c("startend:quotation"),
     ['  "Hello there."  '],
     ['"Hello" there', '"', "\u201cHello\u201d"]),
    (c("change_case:capital_word_frequency", capital_frequency=3, capital_relation="at least"),
     ["I DON'T like NASA."],  # I, DO, N'T, NASA
     ["I like NASA's work."]),  # I, NASA ('s is split off)
    (c("change_case:capital_word_frequency", capital_frequency=2, capital_relation="less than"),
     ["The NASA report."],
     ["A WELL-KNOWN fact."]),
    (c("change_case:english_capital"),
     ["THIS IS A SIMPLE ANSWER WRITTEN IN ENGLISH FOR THE TEST."],
     ["This is a simple answer written in English for the test.",
      "ESTA ES UNA RESPUESTA ESCRITA COMPLETAMENTE EN ESPAÑOL PARA LA PRUEBA."]),
    (c("change_case:english_lowercase"),
     ["this is a simple answer written in english for the test."],
     ["this is a Simple answer written in english for the test.",
      "esta es una respuesta escrita completamente en español para la prueba."]),
    (c("punctuation:no_comma"),
     ["No commas here."],
     ["Well, no."]),
]


def test_every_constraint_id_has_cases():
    assert len(CONSTRAINTS) >= 25
    assert {case[0]["id"] for case in CASES} == set(CONSTRAINTS)


@pytest.mark.parametrize("constraint,follows,breaks", CASES, ids=[case[0]["id"] for case in CASES])
def test_verdicts(constraint, follows, breaks):
    for response in follows:
        assert verify(response, [constraint]) == [True], response
    for response in breaks:
        assert verify(response, [constraint]) == [False], response


# IFEval's own checks (instruction_following_eval/instructions.py), the definition that the one-pass
# checkers reproduce.
def ifeval_placeholders(r):
    return len(re.findall(r"\[.*?\]", r))


def ifeval_postscript(r, marker):
    if marker == "P.P.S":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif marker == "P.S.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + marker.lower() + r".*$"
    return bool(re.findall(pattern, r.lower(), flags=re.MULTILINE))


def ifeval_bullets(r):
    return len(re.findall(r"^\s*\*[^\*].*$", r, flags=re.MULTILINE)) + len(re.findall(r"^\s*-.*$", r, flags=re.MULTILINE))


def ifeval_title(r):
    return any(t.lstrip("<").rstrip(">").strip() for t in re.findall(r"<<[^\n]+>>", r))


def test_one_pass_checkers_give_ifevals_verdicts():
    # pieces for every branch: bullets after blank lines and at a line's end, doubled stars, unclosed
    # brackets, titles with nothing inside, markers split by spaces, and what `\s` and `.` count as space
    pieces = ["*", "**", "-", " ", "\n", "\t", "\r", "\x0b", "\x1c", "\x85", "\xa0", "\u2028", "[", "]", "<<", ">>",
              "<", ">", "a", "B", "p.", "P.", "s.", "S.", "P.S.", "p. s.", "P.P.S", "ps"]
    placeholders, postscript = CONSTRAINTS["detectable_content:number_placeholders"][0], CONSTRAINTS["detectable_content:postscript"][0]
    bullets, title = CONSTRAINTS["detectable_format:number_bullet_lists"][0], CONSTRAINTS["detectable_format:title"][0]
    rng = random.Random(11)
    for _ in range(20_000):
        r = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        found = ifeval_placeholders(r)
        assert (placeholders(r, num_placeholders=found), placeholders(r, num_placeholders=found + 1)) == (True, False), r
        found = ifeval_bullets(r)
        assert (bullets(r, num_bullets=found), bullets(r, num_bullets=found + 1)) == (True, False), r
        assert title(r) == ifeval_title(r), r
        for marker in ("P.S.", "P.P.S", "ps", "a|", "^\\s*b", "b$"):
            assert postscript(r, postscript_marker=marker) == ifeval_postscript(r, marker), (r, marker)


def test_a_postscript_marker_with_an_inline_flag_is_a_regex_like_any_other():
    # IFEval's pattern puts the flag after `\s*`, which Python 3.11 refuses (re.error, a crash mid-run)
    assert verify("Body\nPS: more", [c("detectable_content:postscript", postscript_marker="(?i)ps:")]) == [True]


def test_json_nested_past_the_recursion_limit_is_not_json():
    # json.loads raises RecursionError, which no generator turns into a drop: it ended the stage
    assert verify("[" * 100_000, [c("detectable_format:json_format")]) == [False]
    assert verify("[" * 500 + "]" * 500, [c("detectable_format:json_format")]) == [True]


def test_degenerate_megabyte_responses_are_checked_in_one_pass():
    # IFEval's regexes retry each run of spaces or unclosed brackets from every character: at 32,000
    # characters of `[` counting placeholders took 6.5 s, so a megabyte took hours.
    code = """
from generators.eif import verify
checks = [{"id": "detectable_content:number_placeholders", "kwargs": {"num_placeholders": 1}},
          {"id": "detectable_content:postscript", "kwargs": {"postscript_marker": "P.S."}},
          {"id": "detectable_content:postscript", "kwargs": {"postscript_marker": "P.P.S"}},
          {"id": "detectable_format:number_bullet_lists", "kwargs": {"num_bullets": 1}},
          {"id": "detectable_format:title", "kwargs": {}}]
for unit in ("[", "<", "\\n", " \\n", "\\t ", "x\\n\\n"):
    print(verify("ok " + unit * (1_000_000 // len(unit)), checks))
"""
    assert stdout_of(code) == "[False, False, False, False, False]\n" * 6


def test_verify_is_one_verdict_per_constraint_in_order():
    response = "<<Plan>>\nShort answer without commas"
    constraints = [c("detectable_format:title"), c("punctuation:no_comma"), c("detectable_format:json_format"),
                   c("length_constraints:number_words", num_words=3, relation="at least")]
    assert verify(response, constraints) == [True, True, False, True]
    assert verify(response, []) == []


def test_blank_response_follows_nothing():
    # IFEval's strict evaluation: `response.strip() and check_following(response)`
    constraints = [c("punctuation:no_comma"), c("keywords:forbidden_words", forbidden_words=["x"]),
                   c("length_constraints:number_words", num_words=5, relation="less than")]
    assert verify("  \n ", constraints) == [False, False, False]


def test_loose_mode_drops_first_or_last_line_and_asterisks():
    quoted = c("startend:quotation")
    response = 'Sure, here it is:\n"All wrapped."'
    assert verify(response, [quoted]) == [False]
    assert verify(response, [quoted], loose=True) == [True]
    assert verify("**My answer is yes.**", [c("detectable_format:json_format")], loose=True) == [False]


def test_hub_style_kwargs_with_nulls_are_accepted():
    # google/IFEval on the Hub stores every argument name in every kwargs dict, unused ones null
    row = {"id": "length_constraints:number_words",
           "kwargs": {"num_words": 3, "relation": "less than", "keywords": None, "num_sentences": None}}
    assert verify("two words", [row]) == [True]
    assert verify("two words", [{"id": "detectable_format:title", "kwargs": None}]) == [False]


@pytest.mark.parametrize("bad,needle", [
    ({"id": "keywords:no_such_thing", "kwargs": {}}, "keywords:no_such_thing"),
    ({"kwargs": {}}, "'id'"),
    (c("length_constraints:number_words", num_words=3), "relation"),  # missing
    (c("length_constraints:number_words", num_words=3, relation="at most"), "relation"),
    (c("length_constraints:number_words", num_words="3", relation="at least"), "num_words"),
    (c("length_constraints:number_words", num_words=-1, relation="at least"), "num_words"),
    (c("punctuation:no_comma", extra=1), "extra"),
    (c("keywords:existence", keywords="river"), "keywords"),  # a string, not a list
    (c("keywords:existence", keywords=["(unclosed"]), "regular expression"),
    (c("keywords:letter_frequency", letter="ab", let_frequency=1, let_relation="at least"), "letter"),
    (c("language:response_language", language="xx"), "language"),
    (c("length_constraints:nth_paragraph_first_word", num_paragraphs=2, nth_paragraph=3, first_word="a"),
     "nth_paragraph"),
    (c("combination:repeat_prompt"), "prompt_to_repeat"),
])
def test_bad_constraints_raise_value_error_naming_the_problem(bad, needle):
    with pytest.raises(ValueError, match=needle.replace("(", r"\(")):
        verify("anything", [bad])
    with pytest.raises(ValueError):
        describe(bad)


def test_unknown_id_names_the_id():
    with pytest.raises(ValueError, match="startend:nope"):
        verify("x", [c("punctuation:no_comma"), c("startend:nope")])


# --- counting: IFEval's tokenizations -----------------------------------------------------------

def test_count_words_is_word_character_runs():
    assert count_words("It's a well-known fact: 3.5 km/h!") == 10
    assert count_words("") == 0
    assert count_words("café naïve") == 2


@pytest.mark.parametrize("text,sentences", [
    # NLTK's own documentation example for sent_tokenize
    ("Good muffins cost $3.88\nin New York.  Please buy me\ntwo of them.\n\nThanks.",
     ["Good muffins cost $3.88\nin New York.", "Please buy me\ntwo of them.", "Thanks."]),
    ("Very bad acting!!! I promise.", ["Very bad acting!!!", "I promise."]),
    ("(Sent1.) Sent2.", ["(Sent1.)", "Sent2."]),
    ("Mr. Smith went to Washington. He said hi!", ["Mr. Smith went to Washington.", "He said hi!"]),
    ("I live in the U.S. It is big.", ["I live in the U.S.", "It is big."]),
    ("Wait... then what?", ["Wait... then what?"]),
    ("e.g. this one. And that.", ["e.g.", "this one.", "And that."]),  # e.g is not a model abbreviation
    ("1. First item\n2. Second item", ["1.", "First item\n2.", "Second item"]),
    ("A title\nno punctuation at all", ["A title\nno punctuation at all"]),
    ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
    ("Version 3.14 is out.Really", ["Version 3.14 is out.Really"]),
    ("", []),
    ("   ", []),
])
def test_sentences_follow_punkt_english(text, sentences):
    assert split_sentences(text) == sentences
    assert count_sentences(text) == len(sentences)


@pytest.mark.parametrize("text,count", [
    ("I DON'T like NASA.", 4),
    ("NASA's budget", 1),
    ("WELL-KNOWN (FACT) -- A: B", 4),
    ("I CANNOT go. GONNA try.", 5),  # I, CAN, NOT, GON, NA
    ("DON\u2019T", 2),  # the curly apostrophe is split off: DON, ’, T
    ("3.14 ... !!", 0),
    ("", 0),
])
def test_capital_words_follow_nltk_word_tokenize(text, count):
    assert count_capital_words(text) == count


# --- describe ------------------------------------------------------------------------------------

def _example(cid: str) -> dict:
    return next(case[0] for case in CASES if case[0]["id"] == cid)


def test_describe_english_is_ifeval_wording():
    assert describe(c("length_constraints:number_words", num_words=120, relation="less than")) == \
        "Answer with less than 120 words."
    assert describe(c("keywords:existence", keywords=["river", "bridge"])) == \
        "Include keywords ['bridge', 'river'] in the response."
    assert describe(c("detectable_format:title")) == \
        "Your answer must contain a title, wrapped in double angular brackets, such as <<poem of joy>>."
    assert describe(c("length_constraints:number_paragraphs", num_paragraphs=3)) == \
        "There should be 3 paragraphs. Paragraphs are separated with the markdown divider: ***"
    assert describe(c("startend:end_checker", end_phrase=" Any other questions? ")) == \
        "Finish your response with this exact phrase Any other questions?. No other words should follow this phrase."
    assert describe(c("detectable_format:number_bullet_lists", num_bullets=2)) == (
        "Your answer must contain exactly 2 bullet points. Use the markdown bullet points such as:\n"
        "* This is point 1. \n* This is point 2")


def test_describe_spanish_and_catalan():
    words = c("length_constraints:number_words", num_words=120, relation="less than")
    assert describe(words, "es") == "Responde con menos de 120 palabras."
    assert describe(words, "ca") == "Respon amb menys de 120 paraules."
    once = c("keywords:frequency", keyword="agua", frequency=1, relation="at least")
    assert describe(once, "es") == "En tu respuesta, la palabra «agua» debe aparecer al menos 1 vez."
    assert describe(once, "ca") == "A la teva resposta, la paraula «agua» ha d'aparèixer almenys 1 vegada."
    assert describe(c("punctuation:no_comma"), "ca") == "En tota la teva resposta, no facis servir cap coma."
    assert "***" in describe(c("length_constraints:number_paragraphs", num_paragraphs=3), "es")


@pytest.mark.parametrize("cid", sorted(CONSTRAINTS))
def test_describe_has_three_distinct_wordings_carrying_the_arguments(cid):
    constraint = _example(cid)
    texts = [describe(constraint, lang) for lang in ("en", "es", "ca")]
    assert len(set(texts)) == 3
    shown = []  # what every wording must restate: numbers, words, markers, phrases
    for name, value in constraint["kwargs"].items():
        if name in ("relation", "let_relation", "capital_relation", "prompt_to_repeat", "language"):
            continue  # relations are translated, the prompt is not restated, a language is named
        shown += value if isinstance(value, list) else [str(value).lower() if name == "first_word" else str(value)]
    for text in texts:
        for item in shown:
            assert str(item) in text, (item, text)


def test_describe_rejects_other_languages():
    with pytest.raises(ValueError, match="fr"):
        describe(c("punctuation:no_comma"), "fr")


# --- conflicts and sampling ----------------------------------------------------------------------

def test_conflict_table_mirrors_ifeval():
    for a, b in itertools.product(CONSTRAINTS, repeat=2):
        assert (b in CONFLICTS[a]) == (a in CONFLICTS[b])
    assert "change_case:english_lowercase" in CONFLICTS["change_case:english_capital"]
    assert "detectable_format:number_bullet_lists" in CONFLICTS["detectable_format:json_format"]
    assert "keywords:existence" not in CONFLICTS["detectable_format:json_format"]
    assert CONFLICTS["detectable_format:constrained_response"] == frozenset(CONSTRAINTS)
    assert "detectable_format:title" in CONFLICTS["startend:quotation"]
    assert "length_constraints:number_sentences" in CONFLICTS["length_constraints:number_paragraphs"]
    assert "punctuation:no_comma" not in CONFLICTS["combination:repeat_prompt"]


def test_sampling_is_deterministic_for_a_seed():
    for lang in ("en", "es", "ca"):
        first = sample_constraints(random.Random(7), 4, lang)
        assert first == sample_constraints(random.Random(7), 4, lang)
        assert len(first) == 4
    draws = {repr(sample_constraints(random.Random(seed), 3, "en")) for seed in range(20)}
    assert len(draws) > 15


@pytest.mark.parametrize("language", ["en", "es", "ca"])
def test_sampled_constraints_are_compatible_and_valid(language):
    seen = set()
    for seed in range(90):
        n = 1 + seed % 6
        prompt = "Escribe un poema sobre el mar." if seed % 3 == 0 else None
        picked = sample_constraints(random.Random(seed), n, language, prompt=prompt)
        assert len(picked) == n
        ids = [p["id"] for p in picked]
        seen.update(ids)
        assert len(set(ids)) == n
        for a, b in itertools.combinations(ids, 2):
            assert b not in CONFLICTS[a] and frozenset((a, b)) not in EXTRA_CONFLICTS, (a, b)
        assert "language:response_language" not in ids
        if language != "en":
            assert not set(ids) & {"change_case:english_capital", "change_case:english_lowercase",
                                   "detectable_format:constrained_response"}
        if prompt is None:
            assert "combination:repeat_prompt" not in ids
        words = [w for p in picked for key in ("keywords", "forbidden_words") for w in p["kwargs"].get(key, [])]
        words += [p["kwargs"][k] for p in picked for k in ("keyword", "first_word") if k in p["kwargs"]]
        assert len(words) == len(set(words))  # no word is both required and banned
        verify("A response.", picked)  # valid kwargs: does not raise
        for p in picked:
            assert describe(p, language)
    assert len(seen) >= 18


def test_sampling_rejects_bad_arguments():
    assert sample_constraints(random.Random(0), 0, "en") == []
    with pytest.raises(ValueError, match="fr"):
        sample_constraints(random.Random(0), 2, "fr")
    with pytest.raises(ValueError):
        sample_constraints(random.Random(0), -1, "en")
    with pytest.raises(ValueError, match="compatible"):
        sample_constraints(random.Random(0), 22, "en")


def test_to_ifeval_columns():
    constraints = [c("startend:end_checker", end_phrase=" Bye. "),
                   c("length_constraints:nth_paragraph_first_word", num_paragraphs=2, nth_paragraph=1,
                     first_word="Hello")]
    assert to_ifeval(constraints) == {
        "instruction_id_list": ["startend:end_checker", "length_constraints:nth_paragraph_first_word"],
        "kwargs": [{"end_phrase": "Bye."}, {"num_paragraphs": 2, "nth_paragraph": 1, "first_word": "hello"}],
    }


def test_module_is_a_library_not_a_generator():
    import generators

    assert "eif" not in generators.KNOWN_GENERATORS
    assert eif.__name__ == "generators.eif"


@pytest.mark.parametrize("constraint, answer", [
    ({"id": "keywords:existence", "kwargs": {"keywords": ["city", "engine"]}},
     "Electricity reaches homes through the grid. Engineering teams keep the network safe."),
    ({"id": "keywords:existence", "kwargs": {"keywords": ["ciencia", "cultura"]}},
     "La agricultura moderna exige conciencia ambiental y planificación."),
    ({"id": "keywords:frequency", "kwargs": {"keyword": "natura", "frequency": 2, "relation": "at least"}},
     "És natural que els boscos es regenerin de manera natural després d'un incendi."),
    ({"id": "keywords:frequency", "kwargs": {"keyword": "agua", "frequency": 2, "relation": "at least"}},
     "Hay que aguantar el agua del verano en Nicaragua."),
])
def test_a_generated_answer_holds_a_keyword_as_a_word_not_inside_another(constraint, answer):
    """IFEval finds "city" in "electricity": eif_augmentation kept rows that never use the word asked for."""
    from generators.eif_augmentation import _failed

    assert eif.verify(answer, [constraint]) == [True]  # IFEval's verdict, unchanged
    assert eif.verify(answer, [constraint], whole_words=True) == [False]
    assert _failed(answer, [constraint]) == [constraint]
    word = (constraint["kwargs"].get("keywords") or [constraint["kwargs"]["keyword"]])[0]
    fixed = f"{answer} {word.capitalize()}, {word}; {' '.join(constraint['kwargs'].get('keywords', []))}."
    assert eif.verify(fixed, [constraint], whole_words=True) == [True] and _failed(fixed, [constraint]) == []
    # "less than" is IFEval's check alone: whole words are never more
    fewer = {"id": "keywords:frequency", "kwargs": {"keyword": word, "frequency": 2, "relation": "less than"}}
    assert eif.verify(answer, [fewer], whole_words=True) == eif.verify(answer, [fewer])


def test_a_keyword_s_plural_is_the_word_asked_for():
    """Held to whole words alone, "Both problems come from the same values" missed ["problem", "value"]."""
    both = {"id": "keywords:existence", "kwargs": {"keywords": ["problem", "value"]}}
    assert eif.verify("Both problems come from the same values.", [both], whole_words=True) == [True]
    cities = {"id": "keywords:existence", "kwargs": {"keywords": ["ciudad", "proyecto"]}}
    assert eif.verify("Las ciudades crecen con proyectos nuevos.", [cities], whole_words=True) == [True]
    rivers = {"id": "keywords:frequency", "kwargs": {"keyword": "river", "frequency": 2, "relation": "at least"}}
    assert eif.verify("Two rivers meet here; the river is wide.", [rivers], whole_words=True) == [True]
    assert eif.verify("The riverside walk is by the river.", [rivers], whole_words=True) == [False]


@pytest.mark.parametrize("language, word, answer", [
    ("en", "river", "Rivers carry sediment from the mountains to the sea."),
    ("es", "ciudad", "Las ciudades costeras tienen un clima más suave."),
    ("ca", "ciutat", "Les ciutats mediterrànies tenen un clima suau."),
])
def test_a_forbidden_word_s_plural_breaks_the_ban(language, word, answer):
    """Only existence and frequency took the plural as the word: an answer with "ciudades" met
    keywords:existence for «ciudad» and passed a ban on it too, so eif_augmentation kept a row
    that breaks the instruction in its own user turn."""
    from generators.eif_augmentation import _failed

    ban = c("keywords:forbidden_words", forbidden_words=[word, "zzz"])
    assert word in describe(ban, language)
    assert eif.verify(answer, [ban]) == [True]  # IFEval's verdict (\b word\b), unchanged
    assert eif.verify(answer, [ban], whole_words=True) == [False] and _failed(answer, [ban]) == [ban]
    assert eif.verify(answer, [c("keywords:existence", keywords=[word])], whole_words=True) == [True]
    # a request to repeat verbatim that holds the plural cannot be drawn with the ban
    assert not eif._coherent([ban, c("combination:repeat_prompt", prompt_to_repeat=answer)])
    assert eif._coherent([ban, c("combination:repeat_prompt", prompt_to_repeat="Hola.")])


def test_a_forbidden_word_inside_another_word_is_still_not_the_word():
    ban = c("keywords:forbidden_words", forbidden_words=["cat", "dog"])
    assert eif.verify("A category of concatenated hotdogs.", [ban], whole_words=True) == [True]


# Each sampler word's plural, in _KEYWORDS order.
PLURALS = {
    "en": """balances bridges cities communities cultures energies engines families futures gardens histories
             journeys landscapes languages markets memories mountains musics natures opportunities problems
             projects qualities rivers sciences seasons strategies systems traditions values villages waters
             windows""".split(),
    "es": """aguas calidades caminos ciencias ciudades comunidades culturas energías equilibrios equipos
             estrategias familias futuros historias jardines lenguajes libros memorias mercados montañas
             músicas naturalezas oportunidades paisajes problemas proyectos puentes tradiciones valores
             ventanas viajes""".split(),
    "ca": """aigües camins ciutats ciències comunitats cultures energies equilibris equips estratègies
             famílies finestres futurs històries jardins llenguatges llibres memòries mercats muntanyes
             músiques natures oportunitats paisatges ponts problemes projectes qualitats tradicions valors
             viatges""".split(),
}


@pytest.mark.parametrize("language", sorted(PLURALS))
def test_every_sampler_word_s_plural_is_the_word(language):
    """Only word + s/es was the plural: "Cities grow fast" passed a ban on "city" (and «tradiciones»
    one on «tradición», «cultures» one on «cultura»), so eif_augmentation kept rows breaking it."""
    from generators.eif_augmentation import _failed

    for word, plural in zip(eif._KEYWORDS[language], PLURALS[language], strict=True):
        answer = f"{plural.capitalize()} change; {plural} last."
        ban = c("keywords:forbidden_words", forbidden_words=[word, "zzz"])
        assert eif.verify(answer, [ban]) == [True], word  # IFEval's verdict (\b word\b), unchanged
        assert eif.verify(answer, [ban], whole_words=True) == [False] and _failed(answer, [ban]) == [ban], word
        assert not eif._coherent([ban, c("combination:repeat_prompt", prompt_to_repeat=answer)]), word
        twice = c("keywords:frequency", keyword=word, frequency=2, relation="less than")
        assert eif.verify(answer, [twice], whole_words=True) == [False], word
        # no other word of the vocabulary takes this plural as its own
        others = [w for w in eif._KEYWORDS[language] if w != word]
        assert eif.verify(answer, [c("keywords:forbidden_words", forbidden_words=others)], whole_words=True) == [True]
    ban = c("keywords:forbidden_words", forbidden_words=["cat", "city"])
    assert eif.verify("A category of electricity.", [ban], whole_words=True) == [True]
