"""The Prometheus-style LLM judge: verdict parsing, grading against a scripted judge server, and `sftmix judge`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import filters as rule_filters
from filters.llm_judge import LLMJudgeFilter, judge_prompt, parse_verdict
from openai_server import Fault, Reply, count_tokens, serve_openai
from own_process import stdout_of
from sftmix.llm import Failure, LLMClient, LLMSettings, Prices
from sftmix.normalize import SourceInfo, filter_records
from sftmix.record import make_record, message, to_table, tool_call, tool_def

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-test-judge-0001"



# ------------------------------------------------------------------------------------------ parse_verdict

FEEDBACK = ("The response is accurate and addresses every part of the instruction. It explains the water cycle "
            "in the order the question asks for, but it omits transpiration, which the reference answer covers.")


@pytest.mark.parametrize("text, expected", [
    (f"Feedback: {FEEDBACK} [RESULT] 4", (FEEDBACK, 4)),
    (f"Feedback: {FEEDBACK}\n[RESULT] 4", (FEEDBACK, 4)),
    (f"\n\n  Feedback: {FEEDBACK} [RESULT] 5  \n\n", (FEEDBACK, 5)),
    (f"Feedback:\n{FEEDBACK}\n\nOverall the style is clear.\n\n[RESULT] 3",
     (f"{FEEDBACK}\n\nOverall the style is clear.", 3)),
    (f"{FEEDBACK} [RESULT] 2", (FEEDBACK, 2)),  # the model dropped the "Feedback:" label
    ("Feedback: Wrong language and off topic. [RESULT] 1", ("Wrong language and off topic.", 1)),
    ("Feedback: Fine.[RESULT]5", ("Fine.", 5)),
    ("[RESULT] 3", ("", 3)),
    ("Feedback: Quotes the rubric's 'Score 4:' line but decides otherwise. [RESULT] 2",
     ("Quotes the rubric's 'Score 4:' line but decides otherwise.", 2)),
], ids=["canonical", "newline-before-marker", "surrounding-whitespace", "multi-paragraph", "no-label", "score-1",
        "no-spaces", "marker-only", "digits-in-feedback"])
def test_parse_verdict_accepts(text, expected):
    assert parse_verdict(text) == expected


@pytest.mark.parametrize("text", [
    f"Feedback: {FEEDBACK} [RESULT] 6",
    f"Feedback: {FEEDBACK} [RESULT] 0",
    f"Feedback: {FEEDBACK} [RESULT] 45",
    f"Feedback: {FEEDBACK} [RESULT] 3 [RESULT] 4",
    "Feedback: A first attempt. [RESULT] 3\n\nFeedback: On reflection... [RESULT] 4",
    f"Feedback: {FEEDBACK}",
    f"Feedback: {FEEDBACK} Score: 4",
    f"Feedback: {FEEDBACK} [RESULT] four",
    f"Feedback: {FEEDBACK} [RESULT] 4\n\nI hope this evaluation helps.",
    f"Feedback: {FEEDBACK} [RESULT] 4.",
    f"Feedback: {FEEDBACK} [RESULT] 4/5",
    f"Feedback: {FEEDBACK} [RESULT] 3.5",
    f"Feedback: {FEEDBACK} [RESULT] (4)",
    f"Feedback: {FEEDBACK} [result] 4",
    f"Feedback: {FEEDBACK} RESULT: 4",
    "",
    "   \n",
], ids=["score-6", "score-0", "score-45", "two-markers", "two-verdicts", "missing-marker", "other-format",
        "word-score", "text-after", "period-after", "out-of-five", "decimal", "parenthesised", "lowercase",
        "no-brackets", "empty", "blank"])
def test_parse_verdict_rejects(text):
    assert parse_verdict(text) is None


def test_parse_verdict_reads_a_long_whitespace_run_in_one_pass():
    # A lazy feedback pattern once retried a whitespace run from each of its characters: about half
    # an hour for this reply (0.4 s for 16,000 spaces, quadratic). A process of its own, so that such a regression fails here instead of hanging.
    code = """if True:
        from filters.llm_judge import parse_verdict
        for reply in ["Feedback: ok" + " " * 1_000_000 + "x [RESULT] 4", "Feedback: ok" + " " * 1_000_000 + "[RESULT] 6"]:
            verdict = parse_verdict(reply)
            print(verdict and (len(verdict[0]), verdict[1]))
    """
    assert stdout_of(code).splitlines() == ["(1000003, 4)", "None"]


# ------------------------------------------------------------------------------------- scripted judge

GRADE = re.compile(r"\[grade:(\w+)\]")


def judge_responder(messages, body):
    """Grades by the `[grade:N]` tag in the graded response; `[grade:junk]` never gives a score.

    It reads the FIRST user message (the grading prompt), so the judge's re-asks get the same grade.
    """
    tag = GRADE.search(messages[0]["content"])
    grade = tag.group(1) if tag else "5"
    if not grade.isdigit():
        return "Feedback: The response is hard to assess; I would rather not commit to a number."
    return f"Feedback: The response follows the rubric.\n\nIt deserves a {grade}. [RESULT] {grade}"


def record(i: int, grade: str, *, assistant: bool = True) -> dict:
    messages = [message("system", "You are a helpful assistant."), message("user", f"Question {i}: what is {i} + {i}?")]
    if assistant:
        messages.append(message("assistant", f"{i} + {i} = {2 * i}. [grade:{grade}]"))
    return make_record(messages=messages, tools=[], source="judged-src", licence="apache-2.0", language="en",
                       origin={"row": f"data.jsonl#{i}", "hub_id": "org/data"})


def write_records(path: Path, records: list[dict]) -> Path:
    pq.write_table(to_table(records), path)
    return path


def judge_client(srv, tmp_path: Path, **settings) -> LLMClient:
    settings.setdefault("cache_dir", str(tmp_path / "cache"))
    return LLMClient(LLMSettings(base_url=srv.base_url, backoff_base_s=0.01, **settings), api_key=KEY)


def grade_all(judge: LLMJudgeFilter, records: list[dict]) -> list:
    """Each record's (feedback, score), or its drop reason."""
    async def main():
        try:
            return await asyncio.gather(*(judge.grade(r) for r in records))
        finally:
            await judge.client.aclose()
    return [v.reason if isinstance(v, Failure) else v for v in asyncio.run(main())]


