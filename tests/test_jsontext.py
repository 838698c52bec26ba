"""`sftmix.jsontext.loads` gives what `json.loads` (or a decoder's `decode`) gives: the same value, or
the same error with the same message and position."""

from __future__ import annotations

import json
import math
import random

import pytest

from sftmix.jsontext import loads

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


def test_non_str_input_is_json_loads_own():
    assert loads(b'{"a": 1}') == {"a": 1}
    with pytest.raises(TypeError):
        loads(None)
