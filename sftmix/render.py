"""Canonical record -> ChatML training text, Hermes-style tool calling (ALIA-40b-fc).

The layout is Qwen2.5's chat template (Qwen/Qwen2.5-*-Instruct `tokenizer_config.json`; the same
tool prompt is LLaMA-Factory's `QWEN_TOOL_PROMPT` in `src/llamafactory/data/tool_utils.py`),
which is the Hermes format vLLM's `hermes` tool parser (`Hermes2ProToolParser`,
vllm/entrypoints/openai/tool_parsers/hermes_tool_parser.py) reads back:

- every turn is `<|im_start|>{role}\\n{content}<|im_end|>\\n`;
- tools go in the system turn: the record's system message (if it opens the conversation),
  a blank line, then
  `# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are
  provided with function signatures within <tools></tools> XML tags:\\n<tools>` + one JSON tool
  definition per line + `\\n</tools>\\n\\nFor each function call, return a json object with
  function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{"name":
  <function-name>, "arguments": <args-json-object>}\\n</tool_call>`. Definitions are the
  record's OpenAI objects `{"type": "function", "function": {...}}`, which is what vLLM hands the
  chat template at serving time. (The ALIA card words them as flat `{"type", "name",
  "description", "parameters"}`; its own template is not public here.) No default system text
  is invented when the record has none.
- an assistant turn with calls is `<|im_start|>assistant`, then `\\n` + content if there is any,
  then per call `\\n<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`, then
  `<|im_end|>\\n`. Arguments are the JSON object decoded from the record's string; a string that
  is not a JSON object raises ValueError (the tool-call filter removes those rows first). A
  `</tool_call>` inside a string is written `<\\/tool_call>` (the same JSON string), or the
  parser would end the block there. (A chat template writes it raw, so `reserved_markup` drops
  such rows; this is for rows built with that rule off.)
- tool results: Qwen2.5 and Hermes-3 put them in a `user` turn, each wrapped
  `\\n<tool_response>\\n{content}\\n</tool_response>`, consecutive results (parallel calls) in one
  turn, in the record's order. That convention is used here. (vLLM's example Hermes-2-Pro
  templates use a `tool` role with a `{"name", "content"}` wrapper instead; not used.)

JSON is written with the record's `dumps` (", " / ": " separators, non-ASCII kept), which is
byte-for-byte what Jinja's `tojson` gives in transformers' chat templates.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache

from sftmix.jsontext import STRICT_DECODER, loads
from sftmix.record import dumps

TOOLS_HEAD = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
TOOLS_TAIL = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments "
    "within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
)

# vLLM Hermes2ProToolParser: a closed block, or an unclosed one running to the end of the text.
TOOL_CALL = re.compile(r"<tool_call>(.*?)</tool_call>|<tool_call>(.*)", re.DOTALL)


@lru_cache(maxsize=1024)
def _tools_block(tools_json: str) -> str:
    """The tool part of the system turn ("" without tools); rows often share one tool list."""
    tools = json.loads(tools_json) if tools_json else []
    if not tools:
        return ""
    return TOOLS_HEAD + "".join("\n" + dumps(tool) for tool in tools) + TOOLS_TAIL


def _arguments(call: dict) -> dict:
    text = call["function"]["arguments"]
    try:
        arguments = loads(text, STRICT_DECODER)  # as the tool-call filter reads them: NaN is not JSON
    except ValueError as error:
        raise ValueError(f"tool call {call['function']['name']!r}: arguments are not JSON: {error}") from None
    if not isinstance(arguments, dict):
        raise ValueError(f"tool call {call['function']['name']!r}: arguments are not a JSON object")
    return arguments


TOOL_CALL_END, ESCAPED_TOOL_CALL_END = "</tool_call>", "<\\/tool_call>"


def _tool_call_block(call: dict) -> str:
    body = dumps({"name": call["function"]["name"], "arguments": _arguments(call)})
    if not body.isascii():
        try:
            body.encode("utf-8")
        except UnicodeEncodeError:  # an escaped lone surrogate (`\\ud83d`): no tokenizer or Arrow column takes it
            raise ValueError(f"tool call {call['function']['name']!r}: arguments hold half a surrogate pair") from None
    # A closing tag inside a string would end the block for the Hermes parser (vLLM's regex), which
    # then reads no call at all: JSON's `\/` escape writes the same string without it.
    return f"<tool_call>\n{body.replace(TOOL_CALL_END, ESCAPED_TOOL_CALL_END)}\n</tool_call>"


# What an assistant turn opens with, and the generation prompt: the model is given it, never writes it.
ASSISTANT_HEADER = "<|im_start|>assistant\n"


def chatml_segments(record: dict, *, generation_prompt: bool = False) -> list[tuple[str, bool]]:
    """`to_chatml`'s text of a record in consecutive `(text, trained)` pieces, untrained and trained
    in turn. Trained: each assistant turn's own output (content, `<tool_call>` blocks, the closing
    `<|im_end|>\\n`); the rest, each `<|im_start|>assistant\\n` included, is prompt, as LLaMA-Factory
    splits a Qwen turn. The pieces are axolotl `input_output` segments as they are; one piece per
    stretch, so a tokenizer fed piece by piece cuts only where a turn starts or ends.

    `generation_prompt=True` ends the text with `<|im_start|>assistant\\n` (untrained), as a chat
    template's `add_generation_prompt`: for a holdout row, pass it without its last assistant turn.
    A conversation ending with an assistant turn then raises ValueError: the prompt would hold the
    answer."""
    messages = record["messages"]
    if generation_prompt and messages and messages[-1]["role"] == "assistant":
        raise ValueError("generation prompt after an assistant turn: drop that turn (messages[:-1]) to prompt for it")
    segments: list[tuple[str, bool]] = []
    prompt = []  # text since the last assistant output: one untrained piece
    tools_block = _tools_block(record.get("tools") or "")
    start = 0
    if tools_block:
        system = ""
        if messages and messages[0]["role"] == "system":
            system, start = messages[0]["content"] or "", 1
        prompt.append(f"<|im_start|>system\n{system}\n\n{tools_block}<|im_end|>\n" if system
                      else f"<|im_start|>system\n{tools_block}<|im_end|>\n")
    i = start
    while i < len(messages):
        msg = messages[i]
        role, content = msg["role"], msg["content"] or ""
        if role == "tool":  # this result and the ones right after it share one user turn
            prompt.append("<|im_start|>user")
            while i < len(messages) and messages[i]["role"] == "tool":
                prompt.append(f"\n<tool_response>\n{messages[i]['content'] or ''}\n</tool_response>")
                i += 1
            prompt.append("<|im_end|>\n")
            continue
        if role == "assistant":
            prompt.append(ASSISTANT_HEADER)
            segments.append(("".join(prompt), False))
            prompt.clear()
            blocks = [content] if content else []
            blocks.extend(_tool_call_block(call) for call in msg.get("tool_calls") or ())
            segments.append(("\n".join(blocks) + "<|im_end|>\n", True))
        else:
            prompt.append(f"<|im_start|>{role}\n{content}<|im_end|>\n")
        i += 1
    if generation_prompt:
        prompt.append(ASSISTANT_HEADER)
    if prompt:
        segments.append(("".join(prompt), False))
    return segments


def to_chatml(record: dict) -> str:
    """The ChatML training text of one canonical record (see module docstring)."""
    return "".join(text for text, _ in chatml_segments(record))


def chat_template_inputs(record: dict) -> tuple[list[dict], list[dict]]:
    """(messages, tools) of a record for a tokenizer's chat template
    (`tokenizer.apply_chat_template(messages, tools=tools)`): each call's `arguments` decoded into
    its object, and the tools parsed. Qwen2.5's template writes `tool_call.arguments | tojson`, so the
    stored JSON string would be quoted into a string, which `to_chatml` and vLLM never write; empty
    fields are left out. The record is not changed."""
    messages = []
    for msg in record["messages"]:
        out = {key: value for key, value in msg.items() if value is not None and key != "tool_calls"}
        if msg.get("tool_calls"):
            out["tool_calls"] = [{**call, "function": {"name": call["function"]["name"], "arguments": _arguments(call)}}
                                 for call in msg["tool_calls"]]
        messages.append(out)
    return messages, json.loads(record.get("tools") or "[]")


def parse_hermes_tool_calls(text: str) -> list[dict]:
    """The `{"name", "arguments"}` calls in a model turn, read as vLLM's Hermes parser reads them.

    Same regex over `<tool_call>` blocks and `json.loads` of each; like vLLM, any block that does
    not parse (or lacks name/arguments) means no tool calls at all. `arguments` is returned
    decoded (vLLM re-serializes it with `json.dumps(..., ensure_ascii=False)`).
    """
    if "<tool_call>" not in text:
        return []
    try:
        raw = [loads(closed or unclosed) for closed, unclosed in TOOL_CALL.findall(text)]
        return [{"name": call["name"], "arguments": call["arguments"]} for call in raw]
    except (ValueError, KeyError, TypeError):  # ValueError: also an integer of over 4,300 digits
        return []
