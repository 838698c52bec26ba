"""fc_synthesis against the local OpenAI-compatible server, playing a DeepSeek-like tool-data writer.

The fake model reads the tool definitions in each prompt and answers the way DeepSeek-V3 does for
these prompts (schema-valid calls, JSON results, answers in the asked language), with scripted
mistakes on some tools: a wrongly typed argument fixed after the correction, an invented tool name,
a missing tool result, a truncated answer and an answer in the wrong language.
"""

import json
import re
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import generators.fc_synthesis as gen
from generators.base import Context, generate, stream
from openai_server import Reply, serve_openai
from sftmix.build import filter_config, stage_settings
from sftmix.llm import LLMClient, LLMSettings
from sftmix.manifest import load
from sftmix.normalize import SourceInfo, normalize, read_records
from sftmix.record import message, tool_call
from sftmix.sources.base import Drop


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SOURCES = {"xlam": "xlam/xlam_function_calling_60k.json", "toolace": "toolace/data.json",
           "toucan": "toucan/train-00000-of-00003.parquet"}
LICENCES = {"xlam": "cc-by-4.0", "toolace": "apache-2.0", "toucan": "apache-2.0"}  # as alia-40b-fc.yaml names them
PARAMS = {"include": ["parallel", "multi_turn", "no_tool_fits"], "languages": ["en", "es"]}
TEXT = {
    "English": {"user": "Could you help me with this, please? I need it for a report I'm writing this afternoon.",
                "answer": "Here is what I found: the request went through and the data is ready. The first entry is the "
                          "most relevant one for your report.",
                "again": "Done: the next one is also available, and its details match the first result closely.",
                "follow": "Thanks! Can you also check the next one for me?",
                "ask": "Sure, I can do that. Which city should I look up?",
                "decline": "I'm sorry, I can't book flights with the tools I have, but I can suggest comparing prices "
                           "on the airlines' websites."},
    "Spanish": {"user": "¿Me puedes ayudar con esto, por favor? Lo necesito para un informe que escribo esta tarde.",
                "answer": "Esto es lo que he encontrado: la consulta ha funcionado y los datos están listos. La primera "
                          "entrada es la más relevante para tu informe.",
                "again": "Hecho: el siguiente también está disponible y sus datos coinciden con el primer resultado.",
                "follow": "¡Gracias! ¿Puedes comprobar también el siguiente?",
                "ask": "Claro, puedo hacerlo. ¿Qué ciudad quieres que consulte?",
                "decline": "Lo siento, no puedo reservar vuelos con las herramientas que tengo, pero te sugiero "
                           "comparar precios en las webs de las aerolíneas."},
}
ENGLISH_ESSAY = ("The results show several options that match what you asked for. The first one is the closest and the "
                 "best rated, while the second is cheaper but a little further away. If you want, I can give you more "
                 "details about any of them, such as opening hours, prices or how to get there by public transport.")


def _section(text, head):
    return json.loads(text.split(head, 1)[1].split("\n\n", 1)[0])


def _value(name, spec, i):
    if "enum" in spec:
        return spec["enum"][0]
    kind = spec.get("type", "string")
    kind = kind[0] if isinstance(kind, list) else kind
    return {"integer": i + 2, "number": 1.5 + i, "boolean": True, "array": [], "object": {}}.get(kind, f"{name} {i + 1}")


def _arguments(tool, i):
    parameters = tool["function"]["parameters"]
    return {name: _value(name, spec, i) for name, spec in parameters.get("properties", {}).items()
            if name in (parameters.get("required") or [])}


def persona(task):
    return re.search(r"The user is (.+?)[;,] ", task).group(1)


