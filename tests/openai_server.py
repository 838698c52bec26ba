"""A real, local OpenAI-compatible chat-completions server for tests (stdlib only).

In-process:

    with serve_openai(responder=echo, faults=[Fault("rate_limit", count=2)], delay=0.0,
                      rate_limit=RateLimit(requests=4, per_s=1.0)) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=0)
        ...
        srv.count(429), srv.max_concurrent, srv.bodies, srv.auth_headers

Standalone (the server outlives a SIGKILLed client):

    python tests/openai_server.py --port-file PATH [--port N] [--delay S] [--responder echo|json]
        [--json TEXT] [--faults JSON] [--request-log PATH]

writes its port to PATH (atomically) once listening, then serves until SIGTERM/SIGINT.
`--request-log` appends one JSON line {"path", "hash", "status", "body"} per finished request.

Endpoints: POST /v1/chat/completions and POST /chat/completions (base_url with or without /v1),
GET /v1/models and /models. Everything else is a 404 JSON error.

Request handling, in order:
  1. `Authorization: Bearer <non-empty>` required, else 401 {"error": {"code": "invalid_api_key", ...}}.
  2. Body must be a JSON object with `model` (non-empty str) and `messages` (non-empty list of objects with
     a str `role`; `content` str, list of {"type": "text", "text": ...} parts, or null); `response_format`,
     if given, must have type text/json_object/json_schema. Otherwise 400 invalid_request_error.
  3. With a `rate_limit`, a request past its `requests` in the last `per_s` seconds is answered 429 with
     `Retry-After: <per_s>`, as a gateway limiting the account's request rate does (it takes no slot).
  4. The first fault rule (in list order) that matches and still has firings left for this body fires.
  5. `delay` seconds pass (server-wide), then the responder's reply is sent as a ChatCompletion.

ServerHandle.requests: RequestRecord(path, body_hash, status) per POST in arrival order; status is None while in
flight, set just before the response is written (so it is final once the client has the response), 0 when no
response was sent (drop_connection, or a slow/delayed request cut short by close()/SIGTERM).

Token counting (deterministic approximation): tokens(text) = number of regex matches of
r"[<ideograph or kana>]|\\w+|[^\\w\\s]" (each Chinese or Japanese character, as real tokenizers count
them about one a character, words and single punctuation marks). prompt_tokens = sum of tokens(content) over all messages.
`max_tokens` / `max_completion_tokens` cut the reply to that many tokens with finish_reason "length".

Prompt cache (DeepSeek-style, `usage.prompt_cache_hit_tokens` / `prompt_cache_miss_tokens`, mirrored in
`usage.prompt_tokens_details.cached_tokens`): the server remembers every leading run of whole messages of
each request it answered with 200. A request's hit tokens = prompt tokens of its longest leading run of
messages seen before (so the first request with a new system prompt gets 0; a repeat of the same system
prompt + a new user message hits exactly the system prompt's tokens; an identical repeat hits everything).
miss = prompt_tokens - hit. Order-dependent only between requests that are in flight at the same time.

Faults (`Fault` or an equivalent dict): `count` firings per distinct request body (sha256 of the
canonical JSON body), then that body goes through; retries of the same request thus see the count go down.
`count=None` fires forever. Kinds:
  rate_limit       429, header `Retry-After: <retry_after>` (default 1) (+ OpenAI-style error JSON)
  server_error     `status` (default 500; 502/503, 408/409 fine) with error JSON (`text` if given), and
                   `Retry-After` when `retry_after` is given
  slow             sleeps `seconds` (default 5.0) before answering normally (close() cuts the sleep short)
  malformed        200, application/json, body = `text` if given else the first half of the real JSON
  drop_connection  closes the socket without any response (client sees a disconnect)
  truncated        200, finish_reason "length", content = `text` if given else the first half (by chars)
                   of the responder's content
  bad_verdict      200, finish_reason "stop", content replaced by `text` (default: a judge reply without
                   any "[RESULT] n")
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import traceback
from collections import namedtuple
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator, Mapping

__all__ = [
    "Reply", "Fault", "RateLimit", "RequestRecord", "ServerHandle", "serve_openai",
    "echo", "json_responder", "scripted", "count_tokens", "last_user_message",
]

FAULT_KINDS = ("rate_limit", "server_error", "slow", "malformed", "drop_connection", "truncated", "bad_verdict")
DEFAULT_BAD_VERDICT = "Feedback: The response is reasonable and mostly helpful, but I will not give a score."

_TOKEN_RE = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]|" + r"\w+|[^\w\s]")


# --------------------------------------------------------------------------------------------- helpers

def count_tokens(text: str | None) -> int:
    """The server's deterministic token count: ideographs and kana, words and single punctuation marks."""
    return len(_TOKEN_RE.findall(text or ""))


