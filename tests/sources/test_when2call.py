import json
from pathlib import Path

import pytest

from own_process import stdout_of
from sftmix.raw import iter_raw_rows
from sftmix.sources import Drop, get_converter

FIXTURES = Path(__file__).parents[1] / "fixtures" / "when2call"


def run(file_name: str) -> dict:
    convert = get_converter("when2call")
    return dict(convert(iter_raw_rows([FIXTURES / file_name])))


@pytest.fixture(scope="module")
def sft():
    return run("when2call_train_sft.jsonl")


def call(name, arguments, call_id="call_0"):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_every_row_is_converted_or_dropped(sft):
    assert len(sft) == 13
    drops = {k: v.reason for k, v in sft.items() if isinstance(v, Drop)}
    assert drops == {
        "when2call_train_sft.jsonl#8": "unparsable_tool_call",
        "when2call_train_sft.jsonl#9": "unparsable_tool_call",
        "when2call_train_sft.jsonl#10": "empty_conversation",
        "when2call_train_sft.jsonl#11": "malformed_json",
        "when2call_train_sft.jsonl#12": "invalid_tool_schema",
    }


def test_cannot_answer_stays_plain_assistant_text(sft):
    out = sft["when2call_train_sft.jsonl#0"]
    assert [(m["role"], m["tool_calls"]) for m in out.messages] == [("user", None), ("assistant", None)]
    assert out.messages[1]["content"].startswith("I'm sorry, but I can't access real-time trends")
    assert out.language is None and out.key is None
    assert out.meta == {"layout": "train_sft"}


def test_toolcall_text_becomes_a_real_tool_call(sft):
    out = sft["when2call_train_sft.jsonl#1"]
    assistant = out.messages[1]
    assert assistant["content"] == ""
    assert assistant["tool_calls"] == [call("rgb_to_cmyk", '{"r": 255, "g": 0, "b": 0}')]
    assert [t["function"]["name"] for t in out.tools] == ["rgb_to_cmyk", "get_random_quote"]


def test_required_beside_parameters_moves_inside_and_types_map(sft):
    rgb = sft["when2call_train_sft.jsonl#1"].tools[0]["function"]["parameters"]
    assert rgb["type"] == "object"
    assert rgb["required"] == ["r", "g", "b"]
    assert rgb["properties"]["r"] == {
        "description": "The red component of the RGB color code.", "default": "127", "type": "integer"}
    weather = sft["when2call_train_sft.jsonl#4"].tools[0]["function"]["parameters"]
    assert weather["required"] == ["city"]
    assert weather["properties"]["days"]["type"] == "integer"
    assert weather["properties"]["hours"]["type"] == "array"
    assert weather["properties"]["hours"]["items"] == {"type": "integer"}


def test_request_for_info_is_prose(sft):
    assistant = sft["when2call_train_sft.jsonl#2"].messages[1]
    assert assistant["tool_calls"] is None
    assert assistant["content"].endswith("Could you please provide them?")


def test_call_without_arguments(sft):
    assert sft["when2call_train_sft.jsonl#3"].messages[1]["tool_calls"] == [call("get_random_quote", "{}")]


def test_double_escaped_non_ascii_arguments_decode(sft):
    out = sft["when2call_train_sft.jsonl#4"]
    assert "Donostia-San Sebastián" in out.messages[0]["content"]
    arguments = out.messages[1]["tool_calls"][0]["function"]["arguments"]
    assert arguments == '{"city": "Donostia-San Sebastián", "days": 2}'


def test_empty_tool_list_and_json_string_tools(sft):
    assert sft["when2call_train_sft.jsonl#5"].tools == []
    tools = sft["when2call_train_sft.jsonl#6"].tools
    assert [t["function"]["name"] for t in tools] == ["rgb_to_cmyk"]
    assert tools[0]["function"]["parameters"]["required"] == ["r", "g", "b"]


def test_malformed_argument_string_is_kept_verbatim(sft):
    assert sft["when2call_train_sft.jsonl#7"].messages[1]["tool_calls"] == [
        call("rgb_to_cmyk", "{r: 0, g: 128, b: 255")]


