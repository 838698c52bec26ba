import json
from pathlib import Path

import pytest

from sftmix.raw import iter_raw_rows
from sftmix.sources import Drop, get_converter

FIXTURE = Path(__file__).parents[1] / "fixtures" / "toucan" / "train-00000-of-00003.parquet"
F = FIXTURE.name


@pytest.fixture(scope="module")
def out():
    return dict(get_converter("toucan")(iter_raw_rows([FIXTURE])))


def call(name, arguments, call_id):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def shape(converted):
    return [(m["role"], m["content"], m["tool_calls"], m["tool_call_id"], m["name"]) for m in converted.messages]


def test_every_row_is_converted_or_dropped(out):
    assert len(out) == 13
    drops = {k: v.reason for k, v in out.items() if isinstance(v, Drop)}
    assert drops == {
        f"{F}#7": "malformed_json",
        f"{F}#8": "unparsable_tool_call",
        f"{F}#9": "unmatched_tool_result",
        f"{F}#10": "missing_tool_result",
        f"{F}#11": "invalid_tool_schema",
        f"{F}#12": "empty_conversation",
    }


def test_text_before_a_call_joins_the_call_turn(out):
    row = out[f"{F}#0"]
    assert shape(row) == [
        ("user", "What's the weather going to be in Paris tomorrow?", None, None, None),
        ("assistant", "I'll check the forecast for Paris.",
         [call("weather-server-get_forecast", '{"city": "Paris", "days": 2}', "call_0")], None, None),
        ("tool", '{"city": "Paris", "forecast": [{"day": 1, "temp_c": 18}, {"day": 2, "temp_c": 21, "sky": "sunny"}]}',
         None, "call_0", "weather-server-get_forecast"),
        ("assistant", "Tomorrow in Paris: sunny, around 21 °C.", None, None, None),
    ]
    assert row.key == "0b6f3c2e-1a4d-5e7f-8a9b-0c1d2e3f4a5b"
    assert row.meta == {"subset_name": "single-turn-original"}
    assert row.language is None and row.licence is None


def test_tools_keep_server_prefix_and_become_json_schema(out):
    tools = out[f"{F}#0"].tools
    assert [t["function"]["name"] for t in tools] == ["weather-server-get_forecast", "time-mcp-get_current_time"]
    assert tools[0] == {
        "type": "function",
        "function": {
            "name": "weather-server-get_forecast",
            "description": "Get the weather forecast for a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "City name"},
                               "days": {"type": "integer", "default": 1}},
                "required": ["city"],
                "additionalProperties": False,  # its `$schema` left out: every tool is read as draft 7
            },
        },
    }
    assert tools[1]["function"]["parameters"] == {"type": "object", "properties": {}}


def test_a_schema_with_defs_keeps_them_and_its_calls_validate():
    """pydantic/FastMCP servers put nested models in `$defs` (Toucan keeps each MCP `input_schema`
    verbatim; this is `create_note` of TheAgentArk/Toucan mcp_servers/0569.@jxnl_python-apple-mcp).
    Only type/properties/required/additionalProperties were kept, so every `$ref` dangled and a good
    call was an `invalid_tool_schema` drop."""
    import json

    from filters.tool_calls import ToolCallsFilter
    from sftmix.record import make_record

    note = {"properties": {"title": {"title": "Title", "type": "string"}, "content": {"title": "Content", "type": "string"},
                           "folder": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": "Claude",
                                      "title": "Folder"}},
            "required": ["title", "content"], "title": "Note", "type": "object"}
    schema = {"$defs": {"Note": note}, "properties": {"note": {"$ref": "#/$defs/Note"}}, "required": ["note"],
              "title": "create_noteArguments", "type": "object"}
    name = "python-apple-mcp-create_note"
    tools = [{"type": "function", "function": {"name": name, "description": "Create a note", "parameters": schema}}]

    def converted(arguments):
        messages = [{"role": "user", "content": "Make a note called Groceries: milk, eggs"},
                    {"role": "tool_call", "content": str({"name": name, "arguments": json.dumps(arguments)})},
                    {"role": "tool_response", "content": "Note created"},
                    {"role": "assistant", "content": "Done: the note Groceries is saved."}]
        row = {"uuid": "u1", "subset_name": "single-turn-original", "question": "", "target_tools": "create_note",
               "tools": json.dumps(tools), "messages": json.dumps(messages)}
        [(_, out)] = get_converter("toucan")([(f"{F}#0", row)])
        return out

    good = converted({"note": {"title": "Groceries", "content": "milk, eggs"}})
    assert good.tools[0]["function"]["parameters"] == {"type": "object", "properties": {"note": {"$ref": "#/$defs/Note"}},
                                                       "required": ["note"], "$defs": {"Note": note},
                                                       "title": "create_noteArguments"}
    check = ToolCallsFilter().check
    record = lambda c: make_record(messages=c.messages, tools=c.tools, source="t", licence="apache-2.0", language="en",
                                   origin="{}")
    assert check(record(good), None) is None
    untitled = converted({"note": {"content": "milk, eggs"}})  # the model's own required field is checked too
    assert check(record(untitled), None) == "tool_arguments_schema_invalid"