def judge_only(client: LLMClient, **judge) -> dict:
    config = {name: False for name in rule_filters.FILTERS}
    config[LLMJudgeFilter.name] = {"threshold": 4, "client": client, **judge}
    return config


def run_judge(tmp_path: Path, records: list[dict], client: LLMClient, **judge):
    src = write_records(tmp_path / "in.parquet", records)
    info = SourceInfo(key="judged", converter="openai_messages", filters=judge_only(client, **judge))
    counts = filter_records(info, [src], tmp_path / "out.parquet", tmp_path / "out.rejected.parquet")
    kept = pq.read_table(tmp_path / "out.parquet").to_pylist()
    rejected = pq.read_table(tmp_path / "out.rejected.parquet").to_pylist()
    return counts, kept, rejected


def test_judge_prompt_layout():
    prompt = judge_prompt(record(7, "5"), "RUBRIC TEXT")
    assert "SYSTEM: You are a helpful assistant.\n\nUSER: Question 7: what is 7 + 7?" in prompt
    assert "###Response to evaluate:\n7 + 7 = 14. [grade:5]" in prompt
    assert "(none given)" in prompt and "RUBRIC TEXT" in prompt and prompt.rstrip().endswith("###Feedback:")
    assert judge_prompt(record(1, "5", assistant=False), "r") is None


def test_the_judge_sees_the_tools_and_which_tool_each_result_is_from():
    """Function-calling rows were graded without their tool definitions, and results showed as a
    bare `TOOL:`: a wrong argument name or a hallucinated tool could not be judged."""
    weather = tool_def("get_weather", "Weather for a city", {"type": "object", "properties": {"city": {"type": "string"}},
                                                             "required": ["city"]})
    clock = tool_def("get_time", "Time in a city", {"type": "object", "properties": {"city": {"type": "string"}}})
    rec = make_record(messages=[
        message("user", "Weather in Paris and time in Tokyo?"),
        message("assistant", "", tool_calls=[tool_call("get_weather", {"town": "Paris"}, "call_0"),
                                             tool_call("get_time", {"city": "Tokyo"}, "call_1")]),
        message("tool", "18", tool_call_id="call_0", name="get_weather"),
        message("tool", "09:00", tool_call_id="call_1", name="get_time"),
        message("assistant", "   "),
    ], tools=[weather, clock], source="s", licence="mit", language="en", origin={})
    prompt = judge_prompt(rec, "R")
    assert ("###The instruction to evaluate:\nTOOLS the assistant may call (OpenAI tool definitions, JSON Schema "
            f"parameters):\n{rec['tools']}\n\nUSER: Weather in Paris and time in Tokyo?") in prompt
    assert '"required": ["city"]' in prompt and '[call] get_weather({"town": "Paris"})' in prompt
    assert "TOOL (get_weather): 18\n\nTOOL (get_time): 09:00" in prompt
    assert "###Response to evaluate:\n(empty)\n" in prompt  # not the bare role label "ASSISTANT:"
    # a records file written without the optional message fields (role and content only)
    bare = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}], "tools": ""}
    assert "USER: Hi" in judge_prompt(bare, "R") and "TOOLS" not in judge_prompt(bare, "R")


