"""glaive converter against a hand-written copy of the Hub file's layout and known defects."""

import json
from pathlib import Path

import pytest

from sftmix.raw import iter_raw_rows
from sftmix.record import message, tool_call, tool_def
from sftmix.sources import Drop, get_converter
from sftmix.sources.common import to_json_schema
from sftmix.sources.glaive import LEAD_IN, _tools, convert

FIXTURE = Path(__file__).parents[1] / "fixtures" / "glaive" / "glaive-function-calling-v2.json"
KEY = "glaive-function-calling-v2.json#{}".format


@pytest.fixture(scope="module")
def out() -> dict:
    return dict(get_converter("glaive")(iter_raw_rows([FIXTURE])))


def tool(name, call_id, content):
    return message("tool", content, tool_call_id=call_id, name=name)


def calling(*calls, content=""):
    return message("assistant", content, tool_calls=list(calls))


def test_every_row_converts_or_drops_with_its_reason(out):
    assert len(out) == 16
    drops = {key: value.reason for key, value in out.items() if isinstance(value, Drop)}
    assert drops == {
        KEY(7): "unparsable_tool_call",  # "parameters" where "arguments" belongs
        KEY(8): "unmatched_tool_result",  # "AI to= ..." call syntax, then a function response
        KEY(9): "stray_turn_marker",  # stray "\nASSISTANT:" inside a function response
        KEY(10): "duplicate_tool_name",  # convert_currency defined twice, differently
        KEY(11): "invalid_tool_schema",  # function block cut off
        KEY(13): "truncated_turn",  # last turn stops inside the call
        KEY(14): "stray_end_marker",  # <|endoftext|> inside a user turn
        KEY(15): "no_assistant_turn",
    }


def test_two_rounds_of_call_result_answer_number_calls_across_the_row(out):
    row = out[KEY(0)]
    assert row.messages == [
        message("user", "Can you tell me the latest news headlines for the United States?"),
        calling(tool_call("get_news_headlines", '{"country": "United States"}', "call_0")),
        tool("get_news_headlines", "call_0",
             '{"headlines": ["Senate passes infrastructure bill", "Hurricane season starts early"]}'),
        message("assistant", "Here are the latest headlines for the United States:\n"
                "1. Senate passes infrastructure bill\n2. Hurricane season starts early"),
        message("user", "That's interesting. What about the news in France?"),
        calling(tool_call("get_news_headlines", '{"country": "France"}', "call_1")),
        tool("get_news_headlines", "call_1", '{"headlines": ["Paris hosts climate summit"]}'),
        message("assistant", "Here is the latest headline for France:\n1. Paris hosts climate summit"),
    ]
    assert row.tools == [tool_def("get_news_headlines", "Get the latest news headlines", {
        "type": "object",
        "properties": {"country": {"type": "string", "description": "The country for which headlines are needed"}},
        "required": ["country"],
    })]
    # The lead-in sentence only introduces the function block: no system message is kept.
    assert row.language is None and row.licence is None and row.key is None and row.meta == {}


def test_a_row_without_functions_keeps_its_system_sentence(out):
    row = out[KEY(1)]
    assert row.tools == []
    assert row.messages == [
        message("system", "You are a helpful assistant, with no access to external functions."),
        message("user", "Translate into Basque: Good morning, friends"),
        message("assistant", "Egun on, lagunak!"),
        message("user", 'And "thank you very much"?'),
        message("assistant", "Eskerrik asko."),
    ]


def test_several_functions_with_empty_parameters_and_a_call_without_arguments(out):
    row = out[KEY(2)]
    empty = {"type": "object", "properties": {}}
    assert row.tools == [
        tool_def("get_random_joke", "Get a random joke", empty),
        tool_def("get_random_fact", "Get a random fact", empty),
    ]
    assert row.messages[1] == calling(tool_call("get_random_joke", "{}", "call_0"))
    assert row.messages[2]["name"] == "get_random_joke" and row.messages[2]["tool_call_id"] == "call_0"


