"""Pieces several raw formats share: language codes, \\boxed{} answers, python-ish tool schemas, python-syntax calls."""

from __future__ import annotations

import ast
import io
import json
import keyword
import re
import tokenize
from functools import lru_cache, partial
from itertools import accumulate
from typing import Any, Callable

import langcodes

from sftmix.jsonarray import NOT_AN_OBJECT, decode_items, decode_object
from sftmix.jsontext import loads
from sftmix.record import dumps, encoded_tool, tool_call
from sftmix.sources.base import MALFORMED_ROW_ERRORS, Drop


# langcodes' longest language name has 77 characters. A longer value names no language, and its
# fuzzy lookup (the longest known name the value starts with) grows with the square of its length:
# 0.1 s for 40,000 characters, about a minute for 1,000,000. Such a value is neither looked up nor cached.
LONGEST_LANGUAGE_VALUE = 128


def iso639_1(value: str | None) -> str | None:
    """ISO 639-1 code for an ISO 639-3 code, a BCP-47 tag or an English language name.

    Returns the shortest standard code langcodes knows (`fil` stays `fil`: it has no 2-letter
    code; `tl`, `tgl` and "Tagalog" are `fil`); None for empty, unknown or overlong values.
    """
    text = value.strip() if value else ""
    return _iso639_1(text) if 0 < len(text) <= LONGEST_LANGUAGE_VALUE else None


