"""`sftmix.llm` against the real local OpenAI-compatible server (tests/openai_server.py).

Every test talks HTTP to `serve_openai`: cache, retries, limits, accounting, budget and key handling
are checked from both sides (what the client returns, what the server saw).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import importlib.util
import json
import re
import logging
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import types
from collections import Counter
from pathlib import Path
from typing import Callable

import pyarrow.parquet as pq
import pytest
import yaml

import openai_server
from generators.base import BROKEN_AFTER
import sftmix.llm as llm_module
from openai_server import Fault, RateLimit, Reply, count_tokens, json_responder, serve_openai
from own_process import stdout_of
from sftmix.llm import (BudgetExhausted, Completion, Failure, LLMClient, LLMSettings, MissingAPIKey, Prices,
                        ResponseCache, Usage, api_key_from_env, request_key)
from sftmix.record import make_record, message, to_table
from sftmix.sources.base import Converted, Drop

KEY = "sk-test-SECRET-123"
SYSTEM = {"role": "system", "content": "You are a strict judge."}


def user(text: str) -> list[dict]:
    return [SYSTEM, {"role": "user", "content": text}]


def make_client(server, tmp_path: Path, api_key: str | None = KEY, **settings) -> LLMClient:
    settings.setdefault("backoff_base_s", 0.01)
    settings.setdefault("cache_dir", str(tmp_path / "cache"))
    return LLMClient(LLMSettings(base_url=server.base_url, **settings), api_key=api_key)


def run(client: LLMClient, coro):
    """Run one coroutine in a fresh loop and close the client's HTTP connections in that same loop."""
    async def main():
        try:
            return await coro
        finally:
            await client.aclose()
    return asyncio.run(main())


def gather(client: LLMClient, texts: list[str], **kw) -> list:
    """All requests at once (results in order; exceptions returned, not raised)."""
    async def all_of():
        return await asyncio.gather(*(client.complete(user(t), **kw) for t in texts), return_exceptions=True)
    return run(client, all_of())


def cache_files(directory: Path | str) -> list[Path]:
    return sorted(p for p in Path(directory).rglob("*") if p.is_file())


def cache_entries(directory: Path | str) -> list[dict]:
    """The answers stored under `directory`: the whole lines of its logs, read here independently."""
    return [json.loads(line) for path in cache_files(directory)
            for line in path.read_bytes().splitlines(keepends=True) if line.endswith(b"\n")]


def expected_cost(prices: Prices, prompt: int, completion: int, hit: int) -> float:
    """The documented formula, written out independently of Prices.cost (same operation order)."""
    return (hit * prices.prompt_cache_hit + (prompt - hit) * prices.prompt_cache_miss + completion * prices.completion) / 1e6


# ------------------------------------------------------------------------------------- plain + accounting

@pytest.mark.parametrize("prices", [Prices(), Prices(prompt_cache_hit=1.0, prompt_cache_miss=2.0, completion=4.0)])
def test_completion_usage_and_cost(tmp_path, prices):
    with serve_openai() as srv:
        client = make_client(srv, tmp_path, prices=prices)

        async def two():
            return await client.complete(user("Rate this: hello")), await client.complete(user("Rate this: goodbye now"))

        first, second = run(client, two())
    system_tokens = count_tokens(SYSTEM["content"])
    assert system_tokens == 6
    assert isinstance(first, Completion) and not first.cached and not first.truncated
    assert first.content == "echo: Rate this: hello" and first.finish_reason == "stop"
    assert first.usage == Usage(prompt_tokens=10, completion_tokens=6, prompt_cache_hit_tokens=0)
    # same system prompt again: the server's DeepSeek-style prompt cache hits exactly its tokens
    assert second.usage == Usage(prompt_tokens=6 + 5, completion_tokens=7, prompt_cache_hit_tokens=system_tokens)
    stats = client.stats
    assert (stats.requests, stats.cache_hits, stats.retries, stats.failures) == (2, 0, 0, 0)
    assert stats.usage == Usage(21, 13, 6)
    cost = expected_cost(prices, 10, 6, 0) + expected_cost(prices, 11, 7, 6)
    assert stats.cost_usd == cost
    assert prices.cost(first.usage) + prices.cost(second.usage) == cost
    if prices.completion == 4.0:
        assert stats.cost_usd == pytest.approx((20 + 24 + 6 + 10 + 28) / 1e6, abs=0, rel=1e-15)
    assert stats.summary() == {"requests": 2, "cache_hits": 0, "prompt_tokens": 21, "completion_tokens": 13,
                               "prompt_cache_hit_tokens": 6, "cost_usd": round(cost, 6), "estimated_cost_answers": 0}
    # what went over the wire: the settings' sampling parameters and the bearer key
    body = srv.bodies[0]
    assert body == {"model": "deepseek-chat", "messages": user("Rate this: hello"), "temperature": 0.0,
                    "top_p": 1.0, "max_tokens": 4096}
    assert srv.auth_headers == [f"Bearer {KEY}"] * 2


# ------------------------------------------------------------------------------------------------ cache


def chat_completion_body(content: str, usage: dict | None) -> str:
    reply = {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "gpt-4o",
             "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}
    return json.dumps(reply if usage is None else {**reply, "usage": usage})


def test_openai_style_usage_is_read(tmp_path):
    """OpenAI reports prompt-cache hits only in `prompt_tokens_details`; a reply may also carry no usage."""
    openai_usage = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15,
                    "prompt_tokens_details": {"cached_tokens": 8}}
    faults = [Fault("malformed", match="openai", text=chat_completion_body("from openai", openai_usage)),
              Fault("malformed", match="no usage", text=chat_completion_body("no usage here", None))]
    with serve_openai(faults=faults) as srv:
        client = make_client(srv, tmp_path)

        async def both():
            return await client.complete(user("openai")), await client.complete(user("no usage"))

        openai_reply, bare_reply = run(client, both())
    assert openai_reply == Completion("from openai", "stop", Usage(12, 3, 8))
    assert bare_reply == Completion("no usage here", "stop", Usage(0, 0, 0))
    assert client.stats.usage == Usage(12, 3, 8) and client.stats.retries == 0

def test_an_answer_without_usage_is_counted_at_the_most_it_could_cost(tmp_path, caplog):
    """A gateway that sends no `usage`: each answer was counted at $0, so the reported cost was $0 and
    `budget_usd` stopped nothing (50 answers paid under a $0.0001 cap). Each is now counted at the
    most it could cost (its prompt uncached, `max_tokens` written), with one warning for the run."""
    faults = [Fault("malformed", count=None, text=chat_completion_body("an answer", None))]
    prices = Prices()
    with serve_openai(faults=faults) as srv, caplog.at_level(logging.WARNING, logger="sftmix.llm"):
        client = make_client(srv, tmp_path, max_tokens=1000)
        replies = gather(client, ["one", "two", "three"])
        assert [reply.content for reply in replies] == ["an answer"] * 3
        # at least the completion's every token, at most with a prompt of 3 tokens per byte sent
        most_tokens = 1000 * prices.completion / 1e6
        prompt_bytes = len((SYSTEM["content"] + "three").encode())
        assert 3 * most_tokens < client.stats.cost_usd < 3 * (most_tokens + prompt_bytes * prices.prompt_cache_miss / 1e6)
        assert client.stats.usage == Usage() and client.stats.summary()["estimated_cost_answers"] == 3
        [warning] = caplog.records
        assert "no usage" in warning.message and "upper estimate" in warning.message

        budgeted = make_client(srv, tmp_path / "budgeted", max_tokens=1000, concurrency=4, budget_usd=0.0001)
        results = gather(budgeted, [f"row {i}" for i in range(10)])
        assert srv.count() == 3 + 1
    assert [type(result) for result in results] == [Completion] + [BudgetExhausted] * 9
    assert budgeted.stats.cost_usd > 0.0001


@pytest.mark.parametrize("usage", [{"prompt_tokens": 900}, {"completion_tokens": 5},
                                   {"prompt_tokens": 900, "completion_tokens": None}])
def test_an_answer_with_part_of_its_usage_is_counted_with_the_most_for_the_missing_part(tmp_path, usage):
    """A usage of `{"prompt_tokens": 900}` was charged for the prompt alone, its completion at $0."""
    usage_given = {figure: n for figure, n in usage.items() if n is not None}
    prices = Prices()
    with serve_openai(faults=[Fault("malformed", count=None, text=chat_completion_body("an answer", usage))]) as srv:
        client = make_client(srv, tmp_path, max_tokens=1000)
        [reply] = gather(client, ["one"])
    assert reply.content == "an answer" and client.stats.estimated_cost_answers == 1
    prompt_most = len((SYSTEM["content"] + "one").encode()) // 3
    expected = (usage_given.get("prompt_tokens", prompt_most) * prices.prompt_cache_miss
                + usage_given.get("completion_tokens", 1000) * prices.completion) / 1e6
    assert client.stats.cost_usd == pytest.approx(expected)
    assert client.stats.usage == Usage(usage_given.get("prompt_tokens", 0), usage_given.get("completion_tokens", 0))


def test_an_answer_reporting_no_completion_tokens_is_charged_for_none(tmp_path):
    """A reported 0 was taken for a missing figure: charged max_tokens, ~2000x its cost."""
    usage = {"prompt_tokens": 7, "completion_tokens": 0}
    with serve_openai(faults=[Fault("malformed", count=None, text=chat_completion_body("ok", usage))]) as srv:
        client = make_client(srv, tmp_path, max_tokens=1000)
        gather(client, ["one"])
    assert client.stats.estimated_cost_answers == 0
    assert client.stats.cost_usd == pytest.approx(7 * Prices().prompt_cache_miss / 1e6)


def test_cache_same_request_twice_is_one_http_request(tmp_path):
    with serve_openai() as srv:
        client = make_client(srv, tmp_path)

        async def twice():
            return await client.complete(user("cache me")), await client.complete(user("cache me"))

        first, second = run(client, twice())
        # a new client (a new run) on the same cache directory pays nothing either
        again = make_client(srv, tmp_path)
        third = run(again, again.complete(user("cache me")))
    assert srv.count() == 1
    assert not first.cached and second.cached and third.cached
    assert second.content == third.content == first.content == "echo: cache me"
    assert second.usage == first.usage
    assert client.stats.cache_hits == 1 and client.stats.requests == 1
    assert client.stats.usage == first.usage  # the hit is not accounted a second time
    assert again.stats.requests == 0 and again.stats.cache_hits == 1 and again.stats.cost_usd == 0


def test_cache_key_covers_sampling_parameters(tmp_path):
    with serve_openai() as srv:
        variants = [{}, {"temperature": 0.1}, {"top_p": 0.9}, {"max_tokens": 100}, {"model": "deepseek-other"}]
        for settings in variants:
            client = make_client(srv, tmp_path, **settings)
            reply = run(client, client.complete(user("same messages")))
            assert not reply.cached, settings
        json_client = make_client(srv, tmp_path)
        assert not run(json_client, json_client.complete(user("same messages"), json_mode=True)).cached
        assert srv.count() == len(variants) + 1
        # all of them are now cached, each under its own key
        for settings in variants:
            client = make_client(srv, tmp_path, **settings)
            assert run(client, client.complete(user("same messages"))).cached
        assert srv.count() == len(variants) + 1
    keys = [entry["key"] for entry in cache_entries(tmp_path / "cache")]
    assert len(set(keys)) == len(keys) == len(variants) + 1
    base = {"model": "m", "messages": user("x"), "temperature": 0.0, "top_p": 1.0, "max_tokens": 10}
    assert request_key("h", base) != request_key("h", {**base, "temperature": 0.1})
    assert request_key("h", base) != request_key("other-host", base)
    assert request_key("h", base) == request_key("h", dict(reversed(list(base.items()))))


def test_cache_entries_hold_no_key(tmp_path):
    with serve_openai() as srv:
        client = make_client(srv, tmp_path)
        gather(client, [f"entry {i}" for i in range(5)])
    (log,) = cache_files(tmp_path / "cache")  # one log for the run, not a file per answer
    data = log.read_bytes()
    assert KEY.encode() not in data and b"Bearer" not in data and b"SECRET" not in data
    entries = cache_entries(tmp_path / "cache")
    assert sorted(e["request"]["messages"][1]["content"] for e in entries) == [f"entry {i}" for i in range(5)]
    for entry in entries:
        assert set(entry) == {"key", "content", "finish_reason", "usage", "request"}
        assert entry["request"]["host"] == client.host
        assert entry["key"] == request_key(client.host, {k: v for k, v in entry["request"].items() if k != "host"})


def test_torn_cache_line_is_asked_again(tmp_path):
    with serve_openai() as srv:
        client = make_client(srv, tmp_path)
        run(client, client.complete(user("keep me")))
        run(client, client.complete(user("damage me")))
        (log,) = cache_files(tmp_path / "cache")
        log.write_bytes(log.read_bytes()[:-40])  # the last answer's line cut off, as by a kill mid-write
        client2 = make_client(srv, tmp_path)
        torn = run(client2, client2.complete(user("damage me")))
        kept = run(client2, client2.complete(user("keep me")))
        assert not torn.cached and torn.content == "echo: damage me" and kept.cached
        assert srv.count() == 3
        assert len(cache_files(tmp_path / "cache")) == 2  # asked again, stored in the second run's own log
        client3 = make_client(srv, tmp_path)
        assert run(client3, client3.complete(user("damage me"))).cached
        assert srv.count() == 3


