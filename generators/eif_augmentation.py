"""eif-augmentation: human conversations whose last request gains 1-3 verifiable constraints.

Input: canonical records of the mixture's human sources (aya, dolly, dolly-ca, no-robots,
MentorES/CA, RAG-Multilingual): a conversation with at least one user turn and no tools; what
follows the last user turn (the human answer) is replaced. The record's `language` decides the
row's language; only languages that have targets and that `generators.eif` can word constraints
in (`eif.LANGUAGES`) are used (records in other languages are skipped, with a log warning once).

Selection (`items`): per language, the `ctx.wanted(language)` records with the smallest
sha256(seed, name, record id) (a bounded heap, so memory is the quota, not the input), yielded in
input order once the input is read; every record of a language whose target is "all", yielded as
it is read (before the counted ones). Duplicate ids are taken once.

Generation (`generate`), for one record:
1. `eif.sample_constraints(ctx.rng(key), n, language)` draws n (`min_constraints`..
   `max_constraints`, default 1-3) compatible IFEval constraints; `combination:repeat_prompt` only
   when the request is at most `repeat_prompt_max_chars` (default 400) characters long, and then
   worded last. Their `eif.describe` texts (already in the conversation's language) are appended
   to the last user turn: no LLM involved, so the wording is exactly what the checker verifies.
2. The model answers the conversation (earlier turns unchanged, the new last user turn) under a
   hidden system prompt (`eif_augmentation_system`: answer in <language>, follow every instruction
   exactly; the conversation's own system prompt, if any, comes first and is kept in the row).
3. `eif.verify` checks the answer. If a constraint fails, the model gets up to `repair_attempts`
   (default 1) hidden follow-ups (`eif_augmentation_repair`) naming the unmet instructions and
   rewrites the whole answer; the row keeps only the final answer, and only if it passes.

Row: the original turns with the last user turn extended and the new answer last. Meta:
`constraints` (the list of {"id", "kwargs"}: IFEval ids and kwargs, so `eif.verify` or IFEval
itself can re-check the row against its last user turn and answer), `instruction_id_list` /
`kwargs` (IFEval's columns, `eif.to_ifeval`), `repaired` (answer came from a repair turn),
`seed_source`.

Drops: `constraints_not_met` (detail: the failed instruction ids, after the repairs),
`no_constraints` (the sampler found no compatible set), `empty_generation`, `truncated`
(finish_reason length), and the LLM client's failures (`http_4xx`, `llm_retries_exhausted`).
"""

from __future__ import annotations

import logging
from typing import Iterator

from generators import eif
from generators.base import (LANGUAGE_NAMES, Context, Count, Item, Positive, identity_line, prompt, reply_text,
                             top_ranked_per_language)
from sftmix.record import message
from sftmix.sources.base import Converted, Drop

log = logging.getLogger("sftmix.generators.eif_augmentation")

NAME = "eif_augmentation"
PROMPTS = ("eif_augmentation_system", "eif_augmentation_repair")
PARAMS = {"min_constraints": Positive, "max_constraints": Positive, "repeat_prompt_max_chars": Count,  # the `params:` it reads
          "max_tokens": Positive, "repair_attempts": Count}
REPEAT_PROMPT = "combination:repeat_prompt"


# --------------------------------------------------------------------------------------- selection

def _usable(record: dict) -> bool:
    """A plain chat (no tools) with a non-empty user turn."""
    if (record.get("tools") or "[]").strip() not in ("[]", ""):
        return False
    turns = record.get("messages") or []
    if any(t.get("role") == "tool" or t.get("tool_calls") for t in turns):
        return False
    return any(t.get("role") == "user" and (t.get("content") or "").strip() for t in turns)


def languages(params: dict, targets: dict) -> tuple[str, ...]:
    """Constraints are worded in these languages only (`eif.describe`)."""
    return eif.LANGUAGES