@pytest.mark.parametrize("draft", ["draft-03", "draft-04", "draft-07"])
def test_a_tools_declared_draft_is_left_out_and_its_calls_read_as_draft_7(draft):
    """Kept, a draft-03 `$schema` (which jsonschema-rs has no validator for) made every call an
    invalid_tool_schema drop, and a draft-04 one made its draft-6 keywords errors."""
    from sftmix.sources.common import to_json_schema
    from filters.tool_calls import validator_for

    schema = to_json_schema({"$schema": f"http://json-schema.org/{draft}/schema#", "type": "object",
                             "properties": {"days": {"type": "integer", "exclusiveMinimum": 0}}})
    assert "$schema" not in schema
    validator = validator_for(json.dumps(schema, sort_keys=True))
    assert validator.is_valid({"days": 3}) and not validator.is_valid({"days": 0})


def test_parallel_calls_match_results_by_position(out):
    row = out[f"{F}#1"]
    assert shape(row)[1:4] == [
        ("assistant", "", [call("weather-server-get_forecast", '{"city": "A Coruña"}', "call_0"),
                           call("weather-server-get_forecast", '{"city": "Girona"}', "call_1")], None, None),
        ("tool", '{"city": "A Coruña", "forecast": [{"day": 1, "temp_c": 15, "sky": "lluvia"}]}',
         None, "call_0", "weather-server-get_forecast"),
        ("tool", '{"city": "Girona", "forecast": [{"day": 1, "temp_c": 24, "sky": "sol"}]}',
         None, "call_1", "weather-server-get_forecast"),
    ]
    assert row.meta == {"subset_name": "single-turn-diversify"}


def test_calls_without_arguments_and_ids_across_turns(out):
    row = out[f"{F}#2"]
    assert row.messages[0]["content"] == "What time is it now? Check twice — I need to be sure."
    assert [m["tool_calls"] for m in row.messages if m["tool_calls"]] == [
        [call("time-mcp-get_current_time", "{}", "call_0")],
        [call("time-mcp-get_current_time", "{}", "call_1")],  # source arguments were ""
    ]
    assert [m["tool_call_id"] for m in row.messages if m["role"] == "tool"] == ["call_0", "call_1"]


def test_irrelevant_row_keeps_tools_and_plain_answer(out):
    row = out[f"{F}#3"]
    assert shape(row) == [
        ("user", "帮我把这段话翻译成英文：今天天气很好。", None, None, None),
        ("assistant", "可用的工具都不适合翻译。译文是：“The weather is nice today.”", None, None, None),
    ]
    assert len(row.tools) == 2 and row.meta == {"subset_name": "irrelevant"}


def test_multi_turn_with_tool_error(out):
    row = out[f"{F}#4"]
    assert [m["role"] for m in row.messages] == ["user", "assistant", "tool", "assistant", "user", "assistant", "tool", "assistant"]
    assert row.messages[1]["tool_calls"] == [call("open-library-search_books", '{"author": "Mercè Rodoreda"}', "call_0")]
    assert row.messages[2]["content"] == "Error executing tool search_books: 503 Service Unavailable"
    assert row.messages[5]["tool_calls"] == [
        call("exa-search-web_search_exa", '{"query": "Mercè Rodoreda novels", "numResults": 3}', "call_1")]
    assert row.messages[6]["tool_call_id"] == "call_1"


