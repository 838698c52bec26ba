"""In-house function-calling conversations, generated over tool schemas sampled from tool sources.

Input: canonical records of tool sources (xlam, toolace, toucan...) whose `tools` column holds
OpenAI tool definitions. Only their tool sets are used, never their conversations. A tool is
usable when it has a name and its `parameters` is valid JSON Schema (Draft 2020-12, the rule
`tool_calls` filter's check); duplicate names keep the first. Distinct tool sets (by content hash)
are ranked by a hash of (seed, tool set) in a bounded heap per input source, then shared equally
between the sources (a small source gives all it has, the rest is spread over the others), so the
sample neither depends on input order nor lets the largest source (Toucan) crowd out the others.
Items: one per selected tool set, in rank order, up to the targets (cycling through the tool sets
again, as new items, when there are fewer than wanted; "all": one per tool set). Per item, drawn
from `ctx.rng(key)`:
- the variant: `single` (one call), `parallel` (2-3 independent calls in one turn), `multi_turn`
  (calls, results, answer, then a follow-up request with calls, results, answer) or `no_tool_fits`
  (When2Call-style: the request lacks a required argument and the assistant asks for it, or no tool
  can serve it and the assistant says so and helps as it can, without calling). `single` is always
  on; `params.include` lists the others to enable (default: all), `params.weights` overrides
  `WEIGHTS`;
- a user persona (`PERSONAS`) and, for a tool set's second and later rounds, a variation number,
  so that no two items send the same prompt;
- the tools shown: at most `params.max_tools` (8) of the set, plus up to `params.distractors` (2)
  tools of other selected sets, shuffled;
- the language: per-language targets give each language its count; with `"*"` targets the
  language is drawn from `params.languages` (default `["en"]`).

Steps (one `complete_json` each, system prompt `fc_synthesis_system`): `fc_synthesis_request`
(user request + calls), `fc_synthesis_results` (the tools' JSON results, simulated),
`fc_synthesis_answer` (the final answer from the results), and for multi-turn
`fc_synthesis_follow_up` then results and answer again; `fc_synthesis_no_tool` for no_tool_fits.
Generated calls are validated against the tool schemas; an invalid call is sent back to the model
with the validation error (up to `CALL_ATTEMPTS` asks). Output: canonical messages; calls carry ids
`call_0`, `call_1`... across the conversation; each tool turn has `tool_call_id` and `name`;
`tools` on the Converted are the tools shown.

Its rows skip the `boilerplate` rule's blanket-refusal check (`FILTER_DEFAULTS`; a source's own
`filters:` can turn it back on): a `no_fit` reply is the apology its prompt asks for ("I'm sorry, but I
can't help with bookings: my tools only..."), which that check dropped, every row of it paid for. Its
canned-AI phrases ("as an AI language model") still drop a row of any variant.

Drops:
- `invalid_generated_call`: after the re-asks a call still names an unknown tool or has arguments
  that are not an object valid against the tool's JSON Schema (or are nested over
  `MAX_ARGUMENT_DEPTH` levels deep, or hold NaN or Infinity), or repeats another call (of the same
  turn, or for a follow-up, of an earlier turn).
- `wrong_call_count`: after the re-asks, not the number of calls the variant needs.
- `result_count_mismatch`: the simulated results are not one per call.
- `empty_result`: a simulated result is blank.
- `empty_answer`: an empty final answer or user request.
- `invalid_json`, `truncated`, `http_4xx`, `llm_retries_exhausted`: from the LLM client.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import zlib
from typing import Annotated, Iterator, Literal

from pydantic import Field

from filters.tool_calls import validator_for
from generators.base import LANGUAGE_NAMES, Context, Count, Item, Positive, hash_rank, prompt, record_licences
from sftmix.jsontext import loads
from sftmix.llm import Failure
from sftmix.record import dumps, message, tool_call, tool_def
from sftmix.sources.base import Converted, Drop

PROMPTS = ("fc_synthesis_system", "fc_synthesis_request", "fc_synthesis_results", "fc_synthesis_answer",
           "fc_synthesis_follow_up", "fc_synthesis_no_tool")
VARIANTS = ("single", "parallel", "multi_turn", "no_tool_fits")
WEIGHTS = {"single": 4, "parallel": 2, "multi_turn": 2, "no_tool_fits": 2}
PARAMS = {"include": list[Literal[VARIANTS]], "weights": dict[Literal[VARIANTS], Annotated[float, Field(ge=0)]],  # the `params:` it reads
          "languages": list[str], "max_tools": Positive, "distractors": Count}
FILTER_DEFAULTS = {"boilerplate": {"refusals": False}}  # no_fit replies apologise (see the docstring)
CALL_ATTEMPTS = 3
MAX_TOOLS = 8
DISTRACTORS = 2
# Far deeper than any tool's arguments, far from the recursion limit: the transcript shown to the
# model is indented JSON, whose encoder recurses in Python (arguments ~975 deep raised RecursionError).
MAX_ARGUMENT_DEPTH = 100

CALLS_SCHEMA = {
    "type": "array",
    "items": {"type": "object", "required": ["name", "arguments"],
              "properties": {"name": {"type": "string"}, "arguments": {"type": ["object", "string"]}}},
}
REQUEST_SCHEMA = {"type": "object", "required": ["user", "tool_calls"],
                  "properties": {"user": {"type": "string"}, "tool_calls": CALLS_SCHEMA}}
RESULTS_SCHEMA = {"type": "object", "required": ["results"], "properties": {"results": {"type": "array"}}}
ANSWER_SCHEMA = {"type": "object", "required": ["answer"], "properties": {"answer": {"type": "string"}}}
NO_TOOL_SCHEMA = {"type": "object", "required": ["user", "assistant"],
                  "properties": {"user": {"type": "string"}, "assistant": {"type": "string"}}}


# ------------------------------------------------------------------------------------------ tools

def _parameters(function: dict) -> dict:
    return function.get("parameters") or {"type": "object", "properties": {}}


def usable_tools(tools_json: str | None) -> list[dict]:
    """The record's valid tool definitions, normalized with `tool_def`; [] when there are none."""
    try:
        tools = json.loads(tools_json or "[]")
    except json.JSONDecodeError:
        return []
    out, names = [], set()
    for tool in tools if isinstance(tools, list) else ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"].strip():
            continue
        parameters = _parameters(function)
        if function["name"] in names or not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
            continue
        if validator_for(json.dumps(parameters, sort_keys=True)) is None:
            continue
        names.add(function["name"])
        description = function.get("description") if isinstance(function.get("description"), str) else ""
        out.append(tool_def(function["name"], description, parameters))
    return out