def test_quoted_pretty_printed_arguments_with_apostrophes_become_compact_json(out):
    row = out[KEY(3)]
    assert row.messages[0] == message("user", "Can you translate \"L'àvia diu que és tard\" from Catalan to English?")
    assert row.messages[1] == calling(tool_call(
        "translate_text", '{"text": "L\'àvia diu que és tard", "source_language": "ca", "target_language": "en"}', "call_0"))
    assert row.messages[2] == tool("translate_text", "call_0", '{"translated_text": "Grandma says it\'s late"}')
    assert row.tools[0]["function"]["parameters"]["required"] == ["text", "target_language"]


def test_words_before_the_call_stay_as_content_and_an_object_argument_is_read(out):
    row = out[KEY(4)]
    assert row.messages == [
        message("user", "¿Puedes convertir 100 euros a yenes?"),
        calling(tool_call("convert_currency", '{"amount": 100, "from": "EUR", "to": "JPY"}', "call_0"),
                content="Claro, lo compruebo ahora."),
        tool("convert_currency", "call_0", '{"error": "Currency service unavailable"}'),
        message("assistant", "Lo siento, el servicio de cambio no está disponible ahora mismo."),
    ]


def test_an_assistant_sentence_then_a_call_turn_merge_into_one_message(out):
    row = out[KEY(5)]
    assert row.messages == [
        message("user", "请帮我查一下北京的天气。"),
        calling(tool_call("get_weather", '{"city": "北京"}', "call_0"), content="好的，我来查询。"),
        tool("get_weather", "call_0", '{"temperature": 21, "condition": "晴"}'),
        message("assistant", "北京现在21度，晴天。"),
    ]
    assert row.meta == {"merged_turns": 1}


def test_argument_strings_that_are_not_json_are_kept_verbatim(out):
    row = out[KEY(6)]
    calls = [m["tool_calls"][0]["function"] for m in row.messages if m["tool_calls"]]
    assert calls == [
        {"name": "analyze_sentiment", "arguments": '{"text": "life\\\'s full of surprises"}'},
        {"name": "calculate_tax", "arguments": '{"income": 80000, "brackets": [70001, Infinity]}'},
    ]
    assert row.meta == {"malformed_arguments": 2}


def test_repeated_definition_consecutive_users_and_an_unanswered_last_user_turn(out):
    row = out[KEY(12)]
    assert [t["function"]["name"] for t in row.tools] == ["start_recording", "stop_recording"]
    assert [m["role"] for m in row.messages] == [
        "user", "assistant", "tool", "assistant", "user", "user", "assistant", "tool", "assistant"]
    assert row.messages[4]["content"] == "Thank you. I will start now.\n\n[After a while]"
    assert row.messages[6] == calling(tool_call("stop_recording", "{}", "call_1"))
    assert row.messages[-1] == message("assistant", "The recording has stopped after 42 minutes and 10 seconds.")
    assert row.meta == {"trimmed_tail": 1, "duplicate_tools_removed": 1}


def test_drop_details_name_the_damage(out):
    assert "get_random_quote" in out[KEY(7)].detail
    assert out[KEY(10)].detail == "convert_currency"


@pytest.mark.parametrize("chat, turns", [
    ("USER: Hi\n\n\nASSISTANT: Hello <|endoftext|>", [("USER", "Hi"), ("ASSISTANT", "Hello <|endoftext|>")]),
    # a marker opening the text after a newline or indentation, after a blank line holding spaces,
    # and one glued in mid-line (not a turn)
    ("\n \tUSER: Hi\n\nASSISTANT: a USER: b\n \n  FUNCTION RESPONSE: {}",
     [("USER", "Hi"), ("ASSISTANT", "a USER: b"), ("FUNCTION RESPONSE", "{}")]),
    ("  ASSISTANT:x\n\nUSER:\n", [("ASSISTANT", "x"), ("USER", "")]),
])
def test_turns_open_at_the_start_or_after_a_blank_line(chat, turns):
    from sftmix.sources.glaive import _turns

    assert _turns(chat) == turns


@pytest.mark.parametrize("chat, reason", [("Hello\nUSER: Hi", "malformed_row"), ("Hello USER: Hi", "empty_conversation"), ("no markers at all", "empty_conversation"),
                                          ("", "empty_conversation")])
def test_text_before_the_first_turn_or_no_turn_at_all(chat, reason):
    from sftmix.sources.glaive import _turns

    with pytest.raises(Drop) as error:
        _turns(chat)
    assert error.value.reason == reason