def test_repr_with_escaped_quote_parses(out):
    assert out[f"{F}#5"].messages[1]["tool_calls"] == [
        call("exa-search-web_search_exa", '{"query": "O\'Brien latest paper"}', "call_0")]


def test_malformed_arguments_are_kept_verbatim(out):
    assert out[f"{F}#6"].messages[1]["tool_calls"] == [
        call("weather-server-get_forecast", '{"city": "Bilbao"', "call_0")]


@pytest.mark.parametrize("arguments", [
    '{"city": "Bilbao"}', "", '{"q": "O\'Brien"}', '{"path": "C:\\\\tmp"}', '{"text": "line\\none"}', "{}",
    '{"emoji": "\U0001f600", "tab": "a\tb"}', 'with "double" and \'single\'', "nul\x00byte", "cr\rlf\n",
])
def test_plain_repr_fast_path_reads_what_literal_eval_reads(arguments):
    import ast

    from sftmix.sources.toucan import _literal_call

    for call_dict in ({"name": "srv-tool_1", "arguments": arguments}, {"name": "it's", "arguments": arguments}):
        content = str(call_dict)  # how the producer wrote tool_call contents
        try:
            expected = ast.literal_eval(content)
        except (ValueError, SyntaxError):
            with pytest.raises((ValueError, SyntaxError)):
                _literal_call(content)
            continue
        assert _literal_call(content) == expected == call_dict


@pytest.mark.filterwarnings("ignore:invalid escape sequence:DeprecationWarning")  # Python's own, for "\\ "
def test_fast_path_reads_random_literals_as_literal_eval_does():
    """Literals written by `str` and by hand, with runs of backslashes, quotes, escapes and line
    breaks: the same value or the same kind of error as `ast.literal_eval`."""
    import ast
    import random

    from sftmix.sources.toucan import _literal_call

    rng = random.Random(3)
    pieces = ["a", "é", '"', "'", "\\", "\\\\", "\\'", "\\n", "\\u00e9", "\n", "\r", "\x00", "{}", " ", "\t", "\\x41"]
    contents = []
    for _ in range(3000):
        name, arguments = ("".join(rng.choice(pieces) for _ in range(rng.randrange(6))) for _ in range(2))
        contents.append(str({"name": name, "arguments": arguments}))  # as the producer wrote them
        contents.append("{'name': '" + name + "', 'arguments': '" + arguments + "'}")  # any text between the quotes
    outcomes = []
    for content in contents:
        try:
            expected = ast.literal_eval(content)
        except (ValueError, SyntaxError) as error:
            with pytest.raises((ValueError, SyntaxError)):
                _literal_call(content)
            outcomes.append(type(error))
        else:
            assert _literal_call(content) == expected, content
            outcomes.append(dict)
    assert outcomes.count(dict) > 2000 and len(outcomes) - outcomes.count(dict) > 500  # both are tried


def test_json_escapes_in_arguments_need_no_python_parser(monkeypatch):
    from sftmix.sources import toucan

    monkeypatch.setattr(toucan.ast, "literal_eval", lambda content: pytest.fail("literal_eval called"))
    arguments = '{"city": "M\\u00e1laga", "q": "say \\"hi\\"", "path": "C:\\\\tmp"}'  # json.dumps's escapes
    assert toucan._parse_call(str({"name": "srv-tool", "arguments": arguments})) == (
        "srv-tool", {"city": "Málaga", "q": 'say "hi"', "path": "C:\\tmp"})


@pytest.mark.parametrize("content", [
    "{'name': 'a', 'arguments': 'x\ny'}",  # a raw line break: not a valid literal
    "{'name': 'a', 'arguments': 'x\x00y'}",  # a raw NUL: not valid source
    "{'name': 'a', 'arguments': 'x\\'y'}",
    "{'name': 'a', 'arguments': 'x\\ty'}",
    " {'name': 'a', 'arguments': '{}'}",
    "{'name': 'a', 'arguments': '{}', 'arguments': 'b'}",
])
def test_plain_repr_fast_path_agrees_with_literal_eval_on_raw_contents(content):
    import ast

    from sftmix.sources.toucan import _literal_call

    try:
        expected = ast.literal_eval(content)
    except (ValueError, SyntaxError) as error:
        with pytest.raises(type(error)):
            _literal_call(content)
    else:
        assert _literal_call(content) == expected
