import json
from pathlib import Path

import pyarrow.parquet as pq

from sftmix.normalize import SourceInfo, normalize
from sftmix.raw import iter_raw_rows
from sftmix.record import content_id, dumps, make_record, message, to_table, tool_call, tool_def
from sftmix.sources import Converted, Drop, get_converter

FIXTURE = Path(__file__).parents[1] / "fixtures" / "openai_messages" / "data.jsonl"
convert_stream = get_converter("openai_messages")


def results():
    return dict(convert_stream(iter_raw_rows([FIXTURE])))


def rebuild(c: Converted) -> dict:
    """What the pipeline stamps on a converted re-read row."""
    return make_record(
        messages=c.messages, tools=c.tools, source=c.meta["source"], licence=c.licence,
        language=c.language, origin=c.meta["origin"],
    )


def canonical_row() -> dict:
    return make_record(
        messages=[
            message("system", "Eres un asistente. Responde en español."),
            message("user", "¿Cuánto es 12 € en dólares y en yenes?"),
            message("assistant", "Voy a consultarlo.", tool_calls=[
                tool_call("convert", {"amount": 12, "to": "USD"}, "call_0"),
                tool_call("convert", {"amount": 12, "to": "JPY"}, "call_1"),
            ]),
            message("tool", '{"result": 13.1}', tool_call_id="call_0", name="convert"),
            message("tool", '{"error": "rate unavailable"}', tool_call_id="call_1", name="convert"),
            message("assistant", "", tool_calls=[tool_call("now", {}, "call_2")]),
            message("tool", "2025-06-01", tool_call_id="call_2", name="now"),
            message("assistant", "12 € son 13,10 $; el cambio a yenes no está disponible (consultado el 2025-06-01)."),
        ],
        tools=[
            # key order a canonical shard may hold: kept verbatim, not re-normalized
            tool_def("convert", "Convierte divisas", {
                "properties": {"amount": {"type": "number"}, "to": {"enum": ["USD", "JPY"], "type": "string"}},
                "type": "object", "required": ["amount", "to"], "additionalProperties": False,
            }),
            tool_def("now", "", {"type": "object", "properties": {}}),
        ],
        source="alia-fc-mixture",
        licence="cc-by-sa-4.0",
        language="es",
        origin={"file": "data.json#3", "key": "abc", "meta": {"split_results": 1}},
    )


def test_outcomes_per_row():
    out = results()
    assert list(out) == [f"data.jsonl#{i}" for i in range(13)]
    assert [k for k, c in out.items() if isinstance(c, Converted)] == [f"data.jsonl#{i}" for i in (0, 1, 2, 3, 10)]
    assert {k: c.reason for k, c in out.items() if isinstance(c, Drop)} == {
        "data.jsonl#4": "unmatched_tool_result",  # tool_call_id names no call
        "data.jsonl#5": "unknown_role",
        "data.jsonl#6": "non_text_content",  # image part
        "data.jsonl#7": "invalid_tool_schema",  # broken tools string
        "data.jsonl#8": "empty_conversation",
        "data.jsonl#9": "no_assistant_turn",
        "data.jsonl#11": "malformed_json",  # truncated line
        "data.jsonl#12": "unparsable_tool_call",  # call without a name
    }


def test_canonical_row_round_trips_in_memory():
    row = canonical_row()
    (key, c), = convert_stream([("shard.parquet#0", row)])
    assert key == "shard.parquet#0"
    assert c.key == row["id"] and c.licence == "cc-by-sa-4.0" and c.language == "es"
    assert c.meta == {"source": "alia-fc-mixture", "origin": row["origin"]}
    assert rebuild(c) == row


def test_canonical_row_round_trips_through_a_parquet_shard(tmp_path):
    row = canonical_row()
    pq.write_table(to_table([row]), tmp_path / "shard-00000.parquet")
    (_, c), = convert_stream(iter_raw_rows([tmp_path / "shard-00000.parquet"]))
    assert rebuild(c) == row


def test_canonical_row_round_trips_through_jsonl():
    c = results()["data.jsonl#0"]
    row = json.loads(FIXTURE.read_text(encoding="utf-8").splitlines()[0])
    assert rebuild(c) == row


