"""xlam converter against a hand-written copy of the Hub file's layout (JSON strings in a JSON array)."""

from pathlib import Path

import pytest

from sftmix.raw import iter_raw_rows
from sftmix.record import message, tool_call, tool_def
from sftmix.sources import Drop, get_converter

FIXTURE = Path(__file__).parents[1] / "fixtures" / "xlam" / "xlam_function_calling_60k.json"
KEY = "xlam_function_calling_60k.json#{}".format


@pytest.fixture(scope="module")
def out() -> dict:
    return dict(get_converter("xlam")(iter_raw_rows([FIXTURE])))


def test_every_row_converts_or_drops_with_its_reason(out):
    assert len(out) == 13
    drops = {key: value.reason for key, value in out.items() if isinstance(value, Drop)}
    assert drops == {
        KEY(6): "malformed_json",  # answers string cut off
        KEY(7): "malformed_json",  # tools string cut off
        KEY(8): "no_tool_calls",  # answers "[]"
        KEY(9): "invalid_tool_schema",  # parameters is the string "None"
        KEY(10): "unparsable_tool_call",  # {"function": ...} instead of {"name": ...}
        KEY(12): "empty_conversation",  # empty query
    }


def test_parallel_calls_end_the_conversation_on_a_call_only_assistant_turn(out):
    row = out[KEY(0)]
    assert row.messages == [
        message("user", "Where can I find live giveaways for beta access and games?"),
        message("assistant", "", tool_calls=[
            tool_call("live_giveaways_by_type", '{"type": "beta"}', "call_0"),
            tool_call("live_giveaways_by_type", '{"type": "game"}', "call_1"),
        ]),
    ]
    assert row.tools == [tool_def(
        "live_giveaways_by_type",
        "Retrieve live giveaways from the GamerPower API based on the specified type.",
        {
            "type": "object",
            "properties": {"type": {
                "description": "The type of giveaways to retrieve (e.g., game, loot, beta).",
                "default": "game",
                "type": "string",
            }},
            "required": ["type"],
        },
    )]
    assert row.key == "0" and row.meta == {"generator": "deepseek-v2-chat"}
    assert row.language is None and row.licence is None


def test_distractor_tools_and_junk_descriptions_are_kept(out):
    row = out[KEY(1)]
    assert [t["function"]["name"] for t in row.tools] == ["peers", "web_chain_details"]
    assert row.tools[1]["function"]["description"] == "python"
    assert row.messages[1]["tool_calls"] == [tool_call("web_chain_details", '{"chain_slug": "ethereum"}', "call_0")]


def test_a_call_without_arguments_to_a_tool_without_parameters(out):
    row = out[KEY(2)]
    assert row.tools == [tool_def("get_random_fact", "Returns a random trivia fact.", {"type": "object", "properties": {}})]
    assert row.messages[1]["tool_calls"] == [tool_call("get_random_fact", "{}", "call_0")]
    assert row.key == "17"


def test_optional_types_become_a_required_list_and_escaped_text_is_decoded(out):
    row = out[KEY(3)]
    places = row.tools[0]["function"]["parameters"]
    assert places["required"] == ["query", "location"]
    assert places["properties"]["radius"] == {"description": "Search radius in meters.", "default": 1000, "type": "integer"}
    assert row.messages[0]["content"].startswith("Busca restaurantes cerca de la Sagrada Família")
    assert [c["function"] for c in row.messages[1]["tool_calls"]] == [
        {"name": "search_places", "arguments": '{"query": "restaurantes", "location": "Sagrada Família, Barcelona", "radius": 500}'},
        {"name": "get_weather", "arguments": '{"city": "Girona"}'},
    ]


def test_generic_python_types_map_to_json_schema(out):
    row = out[KEY(4)]
    median, pairs = (t["function"]["parameters"] for t in row.tools)
    assert median == {"type": "object", "properties": {
        "numbers": {"description": "The list of numbers.", "type": "array"}}, "required": ["numbers"]}
    assert pairs["properties"]["nums"]["type"] == "array" and pairs["properties"]["nums"]["items"] == {"type": "integer"}
    assert pairs["properties"]["options"]["type"] == "object"
    assert pairs["properties"]["unique"] == {"description": "Only return unique pairs.", "default": False, "type": "boolean"}
    assert pairs["required"] == ["nums", "target"]
    assert row.meta == {"generator": "deepseek-v2-chat"}  # id 33658, the last DeepSeek row


def test_three_calls_in_chinese_from_a_mixtral_row(out):
    row = out[KEY(5)]
    assert row.messages[0]["content"] == "请把“你好，世界”翻译成英文，然后计算第10个斐波那契数，再计算第20个。"
    assert [(c["id"], c["function"]["arguments"]) for c in row.messages[1]["tool_calls"]] == [
        ("call_0", '{"text": "你好，世界", "target": "en"}'),
        ("call_1", '{"n": 10}'),
        ("call_2", '{"n": 20}'),
    ]
    assert row.key == "33659" and row.meta == {"generator": "mixtral-8x22b-instruct"}


def test_string_arguments_are_kept_verbatim_for_the_filter(out):
    calls = out[KEY(11)].messages[1]["tool_calls"]
    assert [c["function"]["arguments"] for c in calls] == ['{"n": 30}', "n=31"]


def test_schemas_built_from_one_type_string_share_nothing():
    from sftmix.sources.common import to_json_schema

    first = to_json_schema({"value": {"type": "int or str"}, "ids": {"type": "List[int]"}})
    second = to_json_schema({"value": {"type": "int or str"}, "ids": {"type": "List[int]"}})
    first["properties"]["value"]["type"].append("null")
    first["properties"]["ids"]["items"]["type"] = "string"
    assert second["properties"] == {"value": {"type": ["integer", "string"]}, "ids": {"type": "array", "items": {"type": "integer"}}}
    assert to_json_schema({"value": {"type": "int or str"}})["properties"]["value"]["type"] == ["integer", "string"]


def test_a_flat_parameter_called_properties_is_a_parameter():
    from sftmix.sources.common import to_json_schema

    schema = to_json_schema({"properties": {"description": "ids", "type": "str", "default": ""},
                             "limit": {"description": "max", "type": "int, optional"}})
    assert list(schema["properties"]) == ["properties", "limit"] and schema["required"] == ["properties"]
    # a JSON Schema with a parameter called "type" is still a JSON Schema
    nested = to_json_schema({"properties": {"type": {"type": "string"}}, "required": ["type"]})
    assert nested == {"type": "object", "properties": {"type": {"type": "string"}}, "required": ["type"]}
