import json
from pathlib import Path

import pytest

from sftmix.raw import iter_raw_rows
from sftmix.sources import Drop, get_converter

FIXTURE = Path(__file__).parents[1] / "fixtures" / "dolci_tool_use" / "train-00000-of-00006.parquet"
F = FIXTURE.name
SIMFC = "allenai/olmo-toolu-sft-mix-T2-S2-f2-bfclv3-decontaminated"


@pytest.fixture(scope="module")
def out():
    return dict(get_converter("dolci_tool_use")(iter_raw_rows([FIXTURE])))


def call(name, arguments, call_id):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def shape(converted):
    return [(m["role"], m["content"], m["tool_calls"], m["tool_call_id"], m["name"]) for m in converted.messages]


def test_every_row_is_converted_or_dropped(out):
    assert len(out) == 12
    drops = {k: v.reason for k, v in out.items() if isinstance(v, Drop)}
    assert drops == {
        f"{F}#5": "unparsable_tool_call",
        f"{F}#6": "unmatched_tool_result",
        f"{F}#7": "missing_tool_result",
        f"{F}#8": "malformed_row",
        f"{F}#9": "invalid_tool_schema",
        f"{F}#10": "unparsable_tool_call",
        f"{F}#11": "empty_turn",
    }


def test_single_call_and_boilerplate_system_is_removed(out):
    row = out[f"{F}#0"]
    assert shape(row) == [
        ("user", "Can you give me a riddle about trees?", None, None, None),
        ("assistant", "", [call("riddle_by_keyword", '{"keyword": "trees"}', "call_0")], None, None),
        ("tool", '{"riddle": "I\'m tall when I\'m young, and I\'m short when I\'m old. What am I?"}',
         None, "call_0", "riddle_by_keyword"),
        ("assistant", "Here is a riddle about trees: I'm tall when I'm young, and short when I'm old. What am I?",
         None, None, None),
    ]
    assert row.key == "olmo-toolu-sft-mix-T2-S2-f2-bfclv3-decontaminated_S2_966434"
    assert row.meta == {"dataset_source": SIMFC}
    assert row.language is None and row.licence is None


def test_tools_come_from_the_system_functions_field(out):
    assert out[f"{F}#0"].tools == [{
        "type": "function",
        "function": {
            "name": "riddle_by_keyword",
            "description": "Fetches one random riddle based on a given keyword.",
            "parameters": {"type": "object", "properties": {"keyword": {
                "description": "The subject or keyword to get a riddle for.", "type": "string", "default": "cat"}}},
        },
    }]


def test_bundled_results_are_split_one_per_call(out):
    row = out[f"{F}#1"]
    assert shape(row)[1:4] == [
        ("assistant", "", [call("yummly.reviews_list", "{}", "call_0"),
                           call("salad_recipes.salad_ingredient", '{"ingredient": "feta cheese"}', "call_1")],
         None, None),
        ("tool", '{"reviews": [{"user": "Foodie123", "rating": 5}]}', None, "call_0", "yummly.reviews_list"),
        ("tool", '{"recipe": {"title": "Watermelon Feta Salad"}}', None, "call_1", "salad_recipes.salad_ingredient"),
    ]


def test_one_environment_message_per_call_and_json_literals(out):
    row = out[f"{F}#2"]
    assert shape(row)[1:4] == [
        ("assistant", "I'll search both.", [
            call("search_papers", '{"query": "protein folding", "limit": 2, "open_access": true, "year": null}', "call_0"),
            call("snippet_search", '{"query": "AlphaFold"}', "call_1")], None, None),
        ("tool", '{"data": [{"title": "Protein folding review", "year": 2021}]}', None, "call_0", "search_papers"),
        ("tool", "AlphaFold predicts structures with atomic accuracy [Jumper et al., 2021].",
         None, "call_1", "snippet_search"),
    ]
    assert row.meta == {"dataset_source": "allenai/olmo-toolu-s2-sft-m3"}
    assert row.tools[0]["function"]["parameters"]["required"] == ["query"]