@lru_cache(maxsize=4096)
def _iso639_1(text: str) -> str | None:
    try:
        if re.fullmatch(r"[A-Za-z]{2,3}([-_][A-Za-z0-9]+)*", text):
            language = langcodes.Language.get(text.replace("_", "-"))
        else:  # a name's code is read as a code is: "Tagalog" finds `tl`, an alias of `fil`, as `tgl` is
            language = langcodes.Language.get(langcodes.find(text).to_tag())
        # CLDR's preferred individual languages take their macrolanguage's code (arb -> ar, zsm -> ms,
        # cmn -> zh); other varieties keep their own (ary, arz, yue): a manifest names them to take them
        code = language.prefer_macrolanguage().language
    except (LookupError, ValueError):
        return None
    # langcodes parses any 2-3 letters as a code: "jp", "dk" and "sp" (ja, da, es) label no language
    code = code.lower() if code and code != "und" and langcodes.tag_is_valid(code) else None
    # Bokmål (nb, nob) is labelled as Norwegian (no) is: one label, the one the detectors answer
    return "no" if code == "nb" else code


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...}, braces balanced (answers nest braces: \\frac{1}{2})."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 1, start + len("\\boxed{")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return None


# Python-ish type names used by xLAM-derived schemas (xlam, When2Call, ToolACE, Dolci).
_PY_TYPES = {
    "str": "string", "string": "string", "text": "string", "date": "string", "datetime": "string",
    "int": "integer", "integer": "integer", "long": "integer",
    "float": "number", "double": "number", "number": "number", "decimal": "number",
    "bool": "boolean", "boolean": "boolean",
    "list": "array", "array": "array", "tuple": "array", "set": "array",
    "dict": "object", "object": "object", "map": "object", "any": None, "callable": "string",
}
_GENERIC = re.compile(r"^(?P<outer>[A-Za-z_]+)\s*\[(?P<inner>.*)\]$")


def _json_type(type_text: str) -> tuple[dict, bool]:
    """JSON-Schema fragment for a python-ish type string, and whether it said `optional`.

    Converted once per distinct string (a few dozen serve a whole source); each caller gets its own
    copy, so no two schemas share a list or dict.
    """
    fragment, optional = _cached_json_type(type_text)
    return {k: v.copy() if isinstance(v, (list, dict)) else v for k, v in fragment.items()}, optional


@lru_cache(maxsize=4096)
def _cached_json_type(type_text: str) -> tuple[dict, bool]:
    text = type_text.strip()
    optional = False
    parts = [p.strip() for p in text.split(",")]
    if len(parts) > 1 and parts[-1].lower() == "optional":
        optional, text = True, ",".join(parts[:-1]).strip()
    match = re.fullmatch(r"(?i)optional\s*\[(.*)\]", text)
    if match:
        optional, text = True, match.group(1).strip()
    generic = _GENERIC.match(text)
    if generic:
        outer = _PY_TYPES.get(generic.group("outer").lower())
        if outer == "array":
            item = _PY_TYPES.get(generic.group("inner").split(",")[0].strip().lower())
            return ({"type": "array", "items": {"type": item}} if item else {"type": "array"}), optional
        return ({"type": outer} if outer else {}), optional
    if "|" in text or " or " in text:
        names = [t.strip().lower() for t in re.split(r"\||\bor\b", text)]
        types = sorted({_PY_TYPES.get(n) for n in names if _PY_TYPES.get(n)})
        return ({"type": types} if types else {}), optional
    mapped = _PY_TYPES.get(text.lower(), "unknown")
    if mapped == "unknown":
        return {}, optional  # an unknown type constrains nothing rather than rejecting valid calls
    return ({"type": mapped} if mapped else {}), optional


def _normalize_property(spec) -> tuple[dict, bool]:
    if not isinstance(spec, dict):
        return {"description": str(spec)}, False
    out, optional = {}, False
    for key, value in spec.items():  # rebuilt in order: schemas render as their authors wrote them
        if key == "type" and isinstance(value, str):
            fragment, optional = _json_type(value)
            out.update(fragment)
        else:
            out[key] = value
    if out.get("type") == "object" and isinstance(out.get("properties"), dict):
        out.update(to_json_schema(out))
    if out.get("type") == "array" and isinstance(out.get("items"), dict):
        out["items"] = _normalize_property(out["items"])[0]
    return out, optional


def to_json_schema(parameters) -> dict:
    """Turn the parameter blocks found on the Hub into JSON Schema (draft 2020-12).

    Handles: real JSON Schema (returned with python type names mapped); `{"type": "dict",
    "properties": ...}` (BFCL/When2Call/ToolACE); xLAM's flat `{param: {type: "str, optional",
    description, default}}`; `required` lists that are absent, null, or beside the block.
    """
    if parameters is None or parameters == {}:
        return {"type": "object", "properties": {}}
    if not isinstance(parameters, dict):
        raise Drop("invalid_tool_schema", f"parameters is {type(parameters).__name__}")
    # A JSON Schema's `properties` maps names to specs; in xLAM's flat layout a parameter may itself be
    # called "properties", and then its value is one spec, whose `type` is a string.
    nested = parameters.get("properties")
    flat = parameters.get("type") not in ("object", "dict") and (
        "properties" not in parameters or (isinstance(nested, dict) and isinstance(nested.get("type"), str)))
    if flat:  # xLAM layout: every key is a parameter, optionality lives in the type string
        properties_in, required = parameters, None
    else:
        properties_in, required = parameters.get("properties") or {}, parameters.get("required")
    if not isinstance(properties_in, dict):
        raise Drop("invalid_tool_schema", "properties is not an object")
    properties, optional_names = {}, set()
    for name, spec in properties_in.items():
        properties[name], optional = _normalize_property(spec)
        if optional:
            optional_names.add(name)
    if flat:
        required = [n for n in properties if n not in optional_names]
    elif not isinstance(required, list):
        required = []
    schema = {"type": "object", "properties": properties}
    required = [r for r in required if isinstance(r, str) and r in properties]
    if required:
        schema["required"] = required
    if not flat:
        # The author's other keywords are the schema too: `$defs` that the properties' `$ref`s point
        # into (pydantic/FastMCP tools in Toucan), `additionalProperties`, `anyOf`, `description`...
        # Not `$schema`: every tool is read as draft 7 (a draft-03 one would be no schema at all to
        # jsonschema-rs, and a draft-04 one's draft-6 keywords errors).
        for key, value in parameters.items():
            if key not in ("type", "properties", "required", "$schema"):
                schema[key] = _definitions(value) if key in ("$defs", "definitions") else value
    return schema


def _definitions(definitions):
    """A `$defs` (or draft 7 `definitions`) block with each schema in it read like a property's."""
    if not isinstance(definitions, dict):
        return definitions
    return {name: _normalize_property(spec)[0] for name, spec in definitions.items()}


# What `ast` raises on a text nested too deeply for its parser, besides SyntaxError: RecursionError,
# or (from some 20,000 levels of a unary operator in Python 3.11) a bare MemoryError, its stack
# overflowing. Both are the row's text, not the process, at fault.
PARSER_OVERFLOW = (RecursionError, MemoryError)


# A call: a name (ToolACE names carry spaces, slashes, dots and hyphens) then a parenthesised
# argument list. Names are matched up to the first "(", so argument text never leaks into them
# (the name keeps the whitespace before "(": callers strip it). Possessive: nothing is tried again,
# where a lazy name followed by `\s*\(` ran each whitespace run to its end from every one of its
# characters (0.4 s for 16,000 spaces, quadratic).
# Calls are separated by commas and whitespace only: a ";" is in no name, so "f(x=1);g(y=2)" is no
# call list (its second call was named ";g").
_CALL_NAME = re.compile(r"\s*+([^\s(),\[\];][^(),\[\];]*+)\(")


_JSON_WORDS = {"true": True, "false": False, "null": None, "none": None}


class _JsonWords(ast.NodeTransformer):
    """JSON's true/false/null written inside a list, dict, tuple or set value (Dolci's census:
    "JSON true/false/null literals also occur inside values") become their constants."""

    def visit_Name(self, node: ast.Name):
        word = node.id.lower()
        return ast.copy_location(ast.Constant(_JSON_WORDS[word]), node) if word in _JSON_WORDS else node


def _literal(node: ast.expr):
    try:
        return ast.literal_eval(node)
    except ValueError:
        # Bare identifiers (true/false/null, or unquoted words) are kept as strings: parsed, never run.
        if isinstance(node, ast.Name):
            return _JSON_WORDS.get(node.id.lower(), node.id)
        if isinstance(node, (ast.List, ast.Tuple, ast.Set, ast.Dict)):
            # JSON words nested in a container; anything else still raises (unquoted words, calls, ...).
            return ast.literal_eval(_JsonWords().visit(node))
        raise


_NESTING = {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}


def _keyword_names_renamed(source: str) -> tuple[str, dict[str, str]]:
    """`source` (one call) with each argument named by a python keyword (`from="USD"`) renamed to a
    placeholder, and the keywords by placeholder. Read as tokens: `from=` inside a string value,
    or a keyword used as a value (`x=None`), stays as it is."""
    lines = io.StringIO(source).readlines()
    line_starts = list(accumulate(map(len, lines), initial=0))
    try:
        tokens = [token for token in tokenize.generate_tokens(iter(lines).__next__)
                  if token.type not in (tokenize.NL, tokenize.COMMENT)]
    except (tokenize.TokenError, SyntaxError):
        return source, {}
    # A run of underscores longer than any in `source` opens each placeholder: none is a name already there.
    prefix = "_" * (max(map(len, re.findall(r"_+", source)), default=0) + 1)
    depth, pieces, copied_to, keywords = 0, [], 0, {}
    for i, token in enumerate(tokens):
        if token.type == tokenize.OP:
            depth += _NESTING.get(token.string, 0)
        elif (depth == 1 and token.type == tokenize.NAME and keyword.iskeyword(token.string)
              and tokens[i - 1].string in ("(", ",") and tokens[i + 1].string == "="):
            start = line_starts[token.start[0] - 1] + token.start[1]
            keywords[prefix + token.string] = token.string
            pieces += source[copied_to:start], prefix + token.string
            copied_to = start + len(token.string)
    return "".join(pieces) + source[copied_to:], keywords


def _parsed_call(arguments: str) -> ast.Call:
    """`_f(<arguments>)` parsed. An argument named by a python keyword (`from`/`to` in currency and
    travel APIs) is no python: a text that does not parse is read again with those names renamed,
    which are then given back on the tree. Only failing texts pay for the second reading."""
    source = f"_f({arguments})"
    try:
        return ast.parse(source, mode="eval").body
    except SyntaxError as error:
        renamed, keywords = _keyword_names_renamed(source)
        if not keywords:
            raise
        try:
            call = ast.parse(renamed, mode="eval").body
        except SyntaxError:
            raise error from None  # the text's own fault, not the placeholders'
    for argument in call.keywords:
        argument.arg = keywords.get(argument.arg, argument.arg)
    return call


def _split_args(text: str, start: int) -> int:
    """Index just past the ")" that closes the "(" before `start`, honouring quotes and nesting."""
    depth, quote, i = 1, None, start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise Drop("unparsable_tool_call", "unbalanced parentheses")


def parse_python_calls(text: str, *, bracketed: bool) -> list[tuple[str, dict]]:
    """Parse `[f(a=1), g(b="x")]` (ToolACE) or newline-separated `f(a=1)` (OLMo/Dolci) with `ast`.

    Arguments are python literals read by `ast.literal_eval`; nothing is evaluated. An argument may
    be named by a python keyword (`Currency Converter(from="USD", to="EUR")`). Raises
    `Drop("unparsable_tool_call")` for prose or broken syntax.
    """
    body = text.strip()
    if bracketed:
        if not (body.startswith("[") and body.endswith("]")):
            raise Drop("unparsable_tool_call", "not a bracketed call list")
        body = body[1:-1]
    calls, pos = [], 0
    while pos < len(body):
        while pos < len(body) and body[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(body):
            break
        match = _CALL_NAME.match(body, pos)
        if not match:
            raise Drop("unparsable_tool_call", f"no call at {body[pos:pos + 40]!r}")
        name, args_start = match.group(1).strip(), match.end()
        args_end = _split_args(body, args_start)
        try:
            node = _parsed_call(body[args_start:args_end - 1])
            if node.args:
                raise Drop("unparsable_tool_call", f"positional arguments in call to {name}")
            if any(kw.arg is None for kw in node.keywords):  # `**{...}`: its arguments were lost
                raise Drop("unparsable_tool_call", f"** arguments in call to {name}")
            arguments = {kw.arg: _literal(kw.value) for kw in node.keywords}
        except (SyntaxError, ValueError, TypeError, *PARSER_OVERFLOW) as error:
            raise Drop("unparsable_tool_call", f"{name}: {str(error) or type(error).__name__}") from None
        calls.append((name, arguments))
        pos = args_end
    if not calls:
        raise Drop("unparsable_tool_call", "empty call list")
    return calls


@lru_cache(maxsize=8192)
def _converted_tool(convert_tool: Callable[[Any], dict], text: str):
    """`convert_tool` of one tool's text, as an EncodedTool; what it raised as (type, args); or
    NOT_AN_OBJECT for a piece of text that is not one JSON object."""
    item = decode_object(text)
    if item is NOT_AN_OBJECT:
        return item
    try:
        return encoded_tool(convert_tool(item))
    except Drop as drop:
        return Drop, (drop.reason, drop.detail)
    except MALFORMED_ROW_ERRORS as error:  # raised again for each row, as `per_row` would meet it
        return type(error), error.args


def cached_tools(raw, convert_tool: Callable[[Any], dict]) -> list[dict] | None:
    """`convert_tool` over the items of a tools column written by json.dumps (`[{...}, {...}]`),
    each distinct item decoded and converted once per process (see `sftmix.jsonarray`); None when
    `raw` is not such a text, and the caller decodes it whole (which gives malformed JSON its drop).

    The first failing item's exception is raised, as the whole-list path would; it is made anew,
    because a cached exception raised again would collect every row's traceback.
    """
    if not isinstance(raw, str):
        return None
    tools = decode_items(raw, partial(_converted_tool, convert_tool))
    for tool in tools or ():
        if type(tool) is tuple:
            error_type, args = tool
            raise error_type(*args)
    return tools


def tools_column(raw, convert_tool: Callable[[Any], dict], malformed: str = "invalid_tool_schema") -> list[dict]:
    """`convert_tool` over a tools column: JSON text of a list of tool objects (or of one object),
    or the decoded value. No value, empty text and JSON null are no tools; text that is not JSON is
    a drop with `malformed`, and any other shape a drop with `invalid_tool_schema`."""
    tools = cached_tools(raw, convert_tool)
    if tools is not None:
        return tools
    tools = None if raw == "" else loads_json(raw, malformed)
    if tools is None:
        return []
    if isinstance(tools, dict):
        tools = [tools]
    if not isinstance(tools, list):
        raise Drop("invalid_tool_schema", f"tools is {type(tools).__name__}")
    return [convert_tool(tool) for tool in tools]


def loads_json(value, reason: str = "malformed_json"):
    """`json.loads` for a JSON-encoded column; a decode error is a drop with `reason`."""
    if not isinstance(value, str):
        return value
    try:
        return loads(value)
    except json.JSONDecodeError as error:
        raise Drop(reason, str(error)) from None


def text_column(row: dict, *names: str, optional: bool = False) -> str:
    """The first of `names` present in the row, as a string ("" for null).

    A non-string value is a `malformed_row` drop; so is a missing column unless `optional`.
    """
    for name in names:
        if name in row:
            value = row[name]
            if value is None:
                return ""
            if not isinstance(value, str):
                raise Drop("malformed_row", f"{name} is {type(value).__name__}")
            return value
    if optional:
        return ""
    raise Drop("malformed_row", f"{names[0]} column missing")


def call_from_dict(item, call_id: str) -> dict:
    """A `{"name", "arguments"}` object (OpenAI function, xLAM answer, ShareGPT function_call) as a
    tool call. Arguments: an object is encoded, a string goes to `tool_call` (which stores a JSON
    object's text as the object), null or absent means none, anything else is encoded and left for
    the tool-call filter to judge."""
    if not (isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"]):
        raise Drop("unparsable_tool_call", str(item)[:80])
    arguments = item.get("arguments")
    if arguments is None:
        arguments = {}
    elif not isinstance(arguments, (dict, str)):
        arguments = dumps(arguments)
    return tool_call(item["name"], arguments, call_id)


def trim_unanswered(messages: list[dict]) -> int:
    """Remove trailing user/tool turns, which no assistant turn answers (nothing to train on).

    Returns how many were removed; a conversation left without an assistant turn is a drop.
    """
    trimmed = 0
    while messages and messages[-1]["role"] in ("user", "tool"):
        messages.pop()
        trimmed += 1
    if not any(m["role"] == "assistant" for m in messages):
        raise Drop("no_assistant_turn")
    return trimmed
