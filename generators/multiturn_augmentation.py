"""multiturn-augmentation: human conversations extended with 1-2 further user/assistant turns.

Input: canonical records of the mixture's human sources (aya, dolly, dolly-ca, no-robots,
MentorES/CA), single- or multi-turn: a conversation without tools that ends with a non-empty
assistant turn. The record's `language` is the row's language; only targeted languages are used.

Selection (`items`): per language, the `ctx.wanted(language)` records with the smallest
sha256(seed, name, record id) (a bounded heap, so memory is the quota, not the input), yielded in
input order once the input is read; every record of a language whose target is "all", yielded as
it is read (before the counted ones). Duplicate ids are taken once.

Generation (`generate`): the number of new turns (`min_new_turns`..`max_new_turns`, default 1-2)
and, per turn, the kind of follow-up (more detail, a further question, rework the answer, apply it,
question it, an example: `FOLLOW_UP_KINDS`) are drawn with `ctx.rng(key)`. Per new turn, two calls:
1. `multiturn_augmentation_question` (JSON, `{"question": ...}`, schema-validated): the next user
   message, in the conversation's language, written from a transcript of the conversation so far
   (turns longer than `max_turn_chars`, default 6000, are shortened in the transcript only).
   Two calls rather than one JSON with both turns: the answer is then written as a real chat
   completion over the real turns, like every other assistant turn, instead of inside a JSON string.
2. The answer: the conversation so far plus the new question as chat messages, under a hidden
   system prompt (`multiturn_augmentation_answer`: answer in <language>; the conversation's own
   system prompt, if any, comes first and is the only one kept in the row).
Original turns are kept unchanged. A turn that fails after at least one new turn succeeded ends the
extension there (the row keeps the turns made, meta `added_turns` < `planned_turns`); a failure on
the first turn drops the item.

Drops: `bad_follow_up` (empty, or a repeat of an earlier user message), `wrong_language` (the
follow-up or the answer is detectably in another language: CLD2, which tells ca, en, es, eu, gl
and pt apart, `filters.language_id.detected_instead`; plus an English-function-word check for
every other target),
`empty_generation`, `truncated`, and the LLM client's failures (`invalid_json`, `http_4xx`,
`llm_retries_exhausted`) with the step in the detail.
"""

from __future__ import annotations

import re
from typing import Iterator

from generators.base import (LANGUAGE_NAMES, Context, Item, Positive, identity_line, prompt, reply_text,
                             top_ranked_per_language)
from filters.language_id import detected_instead
from generators.code_math import blank_code_and_math
from sftmix.llm import Failure, RunStopped
from sftmix.record import message
from sftmix.sources.base import Converted, Drop

NAME = "multiturn_augmentation"
PROMPTS = ("multiturn_augmentation_question", "multiturn_augmentation_answer")
PARAMS = {"min_new_turns": Positive, "max_new_turns": Positive, "max_turn_chars": Positive,  # the `params:` it reads
          "max_tokens": Positive}

FOLLOW_UP_KINDS = (
    "ask for more detail on, or an explanation of, one specific point of the last answer",
    "ask a related question that goes one step further than the last answer",
    "ask the assistant to rework its last answer (for example shorter, simpler, as a list or a table, "
    "for another audience or in another tone)",
    "ask how the answer applies to a concrete situation of your own, giving the details needed",
    "question or double-check something in the last answer, or ask about an exception or a special case",
    "ask for an example, an analogy or a comparison that makes the answer clearer",
)
QUESTION_SCHEMA = {
    "type": "object",
    "required": ["question"],
    "properties": {"question": {"type": "string", "minLength": 1}},
}


# --------------------------------------------------------------------------------------- selection

def _usable(record: dict) -> bool:
    """A plain chat (no tools) with a user turn, ending with a non-empty assistant turn."""
    if (record.get("tools") or "[]").strip() not in ("[]", ""):
        return False
    turns = record.get("messages") or []
    if not turns or turns[-1].get("role") != "assistant" or not (turns[-1].get("content") or "").strip():
        return False
    if any(t.get("role") == "tool" or t.get("tool_calls") for t in turns):
        return False
    return any(t.get("role") == "user" for t in turns)


def items(records, ctx: Context) -> Iterator[Item]:
    return top_ranked_per_language(records, ctx, NAME, _usable)


# ----------------------------------------------------------------------------------------- checks