def fake_deepseek(messages, body):
    task = messages[1]["content"]
    correcting = messages[-1]["content"].startswith("CORRECTION")
    language = re.search(r"\bin (English|Spanish)\b", task)
    words = TEXT[language.group(1)] if language else TEXT["English"]
    if "TASK: write_request" in task or "TASK: follow_up" in task:
        tools = _section(task, "Available tools:\n")
        n = int(m.group(1)) if (m := re.search(r"exactly (\d) tool calls", task)) else 1
        first = 5 if "TASK: follow_up" in task else 0  # the follow-up asks about something else
        calls = [{"name": tools[i % len(tools)]["function"]["name"], "arguments": _arguments(tools[i % len(tools)], i)}
                 for i in range(first, first + n)]
        if calls[0]["name"] == "live_giveaways_by_type" and not correcting:
            calls[0]["arguments"] = {"type": 5}  # wrong type: fixed after the correction
        if any(t["function"]["name"] == "GetCompetitions" for t in tools):
            calls[0]["name"] = "get_competitions_list"  # an invented tool, every time
        user = words["follow"] if "TASK: follow_up" in task else f'{words["user"]} ({persona(task)})'

        return json.dumps({"user": user, "tool_calls": calls}, ensure_ascii=False)
    if "TASK: simulate_results" in task:
        called = _section(task, "Definitions of the tools that were called:\n")
        n = int(re.search(r"made (\d+) tool calls", task).group(1))
        if any(t["function"]["name"] == "Get Stock Price" for t in called):
            n -= 1  # forgets one result
        return json.dumps({"results": [{"status": "ok", "items": [{"id": i + 1, "name": f"result {i + 1}"}]}
                                       for i in range(n)]})
    if "TASK: final_answer" in task:
        if "translateText" in task:
            return Reply('{"answer": "Here is the translation you asked for: the text', finish_reason="length")
        answer = words["again"] if task.count('"role": "user"') > 1 else words["answer"]
        if "search_places" in task and "Spanish" in task:
            answer = ENGLISH_ESSAY
        return json.dumps({"answer": answer}, ensure_ascii=False)
    if "TASK: no_tool" in task:
        reply = words["ask"] if "(ask_missing)" in task else words["decline"]
        user = "Book me a flight to Rome." if language and language.group(1) == "English" else "Resérvame un vuelo a Roma."
        user += f" ({persona(task)})"
        return json.dumps({"user": user, "assistant": reply}, ensure_ascii=False)
    return Reply("I'm not sure what you want me to do.")


@pytest.fixture(scope="module")
def tool_records(tmp_path_factory):
    """Real records of the three tool converters, from their raw fixtures."""
    tmp = tmp_path_factory.mktemp("tools")
    records = []
    for name, path in SOURCES.items():
        normalize(SourceInfo(key=name, converter=name, licence=LICENCES[name]), [FIXTURES / path], tmp / f"{name}.parquet",
                  tmp / f"{name}.rej.parquet")
        records += read_records([tmp / f"{name}.parquet"])
    return records


def tool_licences(records) -> dict[str, str]:
    """Tool name -> the licence of the record defining it (no name is in two sources' fixtures)."""
    return {t["function"]["name"]: r["licence"] for r in records for t in gen.usable_tools(r["tools"])}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One response cache for the module: the Parquet test replays the stream test's answers (as a rebuild does)."""
    return tmp_path_factory.mktemp("llm-cache")


def context(server, cache_dir, targets=None, params=PARAMS):
    client = LLMClient(LLMSettings(base_url=server.base_url, cache_dir=str(cache_dir), concurrency=4,
                                   backoff_base_s=0.01, max_retries=1), api_key="sk-test")
    return Context(llm=client, targets=targets or {"*": 16}, params=params, seed=11)


def test_items_sample_tool_sets_evenly_and_deterministically(tool_records):
    ctx = Context(llm=None, targets={"*": 6}, params=PARAMS, seed=11)
    chosen = list(gen.items(tool_records, ctx))
    assert len(chosen) == 8  # 6 * 1.25
    assert sorted(Counter(i.payload["tool_source"] for i in chosen).values()) == [2, 3, 3]  # equal shares
    assert [i.key for i in chosen] == [i.key for i in gen.items(list(reversed(tool_records)), ctx)]
    assert [i.payload for i in chosen] == [i.payload for i in gen.items(tool_records, ctx)]
    assert {i.language for i in chosen} <= {"en", "es"}
    # more rows than distinct tool sets: the sets come round again as new items
    many = list(gen.items(tool_records, Context(llm=None, targets={"en": 20, "es": 4}, params=PARAMS, seed=11)))
    assert len(many) == 30 and len({i.key for i in many}) == 30 and Counter(i.language for i in many) == {"en": 25, "es": 5}
    distinct = {i.key.split(":")[1] for i in many}
    assert len(distinct) == 16  # toolace's duplicate weather set and toucan's reordered set count once
    everything = list(gen.items(tool_records, Context(llm=None, targets={"ca": "all"}, params=PARAMS, seed=11)))
    assert len(everything) == 16 and {i.language for i in everything} == {"ca"}
    only_single = list(gen.items(tool_records, Context(llm=None, targets={"*": 8}, params={"include": []}, seed=11)))
    assert {i.payload["variant"] for i in only_single} == {"single"}
    assert {i.payload["variant"] for i in many} == set(gen.VARIANTS)
    for item in many:
        names = [t["function"]["name"] for t in item.payload["tools"]]
        assert len(names) == len(set(names)) and len(names) <= gen.MAX_TOOLS + gen.DISTRACTORS
    # an item names the licences of the records its tools come from, its distractors' too: a drop's row holds them
    licence_of = tool_licences(tool_records)
    for item in many:
        assert item.licences == tuple(sorted({licence_of[t["function"]["name"]] for t in item.payload["tools"]}))
    assert any(item.licences == ("apache-2.0", "cc-by-4.0") for item in many)


