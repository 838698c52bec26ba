import json
import re
from pathlib import Path

import pytest

from sftmix.raw import iter_raw_rows
from sftmix.record import make_record, message, tool_call, tool_def
from sftmix.render import chat_template_inputs, chatml_segments, parse_hermes_tool_calls, to_chatml
from sftmix.sources import get_converter

FIXTURES = Path(__file__).parent / "fixtures"

WEATHER = tool_def(
    "get_weather",
    "Get the current weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
NOW = tool_def("now", "Current time", {"type": "object", "properties": {}})


def record(messages, tools=()):
    return make_record(messages=messages, tools=list(tools), source="test", licence="apache-2.0", language="ca", origin={})


def assistant_turns(text: str) -> list[str]:
    return re.findall(r"<\|im_start\|>assistant(.*?)<\|im_end\|>", text, re.S)


def expected_calls(rec) -> list[list[dict]]:
    return [
        [{"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])} for c in m["tool_calls"] or []]
        for m in rec["messages"]
        if m["role"] == "assistant"
    ]


SINGLE = record(
    [
        message("user", "Quin temps fa a Girona?"),
        message("assistant", "", tool_calls=[tool_call("get_weather", {"city": "Girona"}, "call_0")]),
        message("tool", '{"temp": 18}', tool_call_id="call_0", name="get_weather"),
        message("assistant", "A Girona fa 18 °C."),
    ],
    [WEATHER],
)
PARALLEL = record(
    [
        message("system", "Ets un assistent breu."),
        message("user", "Temps a Girona i a Lleida?"),
        message("assistant", "Ho consulto.", tool_calls=[
            tool_call("get_weather", {"city": "Girona"}, "call_0"),
            tool_call("get_weather", {"city": "Lleida"}, "call_1"),
        ]),
        message("tool", '{"temp": 18}', tool_call_id="call_0", name="get_weather"),
        message("tool", '{"error": "timeout"}', tool_call_id="call_1", name="get_weather"),
        message("assistant", "Girona: 18 °C; Lleida: no disponible."),
    ],
    [WEATHER, NOW],
)
NO_ARGUMENTS = record(
    [
        message("user", "What time is it?"),
        message("assistant", "", tool_calls=[tool_call("now", {}, "call_0")]),
        message("tool", "09:15", tool_call_id="call_0", name="now"),
        message("assistant", "It is 09:15."),
    ],
    [NOW],
)
NON_ASCII = record(
    [
        message("user", "北京和Donostia的天气？"),
        message("assistant", "", tool_calls=[
            tool_call("get_weather", {"city": "北京", "note": "«ñ» \"quoted\" \\ back\nslash"}, "call_0"),
            tool_call("get_weather", '{"city": "Donostia–San Sebastián"}', "call_1"),
        ]),
        message("tool", "晴", tool_call_id="call_0", name="get_weather"),
        message("tool", "euria", tool_call_id="call_1", name="get_weather"),
        message("assistant", "北京晴；Donostian euria."),
    ],
    [WEATHER],
)


def test_full_rendering_with_system_merge_parallel_calls_and_grouped_results():
    assert to_chatml(PARALLEL) == (
        "<|im_start|>system\nEts un assistent breu.\n\n"
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        '{"type": "function", "function": {"name": "get_weather", "description": "Get the current weather for a city", '
        '"parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}\n'
        '{"type": "function", "function": {"name": "now", "description": "Current time", '
        '"parameters": {"type": "object", "properties": {}}}}\n'
        "</tools>\n\nFor each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\nTemps a Girona i a Lleida?<|im_end|>\n"
        "<|im_start|>assistant\nHo consulto.\n"
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Girona"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lleida"}}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\n{\"temp\": 18}\n</tool_response>\n"
        "<tool_response>\n{\"error\": \"timeout\"}\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\nGirona: 18 °C; Lleida: no disponible.<|im_end|>\n"
    )


def test_tools_without_system_message_open_the_system_turn_with_the_tool_prompt():
    text = to_chatml(SINGLE)
    assert text.startswith("<|im_start|>system\n# Tools\n\nYou may call one or more functions")
    assert "<|im_start|>assistant\n<tool_call>\n" in text
    assert text.count("<|im_start|>system") == 1


def test_plain_chat_without_tools_is_plain_chatml():
    rec = record([message("system", "Sigues breu."), message("user", "Hola"), message("assistant", "Hola!")])
    assert to_chatml(rec) == (
        "<|im_start|>system\nSigues breu.<|im_end|>\n<|im_start|>user\nHola<|im_end|>\n<|im_start|>assistant\nHola!<|im_end|>\n"
    )


@pytest.mark.parametrize("rec", [SINGLE, PARALLEL, NO_ARGUMENTS, NON_ASCII], ids=["single", "parallel", "no_args", "non_ascii"])
def test_parsing_each_rendered_assistant_turn_gives_back_the_records_calls(rec):
    turns = assistant_turns(to_chatml(rec))
    assert [parse_hermes_tool_calls(turn) for turn in turns] == expected_calls(rec)


def test_arguments_are_json_objects_and_non_ascii_is_kept_readable():
    text = to_chatml(NON_ASCII)
    assert '{"name": "get_weather", "arguments": {"city": "北京", "note": "«ñ» \\"quoted\\" \\\\ back\\nslash"}}' in text
    assert '{"name": "get_weather", "arguments": {"city": "Donostia–San Sebastián"}}' in text
    assert "\\u" not in text
    assert parse_hermes_tool_calls(assistant_turns(text)[0])[1]["arguments"] == {"city": "Donostia–San Sebastián"}
    assert parse_hermes_tool_calls(assistant_turns(to_chatml(NO_ARGUMENTS))[0]) == [{"name": "now", "arguments": {}}]


def test_rendering_is_deterministic():
    assert to_chatml(NON_ASCII) == to_chatml(NON_ASCII) == to_chatml(json.loads(json.dumps(NON_ASCII)))


def test_malformed_arguments_raise():
    rec = record([message("user", "x"), message("assistant", "", tool_calls=[tool_call("get_weather", '{"city": "Par', "call_0")])], [WEATHER])
    with pytest.raises(ValueError, match="not JSON"):
        to_chatml(rec)
    rec = record([message("user", "x"), message("assistant", "", tool_calls=[tool_call("get_weather", "[1, 2]", "call_0")])], [WEATHER])
    with pytest.raises(ValueError, match="not a JSON object"):
        to_chatml(rec)
    # a shard written before NaN was refused: named as the bad arguments, not as the encoder's failure
    rec = record([message("user", "x"), message("assistant", "", tool_calls=[tool_call("get_weather", '{"city": NaN}', "call_0")])], [WEATHER])
    with pytest.raises(ValueError, match=r"'get_weather': arguments are not JSON: NaN is not JSON"):
        to_chatml(rec)
    # nor one of a number out of a float's range: json read it as inf, and dumps refused it unnamed
    rec = record([message("user", "x"), message("assistant", "", tool_calls=[tool_call("get_weather", '{"days": 1e400}', "call_0")])], [WEATHER])
    with pytest.raises(ValueError, match=r"'get_weather': arguments are not JSON: 1e400 is out of a float's range"):
        to_chatml(rec)


def test_a_closing_tag_inside_arguments_does_not_end_the_block():
    """A string argument holding `</tool_call>` (a tool that writes docs about tool calling) ended
    the block there for vLLM's Hermes parser, which then read no call at all from the turn."""
    write_file = tool_def("write_file", "Write a file", {"type": "object", "properties": {
        "path": {"type": "string"}, "text": {"type": "string"}}, "required": ["path", "text"]})
    arguments = {"path": "docs/format.md", "text": "Wrap each call as <tool_call>{...}</tool_call>, then stop."}
    text = to_chatml(record([message("user", "Document the call format."),
                             message("assistant", "", tool_calls=[tool_call("write_file", arguments, "call_0")]),
                             message("tool", "ok", tool_call_id="call_0", name="write_file"),
                             message("assistant", "Done.")], [write_file]))
    [turn] = re.findall(r"<\|im_start\|>assistant\n(<tool_call>.*?)<\|im_end\|>", text, re.S)
    assert turn.count("</tool_call>") == 1
    assert parse_hermes_tool_calls(turn) == [{"name": "write_file", "arguments": arguments}]


def test_parser_follows_vllm_hermes_behaviour():
    assert parse_hermes_tool_calls("Just text, no call.") == []
    # an unclosed last block is still read (vLLM's second regex alternative)
    assert parse_hermes_tool_calls('<tool_call>\n{"name": "now", "arguments": {}}') == [{"name": "now", "arguments": {}}]
    # one broken block: no tool calls at all
    assert parse_hermes_tool_calls('<tool_call>{"name": "a", "arguments": {}}</tool_call><tool_call>{bad}</tool_call>') == []
    # a block without "arguments"
    assert parse_hermes_tool_calls('<tool_call>{"name": "a"}</tool_call>') == []
    # a block nested too deeply for json: not JSON, as for any parser with a depth limit
    assert parse_hermes_tool_calls('<tool_call>{"name": "a", "arguments": ' + "[" * 5_000 + "]" * 5_000 + "}</tool_call>") == []


@pytest.mark.parametrize("rec", [SINGLE, PARALLEL, NO_ARGUMENTS, NON_ASCII], ids=["single", "parallel", "no_args", "non_ascii"])
def test_chat_template_inputs_hold_the_calls_to_chatml_writes(rec):
    """A template writes `arguments | tojson` (Qwen2.5): given the stored string it would write a
    quoted string; given these inputs, the call text `to_chatml` writes and vLLM parses."""
    before = json.dumps(rec)
    messages, tools = chat_template_inputs(rec)
    assert json.dumps(rec) == before and tools == json.loads(rec["tools"]) and tools
    turns = iter(assistant_turns(to_chatml(rec)))
    for msg in messages:
        assert None not in msg.values() and msg["role"] in ("system", "user", "assistant", "tool")
        if msg["role"] == "assistant":
            calls = [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]} for c in msg.get("tool_calls", [])]
            assert parse_hermes_tool_calls(next(turns)) == calls
            assert all(isinstance(call["arguments"], dict) for call in calls)
    assert any(msg.get("tool_calls") for msg in messages) and any("tool_call_id" in msg for msg in messages)