@pytest.mark.parametrize("damage", [
    lambda line: b"\xff\xfe\x00\x13garbage\n",  # not UTF-8, not JSON
    lambda line: line[:20] + b"\xff" + line[21:],  # the key's bytes damaged
    lambda line: line.replace(b'"content"', b'"kontent"'),  # JSON of the wrong shape
    lambda line: line.replace(b'"usage": {', b'"usage": [{'),  # not JSON any more, key intact
    lambda line: b"{}\n",
    lambda line: b"null\n",
    lambda line: line.replace(b'"usage": {', b'"usage": ' + b"[" * 5_000 + b"{"),  # past the recursion limit
], ids=["bad-utf8", "bad-key", "wrong-shape", "bad-json", "empty-object", "null", "too-deep"])
def test_damaged_cache_line_of_any_kind_is_asked_again(tmp_path, damage):
    with serve_openai() as srv:
        client = make_client(srv, tmp_path)
        run(client, client.complete(user("damage me")))
        (log,) = cache_files(tmp_path / "cache")
        log.write_bytes(damage(log.read_bytes()))
        client2 = make_client(srv, tmp_path)
        reply = run(client2, client2.complete(user("damage me")))
        assert not reply.cached and reply.content == "echo: damage me" and srv.count() == 2


# ---------------------------------------------------------------------------------------------- retries

def test_rate_limit_honours_retry_after(tmp_path):
    with serve_openai(faults=[Fault("rate_limit", count=2, retry_after=0.2)]) as srv:
        client = make_client(srv, tmp_path)
        start = time.monotonic()
        reply = run(client, client.complete(user("limited")))
        elapsed = time.monotonic() - start
        assert isinstance(reply, Completion) and reply.content == "echo: limited"
        assert [r.status for r in srv.requests] == [429, 429, 200]
    # backoff_base_s=0.01 alone would retry within ~0.03 s: the two waits are Retry-After's
    assert elapsed >= 0.4
    assert client.stats.retries == 2 and client.stats.requests == 3 and client.stats.failures == 0


@pytest.mark.parametrize("fault, statuses", [
    (Fault("server_error", count=2), [500, 500, 200]),
    (Fault("server_error", status=502, count=1), [502, 200]),
    (Fault("server_error", status=503, count=1), [503, 200]),
    # retried as the OpenAI SDK retries them: they were final http_408 / http_409 drops
    (Fault("server_error", status=408, count=1), [408, 200]),
    (Fault("server_error", status=409, count=1), [409, 200]),
    (Fault("malformed", count=2), [200, 200, 200]),
    (Fault("malformed", count=1, text="<html>Bad gateway</html>"), [200, 200]),
    (Fault("drop_connection", count=2), [0, 0, 200]),
    # content that cannot be encoded (cached or written to Parquet), and a usage no float cost holds
    (Fault("malformed", count=1, text=chat_completion_body("lone \ud800 surrogate", None)), [200, 200]),
    (Fault("malformed", count=1, text=chat_completion_body("costly", {"prompt_tokens": 10 ** 309})), [200, 200]),
], ids=["500x2", "502", "503", "408", "409", "malformed-half-json", "malformed-html", "dropped-connection", "lone-surrogate",
        "usage-out-of-range"])
def test_transient_faults_are_retried(tmp_path, fault, statuses):
    with serve_openai(faults=[fault]) as srv:
        client = make_client(srv, tmp_path)
        reply = run(client, client.complete(user("flaky")))
        assert isinstance(reply, Completion) and reply.content == "echo: flaky"
        assert [r.status for r in srv.requests] == statuses
        assert srv.fired() == len(statuses) - 1
    assert client.stats.requests == len(statuses) and client.stats.retries == len(statuses) - 1
    assert len(cache_entries(tmp_path / "cache")) == 1  # only the good answer is cached


def test_a_server_errors_retry_after_is_waited_for(tmp_path):
    """Read on 429s only: a 503 asking for 1 s was asked again after backoff_base_s (0.01 s), three
    times within 0.3 s, and its row dropped as llm_retries_exhausted inside the outage."""
    with serve_openai(faults=[Fault("server_error", status=503, count=1, retry_after=1)]) as srv:
        client = make_client(srv, tmp_path)
        start = time.monotonic()
        reply = run(client, client.complete(user("busy")))
        elapsed = time.monotonic() - start
        assert [r.status for r in srv.requests] == [503, 200]
    assert isinstance(reply, Completion) and elapsed >= 1


@pytest.mark.parametrize("finish_reason", ["eos", "eos_token", "stop_sequence"])
def test_other_servers_names_for_a_natural_stop_are_a_stop(tmp_path, finish_reason):
    """Together AI says "eos", TGI before 2.2.1 and watsonx "eos_token", TGI "stop_sequence": every
    answer was an incomplete_generation drop, never cached, and paid again on each run."""
    with serve_openai(lambda messages, body: Reply("Feedback: fine. [RESULT] 5", finish_reason=finish_reason)) as srv:
        for attempt in range(2):
            client = make_client(srv, tmp_path)
            reply = run(client, client.complete(user("judge this")))
            assert isinstance(reply, Completion) and reply.finish_reason == "stop"
        assert srv.count() == 1 and client.stats.cache_hits == 1


@pytest.mark.parametrize("content", [None, ""])
@pytest.mark.parametrize("finish_reason", ["stop", "eos", ""])
def test_no_content_with_a_natural_stop_is_asked_again_not_cached_as_empty(tmp_path, finish_reason, content):
    """A stop (or an empty reason) with `content: null` and no refusal text is no answer: a one-off
    empty reply (Gemini's are known), asked again. Cached, as a refusal or as empty, it was the row's
    drop for good."""
    replies = iter([Reply(content, finish_reason=finish_reason), Reply("Feedback: fine. [RESULT] 5", finish_reason="eos")])
    with serve_openai(lambda messages, body: next(replies)) as srv:
        client = make_client(srv, tmp_path)
        reply = run(client, client.complete(user("judge this")))
        assert srv.count() == 2
    assert isinstance(reply, Completion) and reply.content == "Feedback: fine. [RESULT] 5"


def test_a_refusal_is_one_paid_answer_cached_and_its_row_a_model_refused_drop(tmp_path):
    """`content: null` with OpenAI's `message.refusal` was read as a malformed body: asked
    max_retries + 1 times, each paid, never cached, the row an `llm_retries_exhausted` drop that
    `Stats.unanswered` blamed on the URL; and all of it again on every rerun."""
    from generators.base import Context, stream

    reply = Reply(None, finish_reason="stop", refusal="I'm sorry, I can't assist with that.")
    with serve_openai(lambda messages, body: reply) as srv:
        client = make_client(srv, tmp_path)
        out = list(stream(_echo_generator(), [], Context(llm=client, params={"n": 1})))
        assert srv.count() == 1
        rerun = make_client(srv, tmp_path)
        again = run(rerun, rerun.complete([{"role": "user", "content": "question 0"}]))
        assert srv.count() == 1 and rerun.stats.cache_hits == 1
    [(_, drop)] = out
    assert isinstance(drop, Drop) and drop.reason == "model_refused"
    assert drop.detail == reply.refusal
    assert isinstance(again, Failure) and (again.reason, again.detail) == (drop.reason, drop.detail)
    stats = client.stats
    assert (stats.answered, stats.retries) == (1, 0) and stats.cost_usd > 0 and stats.unanswered() is None


@pytest.mark.parametrize("content", [None, ""])
@pytest.mark.parametrize("reasoning", [None, "The user wants a haiku. Here it is: ..."])
def test_no_content_on_every_try_is_an_empty_reply_drop_naming_where_the_text_went(tmp_path, reasoning, content):
    """vLLM with a reasoning parser on a model that does not think puts every answer in
    `reasoning_content`, with `content: null` and a stop. The row is asked again (it may be a
    one-off), and when every try gave no content it is an `empty_reply` drop, not a refusal or a
    malformed body, and the run's warning names where the text went."""
    with serve_openai(lambda messages, body: Reply(content, finish_reason="stop", reasoning_content=reasoning)) as srv:
        client = make_client(srv, tmp_path, max_retries=2)
        failure = run(client, client.complete(user("write a haiku")))
        assert srv.count() == 3
    assert isinstance(failure, Failure) and failure.reason == "empty_reply"
    assert failure.detail.startswith("malformed_response: no content, finish_reason stop")
    assert ("message.reasoning_content: check the server's reasoning parser" in failure.detail) == bool(reasoning)
    assert client.stats.cost_usd > 0  # each empty reply reported its usage, and was paid
    assert client.stats.unanswered().startswith("the LLM endpoint gave no text in any of 3 replies (the last: empty_reply")


def test_a_row_whose_tries_were_not_all_empty_replies_is_no_empty_reply_drop(tmp_path):
    """Two server errors and then one empty reply were an `empty_reply` drop, and the run was said to
    have replied with no text every time (review)."""
    with serve_openai(lambda messages, body: Reply(None, finish_reason="stop"),
                      faults=[Fault("server_error", status=500, count=2)]) as srv:
        client = make_client(srv, tmp_path, max_retries=2)
        failure = run(client, client.complete(user("write a haiku")))
        assert srv.count() == 3
    assert isinstance(failure, Failure) and failure.reason == "llm_retries_exhausted"
    assert "check SFTMIX_LLM_BASE_URL" in client.stats.unanswered()


def test_a_row_whose_counted_tries_were_all_empty_replies_is_an_empty_reply_drop_after_a_free_429(tmp_path):
    """A 429 while the endpoint answers other rows uses no try: it made the row's empty replies an
    `llm_retries_exhausted` drop (review)."""
    def responder(messages, body):
        return Reply(None) if "X" in messages[-1]["content"] else "fine"

    with serve_openai(responder, faults=[Fault("rate_limit", match="X", count=1, retry_after=0.01)]) as srv:
        client = make_client(srv, tmp_path, max_retries=2, concurrency=1)
        results = gather(client, ["a", "b", "X"])
    assert isinstance(results[2], Failure) and results[2].reason == "empty_reply"
    assert client.stats.empty_replies == 3


def test_of_two_cached_answers_to_one_request_the_later_runs_is_served(tmp_path):
    """Logs were named by their runs' pids and read in that order: an earlier run's empty answer, asked
    again and answered, came back on the next run whenever its log's name sorted after the new one's
    (review). Names start with the time a log was made; an older sftmix's (by pid) sort first."""
    cache_dir, key = tmp_path / "cache", request_key("127.0.0.1:1", {"q": 1})
    ResponseCache(cache_dir).put(key, Completion("", "stop", Usage(1, 1)), {"q": 1})
    [old] = cache_dir.glob("*.jsonl")
    old.rename(cache_dir / "responses-99999-ffffffff.jsonl")  # as an older sftmix named it: sorts after any pid
    ResponseCache(cache_dir).put(key, Completion("the answer", "stop", Usage(1, 1)), {"q": 1})
    copy = tmp_path / "copy"
    copy.mkdir()
    for log in sorted(cache_dir.glob("*.jsonl"), reverse=True):  # a copy without times, the newest log first
        (copy / log.name).write_bytes(log.read_bytes())
    assert ResponseCache(cache_dir).get(key).content == ResponseCache(copy).get(key).content == "the answer"


def test_a_cached_answer_of_tool_calls_without_text_is_served_from_the_cache(tmp_path):
    """Only an empty answer with a natural stop (or as a refusal) is asked again: one of tool calls
    with no text was paid for again on every run (review)."""
    with serve_openai(lambda messages, body: Reply("never asked")) as srv:
        client = make_client(srv, tmp_path)
        body = client._body(user("question"), False, None)
        client.cache.put(request_key(client.host, body), Completion("", "tool_calls", Usage(1, 1)),
                         {"host": client.host, **body})
        reply = run(client, client.complete(user("question")))
        assert srv.count() == 0
    assert isinstance(reply, Completion) and reply.finish_reason == "tool_calls" and client.stats.cache_hits == 1


def test_empty_replies_without_usage_count_against_the_budget(tmp_path):
    """Each was counted at $0: a gateway that drops usage and replies empty was asked max_retries + 1
    times a row with the budget stopping nothing (review)."""
    body = json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": "m",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "stop"}]})
    with serve_openai(faults=[Fault("malformed", count=None, text=body)]) as srv:
        client = make_client(srv, tmp_path, max_tokens=1000, max_retries=2, budget_usd=0.005)
        results = gather(client, [f"row {i}" for i in range(30)])
        sent = srv.count()
    assert client.stats.estimated_cost_answers == sent and client.stats.cost_usd > 0
    assert sent < 30 and any(isinstance(result, BudgetExhausted) for result in results)


def test_an_empty_answer_cached_by_an_earlier_sftmix_is_asked_again(tmp_path):
    """Cached as an answer ("" with a stop) or as a refusal, it was served for good."""
    with serve_openai(lambda messages, body: Reply("the answer")) as srv:
        client = make_client(srv, tmp_path)
        body = client._body(user("question"), False, None)
        for finish_reason in ("stop", "refusal"):
            client.cache.put(request_key(client.host, body), Completion("", finish_reason, Usage(1, 1)),
                             {"host": client.host, **body})
            reply = run(client, client.complete(user("question")))
            assert isinstance(reply, Completion) and reply.content == "the answer"
            client = make_client(srv, tmp_path / finish_reason)