def _check_row(row):
    """The canonical shape the rule filters expect, checked independently of them."""
    messages, tools = row.messages, {t["function"]["name"] for t in row.tools}
    assert messages[0]["role"] == "user" and messages[-1]["role"] == "assistant" and messages[-1]["content"]
    ids = [c["id"] for m in messages for c in m["tool_calls"] or ()]
    assert ids == [f"call_{i}" for i in range(len(ids))]
    answered = [m["tool_call_id"] for m in messages if m["role"] == "tool"]
    assert answered == ids
    for m in messages:
        for call in m["tool_calls"] or ():
            assert call["function"]["name"] in tools and isinstance(json.loads(call["function"]["arguments"]), dict)
        if m["role"] == "tool":
            assert m["name"] == next(c["function"]["name"] for x in messages for c in x["tool_calls"] or ()
                                     if c["id"] == m["tool_call_id"])
    calls_per_turn = [len(m["tool_calls"]) for m in messages if m["tool_calls"]]
    variant = row.meta["variant"]
    if variant == "single":
        assert calls_per_turn == [1] and len(messages) == 4
    elif variant == "parallel":
        assert len(calls_per_turn) == 1 and calls_per_turn[0] in (2, 3)
    elif variant == "multi_turn":
        assert len(calls_per_turn) == 2 and [m["role"] for m in messages].count("user") == 2
    else:
        assert calls_per_turn == [] and [m["role"] for m in messages] == ["user", "assistant"]


def test_stream_builds_tool_conversations_and_drops_bad_generations(tool_records, cache_dir):
    with serve_openai(fake_deepseek) as server:
        ctx = context(server, cache_dir)
        results = list(stream(gen, tool_records, ctx))
        requests = ctx.llm.stats.requests
        kept = [r for _, r in results if not isinstance(r, Drop)]
        drops = Counter(r.reason for _, r in results if isinstance(r, Drop))
        assert len(results) == 20
        assert drops == EXPECTED_DROPS
        for row in kept:
            _check_row(row)
        assert Counter(r.meta["variant"] for r in kept) == EXPECTED_VARIANTS
        corrected = [b for b in server.bodies if b["messages"][-1]["content"].startswith("CORRECTION")]
        assert any("live_giveaways_by_type" in b["messages"][-1]["content"] for b in corrected)
        assert any(c["function"]["name"] == "live_giveaways_by_type" for r in kept for m in r.messages
                   for c in m["tool_calls"] or ())  # fixed after the correction
        assert all(b["response_format"] == {"type": "json_object"} for b in server.bodies)
        again = context(server, cache_dir)
        assert len(list(stream(gen, tool_records, again))) == len(results)
        assert again.llm.stats.requests == 0 and again.llm.stats.cache_hits == requests



def test_a_blank_simulated_result_is_a_generation_drop(tool_records, tmp_path):
    """A result of "" became an empty tool turn: the row was paid for, then an `empty_turns` drop."""
    def blank_results(messages, body):
        if "TASK: simulate_results" in messages[1]["content"]:
            n = int(re.search(r"made (\d+) tool calls", messages[1]["content"]).group(1))
            return json.dumps({"results": [" "] * n})
        return fake_deepseek(messages, body)

    with serve_openai(blank_results) as server:
        results = list(stream(gen, tool_records, context(server, tmp_path, {"*": 4}, {"include": []})))
    assert {r.reason for _, r in results} == {"empty_result"} and len(results) == 5

# seed 11 over the fixtures' 16 distinct tool sets: 20 items (16 * 1.25), the first 4 sets come round twice
EXPECTED_DROPS = {"invalid_generated_call": 2, "result_count_mismatch": 1, "truncated": 1}
EXPECTED_VARIANTS = {"single": 6, "parallel": 3, "multi_turn": 3, "no_tool_fits": 4}


