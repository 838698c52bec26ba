"""What a generator is, and the one runtime that drives every generator through `sftmix.llm`.

A generator module `generators/<name>.py` defines
- `PROMPTS`: names of its prompt templates (`generators/prompts/<name>.txt`, `string.Template`
  syntax: `$document`, `${language_name}`); their hash goes into every row's provenance;
- `items(records, ctx) -> Iterator[Item]`: what to work on, from its input records (documents,
  prompts, conversations) or from the context alone (self-identity), each naming the licences of
  the records it was built from (`Item.licences`); deterministic from the seed;
- `async generate(item, ctx) -> list[Converted] | Drop`: LLM calls through `ctx.llm`, returning
  conversations (language set) or a drop with a reason;
- optionally `INPUT_RULES_OFF`: rules its inputs must not go through, since they drop what it reads
  (the manifest refuses an input with one of them on);
- optionally `FILTER_DEFAULTS`: rule-filter settings its rows need whatever the manifest says, as a
  converter's (`Source.rule_defaults`; fc_synthesis's no-tool-fits apologies are no blanket refusals);
- optionally `languages(params, targets) -> Collection[str] | None`: the only languages it can write
  rows in with these params and targets (None: any), so a target in another language is named before a build
  (`sftmix.plan.unmakeable`), not found short after it.
The runtime adds provenance (with `input_licences`, the item's `Item.licences`, where it has any;
and a dropped item's payload as its row in the rejected file, under its `Item.licences`), runs
items concurrently, a bounded number at a time (output order = item order, so reruns are
identical; `sftmix.llm.in_order`), stops cleanly when the budget is reached or the endpoint
refuses the account (`sftmix.llm.RunStopped`), and feeds the results to the same
record/filter/writer path as converters (`sftmix.normalize.run`).
"""

from __future__ import annotations

import hashlib
import heapq
import importlib
import math
import random
import traceback
from dataclasses import dataclass, field
from functools import cache
from itertools import islice
from pathlib import Path
from string import Template
from typing import Annotated, Any, Callable, Iterable, Iterator

from pydantic import Field

from sftmix.jsontext import loads
from sftmix.llm import Completion, Failure, LLMClient, RunStopped, in_order, stage_event_loop, stage_window
from sftmix.record import derivative_problem, input_licences
from sftmix.sources.base import MALFORMED_ROW_ERRORS, Converted, Drop

PROMPTS_DIR = Path(__file__).parent / "prompts"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("generators", "sftmix", "filters", "assets", "pipelines", "tests")
# A generator whose first items all raise at one place is broken (a bug, or settings it cannot
# use), not meeting odd replies: each item costs requests, so the stage stops there.
BROKEN_AFTER = 16
# Types of the `params:` a generator reads (its PARAMS: name -> type), checked when the manifest is
# loaded: a wrong one was found only when the generator ran, as a drop of every row.
Count = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]
Fraction = Annotated[float, Field(gt=0, le=1)]
Ratio = Annotated[float, Field(gt=0)]
Score = Annotated[int, Field(ge=0, le=5)]  # FineWeb-Edu's int_score

LANGUAGE_NAMES = {"ca": "Catalan", "en": "English", "es": "Spanish", "eu": "Basque", "gl": "Galician", "pt": "Portuguese"}


def prompt_file(name: str) -> Path:
    return PROMPTS_DIR / f"{name}.txt"


@cache
def prompt(name: str) -> Template:
    path = prompt_file(name)
    if not path.is_file():
        raise FileNotFoundError(f"prompt template not found: {path}")
    return Template(path.read_text(encoding="utf-8"))


def template_hash(names: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode() + b"\0" + prompt(name).template.encode() + b"\0")
    return digest.hexdigest()[:16]


@dataclass
class Item:
    key: str  # the seed row's id (or a synthetic key): provenance and ordering
    payload: Any
    language: str | None = None  # the language the generated row will be in
    # the licences of the input records it was built from: a drop's row (the payload) holds their
    # text, so the rejected file's footer names them beside the generator's
    licences: tuple[str, ...] = ()


