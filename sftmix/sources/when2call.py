"""nvidia/When2Call: when (not) to call a tool; single-turn, English, tools from xLAM/BFCL.

Raw layouts, one JSON object per line (`.jsonl`), told apart by their columns:

- `train/when2call_train_sft.jsonl` (config `train_sft`, 15,000 rows; the one the FC mixture
  uses): `tools` = list of tool objects `{name, description, parameters: {type: "dict",
  properties: {p: {description, type: "str"|"int"|"List[int]"|"str, optional"..., default}}},
  required: [...]}`; note `required` sits BESIDE `parameters` (xLAM-derived). `messages` = `[{role:
  "user", content}, {role: "assistant", content}]`, no system turn, no tool results. A tool-call
  answer is text: `<TOOLCALL>[{"name": ..., "arguments": {...}}]</TOOLCALL>`; request-for-info and
  cannot-answer answers are plain prose.
- `train/when2call_train_pref.jsonl` (config `train_pref`): `tools`, `messages` (user turn only),
  `chosen_response` / `rejected_response` = `{role: "assistant", content}`; we keep the chosen one.
- `test/when2call_test_{mcq,llm_judge}.jsonl`: `uuid, source, source_id, question, correct_answer,
  answers{direct, tool_call, request_for_info, cannot_answer}, target_tool, tools`, plus
  `orig_question`/`held_out_param`/`orig_tools` on some rows only. `tools` is a list of JSON
  STRINGS (BFCL schemas, `required` inside `parameters`); `answers.tool_call` is a JSON string
  `{"name", "arguments"}` without TOOLCALL tags. This is evaluation data: convert it only on purpose.

Verified: README + generator code of GitHub NVIDIA/When2Call (`synthetic_data_gen/
convert_raw_train_data_to_{sft,pref}.py`), the test llm_judge file itself from that repo, and a
third-party profile of the Hub train files (columns `tools`/`messages`, and `chosen_response`/
`rejected_response` for pref, no reward columns). See docs/sources/when2call.md.
"""

from __future__ import annotations

import json

from sftmix.jsontext import loads
from sftmix.record import message, tool_call, tool_def
from sftmix.sources.base import Converted, Drop
from sftmix.sources.common import loads_json, to_json_schema

FILTER_DEFAULTS = {"boilerplate": False}  # its "cannot answer" refusals are what the dataset teaches

OPEN, CLOSE = "<TOOLCALL>", "</TOOLCALL>"
_ROLES = {"user": "user", "assistant": "assistant", "system": "system"}


def _tools(raw_tools) -> list[dict]:
    tools = []
    for raw in raw_tools or []:
        spec = loads_json(raw, "invalid_tool_schema")  # test files store each tool as a JSON string
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise Drop("invalid_tool_schema", "tool without a name")
        parameters = spec.get("parameters")
        # The train files put `required` next to `parameters`; move it inside so it is not lost.
        if isinstance(parameters, dict) and "required" not in parameters and isinstance(spec.get("required"), list):
            parameters = {**parameters, "required": spec["required"]}
        tools.append(tool_def(spec["name"], spec.get("description"), to_json_schema(parameters)))
    return tools


class _Calls:
    """Numbers calls `call_0`, `call_1`, ... across one conversation (the source has no ids)."""

    def __init__(self):
        self.count = 0

    def make(self, item) -> dict:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise Drop("unparsable_tool_call", "call without a name")
        arguments = item.get("arguments")
        # A string is kept verbatim (may be malformed; the tool-call filter judges it).
        call = tool_call(item["name"], {} if arguments is None else arguments, f"call_{self.count}")
        self.count += 1
        return call


def _assistant(content, calls: _Calls) -> dict:
    """An assistant turn; `<TOOLCALL>[...]</TOOLCALL>` text becomes real tool calls."""
    text = content or ""
    if OPEN not in text:
        return message("assistant", text)
    blocks, prose = _toolcall_blocks(text)
    if not blocks:
        raise Drop("unparsable_tool_call", "unclosed <TOOLCALL>")
    tool_calls = []
    for block in blocks:
        try:
            items = loads(block)
        except json.JSONDecodeError as error:
            raise Drop("unparsable_tool_call", f"TOOLCALL body is not JSON: {error}") from None
        for item in items if isinstance(items, list) else [items]:
            tool_calls.append(calls.make(item))
    if not tool_calls:
        raise Drop("unparsable_tool_call", "empty TOOLCALL list")
    return message("assistant", prose.strip(), tool_calls=tool_calls)


def _toolcall_blocks(text: str) -> tuple[list[str], str]:
    """The bodies of `text`'s closed TOOLCALL blocks, and the text without them. An opener with no
    closer after it means none after it has one: `re` retried each to the end (quadratic)."""
    blocks, prose, position = [], [], 0
    while (start := text.find(OPEN, position)) >= 0 and (end := text.find(CLOSE, start + len(OPEN))) >= 0:
        prose.append(text[position:start])
        blocks.append(text[start + len(OPEN):end])
        position = end + len(CLOSE)
    prose.append(text[position:])
    return blocks, "".join(prose)


def _chat(turns, calls: _Calls) -> list[dict]:
    messages = []
    for turn in turns or []:
        role = _ROLES.get(turn.get("role"))
        if role is None:
            raise Drop("malformed_row", f"unknown role {turn.get('role')!r}")
        if role == "assistant":
            messages.append(_assistant(turn.get("content"), calls))
        else:
            messages.append(message(role, turn.get("content")))
    return messages


def _test_answer(row: dict, calls: _Calls) -> dict:
    kind = row["correct_answer"]
    answer = row["answers"][kind]
    if kind != "tool_call":
        return message("assistant", answer)
    item = loads_json(answer, "unparsable_tool_call")
    return message("assistant", "", tool_calls=[calls.make(item)])


def convert(row: dict) -> Converted:
    calls = _Calls()
    tools = _tools(row.get("tools"))
    if "correct_answer" in row and "answers" in row:
        messages = [message("user", row["question"]), _test_answer(row, calls)]
        meta = {"layout": "test", "correct_answer": row["correct_answer"], "source_id": row.get("source_id")}
        return Converted(messages=messages, tools=tools, meta=meta, key=row.get("uuid"))
    if "chosen_response" in row:
        messages = _chat(list(row.get("messages") or []) + [row["chosen_response"]], calls)
        layout = "train_pref"
    elif "messages" in row:
        messages = _chat(row["messages"], calls)
        layout = "train_sft"
    else:
        raise Drop("malformed_row", "no messages, chosen_response or answers column")
    if not messages:
        raise Drop("empty_conversation")
    return Converted(messages=messages, tools=tools, meta={"layout": layout})