def test_object_arguments_become_strings_and_results_match_ids():
    c = results()["data.jsonl#1"]
    assert c.language == "es" and c.key == "41" and c.licence is None and c.meta == {}
    # the row's ids (call_abc, call_def) are renumbered, as every converter numbers calls
    assert c.messages[1] == message("assistant", "", tool_calls=[
        tool_call("get_weather", '{"city": "Madrid"}', "call_0"),
        tool_call("get_weather", '{"city": "València"}', "call_1"),
    ])
    # results answer out of order; the missing name is the call's name
    assert c.messages[2] == message("tool", '{"temp": 24}', tool_call_id="call_1", name="get_weather")
    assert c.messages[3] == message("tool", '{"temp": 30}', tool_call_id="call_0", name="get_weather")


def test_copies_that_differ_only_in_call_ids_get_one_id():
    """API logs give every call a random id; they are not rendered, so they are no content. Before,
    two such copies got two ids and exact dedup kept both. A reused id names the latest turn's call."""
    def conversation(first_id, second_id):
        return {"messages": [
            {"role": "user", "content": "Weather in Madrid, then in Bilbo?"},
            {"role": "assistant", "tool_calls": [{"id": first_id, "type": "function",
                                                  "function": {"name": "get_weather", "arguments": '{"city": "Madrid"}'}}]},
            {"role": "tool", "tool_call_id": first_id, "content": "30"},
            {"role": "assistant", "tool_calls": [{"id": second_id, "type": "function",
                                                  "function": {"name": "get_weather", "arguments": '{"city": "Bilbo"}'}}]},
            {"role": "tool", "tool_call_id": second_id, "content": "18"},
            {"role": "assistant", "content": "30 °C in Madrid, 18 °C in Bilbo."}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {
                "type": "object", "properties": {"city": {"type": "string"}}}}}]}

    rows = [conversation("call_9f8e7d", "call_1a2b3c"), conversation("call_x", "call_y"), conversation("1", "1")]
    out = [c for _, c in convert_stream(enumerate(rows))]
    ids = {content_id(c.messages, dumps(c.tools)) for c in out}
    assert len(ids) == 1
    assert [(m["role"], m["tool_call_id"] or [t["id"] for t in m["tool_calls"] or []]) for m in out[2].messages] == [
        ("user", []), ("assistant", ["call_0"]), ("tool", "call_0"), ("assistant", ["call_1"]), ("tool", "call_1"),
        ("assistant", [])]


