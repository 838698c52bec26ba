"""The only place that talks to an LLM endpoint (DeepSeek or any OpenAI-compatible server).

- Concurrency limit (asyncio semaphore) and a requests/tokens-per-minute limiter.
- Retries with exponential backoff and full jitter on 429, 5xx, 408, 409 (as the SDK), timeouts,
  dropped connections and malformed bodies, honouring `Retry-After` (a 429 that has one, or that
  comes while the endpoint answers other rows, pauses every request);
  other errors are per-request failures, never fatal to a run, but for a refusal of the account
  itself (402, DeepSeek's "Insufficient Balance", and OpenAI's 429 `insufficient_quota`; 401 once the
  endpoint has answered, the key revoked, or at a generator's judge), which stops new requests as the
  budget cap does (`AccountRefused`).
- Requests go out through aiohttp directly, not through the `openai` SDK: the SDK's request
  building (httpx models, URL parsing, an idempotency key from os.urandom, typed options) cost
  3.5 ms of CPU per request against 0.5 ms for the same POST through aiohttp (bench/llm.py's
  server, 32 in flight), which capped a generator at about 250 requests/s on one core. The SDK
  stays the reference the test server is checked against (tests/test_openai_server.py).
- A content-addressed response cache on disk, keyed by (endpoint host, model, messages, sampling
  parameters); a finished request is never paid twice, across crashes and kills: each answer is one
  append to the run's own log, and a torn line is no answer.
- Token and cost accounting (prompt, completion, DeepSeek's prompt-cache-hit tokens) with a budget
  cap that stops new requests cleanly; a reply that leaves out its prompt or completion tokens is
  counted with the most its request could use in their place.
- The API key comes from the environment only and is never written, logged or put in an error.
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import json
import logging
import os
import random
import re
import threading
import time
from array import array
from collections import deque
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from itertools import islice
from pathlib import Path
from typing import Annotated, Awaitable, Callable, Iterable, Iterator, TypeVar
from urllib.parse import urlparse

import aiohttp
import jsonschema
import numpy as np
from aiohttp.helpers import get_env_proxy_for_url
from pydantic import ConfigDict, Field, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass
from yarl import URL

from sftmix.jsontext import loads

log = logging.getLogger("sftmix.llm")

DEFAULT_BASE_URL = "https://api.deepseek.com"
DEFAULT_MODEL = "deepseek-chat"
KEY_VARIABLES = ("SFTMIX_LLM_API_KEY", "DEEPSEEK_API_KEY")

Item = TypeVar("Item")
Result = TypeVar("Result")


class MissingAPIKey(Exception):
    def __init__(self, problem: str | None = None):
        super().__init__(problem or f"no LLM API key: set {KEY_VARIABLES[0]} (or {KEY_VARIABLES[1]})")


class RunStopped(Exception):
    """No new requests are sent for the rest of the run; finished work is kept, cached answers are
    still served. `reason`: the drop reason of each row left unasked."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class BudgetExhausted(RunStopped):
    """The run reached its cost cap."""

    def __init__(self, message: str):
        super().__init__("budget_exhausted", message)


class AccountRefused(RunStopped):
    """The endpoint refused the account, not one request: every request after it would be refused too."""


# Settings are checked for type and range where they are made (the manifest's load, the Dagster
# resource, the command line): `max_tokens: "4096"` or `requests_per_minute: 0` made every request
# fail inside the stage, each row a `malformed_generation` drop, with no request sent.
# A refused value is not quoted in the error's text: a base_url's credentials would be
# (`settings_problem` names the setting, and quotes any other value itself).
_CHECKED = ConfigDict(strict=True, extra="forbid", hide_input_in_errors=True)


@pydantic_dataclass(frozen=True, config=_CHECKED)
class Prices:
    """USD per million tokens. Defaults: DeepSeek-V3 (deepseek-chat) list prices, standard hours."""

    prompt_cache_hit: Annotated[float, Field(ge=0)] = 0.07
    prompt_cache_miss: Annotated[float, Field(ge=0)] = 0.27
    completion: Annotated[float, Field(ge=0)] = 1.10

    def cost(self, usage: "Usage") -> float:
        miss = usage.prompt_tokens - usage.prompt_cache_hit_tokens
        return (usage.prompt_cache_hit_tokens * self.prompt_cache_hit + miss * self.prompt_cache_miss
                + usage.completion_tokens * self.completion) / 1e6


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_cache_hit_tokens: int = 0

    def add(self, other: "Usage") -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.prompt_cache_hit_tokens += other.prompt_cache_hit_tokens


@dataclass
class Stats:
    """What a run cost: printed by the CLI, reported as Dagster metadata."""

    requests: int = 0  # requests sent (retries included)
    cache_hits: int = 0
    retries: int = 0
    failures: int = 0
    answered: int = 0  # requests the endpoint answered (cache hits not included)
    last_failure: str = ""  # `kind: detail` of the last request that failed for good
    refused: str = ""  # `reason: detail` of the endpoint's refusal of the account (`AccountRefused`), if it came
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    estimated_cost_answers: int = 0  # answers whose reply reported no usage: in cost_usd at the most they could cost
    empty_replies: int = 0  # replies with no text and no refusal (each asked again)

    def unanswered(self) -> str | None:
        """Why the endpoint left rows unanswered for a cause common to them all: it refused the
        account part way (no balance left, the key revoked), or it looks unusable (a wrong key or
        URL, a dead server): requests were sent and not one answered. Each row is still a counted
        drop; this names the cause."""
        if self.refused:
            return (f"the LLM endpoint refused the account after {self.answered} answered requests ({self.refused}): "
                    "no request was sent after it, and each row not yet asked is a counted drop; top up the balance "
                    "or renew the API key, then run again (the answers so far are cached)")
        if self.requests and not self.answered:
            if self.empty_replies == self.requests:  # it replied, each time with no text
                return (f"the LLM endpoint gave no text in any of {self.requests} replies (the last: {self.last_failure}): "
                        "check the server's model and its reasoning parser")
            return (f"the LLM endpoint answered none of {self.requests} requests (the last failure: "
                    f"{self.last_failure}): check SFTMIX_LLM_BASE_URL, SFTMIX_LLM_MODEL and the API key")
        return None

    def summary(self) -> dict:
        return {"requests": self.requests, "cache_hits": self.cache_hits, "prompt_tokens": self.usage.prompt_tokens,
                "completion_tokens": self.usage.completion_tokens,
                "prompt_cache_hit_tokens": self.usage.prompt_cache_hit_tokens, "cost_usd": round(self.cost_usd, 6),
                "estimated_cost_answers": self.estimated_cost_answers}

    @classmethod
    def total(cls, parts: list["Stats"]) -> "Stats":
        """The stats of several clients of one step (a generator and its judge) as one: their sums,
        and the last failure and refusal of the last part that had one."""
        out = cls()
        for part in parts:
            for name in ("requests", "cache_hits", "retries", "failures", "answered", "cost_usd", "estimated_cost_answers",
                         "empty_replies"):
                setattr(out, name, getattr(out, name) + getattr(part, name))
            out.usage.add(part.usage)
            out.last_failure = part.last_failure or out.last_failure
            out.refused = part.refused or out.refused
        return out