def test_a_verdict_cut_at_max_tokens_is_one_request_and_a_drop_that_says_so(tmp_path):
    """It was asked `attempts` times, each paid and cut again, then dropped as `judge_unparsable`."""
    with serve_openai(responder=judge_responder, faults=[Fault("truncated", count=None)]) as srv:
        client = judge_client(srv, tmp_path, max_tokens=64)
        counts, kept, rejected = run_judge(tmp_path, [record(1, "5")], client, attempts=3)
        assert srv.count() == 1
    assert dict(counts.dropped) == {"judge_truncated": 1} and not kept
    assert rejected[0]["detail"] == "finish_reason=length at max_tokens 64"


def test_a_row_the_judge_could_not_grade_keeps_why_in_its_rejected_row(tmp_path):
    with serve_openai(responder=judge_responder, faults=[Fault("server_error", status=400, count=None)]) as srv:
        _, _, rejected = run_judge(tmp_path, [record(1, "5")], judge_client(srv, tmp_path))
    assert rejected[0]["reason"] == "http_400" and rejected[0]["detail"].startswith("Error code: 400 - ")
    with serve_openai(responder=judge_responder) as srv:
        _, _, rejected = run_judge(tmp_path, [record(2, "junk")], judge_client(srv, tmp_path), attempts=1)
    assert rejected[0]["reason"] == "judge_unparsable"
    assert rejected[0]["detail"] == "Feedback: The response is hard to assess; I would rather not commit to a number."


def test_a_row_the_judge_refuses_to_grade_is_the_judges_refusal(tmp_path):
    """It was `model_refused`, the reason a generator's refusal to write has: in a generated source
    with a judge both fell in one count."""
    refusal = "I'm sorry, I can't help with grading this."
    with serve_openai(responder=lambda messages, body: Reply(None, refusal=refusal)) as srv:
        counts, kept, rejected = run_judge(tmp_path, [record(1, "5")], judge_client(srv, tmp_path))
        assert srv.count() == 1
    assert dict(counts.dropped) == {"judge_refused": 1} and not kept
    assert rejected[0]["detail"] == refusal


def test_grade_scores_and_request_counts(tmp_path):
    faults = [Fault("bad_verdict", match="[grade:3]", count=1)]
    with serve_openai(responder=judge_responder, faults=faults) as srv:
        judge = LLMJudgeFilter(threshold=4, attempts=3, client=judge_client(srv, tmp_path))
        records = [record(0, "5"), record(1, "2"), record(2, "junk"), record(3, "3"), record(4, "x", assistant=False)]
        verdicts = grade_all(judge, records)
        assert srv.count() == 1 + 1 + 3 + 2 + 0
        assert srv.fired("bad_verdict") == 1
        bodies = srv.bodies
    assert verdicts[0] == ("The response follows the rubric.\n\nIt deserves a 5.", 5)
    assert verdicts[1][1] == 2 and verdicts[3][1] == 3  # a bad verdict, then a good one
    assert verdicts[2] == "judge_unparsable" and verdicts[4] == "judge_no_response"
    # the re-asks carry the unparsable reply and a reminder of the format
    reasks = sorted((b for b in bodies if "[grade:junk]" in b["messages"][0]["content"]), key=lambda b: len(b["messages"]))
    assert [len(b["messages"]) for b in reasks] == [1, 3, 5]
    assert reasks[2]["messages"][-1]["content"].startswith('End your answer with "[RESULT] "')
    assert all(b["temperature"] == 0.0 for b in bodies)


@pytest.mark.parametrize("attempts", [1, 2, 4])
def test_grade_unparsable_asks_exactly_attempts_times(tmp_path, attempts):
    with serve_openai(responder=judge_responder) as srv:
        judge = LLMJudgeFilter(attempts=attempts, client=judge_client(srv, tmp_path))
        assert grade_all(judge, [record(9, "junk")]) == ["judge_unparsable"]
        assert srv.count() == attempts


def test_grade_passes_client_failures_through(tmp_path):
    with serve_openai(responder=judge_responder, faults=[Fault("server_error", status=400, count=None)]) as srv:
        judge = LLMJudgeFilter(client=judge_client(srv, tmp_path))
        assert grade_all(judge, [record(1, "5")]) == ["http_400"]
        assert srv.count() == 1


def test_threshold_validated():
    for threshold in (0, 6):
        with pytest.raises(ValueError):
            LLMJudgeFilter(threshold=threshold)


@pytest.mark.parametrize("window", [0, -3, 2.5, "8"])
def test_window_validated(window):
    with pytest.raises(ValueError, match="window must be a whole number of rows"):
        LLMJudgeFilter(window=window)


