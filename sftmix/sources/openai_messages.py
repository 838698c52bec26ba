"""Rows already in (or close to) the canonical layout: OpenAI chat `messages` plus `tools`.

This is also how the pipeline re-reads its own shards (a manifest source may be another
mixture), so a canonical row (sftmix.record.SCHEMA) converts back to the very same messages,
tools, language and licence, and therefore the same content id.

Expected raw layout (OpenAI Chat Completions wire format, as LLaMA-Factory's "OpenAI Format"
and its `OpenAIDatasetConverter` read it; JSON array, JSON Lines or Parquet):
- `messages`: list of `{role, content, tool_calls?, tool_call_id?, name?}`. Roles
  system/user/assistant/tool; `developer` is read as system, the legacy `function` role as tool.
  `content` is a string, null, or a list of `{"type": "text", "text": ...}` parts (joined; any
  other part type is a `non_text_content` drop). Assistant `tool_calls` are
  `{id?, type?, function: {name, arguments}}` (a flat `{name, arguments}` is accepted) with
  `arguments` a JSON string (stored as its object is when it holds one, else verbatim, even when
  broken: `sftmix.record.tool_call`) or an object (serialized); the legacy assistant
  `function_call: {name, arguments}` is one call. Every call is numbered `call_<n>`, n counting
  calls across the conversation, as every converter numbers them, and results follow: the row's
  own ids (random in API logs) are no content, and two copies that differ only in them get one
  content id. A `tool_call_id` names the latest turn's call with that id (the first of them
  not yet answered, when the row gave two calls one id). A tool message without `tool_call_id` answers the first
  unanswered call of the latest call turn (of its tool, when it names one: parallel results may
  come back in another order); an id that names no earlier call is an
  `unmatched_tool_result` drop. A missing tool `name` is the call's name; another tool's name is
  the role-order rule's `tool_result_name_mismatch` drop.
- `tools` (optional): a list or a JSON string of OpenAI tool definitions
  `{"type": "function", "function": {name, description, parameters}}` (bare
  `{name, description, parameters}` accepted). Parameters that are already a `"type": "object"`
  JSON Schema are kept verbatim but for a `$schema` (re-normalizing would reorder keys and change
  canonical ids);
  anything else goes through `to_json_schema`.
- Optional: `language` (any code or name; ISO 639-1 kept), `licence` (per-row, as canonical
  rows carry it), `source` and `origin` (kept in meta for provenance, a generated row's `input_licences`
  lifted out of it), `id` (the key only: ids
  are recomputed from content).
"""

from __future__ import annotations

from sftmix.jsontext import loads
from sftmix.record import dumps, input_licences, message, tool_def
from sftmix.sources.base import Converted, Drop
from sftmix.sources.common import call_from_dict, iso639_1, to_json_schema, tools_column

ROW_LANGUAGE = "where_given"  # an optional `language` field: rows without it get the source's `language:`
INPUT_LICENCES = True  # a re-read generated row's, lifted out of its origin

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool", "function": "tool"}


def _tool(tool) -> dict:
    if isinstance(tool, dict) and isinstance(tool.get("function"), dict):
        tool = tool["function"]
    if not (isinstance(tool, dict) and isinstance(tool.get("name"), str) and tool["name"]):
        raise Drop("invalid_tool_schema", f"tool without a name: {str(tool)[:60]}")
    parameters = tool.get("parameters")
    if not (isinstance(parameters, dict) and parameters.get("type") == "object"):
        parameters = to_json_schema(parameters)
    elif "$schema" in parameters:  # every tool is read as draft 7, as `to_json_schema` leaves it out
        parameters = {key: value for key, value in parameters.items() if key != "$schema"}
    return tool_def(tool["name"], tool.get("description"), parameters)


def _input_licences(origin: str | None) -> list[str] | None:
    """The `input_licences` of a canonical row's `origin` (a generated row's, in another mixture's
    shards): the text it holds is under them too, so a remix and its rejected files name them."""
    try:
        return (input_licences(loads(origin)) or None) if origin else None
    except (ValueError, AttributeError):  # not JSON (or nested past the decoder's depth), or not an object
        return None