def test_a_filtered_answer_without_content_is_one_paid_incomplete_generation(tmp_path):
    """`content: null` with finish_reason "content_filter" was read as a malformed body: asked 7
    times, each paid, and counted as no answer and no cost."""
    with serve_openai(lambda messages, body: Reply(None, finish_reason="content_filter")) as srv:
        client = make_client(srv, tmp_path)
        reply = run(client, client.complete(user("something the filter stops")))
        assert srv.count() == 1
    assert isinstance(reply, Failure) and reply.reason == "incomplete_generation" and "content_filter" in reply.detail
    assert client.stats.usage.prompt_tokens > 0 and client.stats.cost_usd > 0
    assert client.stats.answered == 1


def test_an_unusable_reply_that_was_paid_for_counts_in_the_cost(tmp_path):
    """A 200 with `usage` but no content was asked again, and its tokens never counted: the budget
    undercounted what the endpoint billed."""
    broken = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": None}],
                         "usage": {"prompt_tokens": 1000, "completion_tokens": 500}})
    with serve_openai(faults=[Fault("malformed", count=1, text=broken)]) as srv:
        client = make_client(srv, tmp_path)
        reply = run(client, client.complete(user("paid twice")))
        assert [r.status for r in srv.requests] == [200, 200]
    assert isinstance(reply, Completion)
    assert client.stats.usage.prompt_tokens == 1000 + reply.usage.prompt_tokens
    assert client.stats.cost_usd == pytest.approx(client.settings.prices.cost(Usage(1000, 500)) +
                                                  client.settings.prices.cost(reply.usage))


@pytest.mark.parametrize("retry_after", [float("inf"), 1e9])
def test_a_retry_after_past_backoff_max_s_or_not_a_wait_is_not_waited_for(tmp_path, retry_after):
    # `Retry-After: inf` (or a year) had the row, and the rows behind it, wait for ever
    with serve_openai(faults=[Fault("rate_limit", count=1, retry_after=retry_after)]) as srv:
        client = make_client(srv, tmp_path, backoff_max_s=0.3)
        start = time.monotonic()
        reply = run(client, asyncio.wait_for(client.complete(user("limited")), timeout=10))
        elapsed = time.monotonic() - start
        assert [r.status for r in srv.requests] == [429, 200]
    assert isinstance(reply, Completion) and reply.content == "echo: limited"
    assert (elapsed >= 0.3) == (retry_after == 1e9) and elapsed < 2  # a year is cut to backoff_max_s


def test_slow_response_past_timeout_is_retried(tmp_path):
    with serve_openai(faults=[Fault("slow", count=1, seconds=2.0)]) as srv:
        client = make_client(srv, tmp_path, timeout_s=0.3)
        start = time.monotonic()
        reply = run(client, client.complete(user("slow one")))
        elapsed = time.monotonic() - start
        assert isinstance(reply, Completion) and reply.content == "echo: slow one"
        assert srv.count() == 2 and srv.fired("slow") == 1
    assert 0.3 <= elapsed < 1.8  # gave up on the slow answer, did not wait it out
    assert client.stats.retries == 1


@pytest.mark.parametrize("suffix, path", [("/v1", "/v1/chat/completions"), ("/v1/", "/v1/chat/completions"),
                                          ("", "/chat/completions"), ("/", "/chat/completions")])
def test_base_url_joined_like_the_sdk(tmp_path, suffix, path):
    """DeepSeek's documented base URL has no /v1; OpenAI's has one; a trailing slash changes nothing."""
    with serve_openai() as srv:
        client = LLMClient(LLMSettings(base_url=srv.base_url.removesuffix("/v1") + suffix,
                                       cache_dir=str(tmp_path / "cache")), api_key=KEY)
        reply = run(client, client.complete(user("where to")))
        assert [(r.path, r.status) for r in srv.requests] == [(path, 200)]
    assert isinstance(reply, Completion) and reply.content == "echo: where to"


