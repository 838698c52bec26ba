import json
from pathlib import Path

import pytest

from own_process import stdout_of
from sftmix.raw import iter_raw_rows
from sftmix.sources import Drop, get_converter
from sftmix.sources.toolace import convert

FIXTURE = Path(__file__).parents[1] / "fixtures" / "toolace" / "data.json"


@pytest.fixture(scope="module")
def rows():
    out = dict(get_converter("toolace")(iter_raw_rows([FIXTURE])))
    return {int(key.split("#")[1]): value for key, value in out.items()}


def call(name, arguments, call_id):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def shape(messages):
    return [(m["role"], m["tool_call_id"], m["name"]) for m in messages]


def test_every_row_is_converted_or_dropped(rows):
    assert len(rows) == 13
    assert {i: r.reason for i, r in rows.items() if isinstance(r, Drop)} == {
        7: "unmatched_tool_result",
        8: "unparsable_tool_call",
        9: "malformed_json",
        10: "empty_conversation",
        11: "unmatched_tool_result",
        12: "malformed_row",
    }


def test_multi_turn_calls_results_and_ids(rows):
    out = rows[0]
    assert shape(out.messages) == [
        ("user", None, None), ("assistant", None, None), ("tool", "call_0", "GetCompetitions"),
        ("assistant", None, None), ("user", None, None), ("assistant", None, None),
        ("tool", "call_1", "Get Manager Placeholder Image"), ("assistant", None, None),
    ]
    assert out.messages[1]["tool_calls"] == [call("GetCompetitions", "{}", "call_0")]
    assert out.messages[1]["content"] == ""
    assert out.messages[5]["tool_calls"] == [call("Get Manager Placeholder Image", '{"sport": "football"}', "call_1")]
    assert json.loads(out.messages[2]["content"]) == {
        "competitions": [{"id": 1, "name": "Copa Libertadores"}, {"id": 2, "name": "Liga 1 Peru"}]}
    assert out.language is None and out.key is None and out.meta == {}


def test_template_system_prompt_is_dropped_and_tools_extracted(rows):
    out = rows[0]
    assert all(m["role"] != "system" for m in out.messages)
    assert out.tools == [
        {"type": "function", "function": {
            "name": "GetCompetitions",
            "description": "Retrieve a list of football competitions televised in Peru.",
            "parameters": {"type": "object", "properties": {}}}},
        {"type": "function", "function": {
            "name": "Get Manager Placeholder Image",
            "description": "Retrieve the manager placeholder image in PNG format for a sport.",
            "parameters": {"type": "object", "properties": {
                "sport": {"description": "The sport for which the image is required.", "type": "string"}},
                "required": ["sport"]}}},
    ]


def test_parallel_results_pair_by_name_not_position(rows):
    out = rows[1]
    assert out.messages[1]["tool_calls"] == [
        call("Market Trends API", '{"trend_type": "MARKET_INDEXES", "country": "us"}', "call_0"),
        call("Get Stock Price", '{"symbol": "AAPL"}', "call_1"),
    ]
    assert shape(out.messages[2:4]) == [("tool", "call_1", "Get Stock Price"), ("tool", "call_0", "Market Trends API")]
    assert out.messages[2]["content"] == '{"symbol": "AAPL", "price": 189.5}'


def test_chinese_arguments_and_results_stay_readable(rows):
    out = rows[2]
    assert out.messages[1]["tool_calls"] == [call("Get Weather Forecast", '{"city": "北京", "days": 2}', "call_0")]
    assert out.messages[2]["content"] == '{"city": "北京", "forecast": ["晴", "多云"]}'
    assert out.messages[3]["content"] == "北京未来两天：第一天晴，第二天多云。"
    days = out.tools[0]["function"]["parameters"]["properties"]["days"]
    assert days == {"description": "Number of days.", "default": 3, "type": "integer"}