def test_multi_turn_null_sentinel_and_ids_across_turns(out):
    row = out[f"{F}#3"]
    assert [m["role"] for m in row.messages] == [
        "user", "assistant", "tool", "assistant", "user", "assistant", "tool", "tool", "assistant"]
    assert row.messages[3] == {"role": "assistant", "content": "A Girona fa sol i 24 °C.", "tool_calls": None,
                               "tool_call_id": None, "name": None}
    assert row.messages[5]["tool_calls"] == [
        call("get_city_weather", '{"city": "Donostia"}', "call_1"),
        call("get_city_weather", '{"city": "Bilbao", "units": "metric"}', "call_2"),
    ]
    assert [m["tool_call_id"] for m in row.messages if m["role"] == "tool"] == ["call_0", "call_1", "call_2"]
    # xLAM-style python types become JSON Schema; ", optional" leaves `required`.
    assert row.tools[0]["function"]["parameters"] == {
        "type": "object",
        "properties": {"city": {"description": "City name.", "type": "string"},
                       "units": {"default": "metric", "type": "string"}},
        "required": ["city"],
    }


def test_extra_system_text_is_kept_and_tool_error_passes_through(out):
    row = out[f"{F}#4"]
    assert shape(row) == [
        ("system", "Answer in the user's language.", None, None, None),
        ("user", "北京今天的空气质量怎么样？", None, None, None),
        ("assistant", "", [call("google_search", '{"query": "北京 空气质量 今天"}', "call_0")], None, None),
        ("tool", '{"error": "RateLimitError: quota exceeded"}', None, "call_0", "google_search"),
        ("assistant", "抱歉，搜索服务暂时不可用，无法查询北京今天的空气质量。", None, None, None),
    ]
    assert row.meta == {"dataset_source": "allenai/olmo-toolu_deepresearch_no_thinking_DRv4"}


def test_drop_details(out):
    assert out[f"{F}#6"].detail == "1 result(s) for 2 call(s)"
    assert out[f"{F}#8"].detail == "function_calls on a user message"


def test_json_literals_nested_in_a_container_value():
    # The pinned revision's census: "JSON true/false/null literals also occur inside values";
    # they were read only as a whole argument, so a dict or list holding one dropped the row.
    from sftmix.sources.common import parse_python_calls

    calls = parse_python_calls('f(filters={"open": true, "year": null}, ids=[1, false])', bracketed=False)
    assert calls == [("f", {"filters": {"open": True, "year": None}, "ids": [1, False]})]
    with pytest.raises(Drop, match="unparsable_tool_call"):  # other bare words inside a container still drop
        parse_python_calls("f(ids=[x])", bracketed=False)


def test_one_name_with_two_definitions_drops_the_row():
    # fcanalysis' report of the pinned revision: conflicting_duplicate_tool_names 906; the first
    # definition was kept silently and a call matching the second was judged against it.
    def fn(description, properties):
        return {"type": "function", "function": {"name": "get_weather", "description": description,
                                                 "parameters": {"type": "object", "properties": properties}}}

    def row(tools):
        return {"id": "x", "dataset_source": SIMFC, "messages": [
            {"role": "system", "content": "", "function_calls": None, "functions": json.dumps(tools)},
            {"role": "user", "content": "Weather?", "function_calls": None, "functions": None},
            {"role": "assistant", "content": "Sunny.", "function_calls": None, "functions": None},
        ]}

    by_city, by_place = fn("By city.", {"city": {"type": "string"}}), fn("By place.", {"lat": {"type": "number"}})
    convert = get_converter("dolci_tool_use")
    (_, dropped), (_, kept) = convert([("a", row([by_city, by_place])), ("b", row([by_city, by_city]))])
    assert isinstance(dropped, Drop) and dropped.reason == "duplicate_tool_name"
    assert [t["function"]["name"] for t in kept.tools] == ["get_weather"]


@pytest.mark.parametrize("text, detail", [('[f(**{"a": 1})]', "** arguments in call to f"),
                                          ("[f(x=1);g(y=2)]", "no call at ';g(y=2)'"),
                                          ("[f(x=1), ; rm -rf(y=2)]", "no call at '; rm -rf(y=2)'")])
def test_calls_whose_arguments_or_names_cannot_be_read_whole_drop(text, detail):
    from sftmix.sources.common import parse_python_calls

    with pytest.raises(Drop) as drop:
        parse_python_calls(text, bracketed=True)
    assert (drop.value.reason, drop.value.detail) == ("unparsable_tool_call", detail)
    assert parse_python_calls("[f(x=1), g_2 (y=2)]", bracketed=True) == [("f", {"x": 1}), ("g_2", {"y": 2})]
