"""`json.loads` and `json.JSONEncoder.encode`, through json's C scanner and encoder alone.

`json.loads(text)` checks for a byte-order mark, skips whitespace with a regex and calls two Python
methods before json's C scanner runs: on the bench's Toucan tool arguments that is 2.6 µs a call,
against 1.1 µs for the scanner. `loads` calls the scanner first and returns its value when nothing
but JSON whitespace follows it; any other text (leading whitespace, a mark, extra data, an error
where a value should start) goes to `json.loads` (or to the given decoder's `decode`), so every
value and every error is json's own; but two errors that are not a `JSONDecodeError`, and would end
a whole stage on one row, are made one: text nested past the recursion limit (a RecursionError) and
an integer longer than Python's limit on its digits, 4,300 (a bare ValueError).

`JSONEncoder.encode` makes a new C encoder on every call: `encoder` makes it once. On a tool call's
arguments that took a `dumps` from 1.8 to 0.7 µs.
"""

from __future__ import annotations

import json
import math
from json.encoder import c_make_encoder
from typing import Any, Callable

JSON_SPACE = " \t\n\r"  # what json skips between tokens
# What a text json's decoder raises RecursionError on is (past Python's recursion limit, some 1,000
# levels): the one meaning of "too deep" for every JSON a row is read from
NESTED_TOO_DEEPLY = "nested too deeply to decode"
_DEFAULT_DECODER = json.JSONDecoder()


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: valid JSON text, but no encoder writes the inf it becomes
        raise ValueError(f"{text} is out of a float's range")
    return value


# JSON only: json.loads would also accept NaN, Infinity and -Infinity, which no other parser does,
# and read 1e400 as inf, which `dumps` then refuses (a published row no renderer could write).
STRICT_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def too_long_integer(error: ValueError) -> str | None:
    """What is wrong when `error` is json's decoder refusing an integer of more digits than
    `sys.get_int_max_str_digits()` (Python says so only in its message), else None."""
    if isinstance(error, json.JSONDecodeError) or "integer string conversion" not in str(error):
        return None
    return str(error).partition(";")[0]  # without its advice to raise the limit


def loads(text: str, decoder: json.JSONDecoder = _DEFAULT_DECODER) -> Any:
    """`json.loads(text)`, or `decoder.decode(text)` for another decoder (e.g. one that refuses NaN).
    Text nested deeper than Python's recursion limit is a `JSONDecodeError` (json raises
    RecursionError, which would end a whole stage on one row), as orjson refuses depth over 1,024;
    so is an integer past Python's limit on its digits (json raises a bare ValueError)."""
    try:
        if type(text) is str:
            try:
                # the scanner `decode` itself runs (through `raw_decode`), on the same decoder's settings
                value, end = decoder.scan_once(text, 0)
            except StopIteration:  # no value starts at 0: the full path gives json's own error
                pass
            else:
                if end == len(text) or not text[end:].strip(JSON_SPACE):
                    return value
        return json.loads(text) if decoder is _DEFAULT_DECODER else decoder.decode(text)
    except RecursionError:
        raise json.JSONDecodeError(NESTED_TOO_DEEPLY, text if isinstance(text, str) else "", 0) from None
    except ValueError as error:
        if (problem := too_long_integer(error)) is None:  # json's own error, or the decoder's hooks' (NaN refused)
            raise
        raise json.JSONDecodeError(problem, text if isinstance(text, str) else "", 0) from None


def encoder(**options) -> Callable[[Any], str]:
    """`json.JSONEncoder(**options).encode`, with json's C encoder made once. It does not check
    for circular references (a cycle raises RecursionError, not ValueError): values here are JSON
    decoded or built from it, which cannot hold one."""
    python = json.JSONEncoder(**options)
    if c_make_encoder is None or python.indent is not None:  # a Python without _json; indent is Python-only
        return python.encode
    strings = json.encoder.encode_basestring_ascii if python.ensure_ascii else json.encoder.encode_basestring
    c_encode = c_make_encoder(None, python.default, strings, None, python.key_separator, python.item_separator,
                              python.sort_keys, python.skipkeys, python.allow_nan)

    def encode(value: Any) -> str:
        return "".join(c_encode(value, 0))

    return encode
