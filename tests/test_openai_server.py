"""The local OpenAI-compatible test server (tests/openai_server.py), seen through the real `openai` client."""

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from openai_server import Fault, RateLimit, Reply, count_tokens, echo, json_responder, scripted, serve_openai

MSGS = [{"role": "system", "content": "You are a strict judge."}, {"role": "user", "content": "Rate this: hello"}]


def client(srv, **kw):
    kw.setdefault("timeout", 5.0)
    return openai.OpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=0, **kw)


def ask(c, text="Rate this: hello", **kw):
    return c.chat.completions.create(model="test-model", messages=[MSGS[0], {"role": "user", "content": text}], **kw)


def test_plain_completion_and_usage():
    with serve_openai() as srv:
        c = client(srv)
        r = c.chat.completions.create(model="deepseek-chat", messages=MSGS)
        assert r.object == "chat.completion" and r.model == "deepseek-chat" and r.id.startswith("chatcmpl-")
        assert r.choices[0].message.role == "assistant"
        assert r.choices[0].message.content == "echo: Rate this: hello"
        assert r.choices[0].finish_reason == "stop"
        u = r.usage
        assert u.prompt_tokens == count_tokens("You are a strict judge.") + count_tokens("Rate this: hello") == 10
        assert u.completion_tokens == count_tokens("echo: Rate this: hello") == 6
        assert u.total_tokens == 16
        # DeepSeek extension fields: readable as attributes and via model_extra
        assert u.prompt_cache_hit_tokens == 0 and u.model_extra["prompt_cache_miss_tokens"] == 10
        assert u.prompt_tokens_details.cached_tokens == 0

        # same system prompt, new user message: the system prompt's tokens hit the cache
        u2 = ask(c, "Rate this: something else").usage
        assert u2.model_extra["prompt_cache_hit_tokens"] == count_tokens(MSGS[0]["content"]) == 6
        assert u2.prompt_cache_hit_tokens + u2.prompt_cache_miss_tokens == u2.prompt_tokens
        # identical repeat: everything hits
        u3 = c.chat.completions.create(model="deepseek-chat", messages=MSGS).usage
        assert u3.prompt_cache_hit_tokens == u3.prompt_tokens == 10

        assert srv.count() == srv.count(200) == 3
        assert [p for p, _, _ in srv.requests] == ["/v1/chat/completions"] * 3
        assert srv.requests[0].body_hash == srv.requests[2].body_hash != srv.requests[1].body_hash
        assert srv.bodies[0]["messages"] == MSGS and srv.auth_headers == ["Bearer sk-test"] * 3


def test_base_url_without_v1_json_mode_and_max_tokens():
    with serve_openai(responder=json_responder({"score": 4, "why": "ok"})) as srv:
        c = openai.OpenAI(base_url=srv.base_url.removesuffix("/v1"), api_key="sk-test", max_retries=0)
        r = ask(c, response_format={"type": "json_object"})
        assert json.loads(r.choices[0].message.content) == {"score": 4, "why": "ok"}
        assert srv.requests[0].path == "/chat/completions"
        assert srv.bodies[0]["response_format"] == {"type": "json_object"}
        r = ask(c, max_tokens=3)
        assert r.choices[0].finish_reason == "length" and r.choices[0].message.content == '{"score'
        assert r.usage.completion_tokens == 3


def test_scripted_responder_and_reply():
    responder = scripted({"alpha": "A!", "beta": Reply("B...", finish_reason="length"),
                          "gamma": lambda m, b: f"model={b['model']}"})
    with serve_openai(responder=responder) as srv:
        c = client(srv)
        assert ask(c, "say alpha").choices[0].message.content == "A!"
        r = ask(c, "say beta")
        assert (r.choices[0].message.content, r.choices[0].finish_reason) == ("B...", "length")
        assert ask(c, "say gamma").choices[0].message.content == "model=test-model"
        assert ask(c, "nothing").choices[0].message.content == echo([{"role": "user", "content": "nothing"}], {})


def test_auth_required():
    with serve_openai() as srv:
        req = urllib.request.Request(srv.base_url + "/chat/completions", method="POST",
                                     data=json.dumps({"model": "m", "messages": MSGS}).encode(),
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as ei:
            urllib.request.urlopen(req, timeout=5)
        assert ei.value.code == 401 and json.load(ei.value)["error"]["code"] == "invalid_api_key"
        c = openai.OpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=0,
                          default_headers={"Authorization": "Bearer"})  # empty token
        with pytest.raises(openai.AuthenticationError):
            ask(c)
        assert srv.count(401) == 2 and srv.auth_headers == [None, "Bearer"]


def test_bad_request_body():
    with serve_openai() as srv:
        c = client(srv)
        with pytest.raises(openai.BadRequestError):
            c.chat.completions.create(model="m", messages=[])
        with pytest.raises(openai.BadRequestError):
            c.chat.completions.create(model="m", messages=MSGS, response_format={"type": "xml"})
        assert srv.count(400) == 2


def test_rate_limit_then_count_runs_out():
    with serve_openai(faults=[Fault("rate_limit", count=2, retry_after=7)]) as srv:
        c = client(srv)
        for _ in range(2):
            with pytest.raises(openai.RateLimitError) as ei:
                ask(c)
            assert ei.value.status_code == 429 and ei.value.response.headers["retry-after"] == "7"
            assert ei.value.code == "rate_limit_exceeded"
        # same body: count exhausted -> succeeds; another body has its own count
        assert ask(c).choices[0].message.content == "echo: Rate this: hello"
        with pytest.raises(openai.RateLimitError):
            ask(c, "another prompt")
        assert [s for _, _, s in srv.requests] == [429, 429, 200, 429]
        assert srv.fired("rate_limit") == 3