# ------------------------------------------------------------------------- through filter_records

def test_filter_records_scores_and_threshold(tmp_path):
    records = [record(0, "5"), record(1, "4"), record(2, "3"), record(3, "1")]
    with serve_openai(responder=judge_responder) as srv:
        client = judge_client(srv, tmp_path)
        counts, kept, rejected = run_judge(tmp_path, records, client)
        assert srv.count() == 4
    assert (counts.read, counts.kept, dict(counts.dropped)) == (4, 2, {"judge_below_threshold": 2})
    assert [r["id"] for r in kept] == [records[0]["id"], records[1]["id"]]
    for k, (row, grade) in enumerate(zip(kept, (5, 4))):
        origin = json.loads(row["origin"])
        assert origin["row"] == f"data.jsonl#{k}" and origin["hub_id"] == "org/data"  # the rest of origin is kept
        assert origin["scores"]["llm_judge"] == {
            "score": grade, "feedback": f"The response follows the rubric.\n\nIt deserves a {grade}.",
            "threshold": 4, "model": "deepseek-chat"}
        assert row["messages"] == records[k]["messages"] and row["source"] == "judged-src"
    assert sorted((r["id"], r["reason"], r["stage"]) for r in rejected) == sorted(
        [(records[2]["id"], "judge_below_threshold", "llm_judge"), (records[3]["id"], "judge_below_threshold", "llm_judge")])
    below = {r["id"]: json.loads(json.loads(r["row"])["origin"])["scores"]["llm_judge"]["score"] for r in rejected}
    assert below == {records[2]["id"]: 3, records[3]["id"]: 1}  # the score is kept on dropped rows too


def test_filter_records_keeps_at_most_window_rows_in_flight_and_their_order(tmp_path):
    grades = "5431" * 5
    records = [record(i, grade) for i, grade in enumerate(grades)]
    with serve_openai(responder=judge_responder, delay=0.05) as srv:
        client = judge_client(srv, tmp_path, concurrency=8)
        counts, kept, rejected = run_judge(tmp_path, records, client, window=3)
        assert srv.count() == 20
        assert srv.max_concurrent == 3  # the window, not the client's 8
    assert [r["id"] for r in kept] == [r["id"] for r, grade in zip(records, grades) if grade in "54"]
    assert counts.dropped == {"judge_below_threshold": 10}


def test_filter_records_unparsable_is_dropped_after_attempts(tmp_path):
    with serve_openai(responder=judge_responder) as srv:
        counts, kept, rejected = run_judge(tmp_path, [record(0, "junk"), record(1, "5")], judge_client(srv, tmp_path),
                                           attempts=2)
        assert srv.count() == 2 + 1
    assert counts.kept == 1 and dict(counts.dropped) == {"judge_unparsable": 1}
    assert [r["reason"] for r in rejected] == ["judge_unparsable"]


def test_filter_records_bad_verdict_then_good_is_kept(tmp_path):
    faults = [Fault("bad_verdict", match="[grade:4]", count=1)]
    with serve_openai(responder=judge_responder, faults=faults) as srv:
        counts, kept, rejected = run_judge(tmp_path, [record(0, "4")], judge_client(srv, tmp_path))
        assert srv.count() == 2 and srv.fired("bad_verdict") == 1
    assert counts.kept == 1 and not rejected
    assert json.loads(kept[0]["origin"])["scores"]["llm_judge"]["score"] == 4


# ------------------------------------------------------------------------------------------ sftmix judge

SUMMARY_KEYS = {"kept", "dropped", "requests", "cache_hits", "prompt_tokens", "completion_tokens", "cost_usd"}