def test_generate_through_rule_filters_to_parquet(tmp_path, tool_records, cache_dir):
    with serve_openai(fake_deepseek) as server:
        info = SourceInfo(key="in-house-function-calling", converter="openai_messages", licence="apache-2.0", filters={})
        counts = generate(gen, tool_records, context(server, cache_dir), info, tmp_path / "out.parquet",
                          tmp_path / "rejected.parquet")
    rows = pq.read_table(tmp_path / "out.parquet").to_pylist()
    rejected = pq.read_table(tmp_path / "rejected.parquet").to_pylist()
    assert counts.read == 20 and counts.kept == len(rows) == 15
    # role_order, tool_calls (and every other rule) accept the rows; only the English answer to a Spanish user goes
    assert Counter((r["stage"], r["reason"]) for r in rejected) == {
        **{("generate", reason): n for reason, n in EXPECTED_DROPS.items()}, ("language", "language_mismatch"): 1}
    assert Counter(json.loads(r["origin"])["variant"] for r in rows) == {**EXPECTED_VARIANTS, "parallel": 2}
    assert rows and all(json.loads(r["tools"]) for r in rows)
    assert {r["licence"] for r in rows} == {"apache-2.0"} and {r["language"] for r in rows} <= {"en", "es"}
    # the dropped items' rows hold tool definitions of xlam (cc-by-4.0): the footer names the licences of their
    # records beside the generator's (it named the generator's alone)
    licence_of = tool_licences(tool_records)
    dropped = {licence_of[t["function"]["name"]] for r in rejected if r["stage"] == "generate"
               for t in json.loads(r["row"])["tools"]}
    assert "cc-by-4.0" in dropped
    assert json.loads(pq.read_schema(tmp_path / "rejected.parquet").metadata[b"licences"]) == ["apache-2.0", "cc-by-4.0"]
    # a row names the licences of the records its tools come from, distractors' too: it holds their definitions
    for row in rows:
        tools = {licence_of[t["function"]["name"]] for t in json.loads(row["tools"])}
        assert json.loads(row["origin"])["input_licences"] == sorted(tools)
    assert any(len(json.loads(row["origin"])["input_licences"]) == 2 for row in rows)