CART = LEAD_IN + '\n{\n    "name": "add_to_shopping_cart",\n    "description": "Add a product",\n    "parameters": {}\n}\n'
CART_CALL = """ASSISTANT: <functioncall> {"name": "add_to_shopping_cart", "arguments": '{"quantity": 2}'} <|endoftext|>"""
# Row 44369's user turn and row 9046's function response, as a third-party importer's tests quote them.
USER_44369 = ('USER: Hey, I need to add a book to my shopping cart. The book is "\nASSISTANT: A Modern'
              ' Approach", I need 2 copies and each costs $30. <|endoftext|>')
RESPONSE_9046 = 'FUNCTION RESPONSE: {"articles": [{"title": "The Next Big Thing in \nASSISTANT: Top Trends"}]} <|endoftext|>'


@pytest.mark.parametrize("turns, reason", [
    # the stray piece before a call turn: merged as "text before the call", the user's words became the assistant's
    ([USER_44369, CART_CALL, 'FUNCTION RESPONSE: {"status": "added"}', "ASSISTANT: Added. <|endoftext|>"],
     "stray_turn_marker"),
    # a result cut the same way, then a second call: its tail was merged as the assistant's words
    (["USER: Add it.", CART_CALL, RESPONSE_9046, CART_CALL, 'FUNCTION RESPONSE: {"ok": true}',
      "ASSISTANT: Done. <|endoftext|>"], "stray_turn_marker"),
    # the damaged user turn last: its tail was kept as the assistant's answer
    (["USER: Hi", "ASSISTANT: Hello. <|endoftext|>", USER_44369], "stray_turn_marker"),
    # row 2289: "AI:" turned into a whole turn boundary inside an assistant turn is still two assistant turns
    (["USER: News on AI?", "ASSISTANT: Here are some articles on recent developments in <|endoftext|>",
      "ASSISTANT:\n1. [AI and Machine Learning](https://www.example.com/ai-ml-2021) <|endoftext|>"],
     "consecutive_assistant_turns"),
])
def test_a_stray_marker_drops_the_row_rather_than_moving_words_between_roles(turns, reason):
    with pytest.raises(Drop) as dropped:
        convert({"system": CART, "chat": "\n\n\n".join(turns)})
    assert dropped.value.reason == reason


WEATHER = {"name": "get_weather", "description": "a \"}\" and\\n}", "parameters": {"type": "object", "properties": {
    "city": {"type": "string"}}, "required": ["city"]}}
NESTED_AT_LINE_START = '{"name": "ping", "parameters": {"type": "object",\n"properties": {}\n}, "description": "d"\n}'


@pytest.mark.parametrize("blocks", [
    [json.dumps(WEATHER, indent=4)], [json.dumps(WEATHER)], [json.dumps(WEATHER), json.dumps({"name": "ping"}, indent=4)],
    [NESTED_AT_LINE_START, json.dumps(WEATHER, indent=4)], [json.dumps(WEATHER, indent=4), json.dumps(WEATHER, indent=2)]])
def test_function_blocks_in_any_layout_give_the_same_tools_from_the_cache(blocks):
    # Indented blocks are cut at the line holding only "}"; any other layout is decoded in place.
    system = "SYSTEM: " + LEAD_IN + "\n" + "\n\n".join(blocks) + "\n"
    functions = [json.loads(block) for block in blocks]
    expected = [tool_def(f["name"], f.get("description"), to_json_schema(f.get("parameters"))) for f in functions[:1]]
    expected += [tool_def(f["name"], f.get("description"), to_json_schema(f.get("parameters")))
                 for f in functions[1:] if f["name"] != functions[0]["name"]]
    for _ in range(2):
        assert _tools(system) == ("", expected, len(functions) - len(expected))


def test_a_function_block_cut_at_a_line_start_brace_that_is_not_its_end_is_still_broken():
    system = LEAD_IN + "\n" + NESTED_AT_LINE_START[:-1]
    with pytest.raises(Drop) as dropped:
        _tools(system)
    assert dropped.value.reason == "invalid_tool_schema" and dropped.value.detail.startswith("function block:")