def test_pref_layout_keeps_the_chosen_response():
    out = run("when2call_train_pref.jsonl")
    first, second = out["when2call_train_pref.jsonl#0"], out["when2call_train_pref.jsonl#1"]
    assert first.meta == {"layout": "train_pref"}
    assert [m["role"] for m in first.messages] == ["user", "assistant"]
    assert first.messages[1]["tool_calls"] == [call("rgb_to_cmyk", '{"r": 255, "g": 0, "b": 0}')]
    assert second.messages[1]["content"] == "Could you share the list of scores?"
    assert second.messages[1]["tool_calls"] is None


def test_a_toolcall_body_nested_too_deeply_is_an_unparsable_call():
    # json raises RecursionError on it, not a decode error: the converter's own reason names it
    from sftmix.sources.when2call import convert

    row = {"tools": [], "messages": [{"role": "user", "content": "x"}],
           "chosen_response": {"role": "assistant", "content": "<TOOLCALL>" + "[" * 5_000 + "]" * 5_000 + "</TOOLCALL>"}}
    with pytest.raises(Drop) as error:
        convert(row)
    assert (error.value.reason, error.value.detail) == ("unparsable_tool_call", "TOOLCALL body is not JSON: nested too deeply to "
                                                        "decode: line 1 column 1 (char 0)")


def test_unclosed_toolcall_openers_are_read_in_one_pass():
    # `re` retried each opener with no closer after it to the end of the text: 13.5 s for 110 KB,
    # quadratic, so about 18 minutes here. A process of its own, so that a regression fails here.
    code = """if True:
        from sftmix.sources.when2call import convert
        content = '<TOOLCALL>[{"name": "a", "arguments": {}}]</TOOLCALL>' + " <TOOLCALL>" * 90_000
        out = convert({"tools": [], "messages": [{"role": "user", "content": "go"}, {"role": "assistant", "content": content}]})
        assistant = out.messages[1]
        print(assistant["content"] == ("<TOOLCALL> " * 90_000).strip(), [c["function"]["name"] for c in assistant["tool_calls"]])
    """
    assert stdout_of(code) == "True ['a']\n"


def test_test_layout_uses_the_correct_answer():
    out = run("when2call_test_mcq.jsonl")
    tool_row = out["when2call_test_mcq.jsonl#0"]
    assert tool_row.key == "0b6f7a6e-1d3c-4c55-9d1e-6b1f2f3a4b5c"
    assert tool_row.meta == {"layout": "test", "correct_answer": "tool_call", "source_id": "live_simple_179-104-0"}
    assert tool_row.messages[1]["tool_calls"] == [call("get_service_id", '{"service_id": 2, "province_id": 2}')]
    schema = tool_row.tools[0]["function"]["parameters"]
    assert schema["required"] == ["service_id", "province_id"]
    assert out["when2call_test_mcq.jsonl#1"].messages[1]["content"] == "Which province are you interested in?"
    cannot = out["when2call_test_mcq.jsonl#2"]
    assert cannot.tools == [] and cannot.messages[1]["tool_calls"] is None


def test_several_calls_are_numbered_across_the_conversation():
    from sftmix.sources.when2call import convert

    content = "<TOOLCALL>" + json.dumps([{"name": "a", "arguments": {}}, {"name": "b", "arguments": {"x": 1}}]) + "</TOOLCALL>"
    out = convert({"tools": [], "messages": [{"role": "user", "content": "go"}, {"role": "assistant", "content": content}]})
    assert out.messages[1]["tool_calls"] == [call("a", "{}", "call_0"), call("b", '{"x": 1}', "call_1")]


def test_unknown_role_and_unknown_layout_drop():
    from sftmix.sources.when2call import convert

    with pytest.raises(Drop) as error:
        convert({"tools": [], "messages": [{"role": "narrator", "content": "x"}]})
    assert error.value.reason == "malformed_row"
    with pytest.raises(Drop) as error:
        convert({"tools": []})
    assert error.value.reason == "malformed_row"