def test_call_checks_explain_the_problem():
    tools = {t["function"]["name"]: t for t in gen.usable_tools(json.dumps([
        {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"], "additionalProperties": False}}},
        {"type": "function", "function": {"name": "broken", "parameters": {"type": "object", "properties": {"x": {"type": "int"}}}}},
    ]))}
    assert list(tools) == ["get_weather"]  # a tool whose schema is not JSON Schema is not offered

    def check(calls, low=1, high=1, earlier=frozenset()):
        problem = gen._check_calls(calls, tools, low, high, earlier)
        return problem and problem[0]

    assert check([{"name": "get_weather", "arguments": '{"city": "Bilbao"}'}]) is None
    # The model is told where and why, from the same compiled validator the tool_calls filter uses.
    assert gen._check_calls([{"name": "get_weather", "arguments": {"city": "Bilbao", "days": "two"}}], tools, 1, 1) == (
        "invalid_generated_call", 'the arguments of \'get_weather\' are invalid at days: "two" is not of type "integer"')
    _, problem = gen._check_calls([{"name": "get_weather", "arguments": {"town": "Bilbao"}}], tools, 1, 1)
    assert problem.startswith("the arguments of 'get_weather' are invalid at (top level): ") and "town" in problem
    assert check([{"name": "get_weather", "arguments": {"city": "Bilbao", "days": "two"}}]) == "invalid_generated_call"
    assert check([{"name": "get_weather", "arguments": {"town": "Bilbao"}}]) == "invalid_generated_call"
    assert check([{"name": "get_forecast", "arguments": {"city": "Bilbao"}}]) == "invalid_generated_call"
    assert check([{"name": "get_weather", "arguments": "[1]"}]) == "invalid_generated_call"
    # arguments nested past the recursion limit are not JSON to re-ask about (json.loads raised RecursionError)
    assert gen._check_calls([{"name": "get_weather", "arguments": "[" * 5_000}], tools, 1, 1) == (
        "invalid_generated_call", "the arguments of 'get_weather' are not valid JSON.")
    # Nested just below that limit, arguments decoded, were checked, then the indented transcript's
    # encoder (which recurses in Python) raised RecursionError at about 975 levels: over 100 is refused.
    def nested(depth):
        value = []
        for _ in range(depth - 2):
            value = [value]
        return {"city": value}

    for arguments in (nested(978), json.dumps(nested(101))):
        assert gen._check_calls([{"name": "get_weather", "arguments": arguments}], tools, 1, 1) == (
            "invalid_generated_call", "the arguments of 'get_weather' are nested over 100 levels deep.")
    assert "are invalid at city" in gen._check_calls([{"name": "get_weather", "arguments": nested(100)}], tools, 1, 1)[1]
    # json reads NaN and Infinity, which the record's JSON refuses: re-asked, not the whole item dropped
    for arguments in ('{"city": "Bilbao", "days": NaN}', {"city": "Bilbao", "days": float("-inf")}):
        assert gen._check_calls([{"name": "get_weather", "arguments": arguments}], tools, 1, 1) == (
            "invalid_generated_call", "the arguments of 'get_weather' hold NaN or Infinity, which JSON does not allow.")
    deepest = tool_call("get_weather", nested(100), "call_0")
    assert json.loads(gen._transcript([message("assistant", None, tool_calls=[deepest])]))[0]["tool_calls"][0][
        "arguments"] == nested(100)
    assert check([{"name": "get_weather", "arguments": {"city": "Vigo"}}] * 2, 2, 2) == "invalid_generated_call"
    assert check([{"name": "get_weather", "arguments": {"city": "Vigo"}}], 2, 3) == "wrong_call_count"
    assert check([{"name": "get_weather", "arguments": {"city": "Vigo"}}],
                 earlier=frozenset({gen._signature("get_weather", {"city": "Vigo"})})) == "invalid_generated_call"


def test_no_fit_apologies_pass_the_fc_manifests_rules_and_canned_ai_text_does_not(tmp_path, tool_records):
    """A no_fit reply is the apology its prompt asks for ("I'm sorry, but I can't help with..."): with the
    rules alia-40b-fc.yaml gives the source, the boilerplate rule's refusal check dropped every one, paid
    for. Its canned-AI phrases still drop a row, and the setting is in the records' settings (staleness)."""
    def apologetic(messages, body):
        task = messages[1]["content"]
        spanish = "in Spanish" in task
        if "TASK: no_tool" in task and "(no_fit)" in task:
            reply = ("Lo siento, no puedo ayudarte con la reserva de vuelos: mis herramientas solo consultan datos. "
                     "Puedes comparar precios en las webs de las aerolíneas." if spanish else
                     "I'm sorry, but I can't help with booking flights: the tools I have only look data up. "
                     "You could compare prices on the airlines' websites.")
            return json.dumps({"user": "Resérvame un vuelo a Roma." if spanish else "Book me a flight to Rome.",
                               "assistant": reply}, ensure_ascii=False)
        if "TASK: final_answer" in task:
            return json.dumps({"answer": ("Como modelo de lenguaje, no tengo opiniones: " if spanish else
                                          "As an AI language model, I have no opinions: ") + TEXT["English"]["answer"]})
        return fake_deepseek(messages, body)

    manifest = load(Path(__file__).resolve().parents[2] / "manifests" / "alia-40b-fc.yaml")
    source = manifest.source("in-house-function-calling")
    assert stage_settings(manifest, source, "filtered")["filters"]["boilerplate"] == {"refusals": False}
    rules = {**filter_config(manifest, source), "decontamination": False}  # the evals are not in the repository
    with serve_openai(apologetic) as server:
        info = SourceInfo(key=source.key, converter="openai_messages", licence="apache-2.0", filters=rules)
        generate(gen, tool_records, context(server, tmp_path / "cache"), info, tmp_path / "out.parquet",
                 tmp_path / "rejected.parquet")
    rows = pq.read_table(tmp_path / "out.parquet").to_pylist()
    rejected = [json.loads(r["row"]) for r in pq.read_table(tmp_path / "rejected.parquet").to_pylist()
                if r["stage"] == "boilerplate"]
    assert Counter((json.loads(r["origin"])["mode"], r["language"]) for r in rows) == {
        ("no_fit", "en"): 1, ("no_fit", "es"): 1, ("ask_missing", "en"): 1, ("ask_missing", "es"): 1}
    # every tool-calling row, its answer canned (the answer fake_deepseek cuts off is canned here instead)
    assert len(rejected) == 13 and all(r["messages"][-1]["content"].startswith(("As an AI", "Como modelo"))
                                       for r in rejected)