def _shares(sizes: dict[str, int], total: int) -> dict[str, int]:
    """Equal shares of `total` over the sources; what a small source cannot give goes to the others."""
    shares = {source: 0 for source in sizes}
    left, open_sources = total, sorted(sizes)
    while left > 0 and open_sources:
        each, extra = divmod(left, len(open_sources))
        for i, source in enumerate(list(open_sources)):
            give = min(each + (1 if i < extra else 0), sizes[source] - shares[source])
            shares[source] += give
            left -= give
        open_sources = [s for s in open_sources if shares[s] < sizes[s]]
    return shares


def _quotas(ctx: Context) -> list[tuple[str, int | None]]:
    """[(language, rows)]; language "*" when the targets name none (rows None: "all")."""
    explicit = [lang for lang in ctx.targets if lang != "*"]
    if explicit:
        return [(lang, ctx.wanted(lang)) for lang in explicit]
    return [("*", ctx.wanted("*") if "*" in ctx.targets else None)]


def items(records, ctx: Context) -> Iterator[Item]:
    params = ctx.params or {}
    quotas = _quotas(ctx)
    total = None if any(n is None for _, n in quotas) else sum(n for _, n in quotas)
    explicit = [lang for lang, _ in quotas if lang != "*"]
    # languages are counted out per target, or drawn per item ("*" targets: from params.languages; "all")
    drawn = total is None or not explicit
    pool_languages = (explicit if explicit else None) or params.get("languages") or ["en"]
    if total == 0:
        return
    heaps: dict[str, list] = {}
    seen: set[str] = set()
    for record in records:
        tools = usable_tools(record.get("tools"))
        if not tools:
            continue
        canonical = sorted(tools, key=lambda t: t["function"]["name"])  # the same set in another order is the same set
        digest = hashlib.sha256(json.dumps(canonical, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:20]
        if digest in seen:
            continue
        seen.add(digest)
        rank = hash_rank(ctx.seed, "fc_synthesis", digest)
        entry = (-rank, digest, record.get("source") or "", record.get("id") or "", zlib.compress(dumps(tools).encode()),
                 record_licences(record))
        heap = heaps.setdefault(entry[2], [])
        if total is None or len(heap) < total:
            heapq.heappush(heap, entry)
        elif rank < -heap[0][0]:
            heapq.heapreplace(heap, entry)
    if not heaps:
        return
    shares = _shares({s: len(h) for s, h in heaps.items()}, total) if total is not None else {s: len(h) for s, h in heaps.items()}
    selected = sorted((e for s, h in heaps.items() for e in sorted(h, reverse=True)[:shares[s]]), reverse=True)
    heaps.clear()
    count = total if total is not None else len(selected)
    languages = _language_sequence(quotas, ctx.seed) if not drawn else None
    enabled = _variants(params)
    for j in range(count):
        _, digest, source, record_id, packed, tool_licences = selected[j % len(selected)]
        round_ = j // len(selected)
        key = f"fc:{digest}" + (f":{round_}" if round_ else "")
        rng = ctx.rng(key)
        language = rng.choice(pool_languages) if drawn else languages[j]
        variant = rng.choices(list(enabled), weights=list(enabled.values()))[0]
        tools = json.loads(zlib.decompress(packed))
        max_tools = int(params.get("max_tools", MAX_TOOLS))
        if len(tools) > max_tools:
            tools = [tools[i] for i in sorted(rng.sample(range(len(tools)), max_tools))]
        names = {t["function"]["name"] for t in tools}
        licences = set(tool_licences)  # the tool set's and its distractors' records'
        for _ in range(rng.randint(0, int(params.get("distractors", DISTRACTORS))) if len(selected) > 1 else 0):
            other = selected[rng.randrange(len(selected))]
            if other[1] == digest:
                continue
            candidate = rng.choice(json.loads(zlib.decompress(other[4])))
            if candidate["function"]["name"] not in names:
                names.add(candidate["function"]["name"])
                tools.append(candidate)
                licences.update(other[5])
        rng.shuffle(tools)
        payload = {"tools": tools, "variant": variant, "tool_source": source, "tool_record": record_id,
                   "persona": rng.choice(PERSONAS), "variation": round_ + 1,
                   "calls": rng.choice((2, 2, 3)) if variant == "parallel" else 1,
                   "mode": _no_tool_mode(tools, rng) if variant == "no_tool_fits" else None}
        yield Item(key=key, payload=payload, language=language, licences=tuple(sorted(licences)))


def _variants(params: dict) -> dict[str, float]:
    include = params.get("include")
    names = ["single"] + [v for v in VARIANTS[1:] if include is None or v in include]
    weights = {**WEIGHTS, **(params.get("weights") or {})}  # variant names: the manifest checks PARAMS
    return {name: float(weights[name]) for name in names if float(weights[name]) > 0}


def _language_sequence(quotas: list[tuple[str, int]], seed: int) -> list[str]:
    """Every language its count, interleaved by hash (so a partial run still covers all languages)."""
    slots = [(hashlib.sha256(f"{seed}:{lang}:{i}".encode()).hexdigest(), lang) for lang, n in quotas for i in range(n)]
    return [lang for _, lang in sorted(slots)]


def _no_tool_mode(tools: list[dict], rng) -> str:
    has_required = any(_parameters(t["function"]).get("required") for t in tools)
    return rng.choice(("ask_missing", "no_fit")) if has_required else "no_fit"


# ---------------------------------------------------------------------------------------- generation

def _tools_text(tools: list[dict]) -> str:
    return json.dumps(tools, ensure_ascii=False, indent=1)


def _signature(name: str, arguments: dict) -> tuple[str, str]:
    """The call as text; ValueError for NaN or Infinity, which JSON has not (json.loads reads them)."""
    return name, json.dumps(arguments, sort_keys=True, allow_nan=False)


def _depth(value) -> int:
    """How many levels of objects and arrays `value` nests (1 for a flat object), level by level."""
    depth, level = 0, [value]
    while level:
        depth += 1
        level = [inner for outer in level for inner in (outer.values() if isinstance(outer, dict) else outer)
                 if isinstance(inner, (dict, list))]
    return depth


def _check_calls(calls: list[dict], tools: dict[str, dict], low: int, high: int,
                 earlier: frozenset = frozenset()) -> tuple[str, str] | None:
    """(drop reason, problem told to the model) or None when every call is valid and new."""
    if not low <= len(calls) <= high:
        wanted = f"exactly {low}" if low == high else f"between {low} and {high}"
        return "wrong_call_count", f"there are {len(calls)} tool calls, but this conversation needs {wanted}."
    seen = set()
    for call in calls:
        name, arguments = call["name"], call["arguments"]
        if name not in tools:
            return "invalid_generated_call", f"the tool {name!r} does not exist; use only: {', '.join(sorted(tools))}."
        if isinstance(arguments, str):
            try:
                arguments = loads(arguments or "{}")  # too deeply nested is a JSONDecodeError here
            except json.JSONDecodeError:
                return "invalid_generated_call", f"the arguments of {name!r} are not valid JSON."
        if not isinstance(arguments, dict):
            return "invalid_generated_call", f"the arguments of {name!r} must be a JSON object."
        if _depth(arguments) > MAX_ARGUMENT_DEPTH:
            return "invalid_generated_call", f"the arguments of {name!r} are nested over {MAX_ARGUMENT_DEPTH} levels deep."
        try:  # before the validator, which reads NaN as null; the record's JSON would refuse it, dropping the item
            signature = _signature(name, arguments)
        except ValueError:
            return "invalid_generated_call", f"the arguments of {name!r} hold NaN or Infinity, which JSON does not allow."
        validator = validator_for(json.dumps(_parameters(tools[name]["function"]), sort_keys=True))
        # The same compiled check as the tool_calls filter, so an accepted call is never dropped there.
        error = next(validator.iter_errors(arguments), None)
        if error is not None:
            where = "/".join(str(p) for p in error.instance_path) or "(top level)"
            return "invalid_generated_call", f"the arguments of {name!r} are invalid at {where}: {error.message}"
        if signature in seen:
            return "invalid_generated_call", f"two calls to {name!r} have the same arguments; each call must differ."
        if signature in earlier:
            return "invalid_generated_call", f"the call to {name!r} repeats an earlier call with the same arguments."
        seen.add(signature)
        call["arguments"] = arguments
    return None


async def _json(ctx: Context, messages: list[dict], schema: dict) -> tuple[dict, str]:
    got = await ctx.llm.complete_json(messages, schema)
    if isinstance(got, Failure):
        raise Drop(got.reason, got.detail)
    return got[0], got[1].content


async def _ask_calls(ctx: Context, messages: list[dict], tools: dict[str, dict], low: int, high: int,
                     earlier: frozenset = frozenset()) -> dict:
    """The model's request/follow-up with calls that validate, re-asking with the error if needed."""
    conversation = list(messages)
    for _ in range(CALL_ATTEMPTS):
        value, raw = await _json(ctx, conversation, REQUEST_SCHEMA)
        if not value["user"].strip():
            raise Drop("empty_answer", "empty user request")
        problem = _check_calls(value["tool_calls"], tools, low, high, earlier)
        if problem is None:
            return value
        conversation = conversation + [
            {"role": "assistant", "content": raw},
            {"role": "user", "content": f"CORRECTION: {problem[1]} Answer again with the whole corrected JSON object."},
        ]
    raise Drop(*problem)


def _transcript(messages: list[dict]) -> str:
    """The conversation so far, as the model reads it: JSON turns with calls and results."""
    turns = []
    for m in messages:
        turn = {"role": m["role"]}
        if m["content"]:
            turn["content"] = m["content"]
        if m["tool_calls"]:
            turn["tool_calls"] = [{"id": c["id"], "name": c["function"]["name"],
                                   "arguments": json.loads(c["function"]["arguments"])} for c in m["tool_calls"]]
        if m["role"] == "tool":
            turn["tool_call_id"], turn["name"] = m["tool_call_id"], m["name"]
        turns.append(turn)
    return json.dumps(turns, ensure_ascii=False, indent=1)


class _Conversation:
    def __init__(self, ctx: Context, item: Item):
        self.ctx, self.item = ctx, item
        self.tools = item.payload["tools"]
        self.by_name = {t["function"]["name"]: t for t in self.tools}
        self.language = LANGUAGE_NAMES.get(item.language, item.language)
        self.system = {"role": "system", "content": prompt("fc_synthesis_system").substitute()}
        self.messages: list[dict] = []
        self.next_id = 0

    def ask(self, template: str, **values) -> list[dict]:
        text = prompt(template).substitute(tools=_tools_text(self.tools), language=self.language,
                                           conversation=_transcript(self.messages), **values)
        return [self.system, {"role": "user", "content": text}]

    def add_turn(self, request: dict) -> list[dict]:
        calls = []
        for call in request["tool_calls"]:
            calls.append(tool_call(call["name"], call["arguments"], f"call_{self.next_id}"))
            self.next_id += 1
        self.messages += [message("user", request["user"].strip()), message("assistant", "", tool_calls=calls)]
        return calls

    async def results_and_answer(self, calls: list[dict]) -> None:
        called = {c["function"]["name"] for c in calls}
        value, _ = await _json(self.ctx, self.ask("fc_synthesis_results", n=len(calls), called=_tools_text(
            [t for t in self.tools if t["function"]["name"] in called])), RESULTS_SCHEMA)
        results = value["results"]
        if len(results) != len(calls):
            raise Drop("result_count_mismatch", f"{len(results)} results for {len(calls)} calls")
        for call, result in zip(calls, results):
            content = result if isinstance(result, str) else dumps(result)
            if not content.strip():  # else an `empty_turns` drop later, naming no generator
                raise Drop("empty_result", f"blank result for {call['function']['name']}")
            self.messages.append(message("tool", content, tool_call_id=call["id"], name=call["function"]["name"]))
        value, _ = await _json(self.ctx, self.ask("fc_synthesis_answer"), ANSWER_SCHEMA)
        if not value["answer"].strip():
            raise Drop("empty_answer", "empty final answer")
        self.messages.append(message("assistant", value["answer"].strip()))


async def generate(item: Item, ctx: Context) -> list[Converted] | Drop:
    p = item.payload
    convo = _Conversation(ctx, item)
    meta = {"variant": p["variant"], "tool_source": p["tool_source"], "tool_record": p["tool_record"]}
    if p["variant"] == "no_tool_fits":
        value, _ = await _json(ctx, convo.ask("fc_synthesis_no_tool", mode=p["mode"], situation=NO_TOOL[p["mode"]],
                                              persona=p["persona"], variation=p["variation"]), NO_TOOL_SCHEMA)
        if not value["user"].strip() or not value["assistant"].strip():
            return Drop("empty_answer", "empty user request or reply")
        messages = [message("user", value["user"].strip()), message("assistant", value["assistant"].strip())]
        return [Converted(messages=messages, tools=p["tools"], language=item.language, meta={**meta, "mode": p["mode"]})]
    low, high = (p["calls"], p["calls"]) if p["variant"] != "multi_turn" else (1, 3)
    shape = SHAPES[p["variant"]].format(n=p["calls"])
    request = await _ask_calls(ctx, convo.ask("fc_synthesis_request", shape=shape, persona=p["persona"],
                                              variation=p["variation"]), convo.by_name, low, high)
    await convo.results_and_answer(convo.add_turn(request))
    if p["variant"] == "multi_turn":
        earlier = frozenset(_signature(c["function"]["name"], json.loads(c["function"]["arguments"]))
                            for m in convo.messages for c in m["tool_calls"] or ())
        follow = await _ask_calls(ctx, convo.ask("fc_synthesis_follow_up"), convo.by_name, 1, 3, earlier)
        await convo.results_and_answer(convo.add_turn(follow))
    return [Converted(messages=convo.messages, tools=p["tools"], language=item.language, meta=meta)]


PERSONAS = (
    "a small-business owner", "a university student", "a traveller planning a trip", "a software developer",
    "a journalist checking facts", "a parent organising family life", "a retired person", "a data analyst",
    "a teacher preparing a lesson", "a sports fan", "a nurse on a busy shift", "a freelance designer",
    "a researcher", "a shop assistant", "a project manager", "a hobbyist exploring a new interest",
)
SHAPES = {
    "single": "exactly 1 tool call: a request that one call to one tool fully serves",
    "parallel": "exactly {n} tool calls made at once: a request with {n} independent parts (the same tool with "
                "different arguments, or different tools), none needing another call's result",
    "multi_turn": "1 to 3 tool calls (the user will ask a follow-up question later)",
}
NO_TOOL = {
    "ask_missing": "The request clearly calls for one of the tools, but the user leaves out a required argument that "
                   "cannot be guessed (for example which city, which account, which date). The assistant does not "
                   "call any tool: it asks the user, briefly, for the missing information.",
    "no_fit": "The user asks for something that none of the tools can do (a different service, an action the tools "
              "do not support, or information they do not return). The assistant does not call any tool: it says "
              "briefly that it cannot do that with the tools it has, and helps with what it can (general knowledge, "
              "a suggestion) without inventing data it would need a tool for.",
}
