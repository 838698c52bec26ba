"""Generic ShareGPT-format SFT data, as LLaMA-Factory documents it (tool calls included).

Raw layout (LLaMA-Factory `data/README.md`, "Sharegpt Format", its demo file
`data/glaive_toolcall_en_demo.json`, and `SharegptDatasetConverter` / `FunctionFormatter` in
`src/llamafactory/data/{converter,formatter}.py`): a JSON array (or JSON Lines / Parquet) of
objects with
- `conversations`: a list of `{"from": tag, "value": str}`; tags `human` (user), `gpt`
  (assistant), `function_call` (assistant tool call), `observation` (tool result), `system`
  (only as the first turn, where it overrides the `system` column). `user`/`assistant` are
  accepted as aliases, and `tool` as an alias of `observation` (ToolACE-style dumps).
- `system` (str, optional) and `tools` (optional): a JSON *string* holding a list of function
  definitions `{name, description, parameters}`; the OpenAI wrapper
  `{"type": "function", "function": {...}}` and an already-decoded list are accepted too.
- A `function_call` value is JSON: one `{"name": ..., "arguments": {...}}` object or a list of
  them (parallel calls), exactly what LLaMA-Factory's `FunctionFormatter` json.loads.
  `arguments` is normally an object; a string holding a JSON object is stored as the object is,
  any other string verbatim (the tool-call filter judges it), null means no arguments.
- LLaMA-Factory's alternation puts ONE `observation` after a `function_call`. With parallel calls
  that single observation is split per call when it holds the calls' results joined by
  LLaMA-Factory's own separator `"\\n</tool_response>\\n<tool_response>\\n"` or is a JSON list with
  one element per call; several consecutive observation turns are matched to the calls in order.
  Anything else cannot be attributed and is an `unmatched_tool_result` drop.
Optional extra columns: `id` (the key) and `language`.

Mapping: call ids are `call_0, call_1, ...` across the conversation; a `function_call` right
after a `gpt` turn becomes that assistant message's tool calls; user or tool turns after the
last assistant turn are trimmed (nothing answers them).
"""

from __future__ import annotations

import json

from sftmix.jsontext import loads
from sftmix.record import dumps, message, tool_def
from sftmix.sources.base import Converted, Drop
from sftmix.sources.common import call_from_dict, iso639_1, to_json_schema, tools_column, trim_unanswered

ROW_LANGUAGE = "where_given"  # an optional `language` column: rows without it get the source's `language:`

TAGS = {
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant",
    "function_call": "call",
    "observation": "result", "tool": "result",
    "system": "system",
}
# How LLaMA-Factory joins consecutive tool results into one observation turn.
RESULT_SEPARATOR = "\n</tool_response>\n<tool_response>\n"


def _tool(tool) -> dict:
    if isinstance(tool, dict) and tool.get("type") == "function" and isinstance(tool.get("function"), dict):
        tool = tool["function"]
    if not (isinstance(tool, dict) and isinstance(tool.get("name"), str) and tool["name"]):
        raise Drop("invalid_tool_schema", f"tool without a name: {str(tool)[:60]}")
    return tool_def(tool["name"], tool.get("description"), to_json_schema(tool.get("parameters")))


def _calls(value, first: int) -> list[dict]:
    """Tool calls from a `function_call` value, numbered from call_<first>."""
    if isinstance(value, str):
        try:
            value = loads(value)
        except json.JSONDecodeError:
            raise Drop("unparsable_tool_call", value[:80]) from None
    items = value if isinstance(value, list) else [value]
    if not items:
        raise Drop("unparsable_tool_call", "empty call list")
    return [call_from_dict(item, f"call_{first + offset}") for offset, item in enumerate(items)]


def _split_results(text: str, n: int) -> list[str]:
    """One observation answering n parallel calls, split per call when that is unambiguous."""
    parts = text.split(RESULT_SEPARATOR)
    if len(parts) == n:
        return parts
    try:
        value = loads(text)
    except json.JSONDecodeError:
        return [text]
    if isinstance(value, list) and len(value) == n:
        return [v if isinstance(v, str) else dumps(v) for v in value]
    return [text]


def _turns(row: dict) -> list[tuple[str, object]]:
    conversations = row["conversations"]
    if not isinstance(conversations, list):
        raise Drop("malformed_row", f"conversations is {type(conversations).__name__}")
    turns = []
    for turn in conversations:
        tag = turn["from"]
        if tag not in TAGS:
            raise Drop("unknown_role", str(tag))
        value = turn.get("value")
        kind = TAGS[tag]
        if value is None:
            value = ""
        if isinstance(value, (dict, list)) and kind == "result":
            value = dumps(value)
        elif not isinstance(value, str) and not (kind == "call" and isinstance(value, (dict, list))):
            raise Drop("malformed_row", f"{tag} value is {type(value).__name__}")
        turns.append((kind, value))
    return turns


def convert(row: dict) -> Converted:
    tools = tools_column(row.get("tools"), _tool)
    turns = _turns(row)
    if not turns:
        raise Drop("empty_conversation")
    system = row.get("system") or ""
    if turns[0][0] == "system":  # LLaMA-Factory: a leading system turn overrides the column
        system, turns = turns[0][1], turns[1:]
    if not isinstance(system, str):
        raise Drop("malformed_row", f"system is {type(system).__name__}")
    messages = [message("system", system)] if system.strip() else []
    pending: list[tuple[str, str]] = []  # (id, name) of the last call turn's unanswered calls
    n_calls = merged = split = 0
    i = 0
    while i < len(turns):
        kind, value = turns[i]
        previous = messages[-1] if messages else None
        if kind == "result":
            j = i
            while j < len(turns) and turns[j][0] == "result":
                j += 1
            results = [text for _, text in turns[i:j]]
            if len(results) == 1 and len(pending) > 1:
                results = _split_results(results[0], len(pending))
                split += len(results) > 1
            if not pending or len(results) != len(pending):
                raise Drop("unmatched_tool_result", f"{len(results)} result(s) for {len(pending)} call(s)")
            for (call_id, name), text in zip(pending, results):
                messages.append(message("tool", text, tool_call_id=call_id, name=name))
            pending, i = [], j
            continue
        if kind == "call":
            calls = _calls(value, n_calls)
            n_calls += len(calls)
            if previous and previous["role"] == "assistant" and not previous["tool_calls"]:
                previous["tool_calls"], merged = calls, merged + 1  # "Let me check." then the call
            elif previous and previous["role"] == "assistant":
                raise Drop("consecutive_assistant_turns", "call after call")
            else:
                messages.append(message("assistant", "", tool_calls=calls))
            pending = [(c["id"], c["function"]["name"]) for c in calls]
        elif not value.strip():
            raise Drop("empty_turn", f"empty {kind} turn")
        elif kind == "assistant":
            if previous and previous["role"] == "assistant":
                raise Drop("consecutive_assistant_turns", value[:60])
            messages.append(message("assistant", value))
            pending = []
        else:  # user or a later system turn
            messages.append(message(kind, value))
            pending = []
        i += 1
    trimmed = trim_unanswered(messages)
    language, key = row.get("language"), row.get("id")
    counts = {"merged_turns": merged, "split_results": split, "trimmed_tail": trimmed}
    return Converted(
        messages=messages,
        tools=tools,
        language=iso639_1(language) if isinstance(language, str) else None,
        meta={k: v for k, v in counts.items() if v},
        key=str(key) if key not in (None, "") else None,
    )