def test_a_call_the_json_reader_refuses_is_no_call():
    """vLLM's parser catches any exception here; an integer of over 4,300 digits raised ValueError."""
    assert parse_hermes_tool_calls('<tool_call>\n{"name": "f", "arguments": {"n": ' + "9" * 5000 + '}}\n</tool_call>') == []


# A shard's row as written (system prompt, two parallel calls, their results), and Dolci's multi-turn
# row through its converter (four assistant turns: a call, an answer, two parallel calls, an answer).
STORED = json.loads((FIXTURES / "openai_messages" / "data.jsonl").read_text().splitlines()[0])
DOLCI_FILE = FIXTURES / "dolci_tool_use" / "train-00000-of-00006.parquet"
_dolci = dict(get_converter("dolci_tool_use")(iter_raw_rows([DOLCI_FILE])))[f"{DOLCI_FILE.name}#3"]
DOLCI = make_record(messages=_dolci.messages, tools=_dolci.tools, source="dolci", licence="odc-by", language="ca", origin={})
RECORDS = [STORED, DOLCI, SINGLE, PARALLEL, NON_ASCII]
RECORD_IDS = ["stored_row", "dolci_multi_turn", "single", "parallel_with_content", "non_ascii"]


def trained_spans(segments) -> list[tuple[int, int]]:
    spans, at = [], 0
    for text, trained in segments:
        if trained:
            spans.append((at, at + len(text)))
        at += len(text)
    return spans


