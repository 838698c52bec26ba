"""Tools columns (`tools_column`): decoded item by item (`cached_tools`) as by the whole list, and their shapes."""

import json

import pytest

from sftmix.record import EncodedTool, dumps, make_record
from sftmix.sources import openai_messages, sharegpt, toucan, xlam
from sftmix.sources.base import MALFORMED_ROW_ERRORS, Drop
from sftmix.sources.common import cached_tools, loads_json, tools_column

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": 'e.g. [{"city": "Vigo"}, {"city": "Reus"}]',
                                            "parameters": {"type": "object", "properties": {"city": {"anyOf": [
                                                {"type": "string"}, {"type": "null"}]}}, "required": ["city"]}}}
FLAT = {"name": "get_time", "description": "now", "parameters": {"zone": {"type": "str, optional", "description": "tz"}}}
NAMELESS = {"type": "function", "function": {"description": "no name"}}
BAD_PARAMETERS = {"name": "f", "parameters": "None"}
CONVERTERS = [toucan._tool, xlam._tool, sharegpt._tool, openai_messages._tool]


def outcome(function, *args):
    try:
        return function(*args)
    except (Drop, *MALFORMED_ROW_ERRORS) as error:
        return type(error), error.args


def whole_list(raw, convert_tool):
    return [convert_tool(item) for item in loads_json(raw)]


@pytest.mark.parametrize("convert_tool", CONVERTERS, ids=lambda f: f.__module__)
@pytest.mark.parametrize("tools", [[WEATHER], [FLAT, WEATHER, FLAT], [WEATHER, NAMELESS, BAD_PARAMETERS],
                                   [BAD_PARAMETERS, NAMELESS], [FLAT, {"name": 3}], [{"name": "x", "parameters": [1]}]])
def test_item_by_item_gives_what_the_whole_list_gives(convert_tool, tools):
    raw = json.dumps(tools)
    for _ in range(2):  # the second time from the cache
        assert outcome(cached_tools, raw, convert_tool) == outcome(whole_list, raw, convert_tool)


def test_a_malformed_list_is_left_to_the_whole_list_path_even_after_a_bad_tool():
    # The whole-list path fails on the JSON first: so does the converter, not on the nameless tool.
    raw = json.dumps([NAMELESS, WEATHER])[:-3]
    assert cached_tools(raw, toucan._tool) is None
    with pytest.raises(Drop) as dropped:
        tools_column(raw, toucan._tool)
    assert dropped.value.reason == "invalid_tool_schema" and "Expecting" in dropped.value.detail


@pytest.mark.parametrize("raw", [None, "", "null", "[]", []])
def test_an_absent_or_empty_tools_column_is_no_tools(raw):
    assert tools_column(raw, toucan._tool) == []


@pytest.mark.parametrize("convert_tool", CONVERTERS, ids=lambda f: f.__module__)
def test_one_tool_object_is_one_tool_and_other_shapes_are_drops(convert_tool):
    clock = {"name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}}
    assert tools_column(json.dumps(clock), convert_tool) == [convert_tool(clock)] != []
    assert tools_column([clock], convert_tool) == [convert_tool(clock)]  # already decoded (a list column)
    for raw, detail in (("5", "tools is int"), ('"get_weather"', "tools is str")):
        with pytest.raises(Drop) as dropped:
            tools_column(raw, convert_tool)
        assert (dropped.value.reason, dropped.value.detail) == ("invalid_tool_schema", detail)


def test_text_that_is_not_json_is_dropped_with_the_sources_reason():
    raw = json.dumps([WEATHER])[:-3]
    for reason in ("invalid_tool_schema", "malformed_json"):
        with pytest.raises(Drop) as dropped:
            tools_column(raw, xlam._tool, reason)
        assert dropped.value.reason == reason


def test_a_cached_failure_is_raised_anew_each_time():
    raw = json.dumps([NAMELESS])
    drops = []
    for _ in range(2):
        with pytest.raises(Drop) as dropped:
            cached_tools(raw, toucan._tool)
        drops.append(dropped.value)
    assert drops[0] is not drops[1]
    assert (drops[1].reason, drops[1].detail) == ("invalid_tool_schema", "tool without a name")


def test_rows_share_each_tool_and_records_are_unchanged():
    first = tools_column(json.dumps([WEATHER, WEATHER]), toucan._tool)
    second = tools_column(json.dumps([{"type": "function", "function": {"name": "other"}}, WEATHER]), toucan._tool)
    assert type(first[0]) is EncodedTool and first[0] is first[1] is second[1]
    plain = [dict(tool) for tool in first]
    fields = dict(source="s", licence="mit", language="en", origin={})
    for tools in (first, second):
        record = make_record(messages=[], tools=tools, **fields)
        reference = make_record(messages=[], tools=[dict(tool) for tool in tools], **fields)
        assert record == reference and record["tools"] == dumps(tools)
    assert plain == first


def test_a_lone_surrogate_in_a_tool_is_still_an_encoding_error_at_the_record():
    tools = tools_column('[{"type": "function", "function": {"name": "f", "description": "half \\ud83d"}}]', toucan._tool)
    with pytest.raises(UnicodeEncodeError):
        make_record(messages=[], tools=tools, source="s", licence="mit", language="en", origin={})