def test_prose_starting_with_bracket_stays_prose(rows):
    assistant = rows[3].messages[1]
    assert assistant["tool_calls"] is None
    assert assistant["content"].startswith("[Note] I need the name of the city")


def test_slash_hyphen_name_and_error_result(rows):
    out = rows[4]
    assert out.messages[1]["tool_calls"] == [call("/madlibs-diceware", '{"nphrase": 2}', "call_0")]
    assert out.messages[2]["content"] == '{"error": "Service temporarily unavailable", "code": 503}'
    assert out.messages[2]["name"] == "/madlibs-diceware"


def test_gpt_human_roles_and_python_literals(rows):
    out = rows[5]
    assert [m["role"] for m in out.messages] == ["user", "assistant", "tool", "assistant"]
    arguments = json.loads(out.messages[1]["tool_calls"][0]["function"]["arguments"])
    assert arguments == {"city": "Málaga", "filters": {"stars": [4, 5], "pets": True}, "breakfast": True, "budget": None}
    filters = out.tools[0]["function"]["parameters"]["properties"]["filters"]
    assert filters["type"] == "object"
    assert filters["properties"]["stars"] == {"items": {"type": "integer"}, "description": "Star ratings.", "type": "array"}
    assert out.tools[0]["function"]["parameters"]["properties"]["budget"]["type"] == "number"


def test_extra_system_text_kept_and_plain_text_result(rows):
    out = rows[6]
    assert out.messages[0] == {"role": "system", "content": "Today is 2024-03-01 and the user lives in Girona.",
                               "tool_calls": None, "tool_call_id": None, "name": None}
    assert out.messages[3]["content"] == "good morning"
    assert shape(out.messages[3:4]) == [("tool", "call_0", "translateText")]


def test_call_followed_by_text_is_a_broken_call():
    row = {"system": 'Here is a list of functions in JSON format that you can invoke:\n[{"name": "f", "parameters": {}}]',
           "conversations": [{"from": "user", "value": "x"}, {"from": "assistant", "value": "[f(a=1)] and then some"}]}
    with pytest.raises(Drop) as error:
        convert(row)
    assert error.value.reason == "unparsable_tool_call"


def test_a_bracketed_turn_with_a_long_whitespace_run_is_read_in_one_pass():
    # The call-name patterns once retried a whitespace run from each of its characters: about half
    # an hour for this turn (0.5 s for 16,000 spaces, quadratic). A process of its own, so that such a regression fails here instead of hanging.
    code = """if True:
        from sftmix.sources.toolace import convert
        system = 'Here is a list of functions in JSON format that you can invoke:\\n[{"name": "f", "parameters": {}}]'
        for turn in ["[f" + " " * 1_000_000 + "x]", "[f" + " " * 1_000_000 + "(a=1)]"]:
            out = convert({"system": system, "conversations": [{"from": "user", "value": "x"},
                                                              {"from": "assistant", "value": turn}]})
            print(out.messages[1]["tool_calls"], len(out.messages[1]["content"]))
    """
    # prose (no call opens before "]"), then a call whose name ends at the whitespace before "("
    assert stdout_of(code).splitlines() == ["None 1000004",
                                        "[{'id': 'call_0', 'type': 'function', 'function': {'name': 'f', 'arguments': "
                                        "'{\"a\": 1}'}}] 0"]