@pytest.mark.parametrize("rec", RECORDS, ids=RECORD_IDS)
def test_segments_are_the_chatml_text_with_each_assistant_output_trained(rec):
    """Trained: from after `<|im_start|>assistant\\n` to after its `<|im_end|>\\n`, character for character."""
    segments = chatml_segments(rec)
    text = to_chatml(rec)
    assert "".join(piece for piece, _ in segments) == text
    turns = list(re.finditer(r"<\|im_start\|>assistant\n(.*?<\|im_end\|>\n)", text, re.S))
    assert len(turns) == sum(m["role"] == "assistant" for m in rec["messages"])
    assert trained_spans(segments) == [turn.span(1) for turn in turns]
    # untrained and trained in turn, none empty: a tokenizer fed piece by piece cuts only at turn edges
    assert [trained for _, trained in segments] == [i % 2 == 1 for i in range(len(segments))]
    assert all(piece for piece, _ in segments)


def test_a_stored_rows_prompt_calls_and_results_are_not_trained_and_its_calls_and_answer_are():
    segments = chatml_segments(STORED)
    assert [trained for _, trained in segments] == [False, True, False, True]
    assert segments[0][0].startswith("<|im_start|>system\nEts un assistent útil.\n\n# Tools\n")
    assert segments[0][0].endswith("<|im_start|>user\nQuin temps fa a Girona i a Lleida?<|im_end|>\n<|im_start|>assistant\n")
    assert segments[1][0] == (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Girona"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lleida"}}\n</tool_call><|im_end|>\n'
    )
    assert segments[2][0] == (
        '<|im_start|>user\n<tool_response>\n{"temp": 18}\n</tool_response>\n'
        '<tool_response>\n{"temp": 21}\n</tool_response><|im_end|>\n<|im_start|>assistant\n'
    )
    assert segments[3][0] == "A Girona fa 18 °C i a Lleida 21 °C.<|im_end|>\n"
    # text before the calls is trained with them, in the same piece
    assert chatml_segments(PARALLEL)[1][0].startswith("Ho consulto.\n<tool_call>\n")


@pytest.mark.parametrize("rec", RECORDS, ids=RECORD_IDS)
def test_the_generation_prompt_of_a_row_without_its_last_answer_is_the_text_before_that_answer(rec):
    """What a model is prompted with on the holdout is what it was trained to continue."""
    *before, (last_answer, trained) = chatml_segments(rec)
    prompt = chatml_segments({**rec, "messages": rec["messages"][:-1]}, generation_prompt=True)
    assert trained and prompt == before
    assert prompt[-1] == (prompt[-1][0], False) and prompt[-1][0].endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert "".join(piece for piece, _ in prompt) + last_answer == to_chatml(rec)


def test_a_generation_prompt_after_an_answer_is_refused():
    with pytest.raises(ValueError, match=r"drop that turn \(messages\[:-1\]\)"):
        chatml_segments(STORED, generation_prompt=True)