@dataclass
class Context:
    llm: LLMClient
    targets: dict[str, int | str] = field(default_factory=dict)  # language -> rows wanted ("all" / "*")
    params: dict = field(default_factory=dict)
    identity: Any = None  # sftmix.manifest.Identity
    seed: int = 0
    oversample: float = 1.25  # items per wanted row, to absorb drops

    def rng(self, key: str) -> random.Random:
        """A random stream per item, so an item's choices do not depend on the others."""
        return random.Random(f"{self.seed}:{key}")

    def languages(self) -> list[str]:
        return [lang for lang in self.targets if lang != "*"] or ["en"]

    def cell(self, language: str) -> str:
        """The target a row in `language` counts towards: "*" (one target over every language, as
        the mixing keeps it) where the targets have it. Counted per language, a `{"*": N}` target
        was asked N rows in each language the input holds."""
        return "*" if "*" in self.targets else language

    def wanted(self, language: str) -> int | None:
        value = self.targets.get(language, self.targets.get("*"))
        return None if value in (None, "all") else int(value * self.oversample + 0.999)


def reply_text(reply: Completion | Failure) -> str:
    """The reply's content, or the drop its failure or truncation means."""
    if isinstance(reply, Failure):
        raise Drop(reply.reason, reply.detail)
    if reply.truncated:
        raise Drop("truncated", "finish_reason=length")
    return reply.content


# ------------------------------------------------------------------- helpers the generators share

def record_origin(record: dict) -> dict:
    """The record's `origin` JSON as a dict ({} when it is missing, malformed or not an object)."""
    value = record.get("origin")
    if isinstance(value, dict):
        return value
    try:
        parsed = loads(value or "{}")  # depth-safe: a deep origin is no object, not a RecursionError
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def record_licences(record: dict) -> tuple[str, ...]:
    """The licences of a record's text, sorted: its own, and for a generated record those of the
    records it was built from (`origin.input_licences`): a generator reading another's rows reads
    their inputs' text too (FineWeb-Edu's odc-by documents in fineweb_edu_qa's questions)."""
    return tuple(sorted({record["licence"], *input_licences(record_origin(record))}))


def first_user_text(record: dict, *, first_turn_only: bool = False) -> str | None:
    """Text of the first user turn with string content; None when there is none.

    `first_turn_only`: look at the first user turn alone, giving "" when its content is not a string.
    """
    for turn in record.get("messages") or ():
        if turn.get("role") != "user":
            continue
        content = turn.get("content")
        if isinstance(content, str):
            return content
        if first_turn_only:
            return ""
    return None


def seeded_hash(seed: int, name: str, key: str) -> bytes:
    """sha256 of "seed:name:key": a generator's (`name`) reproducible, order-free ranking of its input."""
    return hashlib.sha256(f"{seed}:{name}:{key}".encode()).digest()


def hash_rank(seed: int, name: str, key: str) -> int:
    """The first 8 bytes of `seeded_hash` as an integer."""
    return int.from_bytes(seeded_hash(seed, name, key)[:8], "big")


def hash_fraction(seed: int, name: str, key: str) -> float:
    """`hash_rank` scaled to [0, 1): keep a record when it is below the share wanted."""
    return hash_rank(seed, name, key) / 2 ** 64


class LanguageQuotas:
    """Items still to hand out per language (None: unlimited), and a weighted draw among the open ones."""

    def __init__(self, ctx: Context, per_item: float):
        self.left: dict[str, int | None] = {}
        for language in ctx.languages():
            wanted = ctx.wanted(language)
            self.left[language] = None if wanted is None else math.ceil(wanted / per_item)

    def full(self) -> bool:
        return all(n is not None and n <= 0 for n in self.left.values())

    def draw(self, rng) -> str:
        open_ = [(lang, n) for lang, n in self.left.items() if n is None or n > 0]
        fallback = max((n for _, n in open_ if n is not None), default=1)
        weights = [(lang, n if n is not None else fallback) for lang, n in open_]
        point = rng.random() * sum(w for _, w in weights)
        for lang, weight in weights:
            point -= weight
            if point < 0:
                return lang
        return weights[-1][0]

    def take(self, language: str) -> None:
        if self.left[language] is not None:
            self.left[language] -= 1


