"""The literal screen may only rule out texts its regex cannot match."""

import random
import re

import pytest

from filters.boilerplate import BoilerplateFilter
from filters.identity import IdentityFilter
from filters.literals import LiteralScreen, required_literals


@pytest.mark.parametrize("pattern, literals", [
    ("as an ai(?: language)? model", {"as an ai"}),  # the longer of the two runs every match holds
    ("gpt-4o?", {"gpt-4"}),  # an optional character is not part of the run
    ("a|b\\d", {"a", "b"}),  # one from each branch
    ("[a-z]+ help", {" help"}),
    ("(?:foo)?bar", {"bar"}),
    ("(?:ab)+c", {"ab"}),  # a repeat taken at least once
    ("a{0,3}b", {"b"}),
    ("ab\\bcd", {"abcd"}),  # a boundary consumes nothing
    ("(?=abc)x", {"x"}),  # nor does a lookahead, whose text may lie outside the match
    ("x(?i:abc)", {"x"}),  # a case-insensitive group is not a literal
    ("\\w+", None),
    ("(?i)abc", None),
    ("abc|d?", None),  # a branch that holds no literal
])
def test_required_literals(pattern, literals):
    assert required_literals(pattern) == (None if literals is None else frozenset(literals))


FRAGMENTS = ("a", "b", "ab", "ba", " ", "a?", "(?:ab)?", "(?:a|ba)", "(?:b|)", "[ab]", "a+", "b*?", "(?:ab){0,2}",
             "(?:ba){1,2}", "\\b", "(?=a)", "(?!b)", "(?<=a)", "[^a]", ".", "(?i:a)", "(a)\\1", "(?>ab|a)", "b++")


def random_pattern(rng: random.Random) -> str:
    pattern = "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 5)))
    if rng.random() < 0.3:
        pattern += "|" + "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 4)))
    return pattern


def test_every_match_holds_a_required_literal():
    # Random patterns over a small alphabet, and texts over it: every match found must hold one of
    # the literals named, or the screen would rule out a text the regex matches.
    rng = random.Random(5)
    named = matched = 0
    for _ in range(3000):
        pattern = random_pattern(rng)
        literals = required_literals(pattern)
        if literals is None:
            continue
        named += 1
        regex = re.compile(pattern)
        for _ in range(40):
            text = "".join(rng.choice("ab -A") for _ in range(rng.randint(0, 14)))
            for match in regex.finditer(text):
                matched += 1
                assert any(literal in match[0] for literal in literals), (pattern, text, match, literals)
    assert named > 1500 and matched > 20000, (named, matched)


def test_screen_rules_out_only_texts_without_a_literal():
    screen = LiteralScreen([frozenset({"gpt", "meta ai"}), frozenset({"claude"})])
    assert screen.may_match("i am chatgpt") and screen.may_match("by meta ai.") and screen.may_match("claude")
    assert not screen.may_match("i am a meta-analysis") and not screen.may_match("")
    assert LiteralScreen([frozenset({"x"}), None]).may_match("anything")  # a pattern without literals: no screen


IDENTITY_PIECES = ("I am", "I'm", "my name is", "soy", "sóc", "I was", "trained by", "developed by", "desarrollado por",
                   "ChatGPT", "GPT-4o", "GPT-3.5", "LLaMA 3", "Llama2", "OpenAI", "Meta AI", "Google DeepMind", "xAI",
                   "ALIA", "Barcelona Supercomputing Center", "a", "an", "un modelo", "helpful assistant", "model",
                   "knowledge cutoff", "knowledge cut-off", "as of my last update", "metadata", "made", ".", "\n", ",")
BOILERPLATE_PIECES = ("As an AI", "language", "model", "I'm", "I am", "just", "an AI", "and", "so", "I", "cannot",
                      "can't", "do not", "sorry,", "but", "assist", "help", "with", "this", "that", "request",
                      "unable to", "como", "modelo de lenguaje", "lo siento,", "pero no puedo", "ayudar", "com a",
                      "model de llenguatge", "hizkuntza-eredu", "gisa", "the weather is fine")


def random_texts(pieces, seed: int, count: int = 3000) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(pieces) for _ in range(rng.randint(2, 12))) for _ in range(count)]


def test_identity_verdicts_are_the_regexes():
    rule = IdentityFilter(name="ALIA", developer="Barcelona Supercomputing Center")
    verdicts, screened = set(), 0
    for i, text in enumerate(random_texts(IDENTITY_PIECES, 3)):
        lowered, language = text.lower(), ("en", "pt")[i % 2]
        expected = ("identity_leak" if rule.claims_another_identity(text, language)
                    else "knowledge_cutoff" if rule.cutoff.search(lowered) else None)
        record = {"messages": [{"role": "assistant", "content": text}], "language": language}
        assert rule.check(record, None) == expected, text
        verdicts.add(expected)
        screened += not rule.screen.may_match(lowered)
    assert verdicts == {"identity_leak", "knowledge_cutoff", None}
    assert screened > 100, screened


@pytest.mark.parametrize("extra_phrases, screened", [(None, True), ([r"[a-z]+ to help!"], True), ([r"\w+[!?]{3}"], False)])
def test_boilerplate_verdicts_are_the_regex_s(extra_phrases, screened):
    rule = BoilerplateFilter(extra_phrases=extra_phrases)
    assert (rule.screen.automaton is not None) == screened  # a phrase without a literal turns the screen off
    verdicts = set()
    for text in random_texts(BOILERPLATE_PIECES + ("happy to help!", "wow!!!"), 4):
        expected = "boilerplate" if rule.pattern.search(text.lower()) else None
        assert rule.check({"messages": [{"role": "assistant", "content": text}]}, None) == expected, text
        verdicts.add(expected)
    assert verdicts == {"boilerplate", None}
