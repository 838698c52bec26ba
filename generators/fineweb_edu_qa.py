"""fineweb-edu_qa: standalone QA conversations written from high-score FineWeb-Edu documents.

Input: records of the `fineweb_edu` converter (one user message holding the document verbatim;
`origin` JSON with `int_score`, `score`, `url`, `token_count`, `key` = the document's urn).

Selection (`items`): documents with `int_score >= params.min_int_score` (default 4; a missing
`int_score` falls back to round(`score`); `min_int_score: null` turns the check off) and at least
`min_chars` characters (default 200); optionally a hash-based share `keep_fraction` (default 1.0)
of them, so a build can spread over the whole input instead of its first shards. Each selected
document is given ONE target language, drawn with a per-document random stream (`ctx.rng`)
weighted by the rows each language still needs; a language is closed once it has
`ceil(ctx.wanted(lang) / expected_rows_per_document)` documents, and reading stops (no further
input is consumed) when every language is closed. Documents longer than `max_document_chars`
(default 20000) are cut at a paragraph boundary before prompting.

Generation (`generate`), two LLM passes, both JSON validated by a JSON Schema:
1. `fineweb_edu_qa`: `pairs_per_document` (default 3) question/answer pairs in the target language
   (the document is usually English; the prompt says so), meant to stand alone.
2. `fineweb_edu_qa_check`: the same model, shown the pairs WITHOUT the document, gives a verdict
   per pair on whether it is self-contained (no "the text", no unresolved references, the answer
   answers the question, in the target language). Only pairs with a `true` verdict are kept; a pair
   the checker gives no verdict for is not kept.

Output layout (`params.layout`): `"pairs"` (default) makes one row per kept pair, user question ->
assistant answer: the pairs are independent by construction (the checker judges each alone), and
one-pair rows let the mixer's hash sampling pick them one by one. `"conversation"` makes one
multi-turn row per document with the kept pairs in order. Rows carry the document's urn as `key`
and `url`, `int_score`, `pair_index` / `pairs_kept` in meta.

Drops: `no_qa_pairs` (the model found nothing to ask: navigation, adverts, fragments),
`no_self_contained_pairs` (the checker kept none), and the LLM client's failures passed through
with the pass in the detail: `invalid_json` (no schema-valid JSON after re-asking), `truncated`
(finish_reason length), `http_4xx`, `llm_retries_exhausted`.
"""

from __future__ import annotations

import json
import math
from typing import Iterator, Literal

from generators.base import (LANGUAGE_NAMES, Context, Count, Fraction, Item, LanguageQuotas, Positive, Ratio, Score,
                             first_user_text, hash_fraction, prompt, record_licences, record_origin)
from sftmix.llm import Failure
from sftmix.record import message
from sftmix.sources.base import Converted, Drop

NAME = "fineweb_edu_qa"
PROMPTS = ("fineweb_edu_qa", "fineweb_edu_qa_check")
PARAMS = {"min_int_score": Score | None, "min_chars": Count, "keep_fraction": Fraction, "pairs_per_document": Positive,  # the `params:` it reads
          "expected_rows_per_document": Ratio, "max_document_chars": Positive, "layout": Literal["pairs", "conversation"]}

GENERATION_SCHEMA = {
    "type": "object",
    "required": ["pairs"],
    "properties": {
        "pairs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["question", "answer"],
                "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
            },
        }
    },
}
CHECK_SCHEMA = {
    "type": "object",
    "required": ["verdicts"],
    "properties": {
        "verdicts": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "self_contained"],
                "properties": {"index": {"type": "integer"}, "reason": {"type": "string"},
                               "self_contained": {"type": "boolean"}},
            },
        }
    },
}


# --------------------------------------------------------------------------------------- selection

def _int_score(origin: dict) -> float:
    value = origin.get("int_score")
    if value is None and origin.get("score") is not None:
        value = round(float(origin["score"]))
    return float(value) if value is not None else -math.inf


def _clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, at a paragraph (else sentence) boundary if one is near."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    for mark in ("\n\n", "\n", ". "):
        cut = head.rfind(mark)
        if cut >= limit // 2:
            return head[: cut + (1 if mark == ". " else 0)].rstrip()
    return head.rstrip()