class _StandIn(http.server.BaseHTTPRequestHandler):
    """A forward proxy or a TLS endpoint: records each request line and answers with a chat completion."""

    seen: list[str] = []

    def do_POST(self):
        self.seen.append(self.requestline)
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps({"choices": [{"message": {"content": "stand-in reply"}, "finish_reason": "stop"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def stand_in():
    """start(tls_context=None) -> (base URL, request lines seen); stopped after the test."""
    servers = []

    def start(tls_context: ssl.SSLContext | None = None) -> tuple[str, list[str]]:
        _StandIn.seen = []
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StandIn)
        if tls_context is not None:  # a failed handshake is an OSError, which the server skips
            server.socket = tls_context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        scheme = "https" if tls_context else "http"
        return f"{scheme}://127.0.0.1:{server.server_address[1]}", _StandIn.seen

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_proxy_from_the_environment(tmp_path, monkeypatch, stand_in):
    proxy_url, seen = stand_in()
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    far = LLMClient(LLMSettings(base_url="http://llm.example.invalid/v1", cache_dir=str(tmp_path / "c1")), api_key=KEY)
    reply = run(far, far.complete(user("through the proxy")))
    assert isinstance(reply, Completion) and reply.content == "stand-in reply"
    assert seen == ["POST http://llm.example.invalid/v1/chat/completions HTTP/1.1"]
    with serve_openai() as srv:  # NO_PROXY: straight to the server, the proxy sees nothing
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        near = make_client(srv, tmp_path)
        assert run(near, near.complete(user("direct"))).content == "echo: direct"
        assert srv.count() == 1 and len(seen) == 1


_ONE_REQUEST = """
import asyncio, json, sys
from sftmix.llm import LLMClient, LLMSettings
client = LLMClient(LLMSettings(base_url=sys.argv[1], cache_dir=sys.argv[2], max_retries=0), api_key="sk-tls")
async def main():
    try:
        return await client.complete([{"role": "user", "content": "over TLS"}])
    finally:
        await client.aclose()
print(json.dumps(vars(asyncio.run(main())), default=str))
"""


def test_https_endpoint_is_verified_against_the_environments_ca(tmp_path, stand_in):
    """The certificate store is read when the process starts (aiohttp builds its TLS context at import), so
    each case runs in a process of its own: SSL_CERT_FILE naming the CA is trusted; without it, nothing is."""
    import trustme

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    url, seen = stand_in(server_context)
    env = {k: v for k, v in os.environ.items()
           if k.upper() not in ("SSL_CERT_FILE", "SSL_CERT_DIR", "HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])

    def one_request(extra_env: dict, cache: str) -> dict:
        done = subprocess.run([sys.executable, "-c", _ONE_REQUEST, url + "/v1", str(tmp_path / cache)],
                              env={**env, **extra_env}, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout)

    trusted = one_request({"SSL_CERT_FILE": str(tmp_path / "ca.pem")}, "c1")
    assert trusted["content"] == "stand-in reply" and seen == ["POST /v1/chat/completions HTTP/1.1"]
    untrusted = one_request({}, "c2")
    assert untrusted["reason"] == "llm_retries_exhausted"
    assert untrusted["detail"].startswith("APIConnectionError: ") and "CERTIFICATE_VERIFY_FAILED" in untrusted["detail"]
    assert len(seen) == 1  # the untrusted client sent nothing


def test_refused_connection_is_retried_then_a_failure(tmp_path):
    with socket.socket() as unused:  # a port nobody listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    client = LLMClient(LLMSettings(base_url=f"http://127.0.0.1:{port}/v1", cache_dir=str(tmp_path / "cache"),
                                   max_retries=2, backoff_base_s=0.01), api_key=KEY)
    reply = run(client, client.complete(user("anyone there")))
    assert isinstance(reply, Failure) and reply.reason == "llm_retries_exhausted"
    assert reply.detail.startswith("APIConnectionError: ") and str(port) in reply.detail
    assert client.stats.requests == 3 and client.stats.retries == 2 and client.stats.failures == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_fail_without_retry(tmp_path, status):
    with serve_openai(faults=[Fault("server_error", status=status, count=None)]) as srv:
        client = make_client(srv, tmp_path)
        reply = run(client, client.complete(user("bad")))
        assert srv.count() == 1
    assert isinstance(reply, Failure) and reply.reason == f"http_{status}"
    assert client.stats.failures == 1 and client.stats.retries == 0
    assert not cache_entries(tmp_path / "cache")


def test_real_bad_request_is_http_400(tmp_path):
    with serve_openai() as srv:  # the server itself rejects the body: content must be str, parts or null
        client = make_client(srv, tmp_path)
        reply = run(client, client.complete([{"role": 7, "content": "who am I"}]))
        assert srv.count() == 1 and srv.requests[0].status == 400
    assert isinstance(reply, Failure) and reply.reason == "http_400" and "role" in reply.detail


def test_retries_exhausted(tmp_path):
    with serve_openai(faults=[Fault("server_error", count=None)]) as srv:
        client = make_client(srv, tmp_path, max_retries=3)
        reply = run(client, client.complete(user("never")))
        assert srv.count() == 4
    assert isinstance(reply, Failure) and reply.reason == "llm_retries_exhausted"
    assert reply.detail.startswith("InternalServerError")
    assert client.stats.retries == 3 and client.stats.failures == 1 and client.stats.requests == 4
    assert not cache_entries(tmp_path / "cache")


def test_truncated_completion(tmp_path):
    with serve_openai(faults=[Fault("truncated", match="cut", count=None, text="half an ans")]) as srv:
        client = make_client(srv, tmp_path)

        async def both():
            return (await client.complete(user("cut this")),
                    await client.complete(user("one two three four five six"), max_tokens=3))

        faulted, limited = run(client, both())
        assert srv.bodies[1]["max_tokens"] == 3
    assert faulted.truncated and faulted.finish_reason == "length" and faulted.content == "half an ans"
    assert limited.truncated and limited.content == "echo: one"
    assert not Completion("x", "stop", Usage()).truncated


def test_a_reasoning_model_cut_off_while_thinking_is_one_truncated_answer_and_its_tokens_counted(tmp_path):
    """DeepSeek-reasoner's `content: null` at `finish_reason: length` (the budget spent on
    `reasoning_content`) was read as a malformed body: asked 7 times, none of the tokens counted
    against the budget, dropped as `llm_retries_exhausted`."""
    def responder(messages, body):
        return Reply(content=None, finish_reason="length", reasoning_content="Let me think about this " * 50)

    with serve_openai(responder=responder) as srv:
        client = make_client(srv, tmp_path)
        first = run(client, client.complete(user("think")))
        again = run(client, client.complete(user("think")))
        assert srv.count() == 1
    assert first.truncated and first.content == "" and again.cached and again.content == "" and again.truncated
    assert client.stats.requests == 1 and client.stats.cache_hits == 1
    assert client.stats.usage.completion_tokens == 250 and client.stats.cost_usd > 0


def test_a_reasoning_models_thinking_written_in_the_content_is_not_the_reply(tmp_path):
    """An R1-style model served without a reasoning parser: the rows' answers began with its
    `<think>...</think>` block (what DeepSeek's API returns apart, as `reasoning_content`)."""
    replies = {"think": "<think>\nThe user wants a greeting. [RESULT] 1\n</think>\n\nHello there!",
               "open": "<think> unfinished", "plain": "No <think>here</think>."}
    with serve_openai(responder=lambda messages, body: replies[messages[-1]["content"]]) as srv:
        client = make_client(srv, tmp_path)

        async def each():
            return [await client.complete(user(text)) for text in replies]

        thought, unclosed, plain = run(client, each())
    assert thought.content == "Hello there!" and thought.usage.completion_tokens > 3
    assert unclosed.content == "<think> unfinished" and plain.content == "No <think>here</think>."


# DeepSeek-V3's answer to how to keep R1's reply: it names the closing tag, and opens none
STRIPS_R1 = ("To keep only the final answer of a DeepSeek-R1 reply, split on the closing tag:\n\n"
             "```python\nfinal = reply.split(\"</think>\")[-1].strip()\n```\n\n"
             "This works because the model ends its reasoning with that tag.")


def test_an_answer_that_names_the_closing_tag_is_the_whole_answer(tmp_path):
    """Every model's reply with a `</think>` and no `<think>` was cut to what followed the last one:
    this answer became '")[-1].strip()' and a dangling fence, kept as a row. The cut is for
    endpoints declared to reply from inside the thinking (`reply_starts_in_thinking`) only."""
    with serve_openai(responder=lambda messages, body: STRIPS_R1) as srv:
        first = run(client := make_client(srv, tmp_path), client.complete(user("strip R1's thinking?")))
        again = run(client := make_client(srv, tmp_path), client.complete(user("strip R1's thinking?")))
        assert srv.count() == 1
    assert first.content == again.content == STRIPS_R1 and again.cached


def test_a_reply_that_starts_in_thinking_is_what_follows_its_first_close(tmp_path):
    """R1 or QwQ, whose chat template opens `<think>` in the prompt: the reply holds only its end.
    The answer follows the first `</think>` (as vLLM's reasoning parser splits it), so an answer
    naming the tag is kept whole; a reply without one is all thinking, no answer."""
    replies = {"greet": "The user greets me; I should answer briefly.\n</think>\n\nHello! How can I help?",
               "strip": "They want R1's answer alone.\n</think>\n\n" + STRIPS_R1,
               "opened": "<think>Greet back.</think>\n\nHello!", "unfinished": "Still weighing how to greet"}
    with serve_openai(responder=lambda messages, body: replies[messages[-1]["content"]]) as srv:
        client = make_client(srv, tmp_path, reply_starts_in_thinking=True)

        async def each():
            return [(await client.complete(user(text))).content for text in replies]

        assert run(client, each()) == ["Hello! How can I help?", STRIPS_R1, "Hello!", ""]


def test_an_answer_from_the_cache_is_the_answer_first_handed_on(tmp_path):
    """The thinking was cut before caching and again when read: a reply that mentions `</think>`
    after its thinking came back from the cache cut a second time."""
    reply = "<think>The user asks about the tag.</think>\n\nThe closing tag is </think>, then the reply follows."
    with serve_openai(responder=lambda messages, body: reply) as srv:
        first = run(client := make_client(srv, tmp_path), client.complete(user("tag?")))
        again = run(client := make_client(srv, tmp_path), client.complete(user("tag?")))
        assert srv.count() == 1
    assert first.content == again.content == "The closing tag is </think>, then the reply follows."
    assert again.cached


def test_json_after_an_unopened_think_close_is_read_in_one_request(tmp_path):
    """It was not JSON: each row was asked 3 times, paid 3 times, then an `invalid_json` drop."""
    reply = 'The schema wants an integer answer; 2 + 2 is 4.\n</think>\n\n{"answer": 4}'
    with serve_openai(responder=lambda messages, body: reply) as srv:
        client = make_client(srv, tmp_path, reply_starts_in_thinking=True)
        value, _ = run(client, client.complete_json(user("give json"), SCHEMA))
        assert value == {"answer": 4} and srv.count() == 1


def test_a_cached_answer_is_kept_as_sent_and_cut_by_the_settings_that_read_it(tmp_path):
    """Answers cached before an unopened `</think>` was taken out hold the thinking: a rerun served
    it from the cache as the reply. Declaring the endpoint's replies afterwards asks nothing again."""
    with serve_openai(responder=lambda messages, body: "Greet back.\n</think>\n\nHello!") as srv:
        as_sent = run(client := make_client(srv, tmp_path), client.complete(user("hi")))
        declared = run(client := make_client(srv, tmp_path, reply_starts_in_thinking=True), client.complete(user("hi")))
        assert srv.count() == 1
    assert as_sent.content == "Greet back.\n</think>\n\nHello!" and declared.content == "Hello!" and declared.cached


# ----------------------------------------------------------------------------------------- complete_json

SCHEMA = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"],
          "additionalProperties": False}


def test_complete_json_invalid_then_valid(tmp_path):
    faults = [Fault("bad_verdict", match="give json", count=1, text="Sure! {answer: 4")]
    with serve_openai(responder=json_responder({"answer": 4}), faults=faults) as srv:
        client = make_client(srv, tmp_path)
        result = run(client, client.complete_json(user("give json"), SCHEMA))
        assert srv.count() == 2
        retry = srv.bodies[1]
    value, completion = result
    assert value == {"answer": 4} and isinstance(completion, Completion)
    assert srv.bodies[0]["response_format"] == {"type": "json_object"}
    # the re-ask carries the bad reply and says what was wrong with it
    assert retry["messages"][-2] == {"role": "assistant", "content": "Sure! {answer: 4"}
    assert "not valid JSON" in retry["messages"][-1]["content"]


@pytest.mark.parametrize("reply", ['```json\n{"answer": 4}\n```', '\n```\n{"answer": 4}```\n', '```JSON  \n{"answer": 4}\n  ```',
                                   '```json\r\n{"answer": 4}\r\n```'])
def test_complete_json_takes_the_object_out_of_a_markdown_fence(tmp_path, reply):
    """Endpoints that ignore `response_format` fence their JSON: each such row was asked 3 times,
    then dropped as `invalid_json`."""
    faults = [Fault("bad_verdict", match="give json", count=None, text=reply)]
    with serve_openai(responder=json_responder({"answer": 5}), faults=faults) as srv:
        client = make_client(srv, tmp_path)
        value, completion = run(client, client.complete_json(user("give json"), SCHEMA))
        assert srv.count() == 1
    assert value == {"answer": 4} and completion.content == reply


def test_a_fenced_reply_of_long_space_runs_is_read_in_one_pass():
    # a lazy pattern retried each run of spaces from each of its characters: 8.6 s for 100 KB (quadratic)
    code = """if True:
        from sftmix.llm import _unfenced
        for n in (100_000, 1_000_000):
            print(len(_unfenced("```json\\n" + " " * n + "x")), len(_unfenced("```json\\n" + " " * n + "{}\\n```")))
    """
    assert stdout_of(code, timeout=30).splitlines() == ["100009 100003", "1000009 1000003"]


def test_complete_json_nested_too_deeply_is_asked_again(tmp_path):
    # json.loads raises RecursionError on it, which would end the generator's whole stage (1,500
    # levels: past Python's recursion limit, within the test server's 4,096 tokens, one a bracket)
    deep = '{"answer": ' + "[" * 1_500 + "]" * 1_500 + "}"
    faults = [Fault("bad_verdict", match="give json", count=1, text=deep)]
    with serve_openai(responder=json_responder({"answer": 4}), faults=faults) as srv:
        client = make_client(srv, tmp_path)
        result = run(client, client.complete_json(user("give json"), SCHEMA))
        assert srv.count() == 2
        retry = srv.bodies[1]
    assert result[0] == {"answer": 4}
    assert "not valid JSON (nested too deeply to decode at 0)" in retry["messages"][-1]["content"]


def test_complete_json_too_long_an_integer_is_asked_again(tmp_path):
    # json refuses integers of over 4,300 digits with a bare ValueError: `loads` makes it a JSONDecodeError
    faults = [Fault("bad_verdict", match="give json", count=1, text='{"answer": ' + "9" * 5_000 + "}")]
    with serve_openai(responder=json_responder({"answer": 4}), faults=faults) as srv:
        client = make_client(srv, tmp_path)
        result = run(client, client.complete_json(user("give json"), SCHEMA))
        retry = srv.bodies[1]
    assert result[0] == {"answer": 4}
    assert "not valid JSON (Exceeds the limit (4300 digits)" in retry["messages"][-1]["content"]


def test_complete_json_nested_just_below_the_limit_is_asked_again(tmp_path):
    # Decoded, but the schema error's message recursed into the value and raised RecursionError at
    # some depths just below where decoding refuses (which ones depends on the stack): each is tried.
    def responder(messages, body):
        last = messages[-1]["content"]
        if last.startswith("depth "):
            depth = int(last.split()[1])
            return '{"answer": ' + "[" * depth + "]" * depth + "}"
        return json.dumps({"answer": 4})

    with serve_openai(responder=responder) as srv:
        client = make_client(srv, tmp_path)

        async def every_depth():
            return [await client.complete_json(user(f"depth {depth}"), SCHEMA) for depth in range(900, 1_010)]

        results = run(client, every_depth())
    assert all(result[0] == {"answer": 4} for result in results)
    problems = {body["messages"][-1]["content"] for body in srv.bodies if body["messages"][-1]["content"].startswith("Your reply")}
    assert any("does not match the schema" in problem for problem in problems)


def test_complete_json_schema_invalid_three_times(tmp_path):
    with serve_openai(responder=json_responder({"answer": "four"})) as srv:
        client = make_client(srv, tmp_path)
        result = run(client, client.complete_json(user("give json"), SCHEMA))
        assert srv.count() == 3
        assert [len(b["messages"]) for b in srv.bodies] == [2, 4, 6]
    assert isinstance(result, Failure) and result.reason == "invalid_json"
    assert "does not match the schema" in result.detail


def test_complete_json_truncated_and_failure(tmp_path):
    with serve_openai(responder=json_responder({"answer": 1}),
                      faults=[Fault("truncated", match="cut", count=None), Fault("server_error", status=400, match="bad")]) as srv:
        client = make_client(srv, tmp_path)

        async def both():
            return await client.complete_json(user("cut"), SCHEMA), await client.complete_json(user("bad"), SCHEMA)

        truncated, failed = run(client, both())
        assert srv.count() == 2
    assert truncated == Failure("truncated", "finish_reason=length")
    assert isinstance(failed, Failure) and failed.reason == "http_400"


# ------------------------------------------------------------------------------------------------ budget

def test_budget_cap_raises_after_first_paid_request(tmp_path):
    with serve_openai() as srv:
        client = make_client(srv, tmp_path, budget_usd=1e-9)

        async def sequential():
            first = await client.complete(user("paid"))
            with pytest.raises(BudgetExhausted):
                await client.complete(user("not sent"))
            return first, await client.complete(user("paid"))  # cached work is still served

        first, cached = run(client, sequential())
        assert srv.count() == 1
    assert isinstance(first, Completion) and cached.cached
    assert client.stats.cost_usd > 1e-9


def test_budget_cap_holds_for_queued_requests(tmp_path):
    with serve_openai(delay=0.02) as srv:
        client = make_client(srv, tmp_path, budget_usd=1e-9, concurrency=1)
        results = gather(client, [f"q{i}" for i in range(5)])
        assert srv.count() == 1
    assert sum(isinstance(r, Completion) for r in results) == 1
    assert sum(isinstance(r, BudgetExhausted) for r in results) == 4


def test_concurrent_requests_do_not_together_spend_past_the_cap(tmp_path):
    """Each of `concurrency` requests saw the cap unreached and was sent: a $0.0002 cap spent
    $0.0016 at concurrency 16 (17 requests), and which rows were answered depended on it. Near the
    cap one request goes at a time: the same requests are answered as at concurrency 1."""
    answered = {}
    for concurrency in (1, 4, 16):
        with serve_openai(delay=0.05) as srv:
            client = make_client(srv, tmp_path / str(concurrency), budget_usd=0.0002, concurrency=concurrency)
            results = gather(client, [f"question {i} " + "word " * 40 for i in range(20)])
            sent = srv.count()
        answered[concurrency] = [i for i, r in enumerate(results) if isinstance(r, Completion)]
        assert sent == len(answered[concurrency]) and sum(isinstance(r, BudgetExhausted) for r in results) == 20 - sent
        one_request = client.settings.prices.cost(results[answered[concurrency][0]].usage)
        assert client.stats.cost_usd < 0.0002 + one_request
    assert len(answered[1]) >= 2 and answered[4] == answered[16] == answered[1]


def test_chinese_prompts_at_concurrency_16_do_not_spend_past_the_cap(tmp_path):
    """A request's most cost took its prompt as characters / 4 tokens; Chinese runs about one token a
    character, so 16 requests in flight each looked 4 times cheaper than it was: a $0.002 cap spent
    about twice that."""
    prompt = "请评价下面这段对话的回答质量。" * 300
    with serve_openai(delay=0.05) as srv:
        client = make_client(srv, tmp_path, budget_usd=0.002, concurrency=16, max_tokens=64)
        results = gather(client, [f"{i} {prompt}" for i in range(40)])
    one_request = client.settings.prices.cost(next(r for r in results if isinstance(r, Completion)).usage)
    assert client.stats.cost_usd < 0.002 + one_request


def test_budget_cap_refuses_queued_requests_without_waiting_for_the_rate_limit(tmp_path):
    """One request a minute: the queued requests are refused at once, not each after a minute."""
    with serve_openai(delay=0.02) as srv:
        client = make_client(srv, tmp_path, budget_usd=1e-9, concurrency=1, requests_per_minute=1)

        async def all_at_once():
            requests = asyncio.gather(*(client.complete(user(f"q{i}")) for i in range(4)), return_exceptions=True)
            return await asyncio.wait_for(requests, 30)  # a failure here, not a four-minute wait

        results = run(client, all_at_once())
        assert srv.count() == 1
    assert isinstance(results[0], Completion) and all(isinstance(r, BudgetExhausted) for r in results[1:])
    assert len(client._limiter.events) == 1  # the refused requests took no rate slot


def _echo_generator():
    """A minimal generator module for generators.base.stream: one LLM call per item."""
    from generators.base import Item, reply_text

    module = types.ModuleType("generators.test_echo")
    module.PROMPTS = ()

    def items(records, ctx):
        for i in range(ctx.params["n"]):
            yield Item(key=f"item-{i}", payload=f"question {i}", language="en")

    async def generate(item, ctx):
        text = reply_text(await ctx.llm.complete([{"role": "user", "content": item.payload}]))
        return [Converted(messages=[message("user", item.payload), message("assistant", text)])]

    module.items, module.generate = items, generate
    return module


def test_budget_through_generator_stream(tmp_path):
    from generators.base import Context, stream

    with serve_openai() as srv:
        client = make_client(srv, tmp_path, budget_usd=1e-9, concurrency=1)
        ctx = Context(llm=client, params={"n": 6})
        out = list(stream(_echo_generator(), [], ctx, window=1))
        assert srv.count() == 1
        assert [key for key, _ in out] == [f"item-{i}" for i in range(6)]
        done, dropped = out[0][1], [r for _, r in out[1:]]
        assert isinstance(done, Converted) and done.messages[1]["content"] == "echo: question 0"
        assert done.meta["seed_id"] == "item-0" and done.meta["generator"] == "test_echo" and done.language == "en"
        assert all(getattr(d, "reason", None) == "budget_exhausted" for d in dropped)

        # a rerun with a bigger budget keeps the paid item (cached) and does only the rest
        client2 = make_client(srv, tmp_path)
        rerun = list(stream(_echo_generator(), [], Context(llm=client2, params={"n": 6})))
        assert srv.count() == 6 and client2.stats.cache_hits == 1
    assert [r.messages[1]["content"] for _, r in rerun] == [f"echo: question {i}" for i in range(6)]


def test_inputs_left_unasked_are_kept_under_their_own_licence(tmp_path):
    """Past the budget, each input record a generator did not ask about is a drop holding the record:
    its rejected file's footer named the generated source's licence alone (review)."""
    from generators.base import Context, Item, generate
    from sftmix.normalize import SourceInfo
    from sftmix.record import make_record

    module = _echo_generator()
    module.items = lambda records, ctx: (Item(key=r["id"], payload=r["messages"][0]["content"] if i == 0 else r,
                                              language="en", licences=(r["licence"],))
                                         for i, r in enumerate(records))
    inputs = [make_record(messages=[message("user", f"Question {i} about rivers?"), message("assistant", f"Answer {i}.")],
                          tools=[], source="wiki_qa", licence="cc-by-4.0", language="en", origin={"row": i})
              for i in range(3)]
    rejected = tmp_path / "gen.generated-00000.parquet"
    with serve_openai() as srv:
        ctx = Context(llm=make_client(srv, tmp_path, budget_usd=1e-9, concurrency=1), targets={"en": "all"})
        generate(module, inputs, ctx, SourceInfo(key="gen", converter="gen", licence="apache-2.0", manifest_hash="x"),
                 tmp_path / "gen.parquet", rejected)
    assert pq.read_table(rejected).column("reason").to_pylist() == ["budget_exhausted"] * 2
    assert json.loads(pq.read_schema(rejected).metadata[b"licences"]) == ["apache-2.0", "cc-by-4.0"]


def test_a_generated_row_refused_as_a_record_is_filed_under_its_inputs_licences_too(tmp_path):
    """A generated conversation that cannot become a record (half a surrogate pair) holds its input's
    text: its rejected file's footer named the generated source's licence alone (review)."""
    from generators.base import Context, Item, generate
    from sftmix.normalize import SourceInfo
    from sftmix.record import make_record

    module = _echo_generator()
    module.items = lambda records, ctx: (Item(key=r["id"], payload=r["messages"][0]["content"], language="en",
                                              licences=(r["licence"],)) for r in records)

    async def quote_broken(item, ctx):
        return [Converted(messages=[message("user", item.payload + " \ud83d"), message("assistant", "A river.")])]

    module.generate = quote_broken
    inputs = [make_record(messages=[message("user", "Question about rivers?"), message("assistant", "Answer.")],
                          tools=[], source="wiki_qa", licence="cc-by-4.0", language="en", origin={"row": 0})]
    rejected = tmp_path / "gen.generated-00000.parquet"
    with serve_openai() as srv:
        ctx = Context(llm=make_client(srv, tmp_path), targets={"en": "all"})
        generate(module, inputs, ctx, SourceInfo(key="gen", converter="gen", licence="apache-2.0", manifest_hash="x"),
                 tmp_path / "gen.parquet", rejected)
    assert pq.read_table(rejected).column("reason").to_pylist() == ["invalid_unicode"]
    assert json.loads(pq.read_schema(rejected).metadata[b"licences"]) == ["apache-2.0", "cc-by-4.0"]


def test_budget_through_generator_stream_default_window(tmp_path):
    from generators.base import Context, stream

    with serve_openai(delay=0.01) as srv:
        client = make_client(srv, tmp_path, budget_usd=1e-9, concurrency=1)
        out = list(stream(_echo_generator(), [], Context(llm=client, params={"n": 20})))
        assert len(out) == 20
        assert srv.count() == 1
    assert sum(isinstance(r, Converted) for _, r in out) == 1


# ------------------------------------------------------------------------- stages: rows in flight, in order

def test_in_order_keeps_order_and_at_most_window_started():
    loop = asyncio.new_event_loop()
    started, yielded, most = 0, 0, 0

    async def work(i: int) -> int:
        nonlocal started, most
        started += 1
        most = max(most, started - yielded)
        await asyncio.sleep((7 * i % 5) / 1000)  # later items often finish first
        return i * i

    out = []
    for item, result in llm_module.in_order(loop, work, range(40), 6):
        yielded += 1
        out.append((item, result))
    loop.close()
    assert out == [(i, i * i) for i in range(40)]
    assert most == 6


def test_in_order_starts_the_next_item_when_the_oldest_is_done():
    """Item 1 can only finish once item 4, beyond the first window of 4, has started: windows run to
    completion one after another would wait for item 1 forever (here: fail after 5 s)."""
    loop = asyncio.new_event_loop()
    fourth_started = asyncio.Event()

    async def work(i: int) -> int:
        if i == 4:
            fourth_started.set()
        if i == 1:
            await asyncio.wait_for(fourth_started.wait(), 5)
        return i

    assert [item for item, _ in llm_module.in_order(loop, work, range(8), 4)] == list(range(8))
    loop.close()


def test_in_order_cancels_what_the_caller_leaves():
    loop = asyncio.new_event_loop()
    cancelled = []

    async def work(i: int) -> int:
        try:
            await asyncio.sleep(0 if i == 0 else 60)
        except asyncio.CancelledError:
            cancelled.append(i)
            raise
        return i

    rows = llm_module.in_order(loop, work, range(10), 3)
    assert next(rows) == (0, 0)
    rows.close()
    assert sorted(cancelled) == [1, 2] and not [t for t in asyncio.all_tasks(loop) if not t.done()]
    loop.close()
    with pytest.raises(ValueError, match="window must be at least 1"):
        next(llm_module.in_order(asyncio.new_event_loop(), work, range(3), 0))


def test_generator_stream_refuses_a_window_of_no_rows(tmp_path):
    from generators.base import Context, stream

    with serve_openai() as srv:
        client = make_client(srv, tmp_path)
        with pytest.raises(ValueError, match="window must be at least 1"):
            next(stream(_echo_generator(), [], Context(llm=client, params={"n": 3}), window=0))
        assert srv.count() == 0


def test_generator_stream_left_early_cancels_its_rows_in_flight(tmp_path, caplog):
    import gc

    from generators.base import Context, stream

    with serve_openai(delay=0.3) as srv:
        client = make_client(srv, tmp_path, concurrency=4)
        rows = stream(_echo_generator(), [], Context(llm=client, params={"n": 40}), window=8)
        key, first = next(rows)
        rows.close()
        gc.collect()
        assert key == "item-0" and first.messages[1]["content"] == "echo: question 0"
        assert srv.count() <= 8  # the first row and the ones in flight with it; none started after
    assert not [r for r in caplog.records if r.name == "asyncio"]  # no task left pending, no error in the loop


def test_generator_stream_keeps_at_most_window_items_in_flight(tmp_path):
    from generators.base import Context, stream

    with serve_openai(delay=0.05) as srv:
        client = make_client(srv, tmp_path, concurrency=8)
        out = list(stream(_echo_generator(), [], Context(llm=client, params={"n": 12}), window=3))
        assert srv.count() == 12
        assert srv.max_concurrent == 3  # the window, not the client's 8
    assert [r.messages[1]["content"] for _, r in out] == [f"echo: question {i}" for i in range(12)]


# ----------------------------------------------------------------------------------- concurrency, storms

def test_concurrency_limit_respected(tmp_path):
    with serve_openai(delay=0.05) as srv:
        client = make_client(srv, tmp_path, concurrency=4)
        results = gather(client, [f"c{i}" for i in range(64)])
        assert srv.count() == 64
        assert srv.max_concurrent == 4  # reached, never exceeded
    assert [r.content for r in results] == [f"echo: c{i}" for i in range(64)]


def test_rate_limit_storm_loses_and_duplicates_nothing(tmp_path):
    with serve_openai(faults=[Fault("rate_limit", count=2, retry_after=0.05)], delay=0.005) as srv:
        client = make_client(srv, tmp_path, concurrency=16)
        texts = [f"storm {i}" for i in range(50)]
        results = gather(client, texts)
        assert srv.count(429) == 100 and srv.count(200) == 50 and srv.count() == 150
        ok_hashes = Counter(r.body_hash for r in srv.requests if r.status == 200)
        assert len(ok_hashes) == 50 and set(ok_hashes.values()) == {1}
    assert [r.content for r in results] == [f"echo: {t}" for t in texts]
    assert client.stats.retries == 100 and client.stats.failures == 0
    assert len(cache_entries(tmp_path / "cache")) == 50


def test_a_sustained_rate_limit_pauses_every_request_and_loses_no_row(tmp_path):
    """An endpoint answering 4 requests a window and 429 `Retry-After` past them: each 429 used one of
    its row's 7 tries while the other requests kept firing through the pause, and a third of the
    rows were `llm_retries_exhausted` drops of a server that answers them all, slower."""
    window = 0.1
    with serve_openai(rate_limit=RateLimit(requests=4, per_s=window)) as srv:
        client = make_client(srv, tmp_path, concurrency=16)
        texts = [f"row {i}" for i in range(64)]
        start = time.monotonic()
        results = gather(client, texts)
        elapsed = time.monotonic() - start
        refused = srv.count(429)
    assert [getattr(r, "content", r) for r in results] == [f"echo: {t}" for t in texts]
    # after a 429 no request goes out for its Retry-After (a window): each pause, at most the 16 that
    # go out when it ends and one a connection an answer frees are refused
    assert refused <= 16 * (elapsed / window + 1) + len(texts), (refused, elapsed)
    assert client.stats.failures == 0


def test_a_row_refused_while_the_others_are_answered_ends_after_its_allowance(tmp_path):
    """A 429 while the endpoint answers other rows uses none of the row's tries, `concurrency` times a
    try at most: a row the endpoint refuses for ever is still a drop."""
    texts = [f"row {i}" for i in range(31)]
    texts[10] = "never"  # rows before it are answered before it is asked
    with serve_openai(faults=[Fault("rate_limit", match="never", count=None, retry_after=0.01)], delay=0.01) as srv:
        client = make_client(srv, tmp_path, concurrency=2, max_retries=0)
        results = gather(client, texts)
        assert srv.count(429) == 3  # two (concurrency 2 x 1 try) that count as no try, then its one try
    assert isinstance(results[10], Failure) and results[10].reason == "llm_retries_exhausted"
    assert [r.content for i, r in enumerate(results) if i != 10] == [f"echo: {t}" for t in texts if t != "never"]


def test_a_429_without_retry_after_from_an_endpoint_answering_none_waits_its_own_rows_backoff(tmp_path, monkeypatch):
    """An endpoint refusing every request 429 with no Retry-After (OpenAI's body, no header): each row
    sleeps its own backoff, holding no concurrency slot. Each such 429 paused every row for its
    backoff, and `concurrency` requests went out a pause: ~10x longer to drop the rows."""
    monkeypatch.setattr(llm_module, "random", types.SimpleNamespace(uniform=lambda low, high: high))  # no jitter
    body = json.dumps({"error": {"message": "Rate limit reached for requests", "type": "requests", "param": None,
                                 "code": "rate_limit_exceeded"}})
    with serve_openai(faults=[Fault("server_error", status=429, count=None, text=body)]) as srv:
        client = make_client(srv, tmp_path, concurrency=4, max_retries=2, backoff_base_s=0.05)
        start = time.monotonic()
        results = gather(client, [f"row {i}" for i in range(48)])
        elapsed = time.monotonic() - start
        assert srv.count(429) == srv.count() == 48 * 3
    assert {r.reason for r in results} == {"llm_retries_exhausted"}
    # every row's waits (0.05 + 0.1 s) at once; paused together, 144 requests 4 a pause took >= 36 x 0.05 s
    assert elapsed < 1.0, elapsed


# -------------------------------------------------------------------------------------- rate limiter

WARP = 60.0  # one limiter minute = one real second


@pytest.fixture
def warped_clock(monkeypatch):
    """The limiter's window is a fixed 60 s: run its clock (and its sleeps) 60x faster."""
    real_asyncio = asyncio
    fake_asyncio = types.SimpleNamespace(**{k: getattr(asyncio, k) for k in dir(asyncio) if not k.startswith("__")})
    fake_asyncio.sleep = lambda seconds, *a, **kw: real_asyncio.sleep(seconds / WARP, *a, **kw)
    monkeypatch.setattr(llm_module, "time", types.SimpleNamespace(monotonic=lambda: time.monotonic() * WARP, time_ns=time.time_ns))
    monkeypatch.setattr(llm_module, "asyncio", fake_asyncio)


def test_requests_per_minute_limiter_slows_requests(tmp_path, warped_clock):
    with serve_openai() as srv:
        client = make_client(srv, tmp_path, requests_per_minute=2)
        start = time.monotonic()
        results = gather(client, [f"r{i}" for i in range(5)])
        elapsed = time.monotonic() - start
        assert srv.count() == 5
    assert all(isinstance(r, Completion) for r in results)
    # 2 now, 2 one (warped) minute later, 1 two minutes later
    assert 2.0 * 0.95 <= elapsed < 6


def test_tokens_per_minute_limiter_slows_requests(tmp_path, warped_clock):
    with serve_openai() as srv:
        # each request is estimated at len(text)//4 + max_tokens = 0 + 100 tokens: two fit in 250 per minute
        client = make_client(srv, tmp_path, tokens_per_minute=250, max_tokens=100)
        start = time.monotonic()
        results = gather(client, ["a", "b", "c"])
        elapsed = time.monotonic() - start
    assert all(isinstance(r, Completion) for r in results)
    assert 1.0 * 0.95 <= elapsed < 4


def test_requests_per_minute_limit_holds_across_a_pause(tmp_path, warped_clock):
    """A 429's Retry-After pauses the requests: their rate slots are taken when they go out after it,
    not before. Taken before the pause, they went out with the next minute's: past the endpoint's limit."""
    texts = ["first"] + [f"row {i}" for i in range(1, 6)]
    # the endpoint allows 4 requests in any 45 s (its window shorter than a minute for the sends' jitter)
    with serve_openai(faults=[Fault("rate_limit", match="first", count=1, retry_after=50)],
                      rate_limit=RateLimit(requests=4, per_s=45 / WARP)) as srv:
        client = make_client(srv, tmp_path, concurrency=2, requests_per_minute=4)
        results = gather(client, texts)
        assert srv.count(429) == 1 and srv.count(200) == 6  # only the fault's: the endpoint's limit never reached
    assert [r.content for r in results] == [f"echo: {t}" for t in texts]


def test_no_limiter_is_not_slow(tmp_path, warped_clock):
    with serve_openai() as srv:
        client = make_client(srv, tmp_path, requests_per_minute=100)
        start = time.monotonic()
        gather(client, [f"r{i}" for i in range(5)])
    assert time.monotonic() - start < 0.9


# ----------------------------------------------------------------------------------- settings and keys

@pytest.mark.parametrize("temperature", [-0.01, 0.21, 0.7, 1.0])
def test_temperature_outside_model_card_range(temperature):
    with pytest.raises(ValueError, match="temperature"):
        LLMSettings(temperature=temperature)


@pytest.mark.parametrize("temperature", [0.0, 0.1, 0.2])
def test_temperature_inside_range(temperature):
    assert LLMSettings(temperature=temperature).temperature == temperature
    with pytest.raises(ValueError):
        LLMSettings(concurrency=0)


@pytest.fixture
def no_key_env(monkeypatch):
    for variable in ("SFTMIX_LLM_API_KEY", "DEEPSEEK_API_KEY", "SFTMIX_LLM_BASE_URL", "SFTMIX_LLM_MODEL"):
        monkeypatch.delenv(variable, raising=False)
    return monkeypatch


def test_missing_api_key(tmp_path, no_key_env):
    with pytest.raises(MissingAPIKey, match="SFTMIX_LLM_API_KEY"):
        api_key_from_env()
    with serve_openai() as srv:
        client = make_client(srv, tmp_path, api_key=None)
        with pytest.raises(MissingAPIKey):
            run(client, client.complete(user("no key")))
        assert srv.count() == 0



def test_a_key_read_with_its_line_end_is_sent_without_it(tmp_path, no_key_env):
    """`export SFTMIX_LLM_API_KEY=$(cat key.txt)` of a CRLF file keeps the CR: aiohttp refused the
    header ("Potential header injection attack"), a traceback that did not name the key."""
    no_key_env.setenv("SFTMIX_LLM_API_KEY", "sk-crlf-0123456789\r")
    assert api_key_from_env() == "sk-crlf-0123456789"
    with serve_openai(responder=lambda messages, body: "Hello!") as srv:
        client = make_client(srv, tmp_path, api_key=None)
        assert run(client, client.complete(user("hi"))).content == "Hello!"
        assert srv.auth_headers == ["Bearer sk-crlf-0123456789"]
    no_key_env.setenv("SFTMIX_LLM_API_KEY", "sk-one\ttwo")
    with pytest.raises(MissingAPIKey, match="^SFTMIX_LLM_API_KEY holds a space, a control or a non-ASCII character"):
        api_key_from_env()
    no_key_env.setenv("SFTMIX_LLM_API_KEY", " \r\n")  # blank: the next variable, or none
    no_key_env.setenv("DEEPSEEK_API_KEY", "sk-deepseek-1")
    assert api_key_from_env() == "sk-deepseek-1"

def answers(cache, keys):
    found = [cache.get(key) for key in keys]
    return [answer and answer.content for answer in found]


def test_cache_index_keeps_the_latest_entry_through_merges_and_reloads(tmp_path, monkeypatch):
    monkeypatch.setattr(llm_module._Places, "RECENT", 4)  # a merge every 4 puts
    keys = [llm_module.request_key("h", {"n": i}) for i in range(50)]
    cache = llm_module.ResponseCache(tmp_path)
    for i, key in enumerate(keys):
        cache.put(key, Completion(f"first {i}", "stop", Usage()), {})
    for key in keys[::3]:  # stored again (a damaged entry asked again): the newer line is the answer
        cache.put(key, Completion("second", "stop", Usage()), {})
    expected = ["second" if i % 3 == 0 else f"first {i}" for i in range(50)]
    assert answers(cache, keys) == expected
    cache.close()
    assert answers(llm_module.ResponseCache(tmp_path), keys) == expected  # read back from the log
    assert cache.get(llm_module.request_key("h", {"n": 50})) is None


def test_cache_keys_sharing_their_first_64_bits_cost_a_request_not_a_wrong_answer(tmp_path):
    first, second = "0123456789abcdef" + "a" * 48, "0123456789abcdef" + "b" * 48
    cache = llm_module.ResponseCache(tmp_path)
    cache.put(first, Completion("for the first", "stop", Usage()), {})
    assert cache.get(second) is None  # the index points at the first's line, whose key is not this one
    cache.put(second, Completion("for the second", "stop", Usage()), {})
    assert answers(cache, [first, second]) == [None, "for the second"]


def test_fully_cached_run_needs_no_key(tmp_path, no_key_env):
    with serve_openai() as srv:
        paid = make_client(srv, tmp_path)
        run(paid, paid.complete(user("cached")))
        free = make_client(srv, tmp_path, api_key=None)
        assert run(free, free.complete(user("cached"))).cached
        assert srv.count() == 1


def test_deepseek_key_fallback_and_precedence(tmp_path, no_key_env):
    no_key_env.setenv("DEEPSEEK_API_KEY", "sk-deepseek-fallback")
    assert api_key_from_env() == "sk-deepseek-fallback"
    with serve_openai() as srv:
        client = make_client(srv, tmp_path, api_key=None)
        assert isinstance(run(client, client.complete(user("via deepseek"))), Completion)
        no_key_env.setenv("SFTMIX_LLM_API_KEY", "sk-sftmix-first")
        client = make_client(srv, tmp_path, api_key=None)
        run(client, client.complete(user("via sftmix")))
        assert srv.auth_headers == ["Bearer sk-deepseek-fallback", "Bearer sk-sftmix-first"]


def test_env_overrides_base_url_and_model(tmp_path, no_key_env):
    with serve_openai() as srv:
        no_key_env.setenv("SFTMIX_LLM_BASE_URL", srv.base_url)
        no_key_env.setenv("SFTMIX_LLM_MODEL", "env-model")
        settings = LLMSettings.from_config({"base_url": "https://api.deepseek.com", "model": "deepseek-chat",
                                            "cache_dir": str(tmp_path / "cache"), "concurrency": 3,
                                            "prices": {"completion": 2.0}})
        assert (settings.base_url, settings.model, settings.concurrency) == (srv.base_url, "env-model", 3)
        assert settings.prices == Prices(completion=2.0)
        assert LLMSettings.from_config({}, model="explicit").model == "explicit"  # overrides beat the env
        client = LLMClient(settings, api_key=KEY)
        run(client, client.complete(user("where")))
        assert srv.count() == 1 and srv.bodies[0]["model"] == "env-model"
    assert KEY not in repr(client)


# ------------------------------------------------------------------------------------------- key leaks

def test_model_output_that_breaks_a_generator_is_a_counted_drop(tmp_path):
    from generators.base import Context, Item, reply_text, stream

    replies = {"shape": "{}", "deep": "[" * 3_000, "good": '{"answer": "yes"}'}  # 3,000: past the recursion limit
    module = types.ModuleType("generators.test_parse")
    module.PROMPTS = ()
    module.items = lambda records, ctx: (Item(key=key, payload=key, language="en") for key in replies)

    async def generate(item, ctx):
        text = reply_text(await ctx.llm.complete([{"role": "user", "content": item.payload}]))
        answer = json.loads(text)["answer"]  # the generator's assumption about its reply
        return [Converted(messages=[message("user", item.payload), message("assistant", answer)])]

    module.generate = generate
    with serve_openai(responder=lambda messages, body: replies[messages[-1]["content"]]) as srv:
        out = dict(stream(module, [], Context(llm=make_client(srv, tmp_path))))
    line = generate.__code__.co_firstlineno + 2  # the line reading the reply
    assert (out["shape"].reason, out["shape"].detail) == ("malformed_generation",
                                                          f"KeyError: 'answer' (at tests/test_llm.py:{line})")
    assert out["deep"].reason == "malformed_generation"
    assert out["deep"].detail.startswith("RecursionError: maximum recursion depth exceeded")
    assert out["deep"].detail.endswith(f"(at tests/test_llm.py:{line})")  # json's own frames are not the project's
    assert out["good"].messages[1]["content"] == "yes"


def _failing_generator(n: int, fails: Callable[[int], str | None]):
    """`n` items, one call each; item i then raises at one of two lines as `fails(i)` says ("a",
    "b"), or gives its row (None)."""
    from generators.base import Item, reply_text

    module = types.ModuleType("generators.test_failing")
    module.PROMPTS = ()
    module.items = lambda records, ctx: (Item(key=f"item-{i}", payload=f"question {i}", language="en") for i in range(n))

    async def generate(item, ctx):
        text = reply_text(await ctx.llm.complete([{"role": "user", "content": item.payload}]))
        where = fails(int(item.key.split("-")[1]))
        if where == "a":
            return text.missing_attribute
        if where == "b":
            return {}["missing key"]
        return [Converted(messages=[message("user", item.payload), message("assistant", text)])]

    module.generate = generate
    return module


def test_a_generator_failing_one_way_on_its_first_items_stops_the_stage(tmp_path):
    """A generator bug raised on every item, each a `malformed_generation` drop after its requests:
    200 items spent 200 requests for no row, and the stage ended as if the model had answered badly."""
    from generators.base import BROKEN_AFTER, Context, GeneratorBroken, stream
    from sftmix.llm import stage_window

    with serve_openai() as srv:
        ctx = Context(llm=make_client(srv, tmp_path, concurrency=4))
        with pytest.raises(GeneratorBroken, match=rf"each of its first {BROKEN_AFTER} items raised AttributeError: "
                                                  r"'str' object has no attribute 'missing_attribute' "
                                                  r"\(at tests/test_llm.py:\d+\): "):
            list(stream(_failing_generator(200, lambda i: "a"), [], ctx))
        # the first items, and at most a window of those started beside them (how many of these had sent
        # their request by then is the scheduler's: 42 in a loaded CI run, where this said < 40)
        assert BROKEN_AFTER <= srv.count() < BROKEN_AFTER + stage_window(4) < 200


@pytest.mark.parametrize("installed", [False, True])
def test_where_a_generator_raised_is_found_in_a_checkout_and_an_installed_copy(tmp_path, monkeypatch, installed):
    """Installed with `pip install .`, the project's root is site-packages: every frame was "not the
    project's", every drop "(at unknown)", and 16 of them one place, so the stage stopped."""
    import generators.base as base

    root = tmp_path / ("venv/lib/python3.11/site-packages" if installed else "checkout")
    monkeypatch.setattr(base, "PROJECT_ROOT", root)

    def raised_in(path: Path, line: int) -> BaseException:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n" * (line - 1) + "def fail():\n    {}['answer']\n")
        spec = importlib.util.spec_from_file_location(f"module_at_{abs(hash(path))}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        try:
            module.fail()
        except KeyError as error:
            return error

    assert base._project_site(raised_in(root / "generators" / "x.py", 3)) == "generators/x.py:4"
    # a library's frame (a virtual environment inside a checkout, another package installed beside) is not the project's
    assert base._project_site(raised_in(tmp_path / "checkout" / ".venv/lib/site-packages/json/decoder.py", 1)) is None
    assert base._project_site(raised_in(root / "somelib" / "core.py", 1)) is None


def test_sftmix_generate_names_a_broken_generator_in_one_line(tmp_path, monkeypatch, capsys):
    import generators
    from sftmix import cli

    monkeypatch.setattr(generators, "get_generator", lambda name: _failing_generator(100, lambda i: "b"))
    with serve_openai() as srv:
        monkeypatch.setenv("SFTMIX_LLM_API_KEY", KEY)
        monkeypatch.setenv("SFTMIX_LLM_BASE_URL", srv.base_url)
        monkeypatch.setenv("SFTMIX_LLM_CACHE", str(tmp_path / "cache"))
        assert cli.main(["generate", "fineweb_edu_qa", "-o", str(tmp_path / "gen.parquet")]) == 2
    # (the test server may log a reset connection: the requests in flight are cancelled)
    [line] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("sftmix")]
    assert re.fullmatch(rf"sftmix: error: generator 'fineweb_edu_qa': each of its first {BROKEN_AFTER} items raised "
                        r"KeyError: 'missing key' \(at tests/test_llm.py:\d+\): a fault "
                        r"of the generator or of its settings, or replies it cannot read; stopped before spending more",
                        line)


@pytest.mark.parametrize("fails", [lambda i: None if i == 0 else "a",  # one row made first
                                   lambda i: "ab"[i % 2],  # two places
                                   lambda i: "a" if i < BROKEN_AFTER - 1 else None])  # fewer than BROKEN_AFTER
def test_failures_that_are_not_all_one_from_the_start_are_counted_drops(tmp_path, fails):
    from generators.base import Context, stream

    with serve_openai() as srv:
        out = list(stream(_failing_generator(40, fails), [], Context(llm=make_client(srv, tmp_path))))
    assert len(out) == 40
    assert [isinstance(row, Drop) for _, row in out] == [fails(i) is not None for i in range(40)]
    assert {row.reason for _, row in out if isinstance(row, Drop)} == {"malformed_generation"}


@pytest.fixture
def key_echoing_server(monkeypatch):
    """Every error body the server sends quotes the key, like providers that echo a rejected key."""
    original = openai_server._error

    def echoing(message, *args, **kwargs):
        return original(f"{message} Incorrect API key provided: {KEY}. Partial: sk-test-SEC*******123.", *args, **kwargs)

    monkeypatch.setattr(openai_server, "_error", echoing)


def _generator_module(n: int):
    module = _echo_generator()
    items = module.items
    module.items = lambda records, ctx: items(records, types.SimpleNamespace(params={"n": n}))
    return module


def _assert_no_key_in(paths: list[Path]) -> None:
    for path in paths:
        assert KEY.encode() not in path.read_bytes(), path
        if path.suffix == ".parquet":
            assert KEY not in json.dumps(pq.read_table(path).to_pylist()), path


def test_key_never_leaks(tmp_path, monkeypatch, caplog, capsys, key_echoing_server):
    """`sftmix generate` (a one-call generator) with the key in the env and a server that quotes it in errors."""
    import generators
    from sftmix import cli

    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(generators, "get_generator", lambda name: _generator_module(6))
    faults = [Fault("server_error", status=403, match="question 1", count=None),
              Fault("server_error", status=400, match="question 2", count=None)]
    with serve_openai(faults=faults) as srv:
        monkeypatch.setenv("SFTMIX_LLM_API_KEY", KEY)
        monkeypatch.setenv("SFTMIX_LLM_BASE_URL", srv.base_url)
        monkeypatch.setenv("SFTMIX_LLM_CACHE", str(tmp_path / "cache"))
        out = tmp_path / "gen.parquet"
        assert cli.main(["generate", "fineweb_edu_qa", "-o", str(out), "--language", "en"]) == 0
        assert srv.count(403) == 1 and srv.count(400) == 1 and srv.count(200) == 4
        assert KEY in json.dumps(openai_server._error("x", "y"))  # the server really quotes it

        # the retryable errors too, through the client directly (max_retries=1 keeps it quick)
        srv.faults.extend([Fault("server_error", status=500, match="five hundred", count=None),
                           Fault("rate_limit", match="storm", count=None, retry_after=0.01),
                           Fault("malformed", match="garbled", count=None, text=f"bad key {KEY}")])
        client = make_client(srv, tmp_path, cache_dir=str(tmp_path / "cache"), max_retries=1, api_key=None)
        failures = gather(client, ["question 1", "question 2", "five hundred", "storm", "garbled"])
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["dropped"].get("http_403") == 1 and summary["dropped"].get("http_400") == 1
    rejected = pq.read_table(tmp_path / "gen.rejected.parquet").to_pylist()
    details = {r["reason"]: r["detail"] for r in rejected}
    assert "***" in details["http_403"]  # the quoted key reached the rejected file's detail, redacted
    assert [f.reason for f in failures] == ["http_403", "http_400"] + ["llm_retries_exhausted"] * 3
    for failure in failures:
        assert KEY not in failure.detail and "SECRET" not in failure.detail
    assert KEY not in captured.out and KEY not in captured.err
    assert KEY not in caplog.text and all(KEY not in str(r.args) for r in caplog.records)
    assert len(cache_entries(tmp_path / "cache")) == 4
    _assert_no_key_in([out, tmp_path / "gen.rejected.parquet", *cache_files(tmp_path / "cache")])


def test_a_key_the_cut_of_an_error_text_ends_inside_is_redacted(tmp_path, monkeypatch):
    """A key of no `sk-` shape (vLLM's `--api-key`, other providers) quoted near the 300th character of
    an error body: the text was cut first, and the key's head no longer matched the key."""
    key = "tgp_v1_" + "7f3a9c2e5b8d1f4a6c0e9b7d2a5f8c1e3b6d9a0f4c7e2b5d8a1f6c9e3b0d7a4f"
    original = openai_server._error
    # pads that put the cut at every 7th character of the key's 71 (the body's other fields stay the same)
    pads = range(150, 300, 7)
    for pad in pads:
        monkeypatch.setattr(openai_server, "_error", lambda message, *args, pad=pad, **kwargs: original(
            f"{'x' * pad} Incorrect API key provided: {key}.", *args, **kwargs))
        faults = [Fault("server_error", status=401, count=None), Fault("server_error", status=503, count=None)]
        with serve_openai(faults=faults[:1]) as unauthorised, serve_openai(faults=faults[1:]) as unavailable:
            details = [failure.detail for srv in (unauthorised, unavailable)
                       for failure in gather(make_client(srv, tmp_path, api_key=key, max_retries=0), ["Hi"])]
        assert details[0].startswith("Error code: 401") and details[1].startswith("InternalServerError: Error code: 503")
        assert all(key[:12] not in detail for detail in details), (pad, details)


def test_an_endpoint_that_answers_nothing_is_named_once_beside_the_per_row_drops(tmp_path, monkeypatch, capsys,
                                                                                key_echoing_server):
    """A wrong key: every row is still a counted drop and the run ends (issue 4), one warning names
    the cause, redacted like every other error text, and the exit code is 1 (it was 0: a script
    going on to train read an empty file)."""
    from sftmix import cli

    with serve_openai(responder=lambda messages, body: "unused", faults=[Fault("server_error", status=401, count=None)]) as srv:
        monkeypatch.setenv("SFTMIX_LLM_API_KEY", KEY)
        monkeypatch.setenv("SFTMIX_LLM_BASE_URL", srv.base_url)
        monkeypatch.setenv("SFTMIX_LLM_CACHE", str(tmp_path / "cache"))
        _judge_input(tmp_path / "in.parquet", 3)
        assert cli.main(["judge", str(tmp_path / "in.parquet"), "-o", str(tmp_path / "out.parquet")]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out.splitlines()[-1])["dropped"] == {"http_401": 3}
    [warning] = captured.err.splitlines()
    assert re.fullmatch(r"warning: the LLM endpoint answered none of 3 requests \(the last failure: http_401: .*"
                        r"Incorrect API key provided: \*\*\*.*\): check SFTMIX_LLM_BASE_URL, SFTMIX_LLM_MODEL and "
                        r"the API key", warning)
    assert KEY not in warning
    # the rows the cache answers are judged: exit 0 (1 said every row was a drop; the review), and
    # the warning still says the endpoint answers nothing now
    faults = [Fault("server_error", status=401, match="Question 2?", count=None)]
    with serve_openai(responder=lambda messages, body: "Feedback: Fine. [RESULT] 5", faults=faults) as srv:
        monkeypatch.setenv("SFTMIX_LLM_BASE_URL", srv.base_url)
        _judge_input(tmp_path / "in.parquet", 2)
        assert cli.main(["judge", str(tmp_path / "in.parquet"), "-o", str(tmp_path / "out.parquet")]) == 0
        _judge_input(tmp_path / "in.parquet", 3)
        capsys.readouterr()
        assert cli.main(["judge", str(tmp_path / "in.parquet"), "-o", str(tmp_path / "out.parquet")]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out.splitlines()[-1])["kept"] == 2
    assert captured.err.startswith("warning: the LLM endpoint answered none of 1 requests")
    # two rows asking the same thing share one request: counted as a cache hit, it made the exit 0
    # though both were drops (the review)
    same = [make_record(messages=[message("user", "Question 7?"), message("assistant", "Answer 7.")], tools=[],
                        source="t", licence="mit", language="en", origin={"row": f"in.jsonl#{i}"}) for i in range(2)]
    pq.write_table(to_table(same), tmp_path / "same.parquet")
    monkeypatch.setenv("SFTMIX_LLM_CACHE", str(tmp_path / "other-cache"))
    with serve_openai(responder=lambda messages, body: "unused", faults=[Fault("server_error", status=401, count=None)]) as srv:
        monkeypatch.setenv("SFTMIX_LLM_BASE_URL", srv.base_url)
        assert cli.main(["judge", str(tmp_path / "same.parquet"), "-o", str(tmp_path / "same-out.parquet")]) == 1
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["kept"] == 0


@contextlib.contextmanager
def _account_refused_after(answers: int, status: int, reply: str = "An answer.", error: str | None = None):
    """A server that answers `answers` requests, then refuses every request with `status` (and the
    body `error`): the account's balance spent (DeepSeek's 402 "Insufficient Balance", OpenAI's 429
    `insufficient_quota`), its key revoked (401)."""
    answered = []

    def respond(messages, body):
        answered.append(body)
        if len(answered) == answers:
            srv.faults.append(Fault("server_error", status=status, count=None, text=error))
        return reply

    with serve_openai(respond) as srv:
        yield srv


def openai_error(message: str, type_: str, code: str | None) -> str:
    return json.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}})