def sftmix_judge(srv, tmp_path: Path, *args: str) -> dict:
    env = {**os.environ, "SFTMIX_LLM_BASE_URL": srv.base_url, "SFTMIX_LLM_API_KEY": KEY,
           "SFTMIX_LLM_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "sftmix.cli", "judge", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert KEY not in done.stdout + done.stderr
    *_, figures, last = done.stdout.strip().splitlines()
    assert figures.startswith("llm ")
    # the contract's last line, plus the prompt-cache hits reported on the line before it
    return {**json.loads(last), "prompt_cache_hit_tokens": json.loads(figures[4:])["prompt_cache_hit_tokens"]}


def test_sftmix_judge_cli_summary_and_cached_rerun(tmp_path):
    records = [record(0, "5"), record(1, "4"), record(2, "3"), record(3, "1"), record(4, "junk"), record(50, "5")]
    src = write_records(tmp_path / "in.parquet", records)
    faults = [Fault("bad_verdict", match="Question 50:", count=1)]
    with serve_openai(responder=judge_responder, faults=faults) as srv:
        first = sftmix_judge(srv, tmp_path, str(src), "-o", "out.parquet", "--threshold", "4")
        bodies = srv.bodies
        assert set(first) == SUMMARY_KEYS | {"prompt_cache_hit_tokens"}
        assert first["kept"] == 3
        assert first["dropped"] == {"judge_below_threshold": 2, "judge_unparsable": 1}
        assert first["requests"] == srv.count() == 1 + 1 + 1 + 1 + 3 + 2
        assert first["cache_hits"] == 0
        prompt_tokens = sum(count_tokens(m["content"]) for b in bodies for m in b["messages"])
        assert first["prompt_tokens"] == prompt_tokens
        assert 0 < first["completion_tokens"] and 0 <= first["prompt_cache_hit_tokens"] < prompt_tokens
        prices = Prices()
        hit = first["prompt_cache_hit_tokens"]
        assert first["cost_usd"] == round((hit * prices.prompt_cache_hit + (prompt_tokens - hit) * prices.prompt_cache_miss
                                           + first["completion_tokens"] * prices.completion) / 1e6, 6)
        kept_ids = pq.read_table(tmp_path / "out.parquet").column("id").to_pylist()
        assert sorted(kept_ids) == sorted(records[i]["id"] for i in (0, 1, 5))

        second = sftmix_judge(srv, tmp_path, str(src), "-o", "again.parquet", "--threshold", "4")
        assert srv.count() == first["requests"]  # nothing asked again
    assert second["requests"] == 0 and second["cache_hits"] == first["requests"]
    assert (second["kept"], second["dropped"]) == (first["kept"], first["dropped"])
    assert second["cost_usd"] == 0 and second["prompt_tokens"] == 0
    assert pq.read_table(tmp_path / "again.parquet").to_pylist() == pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert Counter(r["reason"] for r in pq.read_table(tmp_path / "again.rejected.parquet").to_pylist()) == first["dropped"]



def test_rows_of_a_file_with_a_null_or_a_malformed_origin_are_drops_not_a_crash(tmp_path):
    """The file's schema was records', nulls allowed: `sftmix judge` paid for every verdict, then
    stopped with a traceback writing a score (or a drop) into an origin that was no JSON object."""
    records = [record(i, "5") for i in range(6)]
    table = to_table(records)
    # the last: a footer takes a generated row's input licences in, a name at a time
    origins = [records[0]["origin"], None, "", "[]", records[4]["origin"], '{"input_licences": "odc-by"}']
    table = table.set_column(table.schema.get_field_index("origin"), "origin", pa.array(origins, pa.string()))
    languages = pa.array(["en", "en", "en", "en", None, "en"], pa.string())
    table = table.set_column(table.schema.get_field_index("language"), "language", languages)
    null_message = to_table([record(6, "5")])  # a rule read its turns: TypeError
    messages = null_message.column("messages").to_pylist()
    null_message = null_message.set_column(null_message.schema.get_field_index("messages"), "messages",
                                           pa.array([[messages[0][0], None, messages[0][2]]], table.schema.field("messages").type))
    table = pa.concat_tables([table, null_message.cast(table.schema)])
    pq.write_table(table, tmp_path / "in.parquet")
    with serve_openai(responder=judge_responder) as srv:
        summary = sftmix_judge(srv, tmp_path, str(tmp_path / "in.parquet"), "-o", "out.parquet")
        assert srv.count() == 1  # only the sound row is graded
    assert (summary["kept"], summary["dropped"]) == (1, {"malformed_record": 6})
    drops = pq.read_table(tmp_path / "out.rejected.parquet").to_pylist()
    assert [(d["key"], d["detail"]) for d in drops] == [
        ("1", "null origin"), ("2", "origin '' is not a JSON object"), ("3", "origin '[]' is not a JSON object"),
        ("4", "null language"), ("5", "origin input_licences 'odc-by' is not a list of licence names"),
        ("6", "a null message")]

@pytest.mark.parametrize("command", [["judge"], ["generate", "self_identity"]])
def test_credentials_in_the_endpoints_url_are_a_one_line_error_that_does_not_quote_them(tmp_path, command):
    """Without a manifest to check them, the settings' error was a traceback printing the URL."""
    src = write_records(tmp_path / "in.parquet", [record(0, "5")])
    env = {**os.environ, "SFTMIX_LLM_BASE_URL": "http://bob:s3cretpw@gpu1:8000/v1", "SFTMIX_LLM_API_KEY": KEY,
           "PYTHONPATH": str(ROOT)}
    inputs = [str(src)] if command == ["judge"] else ["--input", str(src)]
    done = subprocess.run([sys.executable, "-m", "sftmix.cli", *command, *inputs, "-o", "out.parquet"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == ("sftmix: error: LLM settings: base_url (the manifest's, or SFTMIX_LLM_BASE_URL) holds "
                           "credentials (user:password@host): give the API key in SFTMIX_LLM_API_KEY or "
                           "DEEPSEEK_API_KEY instead\n")


def test_a_rubric_that_cannot_be_read_is_a_one_line_error(tmp_path):
    """A directory or a Latin-1 file gave a traceback and exit 1 (a missing file gave this line)."""
    src = write_records(tmp_path / "in.parquet", [record(0, "5")])
    (tmp_path / "latin1.txt").write_bytes("Criteri: correcció\n".encode("latin-1"))
    env = {**os.environ, "SFTMIX_LLM_API_KEY": KEY, "PYTHONPATH": str(ROOT)}
    for rubric, problem in (("missing.txt", ": No such file or directory"), (".", ": Is a directory"),
                            ("latin1.txt", " is not UTF-8 text")):
        done = subprocess.run([sys.executable, "-m", "sftmix.cli", "judge", str(src), "-o", "out.parquet",
                               "--rubric", rubric], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stderr) == (2, f"sftmix: error: rubric {rubric}{problem}\n")


def test_sftmix_judge_takes_its_budget_and_prices_from_a_manifest(tmp_path):
    """`sftmix judge` had no way to cap its spending or price a model other than DeepSeek's."""
    records = [record(i, "5") for i in range(6)]
    src = write_records(tmp_path / "in.parquet", records)
    (tmp_path / "m.yaml").write_text(yaml.safe_dump({
        "mixture": "m", "holdout": {"size": 0}, "licence_policy": {"allow": ["apache-2.0"]},
        "sources": [{"key": "d", "converter": "dolly", "licence": "apache-2.0", "local": {"files": ["d.jsonl"]},
                     "targets": "all"}],
        "llm": {"budget_usd": 1e-9, "concurrency": 1, "prices": {"prompt_cache_miss": 2.5, "prompt_cache_hit": 1.25,
                                                                 "completion": 10.0}}}))
    with serve_openai(responder=judge_responder) as srv:
        summary = sftmix_judge(srv, tmp_path, str(src), "-o", "out.parquet", "--manifest", "m.yaml")
        assert srv.count() == 1
    assert summary["kept"] == 1 and summary["dropped"] == {"budget_exhausted": 5}
    hit = summary["prompt_cache_hit_tokens"]
    assert summary["cost_usd"] == round((hit * 1.25 + (summary["prompt_tokens"] - hit) * 2.5
                                         + summary["completion_tokens"] * 10.0) / 1e6, 6)


@pytest.mark.parametrize("position", [[5, 1, 9], ["b", "a", "c"]], ids=["out of order", "text"])
def test_sftmix_judge_reads_its_file_in_order_whatever_position_column_it_has(tmp_path, position):
    """A file of records may carry more columns (parts of a build joined into one file carry their
    raw positions, out of order): the judge stopped at them after paying for the rows before."""
    records = [record(0, "5"), record(1, "4"), record(2, "5")]
    table = to_table(records)
    pq.write_table(table.append_column("position", pa.array(position)), tmp_path / "in.parquet")
    with serve_openai(responder=judge_responder) as srv:
        summary = sftmix_judge(srv, tmp_path, str(tmp_path / "in.parquet"), "-o", "out.parquet", "--threshold", "4")
    assert summary["kept"] == 3 and summary["dropped"] == {}
    assert pq.read_table(tmp_path / "out.parquet").column("id").to_pylist() == [r["id"] for r in records]


def _generated_manifest(path: Path, sources: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({
        "mixture": "m", "holdout": {"size": 0}, "licence_policy": {"allow": ["apache-2.0"]},
        "identity": {"name": "ALIA", "developer": "BSC"},
        "llm": {"base_url": "http://127.0.0.1:9/v1", "model": "served-model", "budget_usd": 1.0},
        "sources": sources}))
    return path


def _self_identity(key: str, targets: dict, **more) -> dict:
    return {"key": key, "generator": {"name": "self_identity"}, "licence": "apache-2.0", "targets": targets, **more}


def test_sftmix_generate_gives_a_source_s_judge_the_manifest_s_endpoint_and_budget(tmp_path, monkeypatch):
    """The judge of a generated source made its own client: DeepSeek's endpoint and model (the key
    meant for the manifest's server sent there), no budget, and its cost left out of the summary."""
    from sftmix import cli

    seen = {}

    def capture(module, records, context, info, out, rejected, limit=None):
        seen["generator"], seen["judge"] = context.llm, info.filters["llm_judge"]["client"]
        raise cli.UserError("captured")

    manifest = _generated_manifest(tmp_path / "m.yaml", [_self_identity("si", {"en": 2}, filters={"llm_judge": {"threshold": 4}})])
    monkeypatch.setenv("SFTMIX_LLM_API_KEY", KEY)
    for variable in ("SFTMIX_LLM_BASE_URL", "SFTMIX_LLM_MODEL"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr("generators.base.generate", capture)
    assert cli.main(["generate", "self_identity", "--manifest", str(manifest), "-o", str(tmp_path / "g.parquet"),
                     "--cache-dir", str(tmp_path / "cache")]) == 2
    generator, judge = seen["generator"], seen["judge"]
    assert (judge.settings.base_url, judge.settings.model, judge.settings.budget_usd) == ("http://127.0.0.1:9/v1", "served-model", 1.0)
    assert judge.settings.cache_dir == generator.settings.cache_dir == str(tmp_path / "cache")
    assert judge.spending is generator.spending  # one budget



def _generate_responses(directory: Path, monkeypatch, n: int, llm: dict, judge: dict, word: str = "number") -> int:
    """`sftmix generate wildchat_responses` of `n` prompts ("Tell me a fun fact about the <word> <i>.")
    in `directory`, under a manifest of one responses source judged with `judge`, asking with `llm`
    (the key from the environment, the endpoint and model from the manifest alone); its exit code."""
    from sftmix import cli

    directory.mkdir(exist_ok=True)
    write_records(directory / "prompts.parquet", [
        make_record(messages=[message("user", f"Tell me a fun fact about the {word} {i}.")], tools=[], source="wildchat",
                    licence="apache-2.0", language="en", origin={"row": i}) for i in range(n)])
    monkeypatch.setenv("SFTMIX_LLM_API_KEY", KEY)
    for variable in ("SFTMIX_LLM_BASE_URL", "SFTMIX_LLM_MODEL"):
        monkeypatch.delenv(variable, raising=False)
    responses = {"key": "responses", "generator": {"name": "wildchat_responses", "inputs": []},
                 "licence": "apache-2.0", "targets": {"en": "all"}, "filters": {"llm_judge": judge}}
    manifest = _generated_manifest(directory / "m.yaml", [responses])
    data = yaml.safe_load(manifest.read_text())
    data["llm"] = {"model": "served-model", **llm}
    manifest.write_text(yaml.safe_dump(data))
    return cli.main(["generate", "wildchat_responses", "--input", str(directory / "prompts.parquet"), "--manifest",
                     str(manifest), "-o", str(directory / "g.parquet"), "--cache-dir", str(directory.parent / "cache")])


def _judged_or_fun_fact(messages, body) -> str:
    if "[RESULT]" in messages[-1]["content"]:
        return "Feedback: Fine. [RESULT] 5"
    return "A fun fact: two is the only even prime number, and every other prime is odd."


def test_sftmix_generate_warns_of_a_judge_whose_endpoint_answers_nothing(tmp_path, monkeypatch, capsys):
    """Only the generator's and the judge's stats summed were checked: the generator's answers hid a
    judge whose own endpoint was dead (exit 0, nothing on stderr, every row an unexplained drop)."""
    dead = {"base_url": "http://127.0.0.1:9/v1", "max_retries": 0}
    with serve_openai(responder=lambda messages, body: "A fun fact: it is the only even prime number.") as srv:
        assert _generate_responses(tmp_path / "g", monkeypatch, 3, {"base_url": srv.base_url}, {"llm": dead}) == 1
        assert srv.count() == 3
    out, err = capsys.readouterr()
    assert json.loads(out.splitlines()[-1])["dropped"] == {"llm_retries_exhausted": 3}
    warning, = err.splitlines()
    assert warning.startswith("warning: the LLM endpoint answered none of 3 requests (the last failure: ")
    assert warning.endswith(" (the judge's requests)")


def test_a_generator_s_requests_go_on_while_its_judge_grades(tmp_path, monkeypatch, capsys):
    """The generator and its judge ran an event loop each, one at a time: while the judge graded a
    batch the rules before it had passed on (the language rule, 80 rows here), the generator's
    requests in flight were paused past their timeout with the answers waiting, then asked, and
    paid, again (2 × 100 requests expected; 32 more were sent)."""
    from filters import base as rule_base

    monkeypatch.setattr(rule_base, "BATCH_ROWS", 80)
    with serve_openai(responder=_judged_or_fun_fact, delay=0.05) as srv:
        # 80 rows graded 2 at a time take about 2 s: twice the timeout
        llm = {"base_url": srv.base_url, "concurrency": 2, "timeout_s": 1, "max_retries": 2, "backoff_base_s": 0.01}
        assert _generate_responses(tmp_path / "g", monkeypatch, 100, llm, {"threshold": 4}) == 0
        sent = srv.count()
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (summary["generated"], summary["requests"], sent) == (100, 200, 200)


def test_a_failed_stage_s_requests_in_flight_are_not_sent_by_the_next_one(tmp_path, monkeypatch):
    """A stage stopped by an error (a full disk) while the error is kept (a notebook's last error)
    left its generator and judge suspended with rows in flight on the thread's event loop, which
    the next LLM stage ran: 29 of the failed stage's requests were sent (and paid) during the next."""
    from sftmix import llm, normalize

    def sent(srv, word: str) -> int:
        return sum(f"the {word} " in json.dumps(body) for body in srv.bodies)

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    with serve_openai(responder=_judged_or_fun_fact, delay=0.01) as srv:
        settings = {"base_url": srv.base_url, "concurrency": 2}
        with monkeypatch.context() as failing:
            failing.setattr(normalize, "WRITE_BATCH_ROWS", 10)
            failing.setattr(normalize, "_write_records", full_disk)
            with pytest.raises(OSError) as kept:  # kept, with its traceback and the stage's frames
                _generate_responses(tmp_path / "number", monkeypatch, 300, settings, {"threshold": 4})
        time.sleep(0.5)  # a request cancelled as it was written reaches the server a moment later
        failed_stage = sent(srv, "number")
        assert getattr(llm._stage_loops, "users", 0) == 0  # the stage's loop was closed
        assert _generate_responses(tmp_path / "planet", monkeypatch, 20, settings, {"threshold": 4}, word="planet") == 0
        assert sent(srv, "number") == failed_stage
    assert kept.value.errno == 28


def test_sftmix_generate_names_the_source_where_its_generator_makes_several(tmp_path, capsys):
    """The first source of the generator was taken: `--language en` ran as the ca source, with an
    unbounded target."""
    from sftmix import cli

    manifest = _generated_manifest(tmp_path / "m.yaml", [_self_identity("si-ca", {"ca": 3}), _self_identity("si-en", {"en": 5})])
    out = ["-o", str(tmp_path / "g.parquet")]
    assert cli.main(["generate", "self_identity", "--manifest", str(manifest), *out]) == 2
    assert "generator 'self_identity' makes 2 sources (si-ca, si-en): name one with --source" in capsys.readouterr().err
    assert cli.main(["generate", "self_identity", "--manifest", str(manifest), "--source", "si-ca", "--language", "en", *out]) == 2
    assert "source 'si-ca' has no target in 'en' (its targets: ca)" in capsys.readouterr().err
    assert cli.main(["generate", "self_identity", "--manifest", str(manifest), "--source", "nope", *out]) == 2
    assert "no source 'nope' made by generator 'self_identity' (its sources made by it: si-ca, si-en)" in capsys.readouterr().err
    assert cli.main(["generate", "self_identity", "--source", "si-ca", *out]) == 2
    assert "--source names a source of the manifest given with --manifest" in capsys.readouterr().err


def test_sftmix_generate_names_a_missing_benchmark_file_before_any_request(tmp_path, monkeypatch, capsys):
    """The README's own command with the reference manifest (whose evals/ the repo does not ship)
    paid for answers, then exited 2 writing nothing."""
    from sftmix import cli

    prompts = [make_record(messages=[message("user", f"Tell me a fun fact about the number {i}.")], tools=[],
                           source="wildchat", licence="apache-2.0", language="en", origin={"row": i}) for i in range(3)]
    write_records(tmp_path / "prompts.parquet", prompts)
    monkeypatch.setenv("SFTMIX_LLM_API_KEY", KEY)
    with serve_openai(responder=lambda messages, body: "A fun fact.") as srv:
        monkeypatch.setenv("SFTMIX_LLM_BASE_URL", srv.base_url)
        responses = {"key": "responses", "generator": {"name": "wildchat_responses", "inputs": []}, "licence": "apache-2.0",
                     "targets": {"en": "all"}, "filters": {"decontamination": {"benchmarks": {"ifeval": "evals/input_data.jsonl"}}}}
        manifest = _generated_manifest(tmp_path / "m.yaml", [responses])
        assert cli.main(["generate", "wildchat_responses", "--input", str(tmp_path / "prompts.parquet"), "--manifest",
                         str(manifest), "-o", str(tmp_path / "g.parquet"), "--cache-dir", str(tmp_path / "cache")]) == 2
        assert srv.count() == 0
    assert capsys.readouterr().err == (f"sftmix: error: source 'responses': benchmark 'ifeval': no such file "
                                       f"{tmp_path}/evals/input_data.jsonl\n")