def _layout(ctx: Context) -> str:
    return ctx.params.get("layout", "pairs")  # one of the two: the manifest checks PARAMS


def items(records, ctx: Context) -> Iterator[Item]:
    params = ctx.params
    min_score = params.get("min_int_score", 4)
    min_chars = int(params.get("min_chars", 200))
    keep_fraction = float(params.get("keep_fraction", 1.0))
    pairs = int(params.get("pairs_per_document", 3))
    layout = _layout(ctx)
    per_document = float(params.get("expected_rows_per_document", 1 if layout == "conversation" else max(1, pairs * 2 / 3)))
    max_chars = int(params.get("max_document_chars", 20000))
    quotas = LanguageQuotas(ctx, per_document)
    if quotas.full():
        return
    for record in records:
        text = first_user_text(record)
        if text is None or len(text.strip()) < min_chars:
            continue
        origin = record_origin(record)
        if min_score is not None and _int_score(origin) < float(min_score):
            continue
        key = record["id"]
        if keep_fraction < 1.0 and hash_fraction(ctx.seed, NAME, key) >= keep_fraction:
            continue
        language = quotas.draw(ctx.rng(f"{NAME}:{key}"))
        quotas.take(language)
        payload = {"document": _clip(text.strip(), max_chars), "key": origin.get("key"), "url": origin.get("url"),
                   "int_score": origin.get("int_score"), "score": origin.get("score")}
        yield Item(key=key, payload=payload, language=language, licences=record_licences(record))
        if quotas.full():
            return  # every language has its documents: read no further input


# -------------------------------------------------------------------------------------- generation

def _value(result, stage: str):
    if isinstance(result, Failure):
        raise Drop(result.reason, f"{stage}: {result.detail}")
    return result[0]


def _clean_pairs(raw: list[dict], limit: int) -> list[tuple[str, str]]:
    pairs, seen = [], set()
    for pair in raw:
        question, answer = pair["question"].strip(), pair["answer"].strip()
        normal = " ".join(question.lower().split())
        if not question or not answer or normal in seen:
            continue
        seen.add(normal)
        pairs.append((question, answer))
    return pairs[:limit]


async def generate(item: Item, ctx: Context) -> list[Converted]:
    language_name = LANGUAGE_NAMES.get(item.language, item.language)
    wanted_pairs = int(ctx.params.get("pairs_per_document", 3))
    text = prompt("fineweb_edu_qa").substitute(document=item.payload["document"], n_pairs=wanted_pairs,
                                               language_name=language_name)
    value = _value(await ctx.llm.complete_json([{"role": "user", "content": text}], GENERATION_SCHEMA), "generation")
    pairs = _clean_pairs(value["pairs"], wanted_pairs)
    if not pairs:
        raise Drop("no_qa_pairs", "the model found nothing to ask about this document")

    numbered = [{"index": i, "question": q, "answer": a} for i, (q, a) in enumerate(pairs, 1)]
    check = prompt("fineweb_edu_qa_check").substitute(
        language_name=language_name, pairs=json.dumps(numbered, ensure_ascii=False, indent=2))
    verdicts = _value(await ctx.llm.complete_json([{"role": "user", "content": check}], CHECK_SCHEMA), "check")["verdicts"]
    keep: dict[int, bool] = {}
    for verdict in verdicts:
        index = verdict["index"]
        keep[index] = keep.get(index, True) and verdict["self_contained"]
    kept = [(i, q, a) for i, (q, a) in enumerate(pairs, 1) if keep.get(i) is True]
    if not kept:
        raise Drop("no_self_contained_pairs", f"0 of {len(pairs)} pairs judged self-contained")

    meta = {"url": item.payload.get("url"), "int_score": item.payload.get("int_score"),
            "pairs_generated": len(pairs), "pairs_kept": len(kept)}
    meta = {k: v for k, v in meta.items() if v is not None}
    key = item.payload.get("key")
    if _layout(ctx) == "conversation":
        turns = [m for _, q, a in kept for m in (message("user", q), message("assistant", a))]
        return [Converted(messages=turns, language=item.language, meta=meta, key=key)]
    return [Converted(messages=[message("user", q), message("assistant", a)], language=item.language,
                      meta={**meta, "pair_index": i}, key=key) for i, q, a in kept]