def test_calls_without_ids_are_answered_by_the_call_n_they_are_numbered_with():
    row = {"messages": [
        {"role": "user", "content": "Weather in Madrid and Bilbo?"},
        {"role": "assistant", "tool_calls": [{"function": {"name": "get_weather", "arguments": '{"city": "Madrid"}'}},
                                             {"function": {"name": "get_weather", "arguments": '{"city": "Bilbo"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18"},
        {"role": "tool", "tool_call_id": "call_0", "content": "30"},
        {"role": "assistant", "content": "30 in Madrid, 18 in Bilbo."}]}
    [(_, c)] = convert_stream([(0, row)])
    assert [(m["tool_call_id"], m["content"]) for m in c.messages if m["role"] == "tool"] == [("call_1", "18"), ("call_0", "30")]


def test_a_tools_declared_draft_is_left_out_as_for_every_other_source():
    """Kept, a draft-04 `$schema` made the tool-call rule refuse its draft-6 keywords (and a draft-03
    one every call): `to_json_schema` leaves it out for the other sources."""
    from filters.tool_calls import ToolCallsFilter

    parameters = {"$schema": "http://json-schema.org/draft-04/schema#", "type": "object",
                  "properties": {"days": {"type": "integer", "exclusiveMinimum": 0}}}
    row = {"messages": [{"role": "user", "content": "Forecast?"},
                        {"role": "assistant", "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": '{"days": 3}'}}]},
                        {"role": "tool", "tool_call_id": "a", "content": "sunny"}, {"role": "assistant", "content": "Sunny."}],
           "tools": [{"type": "function", "function": {"name": "f", "parameters": parameters}}]}
    [(_, c)] = convert_stream([(0, row)])
    assert c.tools[0]["function"]["parameters"] == {"type": "object", "properties": parameters["properties"]}
    record = make_record(messages=c.messages, tools=c.tools, source="s", licence="mit", language="en", origin="{}")
    assert ToolCallsFilter().check(record, None) is None


def test_two_calls_given_one_id_are_answered_in_turn():
    row = {"messages": [{"role": "user", "content": "Two lookups"},
                        {"role": "assistant", "tool_calls": [{"id": "same", "function": {"name": "a", "arguments": "{}"}},
                                                             {"id": "same", "function": {"name": "b", "arguments": "{}"}}]},
                        {"role": "tool", "tool_call_id": "same", "content": "first"},
                        {"role": "tool", "tool_call_id": "same", "content": "second"},
                        {"role": "assistant", "content": "Done."}]}
    [(_, c)] = convert_stream([(0, row)])
    assert [(m["tool_call_id"], m["name"]) for m in c.messages[2:4]] == [("call_0", "a"), ("call_1", "b")]


def test_developer_role_content_parts_and_legacy_function_call():
    c = results()["data.jsonl#2"]
    assert c.messages == [
        message("system", "Answer briefly."),
        message("user", "Time in Tokyo?"),
        message("assistant", "", tool_calls=[tool_call("get_time", '{"tz": "Asia/Tokyo"}', "call_0")]),
        message("tool", "09:15", tool_call_id="call_0", name="get_time"),
        message("assistant", "It is 09:15 in Tokyo."),
    ]
    assert c.tools == [tool_def("get_time", "Current time in a time zone",
                                {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]})]


def test_missing_ids_no_arguments_positional_results_and_object_result():
    c = results()["data.jsonl#3"]
    assert c.messages[1] == message("assistant", "我来查一下。", tool_calls=[
        tool_call("server_status", "{}", "call_0"),
        tool_call("server_time", {}, "call_1"),
    ])
    assert c.messages[2] == message("tool", '{"error": "timeout", "retry": true}', tool_call_id="call_0", name="server_status")
    assert c.messages[3] == message("tool", "2025-01-01T00:00:00Z", tool_call_id="call_1", name="server_time")
    assert c.tools[1] == tool_def("server_time", "Server clock", {"type": "object", "properties": {}})


def test_flat_parameters_normalized_and_bad_arguments_kept():
    c = results()["data.jsonl#10"]
    assert c.language == "eu"
    assert c.tools == [tool_def("population", "City population", {
        "type": "object",
        "properties": {
            "city": {"description": "City", "type": "string"},
            "year": {"description": "Year", "default": 2020, "type": "integer"},
        },
        "required": ["city"],
    })]
    assert c.messages[-1]["tool_calls"] == [tool_call("population", '{"city": "Bilbo"', "call_0")]


def test_arguments_text_is_stored_as_its_object_so_spacing_and_escapes_change_no_id(tmp_path):
    """Arguments given as JSON text are stored as the object is (`tool_call`): two copies of a
    conversation that differ only in how the text is spaced or escaped render alike, so they get one
    id and the second is a duplicate. An escaped half surrogate pair in them is a counted drop, not
    a row that no encoder takes downstream."""
    row = json.loads(FIXTURE.read_text(encoding="utf-8").splitlines()[1])
    calls = row["messages"][1]["tool_calls"]
    variants = []
    for madrid, valencia in [({"city": "Madrid"}, {"city": "València"}),
                             ('{"city":"Madrid"}', '{ "city" : "Val\\u00e8ncia" }'),
                             ('{"city": "Madrid \\ud83d"}', '{"city": "València"}')]:
        calls[0]["function"]["arguments"], calls[1]["function"]["arguments"] = madrid, valencia
        variants.append(json.dumps(row, ensure_ascii=False))
    raw = tmp_path / "data.jsonl"
    raw.write_text("\n".join(variants) + "\n", encoding="utf-8")
    info = SourceInfo(key="o", converter="openai_messages", licence="mit", language="es")

    counts = normalize(info, [raw], tmp_path / "o.parquet", tmp_path / "o.rejected.parquet")
    assert counts.summary() == {"read": 3, "kept": 1, "dropped": {"duplicate_id": 1, "invalid_unicode": 1}}
    kept, = pq.read_table(tmp_path / "o.parquet").to_pylist()
    assert [call["function"]["arguments"] for call in kept["messages"][1]["tool_calls"]] == [
        '{"city": "Madrid"}', '{"city": "València"}']
    drops = {drop["reason"]: drop for drop in pq.read_table(tmp_path / "o.rejected.parquet").to_pylist()}
    assert drops["duplicate_id"]["key"] == "data.jsonl#1" and drops["invalid_unicode"]["key"] == "data.jsonl#2"