@dataclass
class Spending:
    """What the clients of one step (a generator and its judge) have spent and have on their way,
    against each one's budget: a step's budget is the most it spends in all."""

    cost_usd: float = 0.0
    committed_usd: float = 0.0
    # An endpoint's refusal of the account (`AccountRefused`), and that endpoint (`endpoint_key`):
    # no client of the step asks it again, nor does the generator ask its own (the judge refused,
    # every row after it would be the judge's drop); a judge asking another endpoint grades on.
    refusal: Failure | None = None
    refused_host: str | None = None


@pydantic_dataclass(frozen=True, config=_CHECKED)
class LLMSettings:
    base_url: str = DEFAULT_BASE_URL
    model: str = DEFAULT_MODEL
    temperature: float = 0.0
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    max_tokens: Annotated[int, Field(ge=1)] = 4096
    concurrency: Annotated[int, Field(ge=1)] = 16
    requests_per_minute: Annotated[float, Field(gt=0)] | None = None
    tokens_per_minute: Annotated[float, Field(gt=0)] | None = None
    timeout_s: Annotated[float, Field(gt=0)] = 120.0
    max_retries: Annotated[int, Field(ge=0)] = 6
    backoff_base_s: Annotated[float, Field(ge=0)] = 1.0
    backoff_max_s: Annotated[float, Field(ge=0)] = 60.0
    budget_usd: Annotated[float, Field(ge=0)] | None = None
    cache_dir: str = ".sftmix-llm-cache"
    # a reasoning model served without a reasoning parser whose chat template opens `<think>` in
    # the prompt: its replies start inside the thinking (`without_thinking`)
    reply_starts_in_thinking: bool = False
    prices: Prices = field(default_factory=Prices)

    def __post_init__(self):
        # The generator model's card: temperature 0 to 0.2, no repetition or frequency penalty.
        if not 0.0 <= self.temperature <= 0.2:
            raise ValueError(f"temperature {self.temperature} is outside the model card's range [0, 0.2]")
        url = urlparse(self.base_url)
        if url.scheme.lower() not in ("http", "https") or not url.hostname:
            # aiohttp's error for it is a connection error, retried with backoff for every row
            # (not quoted: it may hold a secret where the host should be)
            raise ValueError("base_url (the manifest's, or SFTMIX_LLM_BASE_URL) is not an http:// or https:// URL "
                             "with a host")
        if url.netloc.rpartition("@")[1]:
            # The URL is kept in stage settings and logs, and the client sends the key as a bearer
            # header, which aiohttp will not combine with URL credentials: refused, and not quoted.
            raise ValueError("base_url (the manifest's, or SFTMIX_LLM_BASE_URL) holds credentials "
                             f"(user:password@host): give the API key in {' or '.join(KEY_VARIABLES)} instead")

    @classmethod
    def from_config(cls, config: dict | None = None, **overrides) -> "LLMSettings":
        """Manifest `llm:` settings, then `SFTMIX_LLM_BASE_URL` / `SFTMIX_LLM_MODEL`, then overrides."""
        values = dict(config or {})
        if isinstance(values.get("prices"), dict):
            values["prices"] = Prices(**values["prices"])
        values.update(endpoint_from_env())
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _unfenced(text: str) -> str:
    """The text inside a Markdown fence (```json ... ```) when that is all the reply is, as endpoints
    that ignore `response_format` write JSON (paid for, and the object is there); else the text.
    String operations, not a pattern: a lazy one retried every run of spaces (8.6 s for 100 KB)."""
    body = text.strip()
    if len(body) < 6 or not (body.startswith("```") and body.endswith("```")):
        return text
    tag, newline, inside = body[3:-3].partition("\n")
    return inside if newline and (not tag.strip() or tag.strip().isalpha()) else text


def settings_problem(error: ValidationError) -> str:
    """One line for `LLMSettings`' refusal: the setting and the value it got (for a whole-settings
    check, such as credentials in base_url, only what is wrong). A key that is no setting is named
    without its value: it may be the API key itself, put in the manifest (`api_key: sk-...`)."""
    first = error.errors()[0]
    where = ".".join(map(str, ("prices", *first["loc"]) if error.title == "Prices" else first["loc"]))
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
        known = [f.name for f in fields(Prices if error.title == "Prices" else LLMSettings)]
        close = difflib.get_close_matches(str(first["loc"][-1]), known, n=1)
        hint = (f"did you mean {close[0]!r}?" if close else
                f"API keys are read from {' or '.join(KEY_VARIABLES)} only, never from a file")
        return f"{where}: not a setting ({hint})"
    return f"{where}: {message} (got {first['input']!r})" if where else message


def endpoint_from_env() -> dict:
    """`SFTMIX_LLM_BASE_URL` / `SFTMIX_LLM_MODEL` where set, as settings: they override the manifest's."""
    return {name: os.environ[variable] for variable, name in (("SFTMIX_LLM_BASE_URL", "base_url"),
                                                              ("SFTMIX_LLM_MODEL", "model")) if os.environ.get(variable)}


