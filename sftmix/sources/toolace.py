"""Team-ACE/ToolACE: multi-turn function-calling dialogs (en + zh), one JSON array `data.json`.

Raw layout (11,300 rows): `{"system": str, "conversations": [{"from": "user"|"assistant"|"tool",
"value": str}, ...]}`. Re-uploads use `human`/`gpt`; both spellings are accepted.

- Tools live inside `system`: a fixed instruction ("You are an expert in composing functions. ...
  You should only return the function call in tools call sections.\n"), then "Here is a list of
  functions in JSON format that you can invoke:\n", a JSON list of `{name, description, parameters:
  {type: "dict", properties, required: [...]}, required: null}`, then the fixed suffix ". \nShould
  you decide to return the function call(s). \nPut it in the format of [func1(params_name=...),
  func2(params)]\n\nNO other text MUST be included. \n". Names may contain spaces, slashes, dots
  and hyphens ("Get Manager Placeholder Image", "/madlibs-diceware"); they are kept verbatim.
- Assistant calls are python syntax in brackets: `[GetCompetitions(), Func Name(a=1, b="x")]`,
  parsed with `parse_python_calls` (ast, never eval); argument names may be python keywords
  (`from="USD", to="EUR"`).
- Tool results: `from: "tool"`, value = JSON string of a list `[{"name": ..., "results": {...}}]`,
  one entry per call of the preceding assistant turn.

Verified against a verbatim data.json row quoted in public notes, the NVlabs Tool-N1
`_process_toolace` / `_extract_functions_from_system` code, the Hub card (apache-2.0, en/zh) and a
load of the file reporting 11,300 rows. See docs/sources/toolace.md.

Decisions:
- The system prompt's fixed template (behaviour prefix + call-format suffix) is removed along with
  the function list: it is identical boilerplate, and its "[func(...)] and NO other text" format
  contradicts the structured calls and the tool block the renderer writes. Any other text found
  in `system` (a non-template instruction) is kept as the system message.
- An assistant turn is a call turn only if its stripped text starts with "[" and ends with "]" and
  parses as a call list. Text that fails to parse stays prose (e.g. "[Note] ..."), unless it opens
  with "[<known tool name>(" : then it is a broken call and the row drops (`unparsable_tool_call`).
"""

from __future__ import annotations

import json
import re

from sftmix.jsontext import loads
from sftmix.record import dumps, message, tool_call, tool_def
from sftmix.sources.base import Converted, Drop
from sftmix.sources.common import parse_python_calls, to_json_schema

_ROLES = {
    "user": "user", "human": "user",
    "assistant": "assistant", "gpt": "assistant",
    "tool": "tool", "function": "tool", "observation": "tool",
    "system": "system",
}


def _loose(text: str) -> str:
    """Regex for `text` that tolerates any whitespace between its words."""
    return r"\s*".join(re.escape(word) for word in text.split())


_MARKER = re.compile(_loose("Here is a list of functions in JSON format that you can invoke") + r"\s*[:.]?\s*")
# The template's sentences before and after the function list. Each pattern opens with a word, so
# a search only starts where that word does; the whitespace (and period) before it is cut by `_cut`.
_PREFIX = re.compile(_loose(
    "You are an expert in composing functions. You are given a question and a set of possible functions. "
    "Based on the question, you will need to make one or more function/tool calls to achieve the purpose. "
    "If none of the function can be used, point it out. If the given question lacks the parameters required "
    "by the function, also point it out. You should only return the function call in tools call sections."
))
_SUFFIX = re.compile(_loose(
    "Should you decide to return the function call(s). Put it in the format of "
    "[func1(params_name=params_value, params_name2=params_value2...), func2(params)] "
    "NO other text MUST be included."
))


def _cut(text: str, sentences: re.Pattern, period: bool) -> str:
    r"""`text` without the first match of `sentences` and the whitespace before it (with `period`,
    whitespace, a period and whitespace): `re.sub(r"\s*\.?\s*" + sentences.pattern, "", text,
    count=1)` in one pass. That regex tried each whitespace run from every one of its characters,
    splitting it between its two `\s*` every way: 4.5 s for a run of 2,000 spaces, 35 s for 4,000."""
    found = sentences.search(text)
    if found is None:
        return text
    before = text[:found.start()].rstrip()
    if period and before.endswith("."):
        before = before[:-1].rstrip()
    return before + text[found.end():]
_DECODER = json.JSONDecoder()


def _find_tool_list(system: str) -> tuple[int, int, object] | None:
    """(start, end, decoded list) of the function list in `system`, or None when there is none."""
    marker = _MARKER.search(system)
    if marker:
        try:
            decoded, end = _DECODER.raw_decode(system, marker.end())
        except json.JSONDecodeError as error:
            raise Drop("malformed_json", f"function list in system: {error}") from None
        return marker.start(), end, decoded
    # No English marker (e.g. a translated template): take the first JSON list of named objects.
    for found in re.finditer(r"\[\s*\{", system):
        try:
            decoded, end = _DECODER.raw_decode(system, found.start())
        except json.JSONDecodeError:
            continue
        if isinstance(decoded, list) and all(isinstance(t, dict) and "name" in t for t in decoded):
            return found.start(), end, decoded
    return None


