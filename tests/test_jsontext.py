"""`sftmix.jsontext.loads` gives what `json.loads` (or a decoder's `decode`) gives: the same value, or
the same error with the same message and position, except for text nested too deeply and an integer
longer than Python reads, which are JSONDecodeErrors where json raises RecursionError and a bare
ValueError; `encoder(**options)` encodes as
`json.JSONEncoder(**options).encode` does."""

from __future__ import annotations

import json
import math
import random

import pytest

from sftmix.jsontext import STRICT_DECODER, encoder, loads

PIECES = ['{', '}', '[', ']', ',', ':', '"a"', '"k"', '"\\u00e9"', '"\\ud83d\\ude00"', '"\\ud800"', '"\\x"', '"tab\t"',
          '1', '-0', '1.5e3', '1e400', '12345678901234567890123', 'NaN', '-Infinity', 'true', 'null', 'nul', ' ',
          '\n', '\t', '\r', '\x0b', '\ufeff', 'é', '"', '\\', '0x1', '01']
VALID = ['{"a": 1}', '[1, 2.5, "x", null, true]', '{"a": {"b": [{"c": "}, {"}]}}', '"text"', '42', 'NaN',
         ' {"a": 1}', '{"a": 1}\n', '{"a": 1} \t\r\n', '{"a": 1, "a": 2}', '{"k": "\\ud800"}', '1e400', '[]']
INVALID = ['', ' ', '\ufeff{"a": 1}', '{"a": 1} x', '{"a": 1}\x0b', '{"a": 1,}', "{'a': 1}", '{"a": 1', '[1, 2',
           '{"a": NaN', '"unterminated', '{"a":\n\x01}', 'nul']


def outcome(decode, text):
    try:
        value = decode(text)
    except ValueError as error:  # JSONDecodeError, or a decoder hook's refusal
        return "error", type(error).__name__, str(error)
    return "value", json.dumps(value, allow_nan=True), type(value).__name__