# OpenAI's bodies for an account out of credit, its billing inactive (as sent: with and without a
# code), its spending cap reached (a 400 from the images endpoint)
OPENAI_QUOTA = openai_error("You exceeded your current quota, please check your plan and billing details.",
                            "insufficient_quota", "insufficient_quota")
OPENAI_BILLING_INACTIVE = "Your account is not active, please check your billing details on our website."


@pytest.mark.parametrize("status, error, reason, sent", [
    (402, None, "llm_payment_required", 4), (401, None, "llm_key_refused", 4),
    (429, OPENAI_QUOTA, "llm_payment_required", 4),
    (429, openai_error(OPENAI_BILLING_INACTIVE, "billing_not_active", "billing_not_active"), "llm_payment_required", 4),
    (429, openai_error(OPENAI_BILLING_INACTIVE, "billing_not_active", None), "llm_payment_required", 4),
    (400, openai_error("Billing hard limit has been reached", "invalid_request_error", "billing_hard_limit_reached"),
     "llm_payment_required", 4),
    (403, None, "http_403", 10), (400, None, "http_400", 10)],
    ids=["402", "401", "429-insufficient_quota", "429-billing_not_active", "429-billing_not_active-no-code",
         "400-billing_hard_limit_reached", "403", "400"])
def test_an_account_refused_part_way_stops_the_requests_as_the_budget_cap_does(tmp_path, status, error, reason, sent):
    """Out of balance part way (DeepSeek's 402; OpenAI's 429 `insufficient_quota`), or the key revoked
    (a 401 once it had answered): each row left was still sent a request refused like the first and
    dropped as its own `http_402`, or for a 429 asked again max_retries times. The client now stops
    as at the budget cap; 403 (often one request's content) and 400 stay the row's."""
    from generators.base import Context, stream

    with _account_refused_after(3, status, error=error) as srv:
        client = make_client(srv, tmp_path, concurrency=1)
        out = list(stream(_echo_generator(), [], Context(llm=client, params={"n": 10})))
        assert srv.count() == sent and srv.count(status) == sent - 3
    rows = [row for _, row in out]
    assert [isinstance(row, Converted) for row in rows] == [True] * 3 + [False] * 7
    assert {(drop.reason, drop.detail.split(" - ")[0]) for drop in rows[3:]} == {(reason, f"Error code: {status}")}
    if sent == 10:
        assert not client.stats.refused and client.stats.unanswered() is None
    else:
        assert client.stats.refused.startswith(f"{reason}: Error code: {status} - ")
        assert client.stats.unanswered().startswith("the LLM endpoint refused the account after 3 answered requests")