def test_client_retries_consume_the_count():
    # the client's own retry loop sees the count go down (Retry-After 0.01 s keeps it fast)
    with serve_openai(faults=[Fault("rate_limit", count=2, retry_after=0.01)]) as srv:
        c = openai.OpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=2)
        assert ask(c).choices[0].finish_reason == "stop"
        assert [s for _, _, s in srv.requests] == [429, 429, 200]
        assert len({h for _, h, _ in srv.requests}) == 1


def test_rate_limit_of_requests_per_window():
    with serve_openai(rate_limit=RateLimit(requests=2, per_s=0.5)) as srv:
        c = client(srv)
        ask(c, "one"), ask(c, "two")
        with pytest.raises(openai.RateLimitError) as ei:
            ask(c, "three")
        assert ei.value.response.headers["retry-after"] == "0.5" and ei.value.code == "rate_limit_exceeded"
        time.sleep(0.5)  # the window has passed: the refused request took no slot
        assert ask(c, "three").choices[0].message.content == "echo: three"
        assert [s for _, _, s in srv.requests] == [200, 200, 429, 200]


@pytest.mark.parametrize("status", [500, 503])
def test_server_error(status):
    with serve_openai(faults=[{"kind": "server_error", "status": status}]) as srv:
        c = client(srv)
        with pytest.raises(openai.InternalServerError) as ei:
            ask(c)
        assert ei.value.status_code == status
        assert ask(c).choices[0].message.content.startswith("echo:")


def test_slow_exceeds_client_timeout():
    with serve_openai(faults=[Fault("slow", seconds=3)]) as srv:
        c = client(srv, timeout=0.3)
        t0 = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            ask(c)
        assert time.monotonic() - t0 < 1.5
        assert ask(c).choices[0].finish_reason == "stop"  # fired once for this body
    # close() cut the 3 s sleep short: that request never got a response
    assert srv.requests[0].status == 0 and srv.requests[1].status == 200


def test_malformed_json():
    with serve_openai(faults=[Fault("malformed")]) as srv:
        c = client(srv)
        with pytest.raises(json.JSONDecodeError):  # openai 3.x surfaces the raw decode error
            ask(c)
        assert srv.count(200) == 1
        assert ask(c).choices[0].finish_reason == "stop"


def test_drop_connection():
    with serve_openai(faults=[Fault("drop_connection", match="drop me")]) as srv:
        c = client(srv)
        assert ask(c, "fine").choices[0].finish_reason == "stop"  # match is a substring filter
        with pytest.raises(openai.APIConnectionError):
            ask(c, "please drop me")
        assert ask(c, "please drop me").choices[0].finish_reason == "stop"
        assert [s for _, _, s in srv.requests] == [200, 0, 200]


def test_truncated_and_bad_verdict():
    faults = [Fault("truncated", match="long"), Fault("bad_verdict", match="judge", count=None)]
    with serve_openai(faults=faults) as srv:
        c = client(srv)
        r = ask(c, "a long answer please")
        assert r.choices[0].finish_reason == "length"
        full = "echo: a long answer please"
        assert r.choices[0].message.content == full[: len(full) // 2]
        assert ask(c, "a long answer please").choices[0].message.content == full
        for _ in range(2):  # count=None: fires every time
            r = ask(c, "judge this")
            assert "[RESULT]" not in r.choices[0].message.content and r.choices[0].finish_reason == "stop"
    with serve_openai(faults=[Fault("bad_verdict", text="Score: great")]) as srv:
        assert ask(client(srv)).choices[0].message.content == "Score: great"


def test_faults_in_sequence():
    with serve_openai(faults=[Fault("server_error", status=503), Fault("rate_limit", retry_after=1)]) as srv:
        c = client(srv)
        with pytest.raises(openai.InternalServerError):
            ask(c)
        with pytest.raises(openai.RateLimitError):
            ask(c)
        assert ask(c).choices[0].finish_reason == "stop"


def test_concurrency_does_not_serialize():
    n = 32
    with serve_openai(delay=0.2) as srv:
        c = openai.OpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=0, timeout=5.0)
        t0 = time.monotonic()
        with ThreadPoolExecutor(n) as pool:
            out = list(pool.map(lambda i: ask(c, f"request {i}").choices[0].message.content, range(n)))
        elapsed = time.monotonic() - t0
        assert out == [f"echo: request {i}" for i in range(n)]
        assert elapsed < 2.0, elapsed
        assert srv.max_concurrent >= 16 and srv.count(200) == n


def test_standalone_process(tmp_path):
    port_file, log = tmp_path / "port", tmp_path / "requests.jsonl"
    script = Path(__file__).with_name("openai_server.py")
    proc = subprocess.Popen([sys.executable, str(script), "--port-file", str(port_file), "--delay", "0.01",
                             "--responder", "echo", "--request-log", str(log)])
    try:
        deadline = time.monotonic() + 5
        while not port_file.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        port = int(port_file.read_text())
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-test", max_retries=0, timeout=5)
        assert ask(c, "from afar").choices[0].message.content == "echo: from afar"
        entry = json.loads(log.read_text().splitlines()[0])
        assert entry["status"] == 200 and entry["body"]["messages"][-1]["content"] == "from afar"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
