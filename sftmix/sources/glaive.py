"""glaiveai/glaive-function-calling-v2: `{system, chat}` text transcripts with inline tool calls.

Raw layout (one file, `glaive-function-calling-v2.json`, a JSON array; split `train`; both
columns are plain strings). Verified against the datasets-server `/info` + `/first-rows` quotes
in a third-party dataset card, Anyscale's `fc_utils/data_format.py` + `preprocessing.py` and its
README notebook output, and a third-party importer test that quotes rows verbatim (see
docs/sources/glaive.md):

- `system`: either `"SYSTEM: You are a helpful assistant, with no access to external
  functions.\\n\\n"` (rows without tools) or the lead-in `"SYSTEM: You are a helpful assistant
  with access to the following functions. Use them if required -\\n"` followed by one or more
  pretty-printed JSON function objects `{name, description, parameters}` separated by blank
  lines. `parameters` is usually JSON Schema, sometimes `{}`; a few rows repeat a name.
- `chat`: turns `USER: ...`, `ASSISTANT: ... <|endoftext|>`, `FUNCTION RESPONSE: {...}` separated
  by `"\\n\\n\\n"` (`"\\n\\n"` in rows without tools). A call is
  `<functioncall> {"name": "f", "arguments": '{"a": 1}'}`: the arguments are a single-quoted
  string (so the call is not JSON; the string itself may hold apostrophes, be pretty-printed,
  or be broken JSON), occasionally a plain JSON object. Results carry no name or id: each
  answers the call of the assistant turn before it. Known damage: stray `ASSISTANT:` markers
  inside turns (after a single newline, e.g. rows 44369 and 9046), text before `<functioncall>`
  or in a separate assistant turn, other call syntaxes, truncated last turns, rows ending on a
  user turn.

Mapping decisions: the fixed lead-in sentence is dropped (it only introduces the function
block, which moves to `tools`); any other system text is kept as the system message, including
the no-tools sentence. Call ids are `call_0, call_1, ...` across the row. A role marker opening a
line inside a turn drops the row (`stray_turn_marker`): cutting the turn there, or merging the
piece with the next call turn, would put one role's words in another's mouth.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache

from sftmix.jsonarray import NOT_AN_OBJECT, decode_object
from sftmix.jsontext import STRICT_DECODER, loads
from sftmix.record import dumps, encoded_tool, message, tool_call, tool_def
from sftmix.sources.base import Converted, Drop
from sftmix.sources.common import to_json_schema, trim_unanswered

LEAD_IN = "You are a helpful assistant with access to the following functions. Use them if required -"
END = "<|endoftext|>"
CALL = "<functioncall>"
# Role markers open a line; only one after a blank line (or the first) starts a turn, the others
# are glued inside a turn (checked in `_turns`). The first line is matched on its own: a
# pattern that starts with a newline lets `re` jump from newline to newline (4 times faster).
MARKER = re.compile(r"\n[ \t]*(USER|ASSISTANT|FUNCTION RESPONSE):")
FIRST_MARKER = re.compile(r"[ \t]*(USER|ASSISTANT|FUNCTION RESPONSE):")
# The non-JSON call form: arguments wrapped in single quotes, taken up to the last quote.
QUOTED_CALL = re.compile(
    r'\A\{\s*"name"\s*:\s*"(?P<name>(?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*\'(?P<args>.*)\'\s*\}\Z', re.S
)



def _arguments(text: str) -> tuple[dict | str, bool]:
    """Arguments as a dict when they are a JSON object, else the raw text (and a malformed flag)."""
    try:
        value = loads(text, STRICT_DECODER)
    except ValueError:
        return text, True
    return (value, False) if isinstance(value, dict) else (text, True)


def _parse_call(text: str) -> tuple[str, dict | str, bool]:
    """(name, arguments, malformed) from the text after `<functioncall>`."""
    # The common, quoted form first: a quote where a JSON value must start, so never valid JSON.
    match = QUOTED_CALL.match(text)
    if match:
        return loads(f'"{match["name"]}"'), *_arguments(match["args"])
    try:
        call = loads(text)
    except json.JSONDecodeError:
        raise Drop("unparsable_tool_call", text[:80]) from None
    if not (isinstance(call, dict) and isinstance(call.get("name"), str) and "arguments" in call):
        raise Drop("unparsable_tool_call", text[:80])
    args = call["arguments"]
    if isinstance(args, dict):
        return call["name"], args, False
    if isinstance(args, str):
        return call["name"], *_arguments(args)
    return call["name"], dumps(args), True  # null / list arguments: kept for the filter to judge


def _tool(function: dict) -> dict:
    return tool_def(function["name"], function.get("description"), to_json_schema(function.get("parameters")))


# Rows repeat their functions: each block's text is decoded, and its tool made, once per process.
_block = lru_cache(maxsize=8192)(decode_object)


@lru_cache(maxsize=8192)
def _block_tool(text: str) -> dict:
    return encoded_tool(_tool(_block(text)))


def _tools(system: str) -> tuple[str, list[dict], int]:
    """(system text to keep, tool defs, identical duplicates removed) from the `system` column."""
    text = system.strip()
    text = text[len("SYSTEM:"):].strip() if text.startswith("SYSTEM:") else text
    if not text.startswith(LEAD_IN):
        return text, [], 0
    rest, functions, decoder = text[len(LEAD_IN):], [], json.JSONDecoder()
    while (rest := rest.lstrip()).startswith("{"):
        # The card's blocks are indented JSON, where only the object's own closing brace starts a
        # line: the text up to it keys the cache when it decodes whole. Other layouts are decoded in place.
        end = rest.find("\n}") + 2
        block = rest[:end] if end > 1 else None
        function = _block(block) if block else NOT_AN_OBJECT
        if function is NOT_AN_OBJECT:
            block = None
            try:
                function, end = decoder.raw_decode(rest)
            except json.JSONDecodeError as error:
                raise Drop("invalid_tool_schema", f"function block: {error}") from None
        if not (isinstance(function, dict) and isinstance(function.get("name"), str)):
            raise Drop("invalid_tool_schema", "function without a name")
        functions.append((block, function))
        rest = rest[end:]
    tools, seen = [], {}
    for block, function in functions:
        name = function["name"]
        if name in seen:
            if seen[name] != function:  # two definitions for one name: no call could be judged
                raise Drop("duplicate_tool_name", name)
            continue
        seen[name] = function
        tools.append(_block_tool(block) if block else _tool(function))
    return rest.strip(), tools, len(functions) - len(tools)


def _turns(chat: str) -> list[tuple[str, str]]:
    first = FIRST_MARKER.match(chat)
    marks = ([first] if first else []) + list(MARKER.finditer(chat))
    if not marks:
        raise Drop("empty_conversation", "no turn markers")
    if chat[: marks[0].start()].strip():
        raise Drop("malformed_row", "text before the first turn marker")
    ends = [m.start() for m in marks[1:]] + [len(chat)]
    for end in ends[:-1]:
        # Real turns are separated by blank lines; after a single newline the marker is text the
        # generator glued into a turn (a user's words, a result's tail), not the turn it names.
        if chat[end - 1] != "\n" and (before := chat[chat.rfind("\n", 0, end) + 1 : end]).strip():
            raise Drop("stray_turn_marker", f"{MARKER.match(chat, end)[1]} after {before[-60:]!r}")
    return [(m[1], chat[m.end() : end].strip()) for m, end in zip(marks, ends)]


def convert(row: dict) -> Converted:
    system_text, tools, duplicates = _tools(row["system"])
    messages = [message("system", system_text)] if system_text else []
    pending: list[tuple[str, str]] = []  # (id, name) of calls still waiting for a result
    n_calls = malformed = merged = skipped = 0
    for role, text in _turns(row["chat"]):
        if role == "ASSISTANT":
            if not text.endswith(END):
                raise Drop("truncated_turn", text[-60:])
            text = text[: -len(END)].strip()
        if END in text:  # an end marker inside a turn: the turn boundaries are scrambled
            raise Drop("stray_end_marker", f"{role}: {text[:60]}")
        if not text:
            skipped += 1
            continue
        if role == "USER":
            messages.append(message("user", text))
            pending = []
        elif role == "FUNCTION RESPONSE":
            if not pending:
                raise Drop("unmatched_tool_result", text[:60])
            call_id, name = pending.pop(0)
            messages.append(message("tool", text, tool_call_id=call_id, name=name))
        else:
            content, found, call_text = text.partition(CALL)
            calls = []
            for piece in call_text.split(CALL) if found else []:  # text before the call is content
                name, arguments, bad = _parse_call(piece.strip())
                calls.append(tool_call(name, arguments, f"call_{n_calls}"))
                n_calls, malformed = n_calls + 1, malformed + bad
            previous = messages[-1] if messages else None
            if previous and previous["role"] == "assistant":
                if not calls or previous["tool_calls"]:
                    raise Drop("consecutive_assistant_turns", text[:60])
                # "Sure, let me check. <|endoftext|>" then the call in its own turn: one message.
                previous["tool_calls"], merged = calls, merged + 1
                if content.strip():
                    previous["content"] = f"{previous['content']}\n{content.strip()}"
            else:
                messages.append(message("assistant", content.strip(), tool_calls=calls))
            pending = [(c["id"], c["function"]["name"]) for c in calls]
    trimmed = trim_unanswered(messages)
    counts = {
        "malformed_arguments": malformed,
        "merged_turns": merged,
        "skipped_empty_turns": skipped,
        "trimmed_tail": trimmed,
        "duplicate_tools_removed": duplicates,
    }
    return Converted(messages=messages, tools=tools, meta={k: v for k, v in counts.items() if v})
