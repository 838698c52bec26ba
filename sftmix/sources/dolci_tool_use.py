"""allenai/Dolci-Instruct-SFT-Tool-Use (and its sibling -SA): OLMo 3 tool-use SFT trajectories.

Raw layout (config `default`, split `train`, `data/train-0000{0..5}-of-00006.parquet`, 227,579
rows): exactly three columns `id` (string, e.g. "olmo-toolu-sft-mix-T2-S2-f2-bfclv3-
decontaminated_S2_74667"), `dataset_source` (string, one of five internal subsets: SimFC
`allenai/olmo-toolu-sft-mix-T2-S2-f2-bfclv3-decontaminated`, science `allenai/olmo-toolu-s2-
sft-m3|m4v2|m5v2`, search `allenai/olmo-toolu_deepresearch_no_thinking_DRv4`) and `messages`
(list of struct {content, function_calls, functions, role}, every key present, unused ones null).
- roles: system / user / assistant / environment (= tool results); content may be null.
- exactly one leading system message; its `functions` holds the tools as a JSON string, OpenAI
  envelopes `[{"type": "function", "function": {name, description, parameters}}]`; names may
  contain dots (`chat.wrt_transformer`). Its content is OLMo's boilerplate telling the model to use
  `<functions>` / `<function_calls>` XML tags.
- assistant `function_calls`: python-style keyword calls, one per line for parallel calls, JSON
  literals true/false/null allowed, also inside list and dict values; the STRING "null" means
  "no call".
- a tool name may be declared twice with two different definitions (906 rows in fcanalysis'
  report): the row is dropped, as no call to it could be judged.
- results of a parallel batch come either as one environment message per call, or (SimFC) as
  ONE environment message with one complete JSON value per line.

Verified: third-party census/adapter of the pinned revision (fcanalysis: columns, shard names,
row counts, roles, sentinel, bundled results), open-instruct's `olmo` chat template (functions /
function_calls / environment), public converters (HRM-Text repair_dolci_tool_use.py) and rendered
real rows. The -SA sibling (1,604 rows) is read the same way; its own card was not seen.
See docs/sources/dolci_tool_use.md.
"""

from __future__ import annotations

import json

from sftmix.record import message, tool_call, tool_def
from sftmix.sources.base import Converted, Drop
from sftmix.sources.common import loads_json, parse_python_calls, to_json_schema

# Sentences of OLMo's system prompt that describe its XML rendering of tools and calls; the
# canonical record carries tools and calls structurally, so they would contradict the renderer.
_XML_CONTRACT = (
    "You are a helpful function-calling AI assistant. You are provided with function signatures "
    "within <functions></functions> XML tags. You may call one or more functions to assist with the "
    "user query. Output any function calls within <function_calls></function_calls> XML tags. "
    "Don't make assumptions about what values to plug into functions.",
    "Format calls like: tool_name(query=...) (tools listed below).",
)
_ABSENT = (None, "", "null")  # "null" is the source's no-call / no-functions sentinel


def _tools(raw_messages: list[dict]) -> list[dict]:
    tools, seen = [], {}
    for raw in raw_messages:
        functions = raw.get("functions")
        if functions is None or functions.strip() in _ABSENT:
            continue
        for item in loads_json(functions, "invalid_tool_schema") or []:
            spec = item.get("function", item) if isinstance(item, dict) else None
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
                raise Drop("invalid_tool_schema", "function without a name")
            if spec["name"] in seen:
                # 906 rows of the pinned revision declare a name twice with two definitions: no call
                # to it could be judged (glaive drops the same case); an identical repeat is removed.
                if seen[spec["name"]] != spec:
                    raise Drop("duplicate_tool_name", spec["name"])
                continue
            seen[spec["name"]] = spec
            parameters = loads_json(spec.get("parameters"), "invalid_tool_schema")
            tools.append(tool_def(spec["name"], spec.get("description"), to_json_schema(parameters)))
    return tools


def _system_text(content: str | None) -> str:
    text = content or ""
    for sentence in _XML_CONTRACT:
        text = text.replace(sentence, "")
    return text.strip()


def _split_bundle(content: str, expected: int) -> list[str] | None:
    """One complete JSON value per line -> their exact source texts; None unless exactly `expected`."""
    decoder, parts, pos = json.JSONDecoder(), [], 0
    while True:
        start = pos
        while start < len(content) and content[start] in " \t\r\n":
            start += 1
        if start == len(content):
            break
        if parts and "\n" not in content[pos:start]:
            return None  # values must be newline-separated, never run together with prose
        try:
            _, end = decoder.raw_decode(content, start)
        except ValueError:
            return None
        parts.append(content[start:end])
        pos = end
    return parts if len(parts) == expected else None


def convert(row: dict) -> Converted:
    raw_messages = row["messages"]
    if not raw_messages:
        raise Drop("empty_conversation")
    tools = _tools(raw_messages)

    messages: list[dict] = []
    pending: list[dict] = []  # calls of the last assistant turn still waiting for results
    n_calls = 0  # ids call_0, call_1, ... run across the whole conversation
    i = 0
    while i < len(raw_messages):
        raw = raw_messages[i]
        role, content, calls = raw["role"], raw.get("content"), raw.get("function_calls")
        has_calls = calls is not None and calls.strip() not in _ABSENT
        if has_calls and role != "assistant":
            raise Drop("malformed_row", f"function_calls on a {role} message")
        if role == "environment":
            results = []
            while i < len(raw_messages) and raw_messages[i]["role"] == "environment":
                results.append(raw_messages[i].get("content") or "")
                i += 1
            if not pending:
                raise Drop("unmatched_tool_result", "environment message without a pending call")
            if len(results) == 1 and len(pending) > 1:
                results = _split_bundle(results[0], len(pending)) or results
            if len(results) != len(pending):
                raise Drop("unmatched_tool_result", f"{len(results)} result(s) for {len(pending)} call(s)")
            for call, result in zip(pending, results):
                messages.append(message("tool", result, tool_call_id=call["id"], name=call["function"]["name"]))
            pending = []
            continue
        if pending:
            raise Drop("missing_tool_result", f"{role} turn before the tool results")
        if role == "system":
            text = _system_text(content)
            if text:
                messages.append(message("system", text))
        elif role == "user":
            messages.append(message("user", content))
        elif role == "assistant":
            if has_calls:
                for name, arguments in parse_python_calls(calls, bracketed=False):
                    try:
                        pending.append(tool_call(name, arguments, f"call_{n_calls}"))
                    except (TypeError, ValueError):  # e.g. a set literal: parsed, but not JSON
                        raise Drop("unparsable_tool_call", f"{name}: arguments are not JSON-serializable") from None
                    n_calls += 1
            elif not (content or "").strip():
                raise Drop("empty_turn", "assistant turn with neither text nor calls")
            # Text next to calls is kept as the call turn's accompanying content.
            messages.append(message("assistant", content, tool_calls=pending or None))
        else:
            raise Drop("malformed_row", f"unknown role {role!r}")
        i += 1
    if pending:
        raise Drop("missing_tool_result", "conversation ends before the tool results")
    if not any(m["role"] == "assistant" for m in messages):
        raise Drop("empty_conversation", "no assistant turn")
    source = row.get("dataset_source", row.get("source_dataset"))
    return Converted(messages=messages, tools=tools, meta={"dataset_source": source}, key=row.get("id"))