def test_a_refusal_stops_the_step_s_other_client_and_cached_answers_are_still_served(tmp_path):
    """The refusal was one client's: a judge refused on its own endpoint left its generator paying
    for every row (each then the judge's drop), a generator refused left its judge sending a doomed
    request a row. And a generator checked the stop before the cache: `budget_usd: 0`, the way to
    rebuild from the cache alone, kept nothing."""
    from generators.base import Context, stream
    from sftmix.llm import Spending

    with _account_refused_after(1, 402, "Feedback: Fine. [RESULT] 5") as judge_server, serve_openai() as generator_server:
        client = make_client(generator_server, tmp_path, concurrency=1)
        assert [isinstance(row, Converted) for _, row in stream(_echo_generator(), [], Context(llm=client, params={"n": 3}))] == [True] * 3
        assert generator_server.count() == 3
        spending = Spending()
        judge = LLMClient(LLMSettings(base_url=judge_server.base_url, cache_dir=str(tmp_path / "judge-cache"),
                                      concurrency=1), api_key=KEY, spending=spending,
                      judges_generated_rows=True)
        assert [type(r).__name__ for r in gather(judge, ["grade 1", "grade 2"])] == ["Completion", "AccountRefused"]
        generator = make_client(generator_server, tmp_path, concurrency=1, budget_usd=0)
        generator.spending = spending
        out = [row for _, row in stream(_echo_generator(), [], Context(llm=generator, params={"n": 5}))]
        assert generator_server.count() == 3 and judge_server.count() == 2  # none sent after the refusal
    # the 3 answers cached above are served at budget 0 and after the refusal; the 2 others are its drops
    assert [isinstance(row, Converted) for row in out] == [True] * 3 + [False] * 2
    assert {row.reason for row in out[3:]} == {"llm_payment_required"}
    # the generator refused: a judge on another endpoint grades what was made (a review found its rows,
    # paid for, dropped ungraded); one on the refused endpoint sends nothing
    with _account_refused_after(1, 402) as generator_server, serve_openai(
            responder=lambda messages, body: "Feedback: Fine. [RESULT] 5") as judge_server:
        generator = make_client(generator_server, tmp_path, concurrency=1, cache_dir=str(tmp_path / "other"))
        assert [type(r).__name__ for r in gather(generator, ["make 1", "make 2"])] == ["Completion", "AccountRefused"]
        for server, answered in ((judge_server, "Completion"), (generator_server, "AccountRefused")):
            judge = LLMClient(LLMSettings(base_url=server.base_url, cache_dir=str(tmp_path / "judged")), api_key=KEY,
                              spending=generator.spending, judges_generated_rows=True)
            assert [type(r).__name__ for r in gather(judge, ["grade 1"])] == [answered]
        assert (judge_server.count(), generator_server.count()) == (1, 2)
    # a generator's judge refused at its first request (a wrong key for its own endpoint): the generator
    # paid for every row, each then the judge's `http_401` drop (review)
    with serve_openai(faults=[Fault("server_error", status=401, count=None)]) as judge_server, serve_openai() as generator_server:
        generator = make_client(generator_server, tmp_path, concurrency=1, cache_dir=str(tmp_path / "third"))
        judge = LLMClient(LLMSettings(base_url=judge_server.base_url, cache_dir=str(tmp_path / "judged")), api_key=KEY,
                          spending=generator.spending, judges_generated_rows=True)
        assert [type(r).__name__ for r in gather(judge, ["grade 1"])] == ["AccountRefused"]
        assert [type(r).__name__ for r in gather(generator, ["make 1"])] == ["AccountRefused"]
        assert generator_server.count() == 0 and judge.stats.refused.startswith("llm_key_refused: Error code: 401")