def _cut_tokens(text: str, n: int) -> str:
    """`text` up to the end of its n-th token."""
    if n <= 0:
        return ""
    for i, m in enumerate(_TOKEN_RE.finditer(text), 1):
        if i == n:
            return text[: m.end()]
    return text


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict))


def last_user_message(messages: list[dict]) -> str:
    """Text of the last `user` message ("" if none)."""
    for m in reversed(messages):
        if m.get("role") == "user":
            return _content_text(m.get("content"))
    return ""


def _body_hash(body: Any, raw: bytes) -> str:
    if body is None:
        data = raw
    else:
        data = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(data).hexdigest()[:16]


def _prefix_key(messages: list[dict]) -> str:
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()


# ------------------------------------------------------------------------------------------ responders

@dataclass
class Reply:
    """What a responder may return instead of a plain string."""

    content: str | None = ""
    finish_reason: str = "stop"
    reasoning_content: str | None = None  # DeepSeek-reasoner style extra field on the message, if set
    refusal: str | None = None  # OpenAI's refusal text on the message (with `content` None), if set


Responder = Callable[[list, dict], "str | Reply"]


def echo(messages: list[dict], body: dict) -> str:
    """Default responder: "echo: " + the last user message."""
    return "echo: " + last_user_message(messages)


def json_responder(obj: Any) -> Responder:
    """Always answers json.dumps(obj); `obj` may also be a callable (messages, body) -> JSON-able value."""
    def respond(messages: list[dict], body: dict) -> str:
        value = obj(messages, body) if callable(obj) else obj
        return json.dumps(value, ensure_ascii=False)
    return respond


def scripted(mapping: Mapping[str, Any], default: Responder = echo) -> Responder:
    """First key (insertion order) that is a substring of the last user message picks the reply.

    Values: str, Reply, or a responder callable (messages, body) -> str | Reply. No match -> `default`.
    """
    items = list(mapping.items())

    def respond(messages: list[dict], body: dict):
        text = last_user_message(messages)
        for key, value in items:
            if key in text:
                return value(messages, body) if callable(value) else value
        return default(messages, body)
    return respond


# ---------------------------------------------------------------------------------------------- faults

@dataclass
class Fault:
    """A deterministic fault rule; see the module docstring for the kinds."""

    kind: str
    match: str | None = None          # substring of the last user message; None = every request
    count: int | None = 1             # firings per distinct request body; None = always
    status: int | None = None         # server_error: 500 (default), 502, 503...
    retry_after: float | None = None  # Retry-After header (seconds): rate_limit's (default 1), server_error's
    seconds: float = 5.0              # slow: server-side sleep before answering
    text: str | None = None           # bad_verdict / truncated content, malformed / server_error raw body

    def __post_init__(self):
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")

    def matches(self, last_user: str) -> bool:
        return self.match is None or self.match in last_user


def _as_fault(f: Fault | Mapping) -> Fault:
    return f if isinstance(f, Fault) else Fault(**f)


@dataclass
class RateLimit:
    """At most `requests` requests in any `per_s` seconds (a sliding window); the rest are refused 429."""

    requests: int
    per_s: float = 1.0


RequestRecord = namedtuple("RequestRecord", "path body_hash status")
RequestRecord.__doc__ = "One request: status is None while in flight and 0 when no response was sent."


