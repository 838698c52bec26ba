"""The canonical record: the one row type every stage reads and writes.

A record is a plain dict with the columns of `SCHEMA`. `messages` follow the OpenAI chat
wire format; `tools` is a JSON string of OpenAI tool definitions. Builders here are the only
place that decides how a message or a call is laid out, so converters stay small.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import Any

import orjson
import pyarrow as pa

from sftmix.jsontext import STRICT_DECODER, encoder, loads

ROLES = ("system", "user", "assistant", "tool")
# Licence ids we know (lower-case SPDX style). A policy, a source or a row naming anything else is an
# error or a drop, so a typo can never silently let a row through or shut a source out. Each is the
# Hugging Face Hub's id of the licence (hub-docs docs/hub/repositories-licenses.md, the list the Hub
# checks a card's `license:` against), so the dataset card names the rows' licences as they do; but
# for those in `NOT_ON_HUB`, of which the card gives the name and text (`license: other`).
NOT_ON_HUB = {"cc-by-sa-2.0": "https://creativecommons.org/licenses/by-sa/2.0/legalcode"}  # licence -> its text
KNOWN_LICENCES = frozenset({
    "apache-2.0", "mit", "bsd-3-clause", "cc0-1.0", "cc-by-2.0", "cc-by-3.0", "cc-by-4.0",
    "cc-by-sa-3.0", "cc-by-sa-4.0",
    "cc-by-nc-4.0", "cc-by-nc-sa-4.0", "cc-by-nc-nd-4.0", "odc-by", "pddl", "llama2", "llama3",
    "other", "unknown", *NOT_ON_HUB,
})
# Other spellings (SPDX's) of a licence the Hub has an id for. Data's are read as the Hub's id
# (`licence_id`); a manifest or a policy naming one is refused, naming the id: with two spellings of
# one licence, a policy allowing one refused the rows of the other, and a filter on one missed them.
HUB_SPELLINGS = {"odc-by-1.0": "odc-by"}

FUNCTION_TYPE = pa.struct([("name", pa.string()), ("arguments", pa.string())])
TOOL_CALL_TYPE = pa.struct([("id", pa.string()), ("type", pa.string()), ("function", FUNCTION_TYPE)])
MESSAGE_TYPE = pa.struct(
    [
        ("role", pa.string()),
        ("content", pa.string()),
        ("tool_calls", pa.list_(TOOL_CALL_TYPE)),
        ("tool_call_id", pa.string()),
        ("name", pa.string()),
    ]
)

SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("licence", pa.string(), nullable=False),
        pa.field("language", pa.string(), nullable=False),
        pa.field("messages", pa.list_(MESSAGE_TYPE), nullable=False),
        pa.field("tools", pa.string(), nullable=False),
        pa.field("origin", pa.string(), nullable=False),
    ]
)
COLUMNS = tuple(SCHEMA.names)


def licence_problem(licence: str) -> str | None:
    """Why `licence` cannot label rows (None when it can): the manifest's, `sftmix normalize`'s and
    a row's own licence's check."""
    if licence in HUB_SPELLINGS:
        return f"licence {licence!r} is spelt {HUB_SPELLINGS[licence]!r} (the Hugging Face Hub's id of it)"
    return None if licence in KNOWN_LICENCES else f"unknown licence {licence!r}; known: {', '.join(sorted(KNOWN_LICENCES))}"


def licence_id(name: str) -> str:
    """Licence `name` as data spells it (a row's own, an input licence a row names, a reader's), as
    sftmix writes it: lower case, as SPDX ids match whatever their case, and the Hub's id where the
    name is another spelling of one (`HUB_SPELLINGS`)."""
    name = name.lower()
    return HUB_SPELLINGS.get(name, name)


def hub_licence(licence: str) -> str:
    """The Hub's id of `licence` for a card's `license:`: `other` for one it has none for (named in
    `NOT_ON_HUB`, or not one sftmix knows: an input licence another mixture's row names)."""
    licence = licence_id(licence)
    return licence if licence in KNOWN_LICENCES and licence not in NOT_ON_HUB else "other"


def input_licences(origin: dict) -> list[str]:
    """The licences a row's `origin.input_licences` names (a generated row's inputs'), as `licence_id`s,
    sorted: one name given alone is read as one, and what is not a name is left out."""
    names = origin.get("input_licences")
    names = [names] if isinstance(names, str) else names if isinstance(names, list) else []
    return sorted({licence_id(name) for name in names if isinstance(name, str)})


def derivative_problem(input_licence: str | None, output_licence: str) -> str | None:
    """Why rows under `output_licence` may not be derived from data under `input_licence`, or None.

    No-derivatives data yields nothing; non-commercial data only non-commercial rows; share-alike
    and Llama-licensed data only rows under the same licence (the Llama licences bind what is made
    from the material, and the use of its output to train other models). Attribution-only licences
    (cc-by, odc-by) allow it.
    Here, on the record path, so that a change to it makes the generated records stale.
    """
    if input_licence is None:
        return None  # licences set per row (TowerBlocks) are judged row by row (`generators.base._derivable`)
    if input_licence in ("other", "unknown"):
        return "its licence is not known, so nothing says it may be"
    if "-nd" in input_licence:
        return "its licence allows no derivatives"
    if "-nc" in input_licence and "-nc" not in output_licence:
        return f"non-commercial data cannot yield {output_licence} rows"
    if "-sa" in input_licence and input_licence != output_licence:
        return f"share-alike data must keep its licence, not become {output_licence}"
    if input_licence.startswith("llama") and input_licence != output_licence:
        return f"{input_licence} data must keep its licence, not become {output_licence}"
    return None


def schema_problem(schema: pa.Schema) -> str | None:
    """Why rows of `schema` are not records (None when they are): a column missing, or of another
    kind. More columns are allowed (scores), text may be large strings and lists large lists (as
    polars writes them), and messages need only a role and content (a shard of an older layout)."""
    missing = [name for name in COLUMNS if name not in schema.names]
    if missing:
        return f"it has no column {', '.join(missing)} (its columns: {', '.join(schema.names)})"
    messages = schema.field("messages").type
    if not ((pa.types.is_list(messages) or pa.types.is_large_list(messages)) and pa.types.is_struct(messages.value_type)
            and {"role", "content"} <= {field.name for field in messages.value_type}):
        return f"its messages column is {messages}, not a list of messages with a role and content"
    for name in COLUMNS:
        kind = schema.field(name).type
        if name != "messages" and not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            return f"its {name} column is {kind}, not text"
    return None


# Encoders made once: `json.dumps` builds a new one on every call that sets an option. Stored text is
# JSON for every reader: a NaN or an infinity (which json writes as `NaN`, no other parser reads)
# raises ValueError, and the row is dropped instead. The canonical text is only hashed: a source's
# own tools text may hold 1e400, valid JSON that Python reads as infinity, and its id stays.
_ENCODE = encoder(ensure_ascii=False, separators=(", ", ": "), allow_nan=False)
_CANONICAL_ENCODE = encoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def dumps(value: Any) -> str:
    """Compact, key-order-preserving JSON with non-ASCII kept readable."""
    return _ENCODE(value)


def message(
    role: str,
    content: str | None = "",
    *,
    tool_calls: list[dict] | None = None,
    tool_call_id: str | None = None,
    name: str | None = None,
) -> dict:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    if ((content is not None and type(content) is not str) or (tool_call_id is not None and type(tool_call_id) is not str)
            or (name is not None and type(name) is not str)):
        # Raw JSON can hold anything where text belongs (a list of content parts, a number): a
        # converter's bad row (`malformed_row`), where the shard writer would stop the whole run.
        fields = {"content": content, "tool_call_id": tool_call_id, "name": name}
        raise TypeError(", ".join(f"{role} {field} is {type(value).__name__}" for field, value in fields.items()
                                  if value is not None and type(value) is not str))
    return {
        "role": role,
        "content": "" if content is None else content,
        "tool_calls": tool_calls or None,
        "tool_call_id": tool_call_id,
        "name": name,
    }


def tool_call(name: str, arguments: dict | str, call_id: str) -> dict:
    """An OpenAI tool call; `arguments` is stored JSON-encoded, as on the wire.

    A string holding a JSON object is stored as `dumps` writes that object, as an object given
    here is: the same call is then the same text (and id) whatever its spacing or escapes, as it is
    the same ChatML text, and an escaped lone surrogate (`\\ud83d`) becomes the character, which
    the record's hash refuses (an `invalid_unicode` drop) instead of a training text no encoder
    takes. Any other string is kept verbatim (malformed, not an object, NaN: the tool-call filter
    judges it, with a reason), except a blank one: a call without arguments (as Qwen-Agent writes
    it), stored as the empty object the wire format expects.
    """
    if not isinstance(arguments, str):
        arguments = dumps(arguments)
    elif not arguments.strip():
        arguments = "{}"
    else:
        arguments = _stored_arguments(arguments)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _stored_arguments(text: str) -> str:
    try:
        value = loads(text, STRICT_DECODER)
        return dumps(value) if isinstance(value, dict) else text
    except (ValueError, RecursionError):  # not JSON; or a number past a double's range (`dumps` refuses inf)
        return text


def tool_def(name: str, description: str | None, parameters: dict | None) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description or "",
            "parameters": parameters if parameters is not None else {"type": "object", "properties": {}},
        },
    }