def test_a_json_reply_of_a_model_that_replies_in_its_thinking_is_the_object_when_it_has_no_close(tmp_path):
    """Constrained decoding (vLLM's guided JSON for R1) writes the object from the first token: the
    cut at the first `</think>` made every JSON reply empty, asked again and paid until `invalid_json`."""
    replies = iter(['{"answer": 4}', '<think>Two and two.</think>{"answer": 4}'])
    with serve_openai(responder=lambda messages, body: next(replies)) as srv:
        client = make_client(srv, tmp_path, reply_starts_in_thinking=True)
        first, second = (run(client, client.complete_json(user(f"question {i}"), {"type": "object"})) for i in range(2))
    assert first[0] == second[0] == {"answer": 4} and srv.count() == 2


def test_sftmix_judge_stops_at_a_refused_account_names_it_and_exits_1(tmp_path, monkeypatch, capsys,
                                                                        key_echoing_server):
    """The account emptied part way: `sftmix judge` asked every row left, each a counted `http_402`,
    and exited 0 with nothing on stderr, as if the source were judged. Now: no request after the
    402, one warning naming it (redacted), exit 1; a rerun once topped up pays only for the rest."""
    from sftmix import cli

    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({
        "mixture": "m", "holdout": {"size": 0}, "licence_policy": {"allow": ["apache-2.0"]},
        "sources": [{"key": "d", "converter": "dolly", "licence": "apache-2.0", "local": {"files": ["d.jsonl"]},
                     "targets": "all"}],
        "llm": {"concurrency": 1}}))
    judge = ["judge", str(tmp_path / "in.parquet"), "-o", str(tmp_path / "out.parquet"), "--manifest", str(manifest)]
    monkeypatch.setenv("SFTMIX_LLM_API_KEY", KEY)
    monkeypatch.setenv("SFTMIX_LLM_CACHE", str(tmp_path / "cache"))
    _judge_input(tmp_path / "in.parquet", 6)
    with _account_refused_after(2, 402, "Feedback: Fine. [RESULT] 5") as srv:
        monkeypatch.setenv("SFTMIX_LLM_BASE_URL", srv.base_url)
        assert cli.main(judge) == 1
        assert srv.count() == 3
        captured = capsys.readouterr()
        srv.faults.clear()  # topped up
        assert cli.main(judge) == 0
        assert srv.count() == 3 + 4
    summary = json.loads(captured.out.splitlines()[-1])
    assert (summary["kept"], summary["dropped"]) == (2, {"llm_payment_required": 4})
    [warning] = captured.err.splitlines()
    assert re.fullmatch(r"warning: the LLM endpoint refused the account after 2 answered requests \(llm_payment_"
                        r"required: Error code: 402 - .*Incorrect API key provided: \*\*\*.*\): no request was sent "
                        r"after it, and each row not yet asked is a counted drop; .*", warning)
    assert KEY not in captured.out + captured.err
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["kept"] == 6


