"""Check every tool call against the conversation's tools.

Every tool's schema must be valid JSON Schema, called or not. A call must name a tool defined in
`tools`, carry arguments that decode to a JSON object, and validate against that tool's schema.
Two definitions of one name (other than the same one listed twice) are a `duplicate_tool_name`
drop, as the glaive and Dolci converters make it. Validators are compiled by jsonschema-rs once per
distinct schema (the same few thousand schemas repeat across a source's rows), so the hot path is a
dict lookup and a compiled check: for a three-property weather schema, 0.2 µs per call against
14 µs with the pure-Python `jsonschema`, and 8 µs against 159 µs to check and build a validator.
Schemas are read as draft 7 unless they name their `$schema` (the draft is picked by `jsonschema`'s
rules): OpenAI and MCP tool schemas are written to draft 7, and the converters leave a tool's
`$schema` out (a draft-03 one has no validator here).
Remote `$ref`s are never fetched: a schema that needs one is an invalid schema, not a download.
The caches are bounded, so memory stays flat over a source of any size.
"""

import json
from functools import lru_cache

import jsonschema_rs
from jsonschema import Draft7Validator
from jsonschema.validators import validator_for as schema_dialect

from filters.base import RecordFilter
from sftmix.jsonarray import NOT_AN_OBJECT, decode_items, decode_object
from sftmix.jsontext import STRICT_DECODER, loads


@lru_cache(maxsize=16384)
def validator_for(schema_json: str) -> jsonschema_rs.Validator | None:
    """The compiled validator of one canonical schema JSON (also used by `generators.fc_synthesis`);
    None when the schema itself is not valid JSON Schema of its draft."""
    schema = json.loads(schema_json)
    if not isinstance(schema, (dict, bool)):
        return None
    if isinstance(schema, dict) and not isinstance(schema.get("$schema", ""), str):
        return None  # every draft requires a URI here (and jsonschema's draft lookup raises on anything else)
    # The draft is chosen as jsonschema does it (draft 7 without a known `$schema`); jsonschema-rs has
    # every draft but draft 3, which no tool format uses.
    compiled = getattr(jsonschema_rs, schema_dialect(schema, default=Draft7Validator).__name__, None)
    if compiled is None:
        return None
    try:
        # `format` is an annotation, as in jsonschema's default; compiling checks the schema against its meta-schema.
        return compiled(schema, validate_formats=False, offline=True)
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError):
        return None


def _tool_schemas(tools_json: str) -> dict[str, str] | str:
    """name -> canonical schema JSON, or a drop reason when `tools` itself is broken.

    Rows rarely share a whole tool list but draw their tools from a few thousand: each tool's text
    keys its own cache (`sftmix.jsonarray`), and only a new tool is decoded and its schema encoded.
    Whole lists are not cached: on the bench's rows (87% distinct lists) that cache cost 6.0 µs a
    row against 4.1 without it, and a list can be large (the Hub viewer gives Toucan's
    `available_tools` up to 414k characters), so 4,096 of them could hold 1.7 GB.
    """
    schemas = decode_items(tools_json, _tool_schema)
    if schemas is None:  # not in json.dumps's layout: decoded whole
        try:
            tools = json.loads(tools_json)
        except json.JSONDecodeError:
            return "invalid_tools_json"
        if not isinstance(tools, list):
            return "invalid_tool_definition"
        schemas = [_schema_of(tool) for tool in tools]
    reason = next((schema for schema in schemas if isinstance(schema, str)), None)
    if reason:
        return reason
    by_name = dict(schemas)
    if len(by_name) < len(schemas) and len(set(schemas)) > len(by_name):
        # two definitions of one name (not one listed twice): a call to it cannot be judged, and
        # which one counted depended on their order
        return "duplicate_tool_name"
    return by_name


@lru_cache(maxsize=8192)
def _tool_schema(tool_json: str) -> tuple[str, str] | str | object:
    """`_schema_of` one tool's text; NOT_AN_OBJECT for a piece of text that is not one JSON object."""
    tool = decode_object(tool_json)
    return tool if tool is NOT_AN_OBJECT else _schema_of(tool)


def _schema_of(tool) -> tuple[str, str] | str:
    """(name, canonical schema JSON) of one tool, or a drop reason."""
    function = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        return "invalid_tool_definition"
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    if not isinstance(parameters, dict):
        return "invalid_tool_schema"
    schema_json = json.dumps(parameters, sort_keys=True)
    # Judged called or not: the model is shown every tool (a row answering in text taught an
    # invalid schema, while one calling that tool was dropped for it).
    if validator_for(schema_json) is None:
        return "invalid_tool_schema"
    return function["name"], schema_json


class ToolCallsFilter(RecordFilter):
    name = "tool_calls"

    def check(self, record, doc):
        schemas = _tool_schemas(record["tools"])
        if isinstance(schemas, str):
            return schemas
        for message in record["messages"]:
            for call in message["tool_calls"] or ():
                function = call["function"]
                schema_json = schemas.get(function["name"])
                if schema_json is None:
                    return "unknown_tool"
                try:
                    arguments = loads(function["arguments"] or "{}", STRICT_DECODER)
                except ValueError:  # json's errors, and NaN or Infinity
                    return "tool_arguments_not_json"
                if not isinstance(arguments, dict):
                    return "tool_arguments_not_object"
                if not validator_for(schema_json).is_valid(arguments):
                    return "tool_arguments_schema_invalid"
        return None