def top_ranked_per_language(records: Iterable[dict], ctx: Context, name: str, usable: Callable[[dict], bool],
                            *, on_input_read: Callable[[], None] | None = None) -> Iterator[Item]:
    """Items (key = id, payload = the record) for the usable records of targeted languages.

    Per target (`ctx.cell`: a language, or "*" over all of them), the `ctx.wanted(language)` records
    with the smallest `hash_rank(seed, name, id)`
    (a bounded heap, so memory is the quota, not the input), yielded in input order once the input
    is read (then `on_input_read` is called, before they are yielded); every record of a language
    whose target is "all", yielded as it is read. Duplicate ids are taken once.
    """
    heaps: dict[str, list] = {}
    seen: set[str] = set()
    for index, record in enumerate(records):
        language = record.get("language")
        if not (language in ctx.targets or "*" in ctx.targets) or record["id"] in seen or not usable(record):
            continue
        seen.add(record["id"])
        quota = ctx.wanted(language)
        if quota is None:
            yield Item(key=record["id"], payload=record, language=language, licences=record_licences(record))
            continue
        if quota <= 0:
            continue
        entry = (-hash_rank(ctx.seed, name, record["id"]), index, record)
        heap = heaps.setdefault(ctx.cell(language), [])
        if len(heap) < quota:
            heapq.heappush(heap, entry)
        elif entry[0] > heap[0][0]:
            heapq.heapreplace(heap, entry)
    if on_input_read is not None:
        on_input_read()
    chosen = sorted(((index, record) for heap in heaps.values() for _, index, record in heap), key=lambda e: e[0])
    for _, record in chosen:
        yield Item(key=record["id"], payload=record, language=record["language"], licences=record_licences(record))


def identity_line(ctx: Context) -> str:
    """The identity card as the first line of a hidden system prompt; empty without a card."""
    identity = ctx.identity
    if identity is None:
        return ""
    return f"You are {identity.name}, an AI assistant developed by {identity.developer}.\n"


class GeneratorBroken(Exception):
    """A generator that failed the same way on every one of its first items, or that cannot run as
    set up (what it needs is named)."""


def load(name: str):
    module = importlib.import_module(f"generators.{name}")
    for attribute in ("PROMPTS", "PARAMS", "items", "generate"):
        if not hasattr(module, attribute):
            raise TypeError(f"generator module {name!r} lacks {attribute}")
    return module


def _derivable(records: Iterable[dict], licence: str, refuse: Callable[[str, Drop], None]) -> Iterator[dict]:
    """The records that rows under `licence` may be derived from; each other one goes to `refuse`
    (record id, a `licence_incompatible` drop) as it is read. The manifest checks each input's
    licence; rows that carry their own (TowerBlocks', a mixture's) show theirs only here."""
    for record in records:
        problem = derivative_problem(record["licence"], licence)
        if problem is None:
            yield record
            continue
        drop = Drop("licence_incompatible", f"{record['licence']} row of {record['source']!r}: {problem}")
        drop.raw = {"id": record["id"], "source": record["source"], "licence": record["licence"]}
        refuse(record["id"], drop)