# ---------------------------------------------------------------------------------------------- state

class ServerHandle:
    """Live view of a running server. All lists are in arrival order and safe to read from any thread."""

    def __init__(self, responder: Responder, faults, delay: float, rate_limit: RateLimit | None = None):
        self.responder = responder
        self.faults: list[Fault] = [_as_fault(f) for f in (faults or [])]
        self.delay = float(delay)
        self.rate_limit = rate_limit
        self._admitted: list[float] = []  # when the requests within the rate limit's window came
        self.base_url = ""  # set once listening
        self.port = 0
        self.request_log: str | None = None
        self._lock = threading.Lock()
        self._requests: list[RequestRecord] = []
        self._bodies: list[Any] = []
        self._auth: list[str | None] = []
        self._fired: dict[tuple[int, str], int] = {}
        self._seen_prefixes: set[str] = set()
        self._in_flight = 0
        self._max_concurrent = 0
        self._closing = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # public read-only views
    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    @property
    def bodies(self) -> list[Any]:
        """Parsed JSON bodies (None for an unparseable body)."""
        with self._lock:
            return list(self._bodies)

    @property
    def auth_headers(self) -> list[str | None]:
        """Raw Authorization header of each request (None if absent)."""
        with self._lock:
            return list(self._auth)

    @property
    def max_concurrent(self) -> int:
        """Peak number of requests in flight at once (body read -> response written)."""
        with self._lock:
            return self._max_concurrent

    def count(self, status: int | None = None) -> int:
        """Number of requests, or of requests that finished with `status` (0 = no response sent)."""
        with self._lock:
            return sum(1 for r in self._requests if status is None or r.status == status)

    def fired(self, kind: str | None = None) -> int:
        """How many times fault rules (of `kind`) fired."""
        with self._lock:
            return sum(n for (i, _), n in self._fired.items() if kind is None or self.faults[i].kind == kind)

    def close(self) -> None:
        self._closing.set()
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            conns = list(self._connections)
        for c in conns:  # idle keep-alive connections: unblock their handler threads
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "ServerHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # internals used by the handler
    def _arrive(self, path: str, body: Any, body_hash: str, auth: str | None) -> int:
        with self._lock:
            self._requests.append(RequestRecord(path, body_hash, None))
            self._bodies.append(body)
            self._auth.append(auth)
            self._in_flight += 1
            self._max_concurrent = max(self._max_concurrent, self._in_flight)
            return len(self._requests) - 1

    def _finish(self, idx: int, status: int) -> None:
        with self._lock:
            if self._requests[idx].status is not None:
                return  # already recorded
            rec = self._requests[idx]._replace(status=status)
            self._requests[idx] = rec
            self._in_flight -= 1
            body = self._bodies[idx]
        if self.request_log:
            line = json.dumps({"path": rec.path, "hash": rec.body_hash, "status": status, "body": body})
            with self._lock, open(self.request_log, "a", encoding="utf-8") as f:
                f.write(line + "\n")

    def _admit(self) -> bool:
        """Whether the rate limit lets one more request in now (and counts it if so)."""
        if self.rate_limit is None:
            return True
        with self._lock:
            now = time.monotonic()
            self._admitted = [t for t in self._admitted if now - t < self.rate_limit.per_s]
            if len(self._admitted) >= self.rate_limit.requests:
                return False
            self._admitted.append(now)
            return True

    def _take_fault(self, body_hash: str, last_user: str) -> Fault | None:
        with self._lock:
            for i, f in enumerate(self.faults):
                if not f.matches(last_user):
                    continue
                n = self._fired.get((i, body_hash), 0)
                if f.count is None or n < f.count:
                    self._fired[(i, body_hash)] = n + 1
                    return f
        return None

    def _cache_hit(self, messages: list[dict], token_counts: list[int]) -> int:
        keys = [_prefix_key(messages[: k + 1]) for k in range(len(messages))]
        with self._lock:
            hit_len = 0
            for k, key in enumerate(keys):
                if key in self._seen_prefixes:
                    hit_len = k + 1
                else:
                    break
            self._seen_prefixes.update(keys)
        return sum(token_counts[:hit_len])

    def _sleep(self, seconds: float) -> bool:
        """Interruptible sleep; False if the server is closing."""
        return not self._closing.wait(seconds) if seconds > 0 else not self._closing.is_set()