def items(records, ctx: Context) -> Iterator[Item]:
    skipped: set[str] = set()

    def usable(record: dict) -> bool:
        if not _usable(record):
            return False
        if record.get("language") not in eif.LANGUAGES:
            skipped.add(record.get("language"))
            return False
        return True

    def warn() -> None:
        if skipped:
            log.warning("%s: no constraint wording for %s (eif.LANGUAGES = %s): those records are skipped",
                        NAME, ", ".join(sorted(skipped)), ", ".join(eif.LANGUAGES))

    yield from top_ranked_per_language(records, ctx, NAME, usable, on_input_read=warn)


# -------------------------------------------------------------------------------------- generation

def _system(ctx: Context, language: str, original: str | None) -> str:
    hidden = prompt("eif_augmentation_system").substitute(
        identity=identity_line(ctx), language_name=LANGUAGE_NAMES.get(language, language)).strip()
    return f"{original.strip()}\n\n{hidden}" if original and original.strip() else hidden


def _constraints(ctx: Context, item: Item, request: str) -> list[dict]:
    params = ctx.params
    rng = ctx.rng(item.key)
    low, high = int(params.get("min_constraints", 1)), int(params.get("max_constraints", 3))
    n = rng.randint(low, max(low, high))
    repeat_ok = len(request) <= int(params.get("repeat_prompt_max_chars", 400)) and "\n" not in request
    try:
        picked = eif.sample_constraints(rng, n, item.language, prompt=request if repeat_ok else None)
    except ValueError as error:
        raise Drop("no_constraints", str(error)) from None
    return sorted(picked, key=lambda c: c["id"] == REPEAT_PROMPT)  # "repeat the request" reads last


def _failed(answer: str, constraints: list[dict]) -> list[dict]:
    return [c for c, ok in zip(constraints, eif.verify(answer, constraints, whole_words=True)) if not ok]


async def generate(item: Item, ctx: Context) -> list[Converted] | Drop:
    record, language = item.payload, item.language
    turns = [message(t["role"], t.get("content")) for t in record["messages"]]
    last = max(i for i, t in enumerate(turns) if t["role"] == "user")
    request = turns[last]["content"].strip()
    constraints = _constraints(ctx, item, request)
    instructions = [eif.describe(c, language) for c in constraints]
    user = message("user", request + "\n\n" + "\n".join(instructions))
    conversation = turns[:last] + [user]

    original_system = conversation[0]["content"] if conversation[0]["role"] == "system" else None
    body = conversation[1:] if original_system is not None else conversation
    asked = [{"role": "system", "content": _system(ctx, language, original_system)},
             *({"role": t["role"], "content": t["content"]} for t in body)]
    max_tokens = ctx.params.get("max_tokens")

    answer = reply_text(await ctx.llm.complete(asked, max_tokens=max_tokens)).strip()
    if not answer:
        raise Drop("empty_generation", "empty answer")
    failed = _failed(answer, constraints)
    repaired = False
    for _ in range(int(ctx.params.get("repair_attempts", 1))):
        if not failed:
            break
        unmet = "\n".join(f"- {eif.describe(c, language)}" for c in failed)
        asked = asked + [
            {"role": "assistant", "content": answer},
            {"role": "user", "content": prompt("eif_augmentation_repair").substitute(
                unmet=unmet, language_name=LANGUAGE_NAMES.get(language, language)).strip()},
        ]
        answer = reply_text(await ctx.llm.complete(asked, max_tokens=max_tokens)).strip()
        if not answer:
            raise Drop("empty_generation", "empty answer after repair")
        failed, repaired = _failed(answer, constraints), True
    if failed:
        raise Drop("constraints_not_met", ",".join(c["id"] for c in failed))

    meta = {"constraints": constraints, **eif.to_ifeval(constraints), "repaired": repaired,
            "seed_source": record.get("source")}
    return [Converted(messages=conversation + [message("assistant", answer)], language=language, meta=meta)]