def _key_in_env() -> tuple[str, str] | None:
    """(variable, key) of the first key variable set, the key without the spaces and line ends around
    it (`export KEY=$(cat key.txt)` of a file saved with CRLF keeps the CR)."""
    for variable in KEY_VARIABLES:
        if os.environ.get(variable, "").strip():
            return variable, os.environ[variable].strip()
    return None


def api_key_from_env() -> str:
    found = _key_in_env()
    if found is None:
        raise MissingAPIKey()
    variable, key = found
    if not key.isascii() or not key.isprintable() or " " in key:  # it goes into an HTTP header as it is
        raise MissingAPIKey(f"{variable} holds a space, a control or a non-ASCII character: "
                            "it is not an API key as given (check how it was set)")
    return key


_THINKING = re.compile(r"\s*<think>.*?</think>\s*", re.DOTALL)


def without_thinking(content: str, reply_starts_in_thinking: bool) -> str:
    """The reply in a reasoning model's content. Served without a reasoning parser (vLLM's
    `--reasoning-parser`), it writes its thinking first, where DeepSeek's API returns it apart
    (`reasoning_content`): the reply follows a leading `<think>...</think>`. Where the chat template
    opens the block in the prompt (R1, QwQ; the `reply_starts_in_thinking` setting), the reply is what
    follows the first `</think>`, as vLLM's parser splits it, and without one there is none. Only
    where declared: any other model's answer may name the tag (code that strips R1's thinking)."""
    if reply_starts_in_thinking:
        return content.partition("</think>")[2].lstrip()
    if thinking := _THINKING.match(content):
        return content[thinking.end():]
    return content

# The finish_reason the client gives a refusal: no content but a `message.refusal` text, as OpenAI
# sends one. The model's answer, the same when asked again: cached, and its row's `model_refused` drop.
# (No content and no refusal is no answer: asked again, and an `empty_reply` drop if every try gave one.)
REFUSAL = "refusal"
# finish_reason of an answer the model ended itself ("length": cut at max_tokens, its callers' drop).
FINISHED = frozenset({"stop", "length", "tool_calls", "function_call", REFUSAL})
# The server stopped the answer part way for a reason of its own (DeepSeek: "the inference system's
# resources ran out"): asked again, as a 503 would be. Any other reason (e.g. "content_filter") is an
# `incomplete_generation`; neither is cached.
INTERRUPTED = frozenset({"insufficient_system_resource"})
# What other OpenAI-compatible servers call a natural stop (Together AI: "eos"; TGI < 2.2.1 and
# watsonx: "eos_token"; TGI: "stop_sequence"; proxies passing Anthropic's through: "end_turn"): read
# as "stop".
STOP_SYNONYMS = frozenset({"eos", "eos_token", "stop_sequence", "end_turn"})


@dataclass
class Completion:
    content: str
    finish_reason: str
    usage: Usage
    cached: bool = False
    # the `Usage` figures the reply left out; not cached, as a cached answer costs nothing
    unreported: tuple[str, ...] = field(default=(), compare=False)

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


@dataclass
class Failure:
    """A request that could not be answered; `reason` is a drop reason for the item."""

    reason: str
    detail: str = ""


class _RateLimiter:
    """Sliding one-minute window over requests and (estimated) tokens."""

    def __init__(self, requests_per_minute: float | None, tokens_per_minute: float | None):
        self.rpm, self.tpm = requests_per_minute, tokens_per_minute
        self.events: list[tuple[float, int]] = []
        self.lock = asyncio.Lock()

    async def acquire(self, tokens: int, paused: Callable[[], bool]) -> bool:
        """Take a slot for a request sent now, once the window has one; False, and no slot taken, when
        `paused()` by then: the slot is stamped when the request goes out, not before a pause."""
        if self.rpm is None and self.tpm is None:
            return not paused()
        async with self.lock:
            while True:
                if paused():
                    return False
                now = time.monotonic()
                self.events = [(t, n) for t, n in self.events if now - t < 60.0]
                requests_ok = self.rpm is None or len(self.events) < self.rpm
                tokens_ok = self.tpm is None or sum(n for _, n in self.events) + tokens <= self.tpm or not self.events
                if requests_ok and tokens_ok:
                    self.events.append((now, tokens))
                    return True
                await asyncio.sleep(max(0.01, 60.0 - (now - self.events[0][0])))


class _Places:
    """Where each cached answer is: request key -> (log number, offset, length), in 20 bytes an entry.

    A dict of (str, tuple) held 276 MiB for 10^6 answers, in every process that used the cache; here
    the first 64 bits of each key (request keys are sha256 hex) sit in a sorted numpy array beside
    the places, plus a dict of the latest entries, merged in when it holds `RECENT` of them. Two keys
    that share 64 bits cost one request asked again: `ResponseCache.get` checks the whole key on the
    line. A later entry for a key replaces the earlier one.
    """

    RECENT = 65_536
    OFFSET_BITS = 40  # a log of up to 1 TiB; the log's number above that

    def __init__(self):
        self.keys = np.empty(0, np.uint64)
        self.places = np.empty(0, np.uint64)  # log number << OFFSET_BITS | offset
        self.lengths = np.empty(0, np.uint32)
        self.recent: dict[int, tuple[int, int]] = {}

    @staticmethod
    def short(key: str | bytes) -> int:
        return int(key[:16], 16)

    def get(self, key: str) -> tuple[int, int, int] | None:
        """(log number, offset, length) of `key`'s latest entry, or None."""
        short = self.short(key)
        found = self.recent.get(short)
        if found is None:
            at = int(np.searchsorted(self.keys, np.uint64(short)))  # uint64: see filters/dedup.py
            if at == len(self.keys) or self.keys[at] != short:
                return None
            found = int(self.places[at]), int(self.lengths[at])
        place, length = found
        return place >> self.OFFSET_BITS, place & ((1 << self.OFFSET_BITS) - 1), length

    def put(self, short: int, log_number: int, offset: int, length: int) -> None:
        self.recent[short] = (log_number << self.OFFSET_BITS | offset, length)
        if len(self.recent) >= self.RECENT:
            self.merge()

    def merge(self, keys=(), places=(), lengths=()) -> None:
        """Merge the recent entries, after `keys`/`places`/`lengths` (entries read in log order)."""
        keys = np.concatenate([self.keys, np.asarray(keys, np.uint64),
                               np.fromiter(self.recent, np.uint64, len(self.recent))])
        places = np.concatenate([self.places, np.asarray(places, np.uint64),
                                 np.fromiter((p for p, _ in self.recent.values()), np.uint64, len(self.recent))])
        lengths = np.concatenate([self.lengths, np.asarray(lengths, np.uint32),
                                  np.fromiter((n for _, n in self.recent.values()), np.uint32, len(self.recent))])
        self.recent.clear()
        order = np.argsort(keys, kind="stable")  # equal keys stay in the order they were written
        keys = keys[order]
        latest = np.ones(len(keys), bool)  # the last of each run of equal keys
        latest[:-1] = keys[1:] != keys[:-1]
        self.keys, self.places, self.lengths = keys[latest], places[order][latest], lengths[order][latest]