def stream(module, records: Iterable[dict], ctx: Context, *, limit: int | None = None,
           window: int | None = None) -> Iterator[tuple[str, Converted | Drop]]:
    """Run `module` over its items; yields (item key, Converted | Drop) in item order.

    Up to `window` items (default `sftmix.llm.stage_window`) are started and not yet yielded
    (`sftmix.llm.in_order`). Once the client stops sending (the budget cap reached: `budget_exhausted`;
    the account refused: `llm_payment_required`, `llm_key_refused`), an item whose answers are not
    all in the cache is dropped with its reason, at its first request not cached, without sending
    it. Raises GeneratorBroken when each of the first `BROKEN_AFTER` items raised at one line of the
    project's code."""
    provenance = {"generator": module.__name__.rsplit(".", 1)[-1], "model": ctx.llm.settings.model,
                  "prompt_template_hash": template_hash(module.PROMPTS)}
    first_failures: list[str] | None = []  # where each of the first items failed, while all have

    items = islice(module.items(records, ctx), limit)
    with stage_event_loop() as loop:
        rows = in_order(loop, lambda item: _generate(module, item, ctx), items,
                        stage_window(ctx.llm.settings.concurrency) if window is None else window)
        try:
            for item, (result, site) in rows:
                if first_failures is not None:
                    first_failures = first_failures + [site] if site else None
                    if first_failures and len(first_failures) == BROKEN_AFTER and len(set(first_failures)) == 1:
                        raise GeneratorBroken(f"each of its first {BROKEN_AFTER} items raised {result.detail}: a fault "
                                              "of the generator or of its settings, or replies it cannot read; "
                                              "stopped before spending more")
                if isinstance(result, Drop):
                    if result.raw is None:
                        result.raw = item.payload  # what the generator was given: the rejected file's row
                    result.licences = item.licences
                    yield item.key, result
                    continue
                # the licences of the text the rows hold besides the generator's (a document quoted
                # verbatim): a later stage's rejected file names them in its footer
                inputs = {"input_licences": sorted(set(item.licences))} if item.licences else {}
                for converted in result:
                    converted.meta = {**provenance, "seed_id": item.key, **inputs, **converted.meta}
                    converted.language = converted.language or item.language
                    yield item.key, converted
        finally:
            rows.close()  # cancels the rows still in flight while the loop can run them down
            loop.run_until_complete(ctx.llm.aclose())


async def _generate(module, item: Item, ctx: Context) -> tuple[list[Converted] | Drop, str | None]:
    """The item's rows or drop, and where in the project's code it raised, when it did."""
    try:
        out = await module.generate(item, ctx)
    except Drop as drop:
        return drop, None
    except RunStopped as error:
        return Drop(error.reason, str(error)), None
    except MALFORMED_ROW_ERRORS as error:
        # model output that breaks a generator's assumptions is a counted drop, not a crash (a reply
        # nested past the recursion limit raises RecursionError in json, jsonschema or repr); where
        # it raised tells a reply the generator cannot read from a fault of its own
        site = _project_site(error)  # None: nowhere to tell one failure's place from another's
        return Drop("malformed_generation", f"{type(error).__name__}: {error} (at {site or 'unknown'})"), site
    return (out if isinstance(out, (list, Drop)) else [out]), None


def _project_site(error: BaseException) -> str | None:
    """`path:line` of the innermost frame of `error`'s traceback in the project's own packages (the
    root is the checkout, or the site-packages of an installed copy, beside other libraries)."""
    site = None
    for frame, line in traceback.walk_tb(error.__traceback__):
        path = Path(frame.f_code.co_filename)
        if path.is_relative_to(PROJECT_ROOT) and path.relative_to(PROJECT_ROOT).parts[0] in PROJECT_PACKAGES:
            site = f"{path.relative_to(PROJECT_ROOT)}:{line}"
    return site


def generate(module, records: Iterable[dict], ctx: Context, info, out: Path, rejected: Path, *,
             limit: int | None = None):
    """Generate, then the rule filters, into `out` (records) and `rejected` (drops): the converter path.
    Input records that rows under `info.licence` may not be derived from are not used: each is
    read and dropped (`_derivable`), written to `rejected` at once."""
    from sftmix.normalize import documents, run

    def generated(sink, counts):
        def refuse(key: str, drop: Drop) -> None:
            counts.read += 1
            sink.reject("generate", drop.reason, drop.raw, detail=drop.detail, key=key)

        derivable = _derivable(records, info.licence, refuse) if info.licence else records
        return documents(info, stream(module, derivable, ctx, limit=limit), sink, counts, stage="generate")

    return run(generated, info, out, rejected, info.filters or {}, source_step="generate")