def test_a_system_prompt_with_long_whitespace_runs_loses_its_template_in_one_pass():
    # The template's patterns once split each whitespace run between two `\\s*` every way: 35 s
    # for 4,000 spaces. A process of its own, so that such a regression fails here instead of hanging.
    code = """if True:
        from sftmix.sources.toolace import convert
        system = ("Today is Monday." + " " * 1_000_000 + "You are an expert in composing functions. You are given a "
                  "question and a set of possible functions. Based on the question, you will need to make one or "
                  "more function/tool calls to achieve the purpose. If none of the function can be used, point it "
                  "out. If the given question lacks the parameters required by the function, also point it out. "
                  "You should only return the function call in tools call sections.\\nHere is a list of functions "
                  'in JSON format that you can invoke:\\n[{"name": "f", "parameters": {}}]' + " " * 1_000_000
                  + "x" + " " * 1_000_000 + ". Should you decide to return the function call(s). Put it in the "
                  "format of [func1(params_name=params_value, params_name2=params_value2...), func2(params)] NO "
                  "other text MUST be included.")
        out = convert({"system": system, "conversations": [{"from": "user", "value": "hi"},
                                                           {"from": "assistant", "value": "hello"}]})
        print(repr(out.messages[0]["content"]), [tool["function"]["name"] for tool in out.tools])
    """
    assert stdout_of(code) == "'Today is Monday.\\nx' ['f']\n"


def test_arguments_named_by_python_keywords_are_read():
    # `from`/`to` name the currencies of ToolACE's converters: no python, so `ast` refused the call
    # and the row dropped as unparsable_tool_call. A `from=` inside a string value is no argument name.
    properties = {"from": {"type": "string"}, "to": {"type": "string"}, "amount": {"type": "float"}}
    tools = [{"name": "Currency Converter", "description": "Convert an amount.",
              "parameters": {"type": "dict", "properties": properties}, "required": None}]
    template = json.loads(FIXTURE.read_text())[0]["system"]  # the real template, around another function list
    head, tail = template.split("invoke:\n")[0] + "invoke:\n", template[template.index(". \nShould"):]
    row = {"system": head + json.dumps(tools) + tail,
           "conversations": [
               {"from": "user", "value": "100 USD in EUR and GBP?"},
               {"from": "assistant", "value": '[Currency Converter(from="USD", to="EUR", amount=100), Currency '
                                              'Converter(\n  amount=100, note="from=USD, in=(x",\n  to="GBP", from="USD")]'},
               {"from": "tool", "value": '[{"name": "Currency Converter", "results": {"EUR": 92.1}}, '
                                         '{"name": "Currency Converter", "results": {"GBP": 78.9}}]'}]}
    out = convert(row)
    assert out.messages[0]["role"] == "user" and [t["function"]["name"] for t in out.tools] == ["Currency Converter"]
    assert out.messages[1]["tool_calls"] == [
        call("Currency Converter", '{"from": "USD", "to": "EUR", "amount": 100}', "call_0"),
        call("Currency Converter", '{"amount": 100, "note": "from=USD, in=(x", "to": "GBP", "from": "USD"}', "call_1")]
    assert shape(out.messages[2:]) == [("tool", "call_0", "Currency Converter"), ("tool", "call_1", "Currency Converter")]
    row["conversations"][1]["value"] = '[Currency Converter(from="USD", "EUR")]'  # still no call: a positional argument
    with pytest.raises(Drop) as error:
        convert(row)
    assert error.value.reason == "unparsable_tool_call"


def test_unknown_call_names_stay_calls_for_the_filter_and_ids_continue():
    row = {"system": "", "conversations": [
        {"from": "user", "value": "x"}, {"from": "assistant", "value": "[a(), b(k='v')]"},
        {"from": "tool", "value": '[{"name": "a", "results": {}}, {"name": "b", "results": "ok"}]'},
        {"from": "assistant", "value": "[a()]"}]}
    out = convert(row)
    assert out.tools == []
    assert [c["id"] for m in out.messages for c in m["tool_calls"] or []] == ["call_0", "call_1", "call_2"]
    assert out.messages[3]["content"] == "ok"


def test_system_without_marker_uses_first_json_function_list():
    row = {"system": '以下是可调用的函数：[{"name": "f", "description": "d", "parameters": {"type": "dict", "properties": {}}}]。',
           "conversations": [{"from": "user", "value": "你好"}, {"from": "assistant", "value": "你好！"}]}
    out = convert(row)
    assert [t["function"]["name"] for t in out.tools] == ["f"]
    assert out.messages[0]["content"] == "以下是可调用的函数：\n。"