class ResponseCache:
    """Append-only JSON Lines logs in `directory`, one per run that wrote
    (`responses-t<time made, ns>-<pid>-<random>.jsonl`; of two answers to one request, the later run's is served).

    Each line is `{"key": ..., "content", "finish_reason", "usage", "request"}`: the answer as the server
    sent it (the client cuts a reasoning model's thinking as it hands it on, `without_thinking`, by the
    settings of the run that reads it) and what was asked,
    never the API key. A log and not a file per answer: creating a file cost 1.0 ms of CPU per
    answer where an append costs 3 µs (bench/llm.py's machine), and a large run would leave 10^5 to 10^6
    small files on a cluster's shared filesystem. A line cut off by a kill, or damaged in any way, is
    not an answer: that request is asked again. Each run appends only to its own log, so runs that
    share the directory never write into each other's lines.
    """

    _PREFIX = b'{"key": "'

    def __init__(self, directory: Path | str):
        self.directory = Path(directory)
        self._places: _Places | None = None
        self._logs: list[Path] = []  # log number -> path
        self._log_number: int | None = None  # this run's own log
        self._log_fd: int | None = None
        self._log_size = 0

    def _index(self) -> _Places:
        """Where each stored answer is, read from every log once (keys only; lines are parsed on a hit)."""
        if self._places is None:
            self._places = _Places()
            keys, places, lengths = array("Q"), array("Q"), array("I")
            # by name, which starts with the time its log was made: of two answers to one request, a later
            # run's is taken (an older sftmix named its logs by pid, which can sort after a later run's;
            # modification times do not survive a copy of the cache)
            for path in sorted(self.directory.glob("*.jsonl")):
                self._logs.append(path)
                log_bits = (len(self._logs) - 1) << _Places.OFFSET_BITS
                offset = 0
                with path.open("rb") as handle:
                    for line in handle:
                        # A whole line starts with the key: no JSON parsing for the lines never asked for.
                        if line.endswith(b"\n") and line.startswith(self._PREFIX):
                            try:
                                keys.append(_Places.short(line[len(self._PREFIX):len(self._PREFIX) + 16]))
                            except ValueError:
                                pass  # not a key we wrote: the line is no answer
                            else:
                                places.append(log_bits | offset)
                                lengths.append(len(line))
                        offset += len(line)
            self._places.merge(keys, places, lengths)
        return self._places

    def get(self, key: str) -> Completion | None:
        place = self._index().get(key)
        if place is None:
            return None
        log_number, offset, length = place
        try:
            with self._logs[log_number].open("rb") as handle:
                handle.seek(offset)
                data = loads(handle.read(length))  # a damaged, deeply nested line: a JSONDecodeError
            if data["key"] != key:
                raise ValueError("another key")
            return Completion(data["content"], data["finish_reason"], Usage(**data["usage"]), cached=True)
        except (ValueError, OSError, KeyError, TypeError):
            return None  # a damaged entry (not UTF-8, not JSON, wrong shape) is asked again, not trusted

    def put(self, key: str, completion: Completion, request: dict) -> None:
        entry = {"key": key, "content": completion.content, "finish_reason": completion.finish_reason,
                 "usage": asdict(completion.usage), "request": request}
        line = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
        places = self._index()
        if self._log_fd is None:
            if self._log_number is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                # "t" sorts after the digits an older sftmix's names start with; 19 digits of ns until 2286
                self._logs.append(self.directory / f"responses-t{time.time_ns()}-{os.getpid()}-{os.urandom(4).hex()}.jsonl")
                self._log_number = len(self._logs) - 1
            self._log_fd = os.open(self._logs[self._log_number], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._log_size = os.fstat(self._log_fd).st_size
        # One write per answer, unbuffered: what a killed process had stored is in the file.
        written = os.write(self._log_fd, line)
        if written != len(line):  # a full disk: the tail of the line is missing, so the line is no answer
            raise OSError(f"short write to {self._logs[self._log_number]} ({written} of {len(line)} bytes)")
        places.put(_Places.short(key), self._log_number, self._log_size, len(line))
        self._log_size += len(line)

    def close(self) -> None:
        """Close the log; a later put appends to it again."""
        if self._log_fd is not None:
            os.close(self._log_fd)
            self._log_fd = None


def endpoint_key(base_url: str) -> str:
    """The endpoint as the cache keys it: host, port and path, so that two deployments behind one
    gateway (`/model-a/v1`, `/model-b/v1`) do not share answers; without user info (a secret) or a
    trailing `/v1`, the OpenAI SDK's default suffix (`https://api.deepseek.com` and `.../v1` are one
    endpoint, keyed as caches have been)."""
    parsed = urlparse(base_url)
    if not parsed.hostname:
        return base_url
    host = f"{parsed.hostname}:{parsed.port}" if parsed.port else parsed.hostname
    return host + re.sub(r"(/v1)?/*$", "", parsed.path)


def request_key(host: str, body: dict) -> str:
    return hashlib.sha256(json.dumps({"host": host, **body}, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


_KEY_LIKE = re.compile(r"sk-[A-Za-z0-9_\-*]{3,}")


class _Retryable(Exception):
    """A request worth sending again: 429, 5xx, a timeout or a dropped connection. `kind` uses the
    names the OpenAI SDK gives these errors."""

    def __init__(self, kind: str, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.kind, self.retry_after = kind, retry_after


class _ClientError(Exception):
    """Any other status but 2xx (4xx but a rate limit's 429; 3xx, as redirects are not followed):
    asking again will not help. `out_of_credit`: the account has no credit left (`_out_of_credit`)."""

    def __init__(self, status: int, message: str, out_of_credit: bool = False):
        super().__init__(message)
        self.status, self.out_of_credit = status, out_of_credit


class LLMClient:
    """Async chat completions with cache, limits, retries and accounting. One per run."""

    def __init__(self, settings: LLMSettings, api_key: str | None = None, spending: Spending | None = None,
                 judges_generated_rows: bool = False):
        self.settings = settings
        self.spending = spending or Spending()  # shared with the step's other client, if any
        # a generated source's judge: the generator before it stops on its refusal, it on its own endpoint's only
        self._judges_generated_rows = judges_generated_rows
        self.host = endpoint_key(settings.base_url)
        self.cache = ResponseCache(settings.cache_dir)
        self.stats = Stats()
        self._api_key = api_key  # resolved lazily: a fully cached run needs no key
        self._url = settings.base_url.rstrip("/") + "/chat/completions"  # as the SDK joins it
        self._session: aiohttp.ClientSession | None = None
        self._proxy: tuple[URL | None, aiohttp.BasicAuth | None] = (None, None)
        self._semaphore: asyncio.Semaphore | None = None
        self._limiter: _RateLimiter | None = None
        self._in_flight: dict[str, asyncio.Future] = {}
        # With a budget: how many of this client's requests are on their way (their most cost is in
        # `spending`), and their answers' signal (`_reserve_budget`), so that concurrent requests
        # cannot together spend past the cap.
        self._committed_requests = 0  # counted too: float sums leave residues
        self._answers: asyncio.Condition | None = None
        # No request goes out before this (time.monotonic()): a 429 with a Retry-After, or one while the
        # endpoint answers other rows (it is busy), pauses every request, not only the one it came to;
        # the others kept firing into the limit.
        self._paused_until = 0.0

    def __repr__(self) -> str:  # never the key
        return f"LLMClient(base_url={self.settings.base_url!r}, model={self.settings.model!r})"

    def _body(self, messages: list[dict], json_mode: bool, max_tokens: int | None) -> dict:
        body = {"model": self.settings.model, "messages": messages, "temperature": self.settings.temperature,
                "top_p": self.settings.top_p, "max_tokens": max_tokens or self.settings.max_tokens}
        if json_mode:
            body["response_format"] = {"type": "json_object"}
        return body

    def _ensure_session(self) -> aiohttp.ClientSession:
        """The HTTP session, opened in the running event loop on the first request that needs it."""
        if self._session is None:
            key = self._api_key or api_key_from_env()
            self._session = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json",
                         "Accept": "application/json"},
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s),
                connector=aiohttp.TCPConnector(limit=self.settings.concurrency),
            )
            # HTTP(S)_PROXY, NO_PROXY and the proxy's ~/.netrc credentials, as the SDK honours them. Looked
            # up once: aiohttp's trust_env does it on every request, 0.8 ms of CPU each (bench/llm.py).
            try:
                self._proxy = get_env_proxy_for_url(URL(self._url))
            except LookupError:  # no proxy for this URL
                self._proxy = (None, None)
            self._semaphore = asyncio.Semaphore(self.settings.concurrency)
            self._answers = asyncio.Condition()
            self._limiter = _RateLimiter(self.settings.requests_per_minute, self.settings.tokens_per_minute)
        return self._session

    def _redact(self, text: str) -> str:
        """Error texts can quote the key (servers echo a prefix of a wrong one): never pass it on."""
        key = self._api_key or (found := _key_in_env()) and found[1]
        if key:
            text = text.replace(key, "***")
        return _KEY_LIKE.sub("sk-***", text)

    async def complete(self, messages: list[dict], *, json_mode: bool = False, max_tokens: int | None = None) -> Completion | Failure:
        body = self._body(messages, json_mode, max_tokens)
        key = request_key(self.host, body)
        cached = self.cache.get(key)
        # An older cache's partial answers are asked again, and its empty ones ("" with a natural stop,
        # or as a refusal): since then no answer (`empty_reply`), never cached.
        if cached is not None and cached.finish_reason in FINISHED and (
                cached.content or cached.finish_reason not in ("stop", REFUSAL)):
            self.stats.cache_hits += 1
            return self._reply(cached, body)
        if key in self._in_flight:  # the same request already on its way: share its answer, pay once
            self.stats.cache_hits += 1
            return await asyncio.shield(self._in_flight[key])
        future = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            result = await self._fetch(key, body, messages)
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved here, so an unshared failure is not reported as lost
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._in_flight[key]

    async def _fetch(self, key: str, body: dict, messages: list[dict]) -> Completion | Failure:
        session = self._ensure_session()
        # UTF-8 bytes / 3: ~0.33 token per English character, 1 per CJK character (DeepSeek: 0.3 and
        # 0.6); characters / 4 undercounted a Chinese prompt 2.4x, and the budget cap with it
        estimated_tokens = sum(len(str(m.get("content") or "").encode("utf-8", "replace")) for m in messages) // 3 \
            + body["max_tokens"]
        most = Usage(estimated_tokens - body["max_tokens"], body["max_tokens"])  # its prompt uncached, every token it may write
        most_usd = self.settings.prices.cost(most)
        last_error = ""
        attempt = 0  # tries that failed and count against max_retries
        rate_limits = 0  # this row's 429s
        all_empty = True  # every try of the row that counted was a reply with no text
        answered_before = self.stats.answered  # the endpoint's answers when this row's previous try went out (or it began)
        while True:
            retry_after, rate_limited, paused_all = None, False, False
            # The pause is waited out without a concurrency slot: the slots stay for requests that can go.
            while (pause := self._paused_until - time.monotonic()) > 0:  # moved on by 429s while it waits
                await asyncio.sleep(pause)
            async with self._semaphore:
                # Checked with a slot in hand: requests queued behind the one that reached the cap
                # (or was refused the account) are never sent; checked before the rate limits too, so
                # they are not kept waiting for a rate slot (a minute each at one request a minute)
                # only to be refused.
                self._refuse_when_stopped()
                if not await self._limiter.acquire(estimated_tokens, self._paused):
                    continue  # paused again while it waited for the slot or a rate slot: not sent, no try used
                self._refuse_when_stopped()  # stopped while it waited for a rate slot
                await self._reserve_budget(most_usd)
                self.stats.requests += 1
                empty = False
                answered_at_send = self.stats.answered
                try:
                    completion = await self._send(session, body)
                except _Retryable as error:
                    last_error = f"{error.kind}: {error}"
                    retry_after = error.retry_after
                    rate_limited = error.kind == "RateLimitError"
                    # The endpoint's limit (a Retry-After; or busy, answering others since this row's
                    # previous try) pauses every request. Any other 429 waits its row's own backoff: a
                    # pause of the longest backoff of any row held every row of a failing endpoint ~10x longer.
                    paused_all = rate_limited and (retry_after is not None or self.stats.answered > answered_before)
                    if paused_all:
                        self._paused_until = max(self._paused_until,
                                                 time.monotonic() + self._backoff(attempt, retry_after))
                except _MalformedResponse as error:
                    last_error, empty = f"malformed_response: {error}", error.empty
                    self.stats.empty_replies += error.empty
                    if error.usage is not None:  # unusable, but paid for
                        self._account(error.usage, most, error.unreported)
                except _ClientError as error:
                    # No credit left (DeepSeek's 402; OpenAI's 429 or 400 that says so, `_out_of_credit`).
                    # A 401 after answers: the key that worked was revoked; before any, a wrong key or
                    # URL, as `Stats.unanswered` names it, and for a generator's judge a refusal too
                    # (its generator would pay for rows it drops all).
                    # Either way every request after it is refused too: none is sent (403 is often one
                    # request's content, and stays that row's failure).
                    if error.out_of_credit or (error.status == 401 and (self.stats.answered or self._judges_generated_rows)):
                        reason = "llm_payment_required" if error.out_of_credit else "llm_key_refused"
                        self.spending.refusal = self._failed(Failure(reason, str(error)))
                        self.spending.refused_host = self.host
                        self.stats.refused = self.stats.last_failure
                        raise AccountRefused(reason, str(error))
                    return self._failed(Failure(f"http_{error.status}", str(error)))
                else:
                    self.stats.answered += 1
                    self._account(completion.usage, most, completion.unreported)
                    if completion.finish_reason in FINISHED:
                        self.cache.put(key, completion, {"host": self.host, **body})  # an append: no need for a thread
                        return self._reply(completion, body)
                    last_error = f"finish_reason={completion.finish_reason}"
                    if completion.finish_reason not in INTERRUPTED:
                        return self._failed(Failure("incomplete_generation", last_error))
                finally:
                    await self._release_budget(most_usd)
            rate_limits += rate_limited
            # A 429 while the endpoint answered others since this row's previous try is the endpoint
            # busy, not failing: the row waits its turn without using a try, up to `concurrency` turns
            # a try (at most `concurrency` requests go out a pause: an endpoint answering one of them
            # a pause answers a row in `concurrency` tries on average). An endpoint answering none counts.
            counted = not (rate_limited and self.stats.answered > answered_before
                           and rate_limits <= self.settings.concurrency * (self.settings.max_retries + 1))
            answered_before = answered_at_send
            all_empty = all_empty and (empty or not counted)
            if counted and attempt == self.settings.max_retries:
                # every try a reply with no text: `empty_reply`, not the endpoint failing
                return self._failed(Failure("empty_reply" if all_empty else "llm_retries_exhausted", last_error))
            self.stats.retries += 1
            if not paused_all:  # a pause is waited out at the top of the loop
                await asyncio.sleep(self._backoff(attempt, retry_after))
            attempt += counted

    def _reply(self, completion: Completion, body: dict) -> Completion | Failure:
        """The answer as handed on: the server's (as the cache keeps it, so the same cached answers
        serve either `reply_starts_in_thinking`), its thinking cut once, here. `completion` is the
        caller's own, just read or already written to the cache: cut in place, not copied. A JSON
        mode reply with no `</think>` is the object alone: constrained decoding writes no thinking
        (vLLM's guided decoding of R1 starts at the first token), where the cut left nothing.
        A refusal is a Failure, so every caller drops its row with the reason."""
        if completion.finish_reason == REFUSAL:
            return Failure("model_refused", completion.content[:200])
        starts_in_thinking = self.settings.reply_starts_in_thinking and (
            "response_format" not in body or "</think>" in completion.content)
        completion.content = without_thinking(completion.content, starts_in_thinking)
        return completion

    def _failed(self, failure: Failure) -> Failure:
        self.stats.failures += 1
        self.stats.last_failure = f"{failure.reason}: {failure.detail}"
        return failure

    async def _send(self, session: aiohttp.ClientSession, body: dict) -> Completion:
        try:
            proxy, proxy_auth = self._proxy
            async with session.post(self._url, data=json.dumps(body).encode(), allow_redirects=False,
                                    proxy=proxy, proxy_auth=proxy_auth) as response:
                raw = await response.read()
                status, retry_after = response.status, response.headers.get("Retry-After")
        except TimeoutError:  # aiohttp's timeouts are TimeoutErrors
            raise _Retryable("APITimeoutError", f"no complete reply within {self.settings.timeout_s} s") from None
        except aiohttp.ClientError as error:  # refused, reset or dropped connections, cut-off bodies
            raise _Retryable("APIConnectionError", self._redact(f"{type(error).__name__}: {error}")[:300]) from None
        if status >= 300:
            # redacted whole, then cut: a key cut at the end is no longer the key the redaction looks for
            message = self._redact(f"Error code: {status} - {raw.decode('utf-8', 'replace')}")[:300]
            out_of_credit = status == 402 or 400 <= status < 500 and _out_of_credit(raw)
            if status == 429 and not out_of_credit:
                raise _Retryable("RateLimitError", message, _seconds(retry_after))
            if status >= 500 or status in (408, 409):  # as the OpenAI SDK; a 503's Retry-After is waited for too
                raise _Retryable("InternalServerError" if status >= 500 else "APIStatusError", message, _seconds(retry_after))
            raise _ClientError(status, message, out_of_credit)
        response = None
        try:
            response = json.loads(raw)
            choice = response["choices"][0]
            message = choice["message"]
            content, refusal = message["content"], message.get("refusal")
            finish_reason = "stop" if choice.get("finish_reason") in STOP_SYNONYMS else choice.get("finish_reason")
            if not content and isinstance(refusal, str) and refusal and not message.get("tool_calls"):
                content, finish_reason = refusal, REFUSAL
            elif content is None and finish_reason and finish_reason != "stop":
                content = ""  # cut off while thinking ("length"), or filtered ("content_filter"): an answer, paid for
            if not content and (finish_reason or "stop") == "stop":  # null, or "" as llama.cpp and SGLang send it
                # Not a refusal, which says so: a one-off empty answer (asked again), or a server that puts
                # every answer elsewhere, as vLLM's reasoning parser does when the model does not think.
                elsewhere = next((f for f in ("reasoning_content", "reasoning") if message.get(f)), None)
                raise _MalformedResponse(
                    f"no content, finish_reason {choice.get('finish_reason')}"
                    + (f", the text in message.{elsewhere}: check the server's reasoning parser" if elsewhere else ""),
                    _usage(response), empty=True, unreported=_unreported(response))
            if not isinstance(content, str):
                raise ValueError("no message content")
            content.encode("utf-8")  # a lone surrogate (a `\ud800` escape) can be neither cached nor written to Parquet
            return Completion(content=content, finish_reason=finish_reason or "stop", usage=_usage(response),
                              unreported=_unreported(response))
        except _MalformedResponse:
            raise
        except Exception as error:  # any shape other than a chat completion: a bad body, worth asking again
            raise _MalformedResponse(self._redact(f"{type(error).__name__}: {error}")[:200], _paid(response)) from None

    async def _reserve_budget(self, most_usd: float) -> None:
        """With a budget: wait while the requests on their way could together spend what is left
        (one goes at a time near the cap, as with a concurrency of 1), then refuse if it is spent.
        Without the wait, each of `concurrency` requests saw the cap unreached and all were sent: a
        $0.0002 cap spent $0.0016 at concurrency 16. Only this client's own answers are waited for:
        another client's answers (a generator's judge) do not notify it."""
        if self.settings.budget_usd is None:
            return
        budget, spending = self.settings.budget_usd, self.spending
        async with self._answers:
            await self._answers.wait_for(lambda: not self._committed_requests
                                         or spending.cost_usd + spending.committed_usd + most_usd <= budget)
        self._refuse_when_stopped()
        spending.committed_usd += most_usd
        self._committed_requests += 1

    async def _release_budget(self, most_usd: float) -> None:
        if self.settings.budget_usd is None:
            return
        self.spending.committed_usd -= most_usd  # the answer's cost is in `spending.cost_usd` now
        self._committed_requests -= 1
        async with self._answers:
            self._answers.notify_all()

    def _refuse_when_stopped(self) -> None:
        """Raise why no request may be sent any more: the account refused, the budget reached."""
        refusal = self.spending.refusal
        if refusal is not None and (self.spending.refused_host == self.host or not self._judges_generated_rows):
            raise AccountRefused(refusal.reason, refusal.detail)
        spent = self.spending.cost_usd
        if self.settings.budget_usd is not None and spent >= self.settings.budget_usd:
            raise BudgetExhausted(f"budget of ${self.settings.budget_usd} reached (spent ${spent:.4f})")

    def _account(self, usage: Usage, most: Usage | None = None, unreported: tuple[str, ...] = ()) -> None:
        """Count what a reply cost. An answer whose reply left out its prompt or completion tokens (a
        gateway that drops `usage`, or a part of it: `unreported`) is counted with `most`'s figure in
        their place, the most its request could use: at $0 the budget cap never stopped a run and the
        reported cost was $0. A figure reported as 0 is 0."""
        charged = usage
        if most is not None and unreported:
            charged = replace(usage, **{figure: getattr(most, figure) for figure in unreported})
            self.stats.estimated_cost_answers += 1
            if self.stats.estimated_cost_answers == 1:
                log.warning("the LLM endpoint %s answered with no usage, or no prompt or completion tokens in it: each "
                            "such answer is counted with the most its request could use in place of the missing figure "
                            "(its prompt uncached, max_tokens written), so the cost is an upper estimate "
                            "(estimated_cost_answers counts them)", self.host)
        cost = self.settings.prices.cost(charged)
        self.stats.usage.add(usage)
        self.stats.cost_usd += cost
        self.spending.cost_usd += cost

    def _paused(self) -> bool:
        return self._paused_until > time.monotonic()

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        ceiling = min(self.settings.backoff_max_s, self.settings.backoff_base_s * 2 ** attempt)
        delay = random.uniform(0, ceiling)  # full jitter: a 429 storm does not come back in step
        # a server's Retry-After is waited for, up to backoff_max_s: one wait never exceeds the setting
        return max(delay, min(retry_after, self.settings.backoff_max_s)) if retry_after is not None else delay

    async def complete_json(self, messages: list[dict], schema: dict, *, attempts: int = 3,
                            max_tokens: int | None = None) -> tuple[dict, Completion] | Failure:
        """Ask for JSON, validate it against `schema`, re-ask with the error up to `attempts` times."""
        validator = jsonschema.Draft202012Validator(schema)
        conversation = list(messages)
        problem = ""
        for _ in range(attempts):
            reply = await self.complete(conversation, json_mode=True, max_tokens=max_tokens)
            if isinstance(reply, Failure):
                return reply
            if reply.truncated:
                return Failure("truncated", "finish_reason=length")
            try:
                # JSON nested too deeply, or an integer past Python's digit limit, is a JSONDecodeError
                # here, not RecursionError or a bare ValueError
                value = loads(_unfenced(reply.content))
                validator.validate(value)
                return value, reply
            except json.JSONDecodeError as error:
                problem = f"not valid JSON ({error.msg} at {error.pos})"
            except jsonschema.ValidationError as error:
                problem = f"does not match the schema: {error.message}"
            except RecursionError:  # a value decoded just below the limit, which the validator's message recurses into
                problem = "does not match the schema: nested too deeply"
            conversation = conversation + [
                {"role": "assistant", "content": reply.content},
                {"role": "user", "content": f"Your reply {problem}. Answer again with only the JSON object."},
            ]
        return Failure("invalid_json", problem)

    async def aclose(self) -> None:
        """Close the HTTP session; the next request (in another event loop) opens a new one."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        self.cache.close()


def stage_window(concurrency: int) -> int:
    """How many rows an LLM stage keeps started and not yet handed on (`in_order`): 16 per
    connection. Answer times spread widely, and the oldest row holds back the rest; see
    bench/RESULTS.md for the ratios at 4 and 16 per connection."""
    return 16 * concurrency


_stage_loops = threading.local()


@contextmanager
def stage_event_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """This thread's event loop for LLM stages, closed when its last user is done. A generated
    source's generator and the judge after it share it: with a loop each, one ran while the other's
    was paused, and the paused one's requests ran out their timeout (measured from when they were
    sent) with the answers waiting unread: asked, and paid, again. In one loop each client's
    requests go on while the other's caller waits."""
    if not getattr(_stage_loops, "users", 0):
        _stage_loops.loop = asyncio.new_event_loop()
        _stage_loops.users = 0
    _stage_loops.users += 1
    try:
        yield _stage_loops.loop
    finally:
        _stage_loops.users -= 1
        if not _stage_loops.users:
            _stage_loops.loop.close()
            del _stage_loops.loop