def test_results_without_ids_answer_the_call_of_the_tool_they_name(tmp_path):
    """Id-less parallel results that came back in another order went to the calls in order: each to
    the other tool's call, and the row was then a `tool_result_name_mismatch` drop."""
    row = {"messages": [
        {"role": "user", "content": "Weather in Paris and the time in Tokyo?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"type": "function", "function": {"name": "get_time", "arguments": '{"city": "Tokyo"}'}}]},
        {"role": "tool", "name": "get_time", "content": "09:00"},
        {"role": "tool", "name": "get_weather", "content": "18 C"},
        {"role": "tool", "content": "late"},  # neither id nor name, and no call left: no call for it
        {"role": "assistant", "content": "18 C in Paris; 09:00 in Tokyo."}],
        "tools": [{"type": "function", "function": {"name": name, "description": "", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}}}} for name in ("get_weather", "get_time")]}
    raw = tmp_path / "data.jsonl"
    raw.write_text(json.dumps(row) + "\n" + json.dumps({**row, "messages": row["messages"][:4] + row["messages"][5:]}) + "\n")
    info = SourceInfo(key="o", converter="openai_messages", licence="mit", language="en")
    counts = normalize(info, [raw], tmp_path / "o.parquet", tmp_path / "o.rejected.parquet")
    assert counts.summary() == {"read": 2, "kept": 1, "dropped": {"unmatched_tool_result": 1}}
    kept, = pq.read_table(tmp_path / "o.parquet").to_pylist()
    # written in the calls' order, as a rendered row pairs them (`test_record`)
    assert [(m["tool_call_id"], m["name"]) for m in kept["messages"][2:4]] == [("call_0", "get_weather"), ("call_1", "get_time")]


def test_a_row_naming_another_licence_than_the_manifest_is_dropped_not_relabelled(tmp_path):
    """The row's own `licence` column won over the manifest's: a source declared cc-by-sa-4.0
    published its rows saying apache-2.0 as apache-2.0, and `read_mixture(licences=["apache-2.0"])`
    handed them to a training job."""
    turns = [{"role": "user", "content": f"Question {i}?"} if i % 2 == 0 else {"role": "assistant", "content": f"Answer {i}."}
             for i in range(2)]
    rows = [{"messages": turns, "id": "said-apache", "licence": "apache-2.0"},
            {"messages": turns[:1] + [{"role": "assistant", "content": "Another answer."}], "id": "said-nothing"},
            {"messages": turns[:1] + [{"role": "assistant", "content": "A third answer."}], "id": "said-the-same",
             "licence": "CC-BY-SA-4.0"}]  # SPDX's own spelling: the same licence
    raw = tmp_path / "data.jsonl"
    raw.write_text("".join(json.dumps(row) + "\n" for row in rows))
    info = SourceInfo(key="o", converter="openai_messages", licence="cc-by-sa-4.0", language="en")
    counts = normalize(info, [raw], tmp_path / "o.parquet", tmp_path / "o.rejected.parquet")
    assert counts.summary() == {"read": 3, "kept": 2, "dropped": {"licence_conflict": 1}}
    assert {json.loads(r["origin"])["key"]: r["licence"] for r in pq.read_table(tmp_path / "o.parquet").to_pylist()} == {
        "said-nothing": "cc-by-sa-4.0", "said-the-same": "cc-by-sa-4.0"}
    drop, = pq.read_table(tmp_path / "o.rejected.parquet").to_pylist()
    assert drop["detail"] == "the row says apache-2.0, the manifest cc-by-sa-4.0"
    # the rejected file's footer names the licence the row says too (it named the manifest's alone: review)
    footer = pq.read_schema(tmp_path / "o.rejected.parquet").metadata[b"licences"]
    assert json.loads(footer) == ["apache-2.0", "cc-by-sa-4.0"]


