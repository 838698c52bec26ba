"""Content ids: the hash of json.dumps' canonical bytes, whichever encoder writes them; what a file of records is."""

import hashlib
import json
import math
import random
import re
from pathlib import Path

import pyarrow as pa
import pytest

from sftmix.record import content_id, dumps, make_record, message, schema_problem, tool_call, tool_def


def reference_id(messages, tools):
    canonical = json.dumps({"messages": messages, "tools": tools}, ensure_ascii=False, sort_keys=True,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def conversation(text="Quel temps fait-il à Zürich ?\n\t\x01\u2028😀"):
    return [message("system", "Réponds brièvement."), message("user", text),
            message("assistant", "", tool_calls=[tool_call("get_weather", {"city": "Zürich"}, "call_3e8f0")]),
            message("tool", '{"temp_c": 21.5}', tool_call_id="call_3e8f0", name="get_weather")]


def tools_with(value):
    return [tool_def("get_weather", "Weather at a place (#3e3e3e, 0x1e4).", {
        "type": "object", "properties": {"city": {"type": "string", "default": value, "ñ": [value, {"z": 1, "a": value}]}},
        "required": ["city"]})]


def test_a_record_id_is_pinned():
    # Ids name rows in holdouts, rejected files and users' notes: they must not move between versions.
    record = make_record(messages=conversation(), tools=tools_with(0.5), source="s", licence="mit", language="fr",
                         origin={})
    assert record["id"] == "b59cc2629c3512a93e083e8b69f86cf6"


FLOATS = [0.0, -0.0, 0.5, 1e-4, 9.99e-5, 1e-5, 1.5e-7, 5e-324, 1e15, 9.9e15, 1e16, 1.2345678901234567e19, 1e308,
          -1e-300, 123456.789]
INTS = [0, -1, 2**53 + 1, 2**63, -(2**63), 2**64, -(2**64) - 7, 10**30]


@pytest.mark.parametrize("value", FLOATS + INTS + [True, None, "1e16", "NaN", "0.00001", "über"],
                         ids=lambda v: repr(v))
def test_id_is_json_dumps_canonical_hash_for_every_kind_of_value(value):
    messages, tools = conversation(), tools_with(value)
    tools_json = dumps(tools)
    expected = reference_id(messages, tools)
    assert content_id(messages, tools_json, tools) == expected
    assert content_id(messages, tools_json) == expected  # parsed back from the stored JSON
    # make_record encodes tools one at a time (and caches each): the same stored text, the same id.
    for _ in range(2):
        two_tools = [*tools, tool_def("echo", None, {"type": "object", "properties": {"x": {"enum": [value]}}})]
        record = make_record(messages=messages, tools=two_tools, source="s", licence="mit", language="fr", origin={})
        assert (record["tools"], record["id"]) == (dumps(two_tools), reference_id(messages, two_tools))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=repr)
def test_nan_and_infinity_are_refused_not_stored_as_text_no_other_parser_reads(value):
    with pytest.raises(ValueError, match="not JSON compliant"):
        dumps(tools_with(value))
    with pytest.raises(ValueError, match="not JSON compliant"):
        tool_call("get_weather", {"city": value}, "call_0")
    with pytest.raises(ValueError, match="not JSON compliant"):
        make_record(messages=conversation(), tools=tools_with(value), source="s", licence="mit", language="fr", origin={})
    with pytest.raises(ValueError, match="not JSON compliant"):
        make_record(messages=conversation(), tools=[], source="s", licence="mit", language="fr", origin={"score": value})


def test_id_matches_json_dumps_on_random_floats_and_texts():
    rng = random.Random(7)
    for _ in range(3000):
        value = rng.choice([-1, 1]) * 10 ** rng.uniform(-330, 308.2)
        if not math.isfinite(value):
            value = rng.random()
        text = "".join(chr(rng.choice([rng.randrange(0, 0x80), rng.randrange(0x80, 0xD800), rng.randrange(0xE000, 0x110000)]))
                       for _ in range(rng.randrange(0, 12)))
        messages, tools = conversation(text), tools_with(value)
        assert content_id(messages, dumps(tools), tools) == reference_id(messages, tools)


@pytest.mark.parametrize("number", ["1e400", "0.00001", "10000000000000000.0", "-0.0000001234", "2E5"])
def test_tools_text_not_written_by_json_dumps(number):
    # A converter may hand over the source's own tools text: its numbers are not in Python's forms.
    tools_json = '[{"type": "function", "function": {"name": "f", "parameters": {"maximum": %s}}}]' % number
    assert content_id(conversation(), tools_json) == reference_id(conversation(), json.loads(tools_json))


def test_a_lone_surrogate_is_an_encoding_error_as_with_json():
    # normalize turns this error into an `invalid_unicode` drop.
    with pytest.raises(UnicodeEncodeError):
        content_id(conversation("half a pair \ud83d"), "[]", [])


def _records():
    return [make_record(messages=[message("user", f"Question {i}?"), message("assistant", f"Answer {i}.")], tools=[],
                        source="s", licence="mit", language="en", origin={"row": f"in.jsonl#{i}"}) for i in range(3)]