_ENGLISH = {"the", "of", "and", "is", "are", "to", "in", "that", "this", "with", "for", "it", "you", "what",
            "how", "be", "was", "which", "we", "your", "have", "an"}


def _language_problem(text: str, language: str) -> str | None:
    """What language `text` detectably is instead of `language`, or None when nothing says it is wrong."""
    plain = blank_code_and_math(text)
    words = re.findall(r"[^\W\d_]+", plain.lower())
    if language != "en" and len(words) >= 8 and sum(w in _ENGLISH for w in words) / len(words) > 0.2:
        return "en"
    return detected_instead(plain[:2000], language) if len(plain.strip()) >= 60 else None


# -------------------------------------------------------------------------------------- generation

def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half].rstrip()}\n[...]\n{text[-half:].lstrip()}"


def _transcript(turns: list[dict], limit: int) -> str:
    names = {"system": "System prompt", "user": "User", "assistant": "Assistant"}
    return "\n\n".join(f"[{names[t['role']]}]\n{_clip((t['content'] or '').strip(), limit)}" for t in turns)


async def _follow_up(ctx: Context, turns: list[dict], language: str, kind: str) -> str:
    name = LANGUAGE_NAMES.get(language, language)
    text = prompt("multiturn_augmentation_question").substitute(
        language_name=name, kind=kind, conversation=_transcript(turns, int(ctx.params.get("max_turn_chars", 6000))))
    result = await ctx.llm.complete_json([{"role": "user", "content": text}], QUESTION_SCHEMA)
    if isinstance(result, Failure):
        raise Drop(result.reason, f"follow-up: {result.detail}")
    question = result[0]["question"].strip()
    earlier = {" ".join(t["content"].lower().split()) for t in turns if t["role"] == "user"}
    if not question or " ".join(question.lower().split()) in earlier:
        raise Drop("bad_follow_up", "empty" if not question else "repeats an earlier user message")
    wrong = _language_problem(question, language)
    if wrong:
        raise Drop("wrong_language", f"follow-up reads as {wrong}, wanted {language}")
    return question


async def _answer(ctx: Context, turns: list[dict], language: str) -> str:
    hidden = prompt("multiturn_augmentation_answer").substitute(
        identity=identity_line(ctx), language_name=LANGUAGE_NAMES.get(language, language)).strip()
    body = turns
    if turns[0]["role"] == "system":
        hidden = f"{turns[0]['content'].strip()}\n\n{hidden}"
        body = turns[1:]
    asked = [{"role": "system", "content": hidden}, *({"role": t["role"], "content": t["content"]} for t in body)]
    reply = await ctx.llm.complete(asked, max_tokens=ctx.params.get("max_tokens"))
    try:
        answer = reply_text(reply).strip()
    except Drop as drop:
        raise Drop(drop.reason, f"answer: {drop.detail}") from None
    if not answer:
        raise Drop("empty_generation", "empty answer")
    wrong = _language_problem(answer, language)
    if wrong:
        raise Drop("wrong_language", f"answer reads as {wrong}, wanted {language}")
    return answer


async def generate(item: Item, ctx: Context) -> list[Converted] | Drop:
    record, language = item.payload, item.language
    original = [message(t["role"], t.get("content")) for t in record["messages"]]
    rng = ctx.rng(item.key)
    low, high = int(ctx.params.get("min_new_turns", 1)), int(ctx.params.get("max_new_turns", 2))
    planned = rng.randint(low, max(low, high))
    kinds = [rng.choice(FOLLOW_UP_KINDS) for _ in range(planned)]

    turns = list(original)
    added, stopped = 0, None
    for kind in kinds:
        try:
            question = await _follow_up(ctx, turns, language, kind)
            answer = await _answer(ctx, turns + [message("user", question)], language)
        except (Drop, RunStopped) as failure:
            if added == 0:
                raise
            # the budget reached (or the account refused) keeps the turns made, paid for, as any other failure does
            drop = failure if isinstance(failure, Drop) else Drop(failure.reason, str(failure))
            stopped = f"{drop.reason}: {drop.detail}" if drop.detail else drop.reason
            break
        turns += [message("user", question), message("assistant", answer)]
        added += 1

    meta = {"original_turns": len(original), "added_turns": added, "planned_turns": planned,
            "follow_up_kinds": kinds[:added], "seed_source": record.get("source")}
    if stopped:
        meta["stopped"] = stopped
    return [Converted(messages=turns, language=language, meta=meta)]