# --------------------------------------------------------------------------------------------- handler

def _error(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _validate(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return "you must provide a model parameter"
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return "'messages' must be a non-empty array"
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            return f"messages[{i}] must be an object with a string 'role'"
        c = m.get("content")
        if c is not None and not isinstance(c, (str, list)):
            return f"messages[{i}].content must be a string, an array of parts or null"
    rf = body.get("response_format")
    if rf is not None and (not isinstance(rf, dict) or rf.get("type") not in ("text", "json_object", "json_schema")):
        return "response_format.type must be one of text, json_object, json_schema"
    return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response sets Content-Length
    disable_nagle_algorithm = True
    state: ServerHandle  # set on the per-server subclass
    _idx: int | None = None  # index of the current request in state._requests

    def log_message(self, *args):  # quiet
        pass

    def setup(self):
        super().setup()
        with self.state._lock:
            self.state._connections.add(self.connection)

    def finish(self):
        with contextlib.suppress(OSError):
            super().finish()
        with self.state._lock:
            self.state._connections.discard(self.connection)

    def _send_json(self, status: int, obj: Any = None, raw: bytes | None = None, headers: dict | None = None):
        data = raw if raw is not None else json.dumps(obj).encode()
        if self._idx is not None:  # record before the client can see the response
            self.state._finish(self._idx, status)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _route(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/")

    def do_GET(self):
        path = self._route()
        if path in ("/v1/models", "/models"):
            self._send_json(200, {"object": "list", "data": [
                {"id": "test-model", "object": "model", "created": 0, "owned_by": "sftmix-tests"}]})
        else:
            self._send_json(404, _error(f"unknown path {path}", "invalid_request_error", "not_found"))

    def do_POST(self):
        path = self._route()
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        st = self.state
        body_hash = _body_hash(body, raw)
        self._idx = st._arrive(path, body, body_hash, self.headers.get("Authorization"))
        try:
            if path in ("/v1/chat/completions", "/chat/completions"):
                self._chat(body, body_hash)
            else:
                self._send_json(404, _error(f"unknown path {path}", "invalid_request_error", "not_found"))
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            pass
        finally:
            st._finish(self._idx, 0)  # no-op unless no response was sent
            self._idx = None

    def _rate_limited(self, retry_after: float) -> int:
        text = str(int(retry_after)) if float(retry_after).is_integer() else str(retry_after)
        self._send_json(429, _error("Rate limit reached for requests. Please try again later.",
                                    "requests", "rate_limit_exceeded"), headers={"Retry-After": text})
        return 429

    def _chat(self, body: Any, body_hash: str) -> int:
        st = self.state
        auth = self.headers.get("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            self._send_json(401, _error("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"))
            return 401
        problem = _validate(body)
        if problem:
            self._send_json(400, _error(problem, "invalid_request_error", "invalid_request"))
            return 400
        if not st._admit():
            return self._rate_limited(st.rate_limit.per_s)
        messages = body["messages"]
        last_user = last_user_message(messages)
        fault = st._take_fault(body_hash, last_user)

        if fault is not None:
            if fault.kind == "rate_limit":
                return self._rate_limited(1 if fault.retry_after is None else fault.retry_after)
            if fault.kind == "server_error":
                code = fault.status or 500
                headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
                self._send_json(code, _error("The server had an error while processing your request.",
                                             "server_error", None),
                                raw=None if fault.text is None else fault.text.encode(), headers=headers)
                return code
            if fault.kind == "drop_connection":
                st._finish(self._idx, 0)
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return 0
            if fault.kind == "slow" and not st._sleep(fault.seconds):
                self.close_connection = True
                return 0

        if not st._sleep(st.delay):
            self.close_connection = True
            return 0

        try:
            reply = st.responder(messages, body)
        except Exception as exc:  # a broken test responder: say so instead of dropping the connection
            traceback.print_exc()
            self._send_json(500, _error(f"responder raised {exc!r}", "server_error", "responder_error"))
            return 500
        if not isinstance(reply, Reply):
            reply = Reply(content=str(reply))
        content, finish = reply.content, reply.finish_reason
        if fault is not None and fault.kind == "truncated":
            content = fault.text if fault.text is not None else (content or "")[: len(content or "") // 2]
            finish = "length"
        elif fault is not None and fault.kind == "bad_verdict":
            content = fault.text if fault.text is not None else DEFAULT_BAD_VERDICT
            finish = "stop"
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(limit, int) and content and count_tokens(content) > limit:
            content, finish = _cut_tokens(content, limit), "length"

        token_counts = [count_tokens(_content_text(m.get("content"))) for m in messages]
        prompt_tokens = sum(token_counts)
        completion_tokens = count_tokens(content) + count_tokens(reply.reasoning_content) + count_tokens(reply.refusal)
        hit = st._cache_hit(messages, token_counts)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if reply.reasoning_content is not None:
            message["reasoning_content"] = reply.reasoning_content
        if reply.refusal is not None:
            message["refusal"] = reply.refusal
        created = int(time.time())
        resp = {
            "id": f"chatcmpl-{body_hash[:12]}{created:x}",
            "object": "chat.completion",
            "created": created,
            "model": body["model"],
            "system_fingerprint": "fp_sftmix_test",
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": hit},
                "prompt_cache_hit_tokens": hit,
                "prompt_cache_miss_tokens": prompt_tokens - hit,
            },
        }
        data = json.dumps(resp).encode()
        if fault is not None and fault.kind == "malformed":
            data = fault.text.encode() if fault.text is not None else data[: len(data) // 2]
        self._send_json(200, raw=data)
        return 200


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # bursts of new connections must not be reset
    daemon_threads = True
    block_on_close = False  # idle keep-alive handler threads must not block close()
    allow_reuse_address = True


def _start(responder: Responder | None, faults, delay: float, port: int = 0,
           rate_limit: RateLimit | None = None) -> ServerHandle:
    state = ServerHandle(responder or echo, faults, delay, rate_limit)
    handler = type("_BoundHandler", (_Handler,), {"state": state})
    server = _Server(("127.0.0.1", port), handler)
    state._server = server
    state.port = server.server_address[1]
    state.base_url = f"http://127.0.0.1:{state.port}/v1"
    state._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                     name=f"openai-server-{state.port}", daemon=True)
    state._thread.start()
    return state


@contextlib.contextmanager
def serve_openai(responder: Responder | None = None, faults: list[Fault | dict] | None = None,
                 delay: float = 0.0, rate_limit: RateLimit | None = None) -> Iterator[ServerHandle]:
    """Run the server in a daemon thread for the duration of the `with` block."""
    handle = _start(responder, faults, delay, rate_limit=rate_limit)
    try:
        yield handle
    finally:
        handle.close()


# ------------------------------------------------------------------------------------------ standalone

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--port-file", required=True, help="file to write the listening port to")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--responder", choices=("echo", "json"), default="echo")
    ap.add_argument("--json", default="{}", help="JSON value answered by --responder json")
    ap.add_argument("--faults", default=None, help="JSON list of fault dicts")
    ap.add_argument("--request-log", default=None, help="append one JSON line per finished request")
    args = ap.parse_args(argv)

    responder = echo if args.responder == "echo" else json_responder(json.loads(args.json))
    faults = json.loads(args.faults) if args.faults else None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    handle = _start(responder, faults, args.delay, args.port)
    handle.request_log = args.request_log
    tmp = f"{args.port_file}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(str(handle.port))
    os.replace(tmp, args.port_file)
    try:
        while not stop.wait(0.2):
            pass
    finally:
        handle.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
