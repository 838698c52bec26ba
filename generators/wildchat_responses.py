"""wildchat-curated-deepseekv3: real WildChat first-turn prompts answered afresh by the generator model.

Input: records of the `wildchat` converter (the FIRST user turn alone; `language` from WildChat's
label; `origin` JSON with `conversation_hash`, `model`, `turn`, `key`). The converter already
dropped prompts flagged `toxic` or `redacted` (their own turn's flags, or a toxic reply).

Selection (`items`): records in a target language (any language for a `"*"` target), optionally a
hash-based share `keep_fraction` (default 1.0) of them, one item per record until each language
has `ctx.wanted(lang)` items (a `"*"` target: that many over all languages); then reading stops. Records that cannot make a good row are handed
on as drop items that cost no LLM call and do not count against the quota, so every rejection is
recorded with its reason: `empty_prompt`, `prompt_too_short` (< `min_prompt_chars`, default 10,
after stripping: "hi", "test"), `prompt_too_long` (> `max_prompt_chars`, default 24000: pasted
dumps that leave no room for an answer in the 32k window), `duplicate_prompt` (the same text,
case and spacing aside, as an earlier prompt: WildChat repeats prompts many times; at
temperature 0 a repeat would only return the cached answer, which dedup drops later).

Generation (`generate`): one call, the system prompt `wildchat_responses_system` (the manifest
identity card's name and developer when given, the reply language, no knowledge-cutoff talk),
then the prompt verbatim (outer whitespace stripped). The row is user prompt -> assistant
response; the system prompt is not part of it. Drops: `truncated` (finish_reason length: a cut
answer is not a training target), `empty_response`, and the client's failures `http_4xx`,
`llm_retries_exhausted`. Replies in the wrong language, other models' identities and
boilerplate refusals are left to the rule filters that run afterwards (`language`, `identity`,
`boilerplate`).
"""

from __future__ import annotations

import hashlib
from typing import Iterator

from generators.base import (LANGUAGE_NAMES, Context, Count, Fraction, Item, Positive, first_user_text, hash_fraction,
                             prompt, record_licences, record_origin, reply_text)
from sftmix.record import message
from sftmix.sources.base import Converted, Drop

NAME = "wildchat_responses"
PROMPTS = ("wildchat_responses_system",)
PARAMS = {"min_prompt_chars": Count, "max_prompt_chars": Positive, "keep_fraction": Fraction,  # the `params:` it reads
          "max_response_tokens": Positive}


def _problem(text: str, params: dict, seen: set[bytes]) -> tuple[str, str] | None:
    stripped = text.strip()
    if not stripped:
        return "empty_prompt", ""
    min_chars, max_chars = int(params.get("min_prompt_chars", 10)), int(params.get("max_prompt_chars", 24000))
    if len(stripped) < min_chars:
        return "prompt_too_short", f"{len(stripped)} < {min_chars} characters"
    if len(stripped) > max_chars:
        return "prompt_too_long", f"{len(stripped)} > {max_chars} characters"
    digest = hashlib.sha256(" ".join(stripped.lower().split()).encode()).digest()[:16]
    if digest in seen:
        return "duplicate_prompt", "same text as an earlier prompt"
    seen.add(digest)
    return None


def items(records, ctx: Context) -> Iterator[Item]:
    params = ctx.params
    keep_fraction = float(params.get("keep_fraction", 1.0))
    # prompts still wanted per target: a language, or "*", one target over every language
    left: dict[str, int | None] = {cell: ctx.wanted(cell) for cell in (["*"] if "*" in ctx.targets else ctx.languages())}

    def full() -> bool:
        return all(n is not None and n <= 0 for n in left.values())

    if full():
        return
    seen: set[bytes] = set()
    for record in records:
        language = record.get("language")
        cell = ctx.cell(language)
        if cell not in left or not language:
            continue
        if left[cell] is not None and left[cell] <= 0:
            continue
        text = first_user_text(record, first_turn_only=True)
        if text is None:
            continue
        key = record["id"]
        if keep_fraction < 1.0 and hash_fraction(ctx.seed, NAME, key) >= keep_fraction:
            continue
        origin = record_origin(record)
        problem = _problem(text, params, seen)
        if problem is not None:
            yield Item(key=key, language=language, payload={"drop": problem, "prompt": text}, licences=record_licences(record))
            continue
        if left[cell] is not None:
            left[cell] -= 1
        yield Item(key=key, language=language, licences=record_licences(record), payload={
            "prompt": text.strip(), "key": origin.get("key"), "conversation_hash": origin.get("conversation_hash"),
            "original_model": origin.get("model")})
        if full():
            return  # every language has its prompts: read no further input


def _identity(card) -> str:
    if card is None:
        return "a helpful AI assistant"
    get = card.get if isinstance(card, dict) else lambda name: getattr(card, name, None)
    name, developer = get("name"), get("developer")
    if name and developer:
        return f"{name}, an AI assistant developed by {developer}"
    return f"{name}, an AI assistant" if name else "a helpful AI assistant"


async def generate(item: Item, ctx: Context) -> list[Converted]:
    if "drop" in item.payload:
        raise Drop(*item.payload["drop"])
    system = prompt("wildchat_responses_system").substitute(
        identity=_identity(ctx.identity), language_name=LANGUAGE_NAMES.get(item.language, item.language))
    user = item.payload["prompt"]
    reply = await ctx.llm.complete([{"role": "system", "content": system}, {"role": "user", "content": user}],
                                   max_tokens=ctx.params.get("max_response_tokens"))
    response = reply_text(reply).strip()
    if not response:
        raise Drop("empty_response", "the model returned no text")
    meta = {k: v for k, v in (("conversation_hash", item.payload.get("conversation_hash")),
                              ("original_model", item.payload.get("original_model"))) if v is not None}
    return [Converted(messages=[message("user", user), message("assistant", response)], language=item.language,
                      meta=meta, key=item.payload.get("key"))]