def test_records_written_back_by_polars_or_with_more_columns_are_read_as_written(tmp_path):
    """polars writes large strings and large lists; a judged file has a scores column."""
    import polars as pl
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sftmix.normalize import read_records
    from sftmix.record import SCHEMA, to_table

    records = _records()
    pq.write_table(to_table(records), tmp_path / "a.parquet")
    pl.read_parquet(tmp_path / "a.parquet").with_columns(score=pl.lit(5)).write_parquet(tmp_path / "b.parquet")
    kinds = pq.read_schema(tmp_path / "b.parquet")
    assert pa.types.is_large_string(kinds.field("id").type) and pa.types.is_large_list(kinds.field("messages").type)
    assert schema_problem(SCHEMA) is None and schema_problem(kinds) is None
    assert [{k: r[k] for k in SCHEMA.names} for r in read_records([tmp_path / "b.parquet"])] == records


@pytest.mark.parametrize("change, problem", [
    (lambda t: t.drop_columns(["origin", "licence"]),
     "it has no column licence, origin (its columns: id, source, language, messages, tools)"),
    (lambda t: t.set_column(4, "messages", pa.array(["[]"] * t.num_rows)),
     "its messages column is string, not a list of messages with a role and content"),
    (lambda t: t.set_column(4, "messages", pa.array([[{"role": "user"}]] * t.num_rows)),
     "its messages column is list<element: struct<role: string>>, not a list of messages with a role and content"),
    (lambda t: t.set_column(5, "tools", pa.array([[]] * t.num_rows, pa.list_(pa.string()))),
     "its tools column is list<element: string>, not text"),
], ids=["missing", "messages_text", "messages_without_content", "tools_list"])
def test_a_file_that_is_not_records_is_named_before_any_row_is_read(tmp_path, change, problem):
    import pyarrow.parquet as pq

    from sftmix.normalize import read_records
    from sftmix.record import to_table
    from sftmix.shards import UnreadableParquet

    good, bad = tmp_path / "good.parquet", tmp_path / "bad.parquet"
    pq.write_table(to_table(_records()), good)
    pq.write_table(change(to_table(_records())), bad)
    rows = read_records([good, bad])
    with pytest.raises(UnreadableParquet) as error:
        next(rows)
    assert str(error.value) == f"{bad} is not a file of records: {problem}"


def _weather_row(result_order: list[str]) -> list[dict]:
    calls = [tool_call("get_weather", {"city": city}, f"call_{city}") for city in ("Paris", "Oslo")]
    temperatures = {"Paris": 24, "Oslo": -3}
    return [message("user", "What is the temperature in Paris and in Oslo right now?"),
            message("assistant", None, tool_calls=calls),
            *(message("tool", dumps({"temperature_c": temperatures[city]}), tool_call_id=f"call_{city}")
              for city in result_order),
            message("assistant", "It is 24 °C in Paris and -3 °C in Oslo.")]


def test_parallel_results_are_written_in_the_order_of_their_calls():
    """Rendered, results carry no ids (Hermes' <tool_response>, Qwen's template): the record kept
    them as the source listed them, and Oslo's call was trained with Paris's temperature."""
    def record(messages):
        return make_record(messages=messages, tools=[], source="s", licence="mit", language="en", origin={})

    in_call_order, reversed_results = record(_weather_row(["Paris", "Oslo"])), record(_weather_row(["Oslo", "Paris"]))
    assert [m["tool_call_id"] for m in reversed_results["messages"][2:4]] == ["call_Paris", "call_Oslo"]
    assert reversed_results == in_call_order  # one conversation: one id
    # a run the role-order rule drops is left as it is: a result naming no call, two naming one
    for ids in (["call_Oslo", "call_Lima"], ["call_Oslo", "call_Oslo"]):
        messages = _weather_row(["Oslo", "Paris"])
        for result, call_id in zip(messages[2:4], ids):
            result["tool_call_id"] = call_id
        assert [m["tool_call_id"] for m in record(messages)["messages"][2:4]] == ids


def test_toolace_results_listed_out_of_call_order_render_after_their_calls():
    """The fixture's row (ToolACE's real layout, results matched to calls by name) lists the second
    call's result first."""
    from sftmix.render import to_chatml
    from sftmix.sources.toolace import convert

    rows = json.loads((Path(__file__).parent / "fixtures" / "toolace" / "data.json").read_text())
    row = next(r for r in rows if any(t["from"] == "tool" and t["value"].lstrip().startswith("[")
                                      and len(json.loads(t["value"])) > 1 for t in r["conversations"]))
    listed = [result for t in row["conversations"] if t["from"] == "tool" for result in json.loads(t["value"])]
    converted = convert(row)
    record = make_record(messages=converted.messages, tools=converted.tools, source="s", licence="mit",
                         language="en", origin={})
    text = to_chatml(record).split("<|im_start|>assistant", 1)[1]  # the system turn shows the format
    called = [json.loads(block)["name"] for block in re.findall(r"<tool_call>\n(.*?)\n</tool_call>", text)]
    answered = [json.loads(block) for block in re.findall(r"<tool_response>\n(.*?)\n</tool_response>", text, re.DOTALL)]
    results = {result["name"]: result["results"] for result in listed}
    assert len(called) > 1 and [result["name"] for result in listed] != called
    assert answered == [results[name] for name in called]
