"""Agent-Ark/Toucan-1.5M, config `SFT` (split `train`, files `SFT/train-*.parquet`, 119,287 rows).

Raw layout (six string columns): `uuid`, `subset_name` (single-turn-original /
single-turn-diversify / irrelevant / multi-turn), `question`, `target_tools` (comma-separated bare
tool names), `tools` and `messages`.
- `tools`: a JSON string, OpenAI list `[{"type": "function", "function": {name, description,
  parameters}}]`; names carry the MCP server prefix (`exa-search-web_search_exa`); `parameters`
  is the MCP `input_schema` (JSON Schema, sometimes with `$schema`/`additionalProperties`).
- `messages`: a JSON string in ms-swift agent format, roles `user`, `assistant`, `tool_call`,
  `tool_response`, no system turn. A `tool_call` content is `str(dict)` of the Qwen-Agent call, a
  PYTHON REPR: `{'name': 'srv-tool', 'arguments': '{"q": "x"}'}` (arguments a JSON string, may be
  ""). Parallel calls are consecutive `tool_call` messages followed by consecutive
  `tool_response` messages, matched by position; there are no call ids. Assistant text that
  precedes a call is a separate `assistant` message.

Verified: the producer notebook `data/ms_swift_format_converter.ipynb` in GitHub
TheAgentArk/Toucan (role mapping, `str(function_call)`, tool list built from
`metadata.mcp_servers`), the card's dataset_info/configs (`SFT/train-*`, licence apache-2.0),
public readers of `SFT/*.parquet` (columns uuid/subset_name/tools/messages; ast.literal_eval then
json.loads on tool_call content; positional response matching). See docs/sources/toucan.md.
"""

from __future__ import annotations

import ast
import re

from sftmix.jsontext import loads
from sftmix.record import dumps, message, tool_call, tool_def
from sftmix.sources.base import Converted, Drop
from sftmix.sources.common import PARSER_OVERFLOW, loads_json, to_json_schema, tools_column


def _tool(item) -> dict:
    spec = item.get("function", item) if isinstance(item, dict) else None
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise Drop("invalid_tool_schema", "tool without a name")
    return tool_def(spec["name"], spec.get("description"), to_json_schema(spec.get("parameters")))


# The producer's `str(function_call)` when neither string holds a quote, line break or NUL, and
# every backslash is an escaped one, written `\\` (as the backslash of each of JSON's own escapes
# comes out): then each literal's value is its text with `\\` read as `\`, and `ast.literal_eval`
# (10 µs a call) is not needed.
_PLAIN_LITERAL = r"'([^'\\\n\r\0]*(?:\\\\[^'\\\n\r\0]*)*)'"  # runs of plain characters, then escaped backslashes
PLAIN_REPR_CALL = re.compile(rf"\{{'name': {_PLAIN_LITERAL}, 'arguments': {_PLAIN_LITERAL}\}}")


def _literal_call(content) -> dict:
    plain = PLAIN_REPR_CALL.fullmatch(content) if isinstance(content, str) else None
    if plain:
        return {"name": plain[1].replace("\\\\", "\\"), "arguments": plain[2].replace("\\\\", "\\")}
    return ast.literal_eval(content)  # literals only: nothing is executed


def _parse_call(content) -> tuple[str, dict | str]:
    """`{'name': ..., 'arguments': '<json>'}` (python repr, or JSON) -> (name, arguments)."""
    try:
        call = _literal_call(content)
    except (ValueError, SyntaxError, TypeError, *PARSER_OVERFLOW):
        try:
            call = loads(content)
        except (TypeError, ValueError):
            raise Drop("unparsable_tool_call", f"tool_call content {str(content)[:60]!r}") from None
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        raise Drop("unparsable_tool_call", "tool_call without a name")
    arguments = call.get("arguments")
    if arguments is None:
        return call["name"], {}
    if isinstance(arguments, str):  # Qwen-Agent's "" for no arguments: `tool_call` stores it as {}
        try:
            parsed = loads(arguments)
        except ValueError:
            return call["name"], arguments  # kept verbatim; the tool-call filter judges it
        return call["name"], parsed if isinstance(parsed, dict) else arguments
    return call["name"], arguments


def convert(row: dict) -> Converted:
    raw_messages = loads_json(row["messages"])
    if not isinstance(raw_messages, list) or not raw_messages:
        raise Drop("empty_conversation")
    tools = tools_column(row.get("tools"), _tool)

    messages: list[dict] = []
    batch: list[dict] = []  # calls of the current assistant turn, answered in order
    answered = 0
    n_calls = 0  # ids call_0, call_1, ... run across the whole conversation
    previous = None
    for raw in raw_messages:
        role, content = raw["role"], raw.get("content")
        if role == "tool_call":
            if previous != "tool_call":  # a new batch: the last one must be fully answered
                if answered < len(batch):
                    raise Drop("missing_tool_result", f"{len(batch) - answered} call(s) unanswered")
                batch, answered = [], 0
                if previous == "assistant" and not messages[-1]["tool_calls"]:
                    messages[-1]["tool_calls"] = batch  # text said just before the call goes with it
                else:
                    messages.append(message("assistant", ""))
                    messages[-1]["tool_calls"] = batch
            name, arguments = _parse_call(content)
            try:
                batch.append(tool_call(name, arguments, f"call_{n_calls}"))
            except (TypeError, ValueError):
                raise Drop("unparsable_tool_call", f"{name}: arguments are not JSON-serializable") from None
            n_calls += 1
        elif role == "tool_response":
            if answered >= len(batch):
                raise Drop("unmatched_tool_result", "tool_response without a pending tool_call")
            call = batch[answered]
            text = content if isinstance(content, str) else dumps(content)
            messages.append(message("tool", text, tool_call_id=call["id"], name=call["function"]["name"]))
            answered += 1
        elif role in ("user", "assistant", "system"):
            if answered < len(batch):
                raise Drop("missing_tool_result", f"{role} turn before all tool results")
            messages.append(message(role, content))
        else:
            raise Drop("malformed_row", f"unknown role {role!r}")
        previous = role
    if answered < len(batch):
        raise Drop("missing_tool_result", "conversation ends before the tool results")
    if not any(m["role"] == "assistant" for m in messages):
        raise Drop("empty_conversation", "no assistant turn")
    return Converted(
        messages=messages,
        tools=tools,
        meta={"subset_name": row.get("subset_name")},
        key=row.get("uuid"),
    )