def test_a_row_spelling_a_licence_as_spdx_does_carries_the_hubs_id(tmp_path):
    """A row saying `ODC-By-1.0` (SPDX's id) under a source declared `odc-by` (the Hub's, which the
    manifest must use) was dropped as a licence conflict; with no licence declared, it kept a
    spelling no policy naming `odc-by` allowed."""
    row = {"messages": [{"role": "user", "content": "What is ODC-By?"}, {"role": "assistant", "content": "A licence."}],
           "licence": "ODC-By-1.0"}
    raw = tmp_path / "data.jsonl"
    raw.write_text(json.dumps(row) + "\n")
    for declared in ("odc-by", None):
        info = SourceInfo(key="o", converter="openai_messages", licence=declared, language="en")
        counts = normalize(info, [raw], tmp_path / "o.parquet", tmp_path / "o.rejected.parquet")
        assert counts.summary() == {"read": 1, "kept": 1, "dropped": {}}
        assert pq.read_table(tmp_path / "o.parquet")["licence"].to_pylist() == ["odc-by"]
    # under another licence, dropped: the rejected file's footer named it `odc-by-1.0`, which no policy allows
    info = SourceInfo(key="o", converter="openai_messages", licence="mit", language="en")
    counts = normalize(info, [raw], tmp_path / "o.parquet", tmp_path / "o.rejected.parquet")
    assert counts.summary() == {"read": 1, "kept": 0, "dropped": {"licence_conflict": 1}}
    assert json.loads(pq.read_schema(tmp_path / "o.rejected.parquet").metadata[b"licences"]) == ["mit", "odc-by"]


def test_a_row_licence_no_one_knows_is_dropped(tmp_path):
    """With no licence in the manifest, a row's own "Proprietary" was stored, and a generator could
    derive apache-2.0 rows from it: `derivative_problem` judges known licences only."""
    rows = [{"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": text}], "licence": licence}
            for text, licence in (("Hello.", "Proprietary"), ("Hi there.", "MIT"))]
    raw = tmp_path / "data.jsonl"
    raw.write_text("".join(json.dumps(row) + "\n" for row in rows))
    info = SourceInfo(key="o", converter="openai_messages", licence=None, language="en")
    counts = normalize(info, [raw], tmp_path / "o.parquet", tmp_path / "o.rejected.parquet")
    assert counts.summary() == {"read": 2, "kept": 1, "dropped": {"licence_unknown": 1}}
    assert [r["licence"] for r in pq.read_table(tmp_path / "o.parquet").to_pylist()] == ["mit"]


def test_a_generated_rows_input_licences_are_lifted_out_of_its_origin():
    """A remix reads another mixture's rows: their `origin` was kept whole, as a string, so the
    generated rows' `input_licences` sat one level down, where no shard or rejected footer of the
    remix read them (a remix of wildchat_responses rows named apache-2.0 alone, not the odc-by
    prompts they hold)."""
    convert = get_converter("openai_messages")
    row = make_record(messages=[message("user", "Hi?"), message("assistant", "Hello.")], tools=[], source="responses",
                      licence="apache-2.0", language="en",
                      origin={"generator": "wildchat_responses", "input_licences": ["odc-by"]})
    [(_, converted)] = convert([("shard.parquet#0", row)])
    assert converted.meta["input_licences"] == ["odc-by"] and json.loads(converted.meta["origin"])["input_licences"]
    for origin in ({"generator": "self_identity"}, "not json", [1, 2], {"input_licences": [3, None]}):
        plain = {**row, "origin": origin if isinstance(origin, str) else json.dumps(origin)}
        [(_, converted)] = convert([("shard.parquet#0", plain)])
        assert "input_licences" not in converted.meta