def _split_system(system: str) -> tuple[str, list[dict]]:
    """The system text left once template and function list are removed, and the tool defs."""
    found = _find_tool_list(system)
    if found is None:
        return system.strip(), []
    start, end, raw_tools = found
    if not isinstance(raw_tools, list):
        raise Drop("invalid_tool_schema", "function list is not a JSON list")
    head = _cut(system[:start], _PREFIX, period=False)
    tail = _cut(system[end:], _SUFFIX, period=True)
    extra = "\n".join(part.strip() for part in (head, tail) if part.strip())
    return extra, [_tool(spec) for spec in raw_tools]


def _tool(spec) -> dict:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise Drop("invalid_tool_schema", "function without a name")
    parameters = spec.get("parameters")
    # `required` normally sits inside `parameters` (the top-level one is null); keep a list found outside.
    if isinstance(parameters, dict) and "required" not in parameters and isinstance(spec.get("required"), list):
        parameters = {**parameters, "required": spec["required"]}
    return tool_def(spec["name"], spec.get("description"), to_json_schema(parameters))


# "[name(" (the name with the whitespace before "(", stripped below); possessive, as
# `common._CALL_NAME` is, for the same reason.
_CALL_OPENING = re.compile(r"\[\s*+([^\[\]()]++)\(")


def _calls(text: str, tool_names: set[str]) -> list[tuple[str, dict]] | None:
    """The calls of an assistant turn, or None when the turn is prose."""
    body = text.strip()
    opening = _CALL_OPENING.match(body)
    names_a_tool = bool(opening) and opening.group(1).rstrip() in tool_names
    if body.startswith("[") and body.endswith("]"):
        try:
            return parse_python_calls(body, bracketed=True)
        except Drop:
            if names_a_tool:
                raise
            return None
    if names_a_tool:
        raise Drop("unparsable_tool_call", "text after the call list")
    return None


def _squash(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name).lower()


class _Pending:
    """Calls of the last assistant turn still waiting for a result."""

    def __init__(self, calls: list[dict]):
        self.calls = list(calls)

    def take(self, name) -> dict:
        if not self.calls:
            raise Drop("unmatched_tool_result", f"no open call for result {name!r}")
        if name is None:  # an unnamed result answers the next call, by position
            return self.calls.pop(0)
        for same in (lambda c: c["function"]["name"] == name, lambda c: _squash(c["function"]["name"]) == _squash(name)):
            for i, call in enumerate(self.calls):
                if same(call):
                    return self.calls.pop(i)
        raise Drop("unmatched_tool_result", f"result for {name!r} matches no open call")


def _results(value: str, pending: _Pending) -> list[dict]:
    """Tool messages for one `tool` turn, each paired with the call it answers."""
    try:
        entries = loads(value)
    except json.JSONDecodeError:
        entries = [value]  # plain-text result: answers the next open call
    if not isinstance(entries, list):
        entries = [entries]
    out = []
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            name = entry["name"]
            result = entry["results"] if "results" in entry else {k: v for k, v in entry.items() if k != "name"}
        else:
            name, result = None, entry
        call = pending.take(name)
        content = result if isinstance(result, str) else dumps(result)
        out.append(message("tool", content, tool_call_id=call["id"], name=call["function"]["name"]))
    if not out:
        raise Drop("unmatched_tool_result", "empty tool result list")
    return out


def convert(row: dict) -> Converted:
    system = row.get("system") or ""
    if not isinstance(system, str):
        raise Drop("malformed_row", "system is not a string")
    extra, tools = _split_system(system)
    names = {t["function"]["name"] for t in tools}
    messages = [message("system", extra)] if extra else []
    pending, n_calls = _Pending([]), 0
    for turn in row["conversations"]:
        role = _ROLES.get(turn.get("from"))
        value = turn.get("value")
        if role is None or not isinstance(value, (str, type(None))):
            raise Drop("malformed_row", f"bad turn from={turn.get('from')!r}")
        value = value or ""
        if role == "tool":
            messages.extend(_results(value, pending))
            continue
        pending = _Pending([])  # results must follow their call turn directly
        calls = _calls(value, names) if role == "assistant" else None
        if calls is None:
            messages.append(message(role, value))
            continue
        tool_calls = [tool_call(name, arguments, f"call_{n_calls + i}") for i, (name, arguments) in enumerate(calls)]
        n_calls += len(tool_calls)
        messages.append(message("assistant", "", tool_calls=tool_calls))
        pending = _Pending(tool_calls)
    if not any(m["role"] != "system" for m in messages):
        raise Drop("empty_conversation")
    return Converted(messages=messages, tools=tools)