def _content(value) -> str:
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, list):  # content parts
        texts = []
        for part in value:
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise Drop("non_text_content", str(part)[:60])
            texts.append(part["text"])
        return "".join(texts)
    raise Drop("malformed_row", f"content is {type(value).__name__}")


def _tool_content(value) -> str:
    """A tool result: text, content parts, or an object/array result serialized with `dumps`."""
    is_parts = isinstance(value, list) and value and all(isinstance(p, dict) and p.get("type") == "text" for p in value)
    return dumps(value) if isinstance(value, (dict, list)) and not is_parts else _content(value)


def _calls(msg: dict, first: int) -> tuple[list[dict], dict[str, list[str]]]:
    """The turn's calls, numbered `call_<first>`, `call_<first + 1>`...; and each id the row gave
    a call -> the new ids of the calls it named (one, unless the row gave two calls one id)."""
    raw = msg.get("tool_calls") or ([msg["function_call"]] if msg.get("function_call") else [])
    if not isinstance(raw, list):
        raise Drop("unparsable_tool_call", f"tool_calls is {type(raw).__name__}")
    calls, renamed = [], {}
    for offset, call in enumerate(raw):
        function = call.get("function", call) if isinstance(call, dict) else call
        call_id = f"call_{first + offset}"
        calls.append(call_from_dict(function, call_id))
        if isinstance(call, dict) and call.get("id") not in (None, ""):
            renamed.setdefault(str(call["id"]), []).append(call_id)
    return calls, renamed


def convert(row: dict) -> Converted:
    raw_messages = row["messages"]
    if not isinstance(raw_messages, list):
        raise Drop("malformed_row", f"messages is {type(raw_messages).__name__}")
    if not raw_messages:
        raise Drop("empty_conversation")
    tools = tools_column(row.get("tools"), _tool)
    messages: list[dict] = []
    names: dict[str, str] = {}  # call id -> function name, for every call so far
    pending: list[str] = []  # ids of the latest call turn's calls not answered yet
    renamed: dict[str, list[str]] = {}  # the row's call ids -> ours (`_calls`), the latest turn's first
    n_calls = 0
    for msg in raw_messages:
        role = ROLES.get(msg["role"])
        if role is None:
            raise Drop("unknown_role", str(msg["role"]))
        name = msg.get("name")
        if role == "tool":
            # without an id, a result answers the first unanswered call of its tool (when it names
            # one: parallel results may come back in another order), else the first unanswered call
            if msg.get("tool_call_id"):
                # the row's own id; or, for calls it gave none, the `call_<n>` they are numbered with
                given = str(msg["tool_call_id"])
                ours = renamed.get(given) or ([given] if given in names else None)
                if ours is None:
                    raise Drop("unmatched_tool_result", f"no call for tool_call_id {msg['tool_call_id']!r}")
                call_id = next((c for c in ours if c in pending), ours[-1])
            else:
                call_id = next((c for c in pending if names[c] == name), None) or (pending[0] if pending else None)
                if call_id is None:
                    raise Drop("unmatched_tool_result", "no call for a result without tool_call_id")
            if call_id in pending:
                pending.remove(call_id)
            content = _tool_content(msg.get("content"))
            messages.append(message("tool", content, tool_call_id=call_id, name=name or names[call_id]))
        elif role == "assistant":
            calls, turn_ids = _calls(msg, n_calls)
            n_calls += len(calls)
            if calls:
                pending = [c["id"] for c in calls]
                names.update((c["id"], c["function"]["name"]) for c in calls)
                renamed.update(turn_ids)
            messages.append(message("assistant", _content(msg.get("content")), tool_calls=calls, name=name))
        else:
            messages.append(message(role, _content(msg.get("content")), name=name))
    if not any(m["role"] == "assistant" for m in messages):
        raise Drop("no_assistant_turn")
    language, licence, key = row.get("language"), row.get("licence"), row.get("id")
    meta = {k: row[k] for k in ("source", "origin") if isinstance(row.get(k), str) and row[k]}
    if inputs := _input_licences(meta.get("origin")):  # a generated row's, as the rows' own provenance names them
        meta["input_licences"] = inputs
    return Converted(
        messages=messages,
        tools=tools,
        language=iso639_1(language) if isinstance(language, str) else None,
        licence=licence if isinstance(licence, str) and licence else None,
        meta=meta,
        key=str(key) if key not in (None, "") else None,
    )