def random_texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    texts = ["".join(rng.choice(PIECES) for _ in range(rng.randint(1, 12))) for _ in range(count)]
    # well-formed values with noise around them, so the value path is taken often
    texts += [rng.choice(["", " ", "\n", "\ufeff"]) + json.dumps(json.loads(rng.choice(VALID[:6]))) +
              rng.choice(["", " ", "\n", " \t", "x", "\x0b", ",", "}"]) for _ in range(count // 4)]
    return texts


@pytest.mark.parametrize("text", VALID + INVALID)
def test_known_texts_decode_as_json_loads_does(text):
    assert outcome(loads, text) == outcome(json.loads, text)


def test_random_texts_decode_as_json_loads_does():
    texts = random_texts(20_000, seed=11)
    outcomes = [outcome(json.loads, text) for text in texts]
    assert sum(kind == "value" for kind, *_ in outcomes) > 2_000  # both paths are exercised
    assert [outcome(loads, text) for text in texts] == outcomes


def test_another_decoder_is_used_for_values_and_errors():
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    decoder = json.JSONDecoder(parse_constant=refuse, parse_float=lambda s: round(float(s), 1))
    texts = random_texts(5_000, seed=12) + ['{"x": NaN}', '[1.25]', ' [1.25] ']
    assert [outcome(lambda t: loads(t, decoder), text) for text in texts] == [outcome(decoder.decode, text) for text in texts]
    assert loads("[1.25]", decoder) == [1.2] and math.isnan(loads("NaN"))


DEEP = "[" * 5_000 + "]" * 5_000


@pytest.mark.parametrize("text, decoder", [
    ("[" * 100_000 + "]" * 100_000, None), ('{"a": ' * 5_000 + "1" + "}" * 5_000, None),
    (f' [{{"a": {DEEP}}}] ', None), (DEEP.encode(), None), (DEEP, STRICT_DECODER), (f" {DEEP}", STRICT_DECODER),
], ids=["arrays", "objects", "in-whitespace", "bytes", "strict", "strict-in-whitespace"])
def test_text_nested_too_deeply_is_a_decode_error_not_a_recursion_error(text, decoder):
    with pytest.raises(RecursionError):
        json.loads(text)  # what callers would meet, where they handle ValueError as bad JSON
    with pytest.raises(json.JSONDecodeError, match="^nested too deeply to decode"):
        loads(text) if decoder is None else loads(text, decoder)


LONG = "7" * 5_000  # past Python's 4,300-digit limit on reading an integer


@pytest.mark.parametrize("text, decoder", [
    (LONG, None), (f'{{"n": -{LONG}}}', None), (f' [1, {LONG}] ', None), (f'{{"n": {LONG}}}'.encode(), None),
    (f'{{"n": {LONG}}}', STRICT_DECODER), (f'{{"n": {LONG}}}\n', STRICT_DECODER),
], ids=["bare", "in-object", "in-whitespace", "bytes", "strict", "strict-in-whitespace"])
def test_an_integer_past_python_s_digit_limit_is_a_decode_error_not_a_bare_value_error(text, decoder):
    """json.loads raised a bare ValueError, which callers catching JSONDecodeError (a JSON Lines line,
    a source's JSON column) let through: one row stopped the whole stage."""
    with pytest.raises(ValueError, match="integer string conversion") as raised:
        json.loads(text)
    assert type(raised.value) is ValueError
    with pytest.raises(json.JSONDecodeError, match=r"^Exceeds the limit \(4300 digits\) for integer string "
                       r"conversion: value has 5000 digits: line 1 column 1 \(char 0\)$"):
        loads(text) if decoder is None else loads(text, decoder)
    assert loads(LONG[:4_300]) == int(LONG[:4_300])
    for refused in ("NaN", f"1{'0' * 400}.0"):  # the strict decoder's own refusals stay bare ValueErrors
        with pytest.raises(ValueError) as raised:
            loads(refused, STRICT_DECODER)
        assert type(raised.value) is ValueError


def test_non_str_input_is_json_loads_own():
    assert loads(b'{"a": 1}') == {"a": 1}
    with pytest.raises(TypeError):
        loads(None)


ENCODER_OPTIONS = [dict(ensure_ascii=False, separators=(", ", ": ")), dict(ensure_ascii=False, sort_keys=True, separators=(",", ":")),
                   dict(), dict(allow_nan=False), dict(skipkeys=True, sort_keys=True)]
SCALARS = ["", "é", "日本", "\ud800", "\ud83d\ude00", "tab\t\"q\"\\", "\x00\x1f\x7f", 0, -1, 10**30, 1.5, -0.0, 1e-05,
           1e300, float("nan"), float("inf"), -float("inf"), True, False, None]


def random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(4 if depth < 3 else 1)
    if kind == 0:
        return rng.choice(SCALARS)
    if kind == 1:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["a", "b", "é", "", "z", 1, 2.5, True, None]
    if rng.random() < 0.05:
        keys.append(("not", "a key"))  # refused unless skipkeys
    return {rng.choice(keys): random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def encoding(encode, value):
    try:
        return "text", encode(value)
    except (TypeError, ValueError) as error:
        return "error", type(error).__name__, str(error)


@pytest.mark.parametrize("options", ENCODER_OPTIONS)
def test_encoder_encodes_as_json_does(options):
    rng = random.Random(13)
    values = [random_value(rng) for _ in range(3_000)] + SCALARS + [{"o": object()}, [1, {2, 3}]]
    expected = [encoding(json.JSONEncoder(**options).encode, value) for value in values]
    assert sum(kind == "error" for kind, *_ in expected) >= 2  # refusals are compared too
    assert [encoding(encoder(**options), value) for value in values] == expected


def test_encoder_with_indent_is_json_own():
    assert encoder(indent=2)({"a": [1]}) == json.dumps({"a": [1]}, indent=2)