class EncodedTool(dict):
    """A tool definition carrying its stored JSON text (`dumps`), made once: converters that cache
    per tool (`sftmix.sources.common.cached_tools`) share one instance across rows, so it is never
    changed after `encoded_tool`."""

    __slots__ = ("json",)


def encoded_tool(tool: dict) -> EncodedTool:
    encoded = EncodedTool(tool)
    encoded.json = dumps(tool)
    return encoded


def _canonical_json(value: Any) -> bytes:
    return _CANONICAL_ENCODE(value).encode("utf-8")


@lru_cache(maxsize=8192)
def _canonical_tool(tool_json: str) -> bytes:
    """One tool's canonical JSON, from its stored text: a source's rows draw their tools from a few
    thousand, so each is sorted and encoded once (the stored text and the canonical JSON of a bench
    glaive row's tools took 23.1 µs, 14.2 now)."""
    return _canonical_json(json.loads(tool_json))


def _hash(messages: list[dict], canonical_tools: bytes) -> str:
    try:
        # Message fields are strings (the schema's), which orjson writes byte for byte as json.dumps
        # does, 4 times faster; tools hold numbers, whose forms differ ("1e-05" / "0.00001"): json's.
        encoded_messages = orjson.dumps(messages, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # a lone surrogate: json's path raises the UnicodeEncodeError normalize counts
        encoded_messages = _canonical_json(messages)
    canonical = b'{"messages":' + encoded_messages + b',"tools":' + canonical_tools + b"}"
    return hashlib.sha256(canonical).hexdigest()[:32]


def content_id(messages: list[dict], tools_json: str, tools: list[dict] | None = None) -> str:
    """Stable content hash of the normalized conversation: same content, same id, anywhere.

    The hash is over the canonical JSON (sorted keys, compact, UTF-8) of {"messages", "tools"};
    `tools` is `tools_json` parsed, when the caller has it.
    """
    return _hash(messages, _canonical_json(json.loads(tools_json) if tools is None else tools))


def _results_in_call_order(messages: list[dict]) -> list[dict]:
    """`messages` with each run of tool results in the order of the calls they answer (by id).
    Rendered, results carry no ids (Hermes' `<tool_response>`, Qwen's template): the i-th answers
    the i-th call, and a source that lists them in another order (ToolACE; API logs, where parallel
    results come back as they finish) would pair each call with another's result. A run with a
    result that answers none of the calls, or two that answer one, is left for the role-order rule."""
    for i, msg in enumerate(messages):
        calls = msg.get("tool_calls")
        if not calls or len(calls) < 2:
            continue
        end = i + 1
        while end < len(messages) and messages[end]["role"] == "tool":
            end += 1
        order = {call["id"]: n for n, call in enumerate(calls)}
        positions = [order.get(result["tool_call_id"], -1) for result in messages[i + 1:end]]
        if positions != sorted(positions) and -1 not in positions and len(set(positions)) == len(positions):
            by_call = sorted(zip(positions, messages[i + 1:end]), key=lambda pair: pair[0])
            messages = [*messages[:i + 1], *(result for _, result in by_call), *messages[end:]]
    return messages


def make_record(
    *,
    messages: list[dict],
    tools: list[dict] | str,
    source: str,
    licence: str,
    language: str,
    origin: dict | str,
) -> dict:
    if isinstance(tools, str):
        tools_json, canonical_tools = tools, _canonical_json(json.loads(tools))
    else:
        # `dumps` of a list is its items' texts joined by ", ": one text per tool keys the cache.
        tool_texts = [tool.json if type(tool) is EncodedTool else dumps(tool) for tool in tools]
        tools_json = "[" + ", ".join(tool_texts) + "]"
        canonical_tools = b"[" + b",".join(map(_canonical_tool, tool_texts)) + b"]"
    messages = _results_in_call_order(messages)
    origin_json = origin if isinstance(origin, str) else dumps(origin)
    if not origin_json.isascii():
        origin_json.encode("utf-8")  # a lone surrogate (a raw key's `\ud83d`) raises here, not in the shard writer
    return {
        "id": _hash(messages, canonical_tools),
        "source": source,
        "licence": licence,
        "language": language,
        "messages": messages,
        "tools": tools_json,
        "origin": origin_json,
    }


def to_table(records: list[dict], schema: pa.Schema = SCHEMA) -> pa.Table:
    return pa.Table.from_pylist(records, schema=schema)