def in_order(loop: asyncio.AbstractEventLoop, run: Callable[[Item], Awaitable[Result]], items: Iterable[Item],
             window: int) -> Iterator[tuple[Item, Result]]:
    """(item, await run(item)) for each item, in item order, on `loop`, with at most `window` items
    started and not yet yielded: the next item starts as soon as the oldest is yielded.

    An LLM stage's output keeps its input order (reruns are identical), yet a slow item stops new
    items from starting only once the `window` - 1 behind it are done: windows run to completion one
    after another would each wait for their slowest request with the connections idle. Items left
    when the caller stops are cancelled.
    """
    if window < 1:
        raise ValueError(f"window must be at least 1, not {window}")
    started: deque[tuple[Item, asyncio.Task]] = deque()
    items = iter(items)
    try:
        while True:
            started.extend((item, loop.create_task(run(item))) for item in islice(items, window - len(started)))
            if not started:
                return
            item, task = started.popleft()
            yield item, loop.run_until_complete(task)
    finally:
        for _, task in started:
            task.cancel()
        if started:
            loop.run_until_complete(asyncio.gather(*(task for _, task in started), return_exceptions=True))


class _MalformedResponse(Exception):
    """A 200 that is no usable chat completion; `usage`: what it says it cost, when it says so readably."""

    def __init__(self, message: str, usage: Usage | None = None, empty: bool = False, unreported: tuple[str, ...] = ()):
        super().__init__(message)
        # `empty`: a completion with no text (and no refusal); `unreported`: as `Completion.unreported`, for it
        self.usage, self.empty, self.unreported = usage, empty, unreported


