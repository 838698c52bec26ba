import json
import random

import pytest

from sftmix.jsonarray import MAX_FALSE_SPLITS, NOT_AN_OBJECT, decode_items, decode_object

ANY_OF = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
    "x": {"anyOf": [{"type": "string"}, {"type": "null"}]}}}}}
IN_STRING = {"name": "g", "description": 'returns [{"a": 1}, {"b": 2}] or "}, {" ünïcode'}


def item_texts(text):
    return decode_items(text, lambda piece: piece if decode_object(piece) is not NOT_AN_OBJECT else NOT_AN_OBJECT)


@pytest.mark.parametrize("items", [[{}], [{}, {}], [ANY_OF], [IN_STRING, ANY_OF, IN_STRING], [{"a": [{"b": {}}, {"c": "}, {"}]}]])
@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_items_are_found_past_separators_inside_strings_and_nested_values(items, ensure_ascii):
    text = json.dumps(items, ensure_ascii=ensure_ascii)
    assert decode_items(text, decode_object) == items
    assert item_texts(text) == [json.dumps(item, ensure_ascii=ensure_ascii) for item in items]


@pytest.mark.parametrize("text", [
    json.dumps([{"a": 1}, {"b": 2}], separators=(",", ":")), json.dumps([{"a": 1}, {"b": 2}], indent=2),
    "[]", '[{"a": 1}, {"b": ', '[{"a": 1}, {"b": 2}] x', '[{"a": 1}, {"b": 2}], [{"c": 3}]', '\x0b[{"a": 1}]',
    '[{"a": 1}, {"b": 2}, 3]', '[{"a": 1}, {"b": 2} ]', '{"a": [{"b": 1}, {"c": 2}]}', '[{"a": 1}, {"b": x}]'])
def test_other_layouts_and_malformed_text_are_left_to_the_caller(text):
    assert decode_items(text, decode_object) is None


def test_json_whitespace_around_the_array_is_allowed():
    assert decode_items(' \r\n\t[{"a": 1}, {"b": "}, {"}]\n', decode_object) == [{"a": 1}, {"b": "}, {"}]


def test_too_many_separators_inside_one_item_are_left_to_the_caller():
    def decoded(times):
        return decode_items(json.dumps([{"a": 1}, {"text": "}, {" * times}]), decode_object)

    assert decoded(MAX_FALSE_SPLITS) == [{"a": 1}, {"text": "}, {" * MAX_FALSE_SPLITS}]
    assert decoded(MAX_FALSE_SPLITS + 1) is None


def random_value(rng, depth=0):
    kind = rng.randrange(6 if depth < 3 else 3)
    if kind == 0:
        return "".join(rng.choice(['}', '{', ',', ' ', '"', '\\', '[', ']', ':', 'a', 'é', '\n']) for _ in range(rng.randrange(8)))
    if kind == 1:
        return rng.choice([0, -1.5, 1e100, True, None])
    if kind == 2:
        return rng.randrange(10**6)
    if kind == 3:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {random_value(rng, 3) if rng.random() < 0.5 else "k": random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def test_whenever_items_are_given_they_are_the_arrays_items():
    # Random arrays of objects full of separators, and broken copies of them: decode_items gives
    # exactly json.loads's items, or leaves the text to the caller.
    rng = random.Random(5)
    found = 0
    for _ in range(4000):
        items = [{"k": random_value(rng), "v": random_value(rng)} for _ in range(rng.randrange(1, 4))]
        text = json.dumps(items, ensure_ascii=rng.random() < 0.5)
        if rng.random() < 0.5:
            cut = rng.randrange(len(text))
            text = text[:cut] + rng.choice(["", "}", "{", '"', "}, {", ","]) + text[cut + rng.randrange(3):]
        try:
            expected = json.loads(text)
        except json.JSONDecodeError:
            expected = None
        result = decode_items(text, decode_object)
        assert result is None or result == expected
        found += result is not None
    assert found > 2000