def test_a_cache_dir_given_on_the_command_line_wins_over_the_manifest_s(tmp_path, monkeypatch, capsys):
    """The manifest's `llm: {cache_dir}` was taken over an explicit `--cache-dir`: the answers went
    to (and were looked up in) a cache the command did not name."""
    from sftmix import cli

    manifest = tmp_path / "m.yaml"
    sample = (Path(__file__).parents[1] / "manifests" / "sample.yaml").read_text()
    manifest.write_text(sample.replace("\nsources:", f"\nllm: {{cache_dir: {tmp_path / 'manifest-cache'}}}\nsources:", 1)
                        .replace("../tests/", f"{Path(__file__).parent}/"))
    with serve_openai(responder=lambda messages, body: "Feedback: Fine. [RESULT] 5") as srv:
        monkeypatch.setenv("SFTMIX_LLM_API_KEY", KEY)
        monkeypatch.setenv("SFTMIX_LLM_BASE_URL", srv.base_url)
        _judge_input(tmp_path / "in.parquet", 2)
        assert cli.main(["judge", str(tmp_path / "in.parquet"), "-o", str(tmp_path / "out.parquet"), "--manifest",
                         str(manifest), "--cache-dir", str(tmp_path / "given")]) == 0
    assert len(cache_entries(tmp_path / "given")) == 2 and not (tmp_path / "manifest-cache").exists()


def _judge_input(path: Path, n: int) -> list[str]:
    records = [make_record(messages=[message("user", f"Question {i}?"), message("assistant", f"Answer {i}.")],
                           tools=[], source="t", licence="mit", language="en", origin={"row": f"in.jsonl#{i}"}) for i in range(n)]
    pq.write_table(to_table(records), path)
    return [r["id"] for r in records]


def test_key_never_leaks_judge_cli(tmp_path, monkeypatch, caplog, capsys, key_echoing_server):
    from sftmix import cli

    caplog.set_level(logging.DEBUG)
    faults = [Fault("server_error", status=403, match="Question 1?", count=None),
              Fault("server_error", status=400, match="Question 2?", count=None)]
    responder = lambda messages, body: "Feedback: Fine. [RESULT] 5"  # noqa: E731
    with serve_openai(responder=responder, faults=faults) as srv:
        monkeypatch.setenv("SFTMIX_LLM_API_KEY", KEY)
        monkeypatch.setenv("SFTMIX_LLM_BASE_URL", srv.base_url)
        monkeypatch.setenv("SFTMIX_LLM_CACHE", str(tmp_path / "cache"))
        ids = _judge_input(tmp_path / "in.parquet", 4)
        assert cli.main(["judge", str(tmp_path / "in.parquet"), "-o", str(tmp_path / "out.parquet")]) == 0
        assert srv.count(403) == 1 and srv.count(400) == 1 and srv.count(200) == 2
        assert KEY in json.dumps(openai_server._error("x", "y"))  # the server really echoes it

        # the same errors seen through the client directly, retryable ones included
        more = [Fault("server_error", status=500, match="five hundred", count=None),
                Fault("rate_limit", match="storm", count=None, retry_after=0.01)]
        srv.faults.extend(more)
        client = make_client(srv, tmp_path, cache_dir=str(tmp_path / "cache"), max_retries=1, api_key=None)
        failures = gather(client, ["Question 1?", "Question 2?", "five hundred", "storm"])
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["kept"] == 2 and summary["dropped"] == {"http_400": 1, "http_403": 1}
    assert "warning" not in captured.err  # the endpoint answered two of four: no endpoint-wide problem
    assert [f.reason for f in failures] == ["http_403", "http_400", "llm_retries_exhausted", "llm_retries_exhausted"]
    for failure in failures:
        assert KEY not in failure.detail and "SECRET" not in failure.detail
    assert "***" in failures[0].detail  # the echoed key was there, and was redacted
    assert KEY not in captured.out and KEY not in captured.err
    assert KEY not in caplog.text and all(KEY not in str(r.args) for r in caplog.records)
    assert len(cache_entries(tmp_path / "cache")) == 2
    out_files = [tmp_path / "out.parquet", tmp_path / "out.rejected.parquet", *cache_files(tmp_path / "cache")]
    for path in out_files:
        assert KEY.encode() not in path.read_bytes(), path
    for path in out_files[:2]:
        assert KEY not in json.dumps(pq.read_table(path).to_pylist()), path
    assert sorted(pq.read_table(tmp_path / "out.parquet").column("id").to_pylist()) == sorted(ids[0:1] + ids[3:4])


def test_an_answer_the_server_stopped_part_way_is_asked_again_and_never_cached(tmp_path):
    stopped = {"n": 0}

    def responder(messages, body):
        text = messages[-1]["content"]
        if text == "filtered":
            return Reply("Sure! Step 1", finish_reason="content_filter")
        stopped["n"] += 1
        if stopped["n"] <= 2:  # DeepSeek's "inference system's resources ran out": partial content
            return Reply("Sure! Step 1: mix the flour and", finish_reason="insufficient_system_resource")
        return "Sure! Step 1: mix the flour and water."

    with serve_openai(responder=responder) as srv:
        client = make_client(srv, tmp_path, max_retries=3)
        async def both():
            return await client.complete(user("bake")), await client.complete(user("filtered"))

        again, filtered = run(client, both())
    assert again.content == "Sure! Step 1: mix the flour and water." and client.stats.retries == 2
    assert filtered == Failure("incomplete_generation", "finish_reason=content_filter")
    assert [entry["finish_reason"] for entry in cache_entries(tmp_path / "cache")] == ["stop"]
    # a cache an older sftmix wrote, holding a partial answer: asked again
    [log] = cache_files(tmp_path / "cache")
    log.write_bytes(log.read_bytes().replace(b'"finish_reason": "stop"', b'"finish_reason": "insufficient_system_resource"'))
    with serve_openai() as srv:
        client = make_client(srv, tmp_path)
        assert run(client, client.complete(user("bake"))).content == "echo: bake" and srv.count() == 1
    with serve_openai(responder=lambda *_: Reply("cut", finish_reason="insufficient_system_resource")) as srv:
        client = make_client(srv, tmp_path, max_retries=1, cache_dir=str(tmp_path / "other"))
        assert run(client, client.complete(user("bake"))) == Failure("llm_retries_exhausted",
                                                                     "finish_reason=insufficient_system_resource")


def test_the_cache_keeps_deployments_behind_one_host_apart_and_no_user_info(tmp_path):
    from sftmix.llm import endpoint_key

    assert endpoint_key("http://127.0.0.1:8080/model-a/v1") != endpoint_key("http://127.0.0.1:8080/model-b/v1")
    # the keys caches were written with stay: an SDK-default /v1 and trailing slashes name one endpoint
    assert {endpoint_key(url) for url in ("https://api.deepseek.com", "https://api.deepseek.com/v1",
                                         "https://api.deepseek.com/v1/", "https://API.deepseek.com/")} == {"api.deepseek.com"}
    assert endpoint_key("http://user:sk-secret@127.0.0.1:8080/v1") == "127.0.0.1:8080"
    client = LLMClient(LLMSettings(base_url="http://127.0.0.1:8080/gw/v1", cache_dir=str(tmp_path)))
    assert client.host == "127.0.0.1:8080/gw"  # what keys its cache, and is written in each entry
    with pytest.raises(ValueError, match="holds credentials") as refused:  # the key goes in a header only
        LLMSettings(base_url="http://user:sk-secret@127.0.0.1:8080/gw/v1")
    assert "sk-secret" not in str(refused.value)