# OpenAI's `error.code` or `error.type` for an account out of credit (429 `insufficient_quota`), with
# no active billing (429 `billing_not_active`), or at its spending cap (400 `billing_hard_limit_reached`):
# every request after it is refused the same, as after DeepSeek's 402, and waiting does not help.
OUT_OF_CREDIT = frozenset({"insufficient_quota", "billing_not_active", "billing_hard_limit_reached"})


def _out_of_credit(raw: bytes) -> bool:
    """Whether an error body says the account has no credit left (`OUT_OF_CREDIT`)."""
    try:
        error = loads(raw.decode("utf-8", "replace"))["error"]
        return not OUT_OF_CREDIT.isdisjoint((error.get("code"), error.get("type")))
    except (ValueError, LookupError, TypeError, AttributeError):  # no error object of OpenAI's shape
        return False


def _seconds(retry_after: str | None) -> float | None:
    """A `Retry-After` header in seconds (the HTTP-date form is not used by LLM APIs); None when it
    is not a finite number >= 0 (`inf` waited for ever)."""
    if retry_after is None:
        return None
    try:
        seconds = float(retry_after)
    except ValueError:
        return None
    return seconds if 0 <= seconds < float("inf") else None


def _usage(response: dict) -> Usage:
    """A chat completion's `usage`. DeepSeek reports prompt-cache hits as `prompt_cache_hit_tokens`,
    OpenAI in `prompt_tokens_details`."""
    usage = response.get("usage") or {}
    hit = usage.get("prompt_cache_hit_tokens") or (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    return Usage(_token_count(usage.get("prompt_tokens")), _token_count(usage.get("completion_tokens")), _token_count(hit))


def _unreported(response: dict) -> tuple[str, ...]:
    """The token counts a chat completion's `usage` leaves out (or has as null)."""
    usage = response.get("usage") or {}
    return tuple(figure for figure in ("prompt_tokens", "completion_tokens") if usage.get(figure) is None)


def _paid(response) -> Usage | None:
    """What a reply that is no usable completion says it cost, or None when it says nothing readable."""
    try:
        return _usage(response) if isinstance(response, dict) and response.get("usage") else None
    except Exception:  # a usage of any other shape: nothing to count
        return None


def _token_count(value) -> int:
    """A usage figure: a token count below 2**53, which the run's cost (a float) holds exactly. An
    endpoint's absurd one is a malformed reply here, not an OverflowError in the cost later."""
    count = int(value or 0)
    if not 0 <= count < 2 ** 53:
        raise ValueError(f"token count out of range: {str(count)[:20]}")
    return count
