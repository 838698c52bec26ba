"""openr1-math-translated: OpenR1-Math problems and solutions translated into ca/es/eu/gl/pt.

Input: records of the `openr1_math` converter: a user problem and an assistant solution (R1's
written solution, reasoning removed) ending in \\boxed{...}; `origin` JSON with the reference
`answer`, the solution's last `boxed` content, `source`, `problem_type`, `question_type`, `key`
(the OpenR1 uuid). Rows of another shape, rows without a \\boxed{} answer and rows longer than
`max_source_chars` (default 10000 characters, problem + solution: their translation would not fit
the model's output) are not eligible; the numbers skipped are logged.

Target languages: `params.target_languages` (default: the languages the targets name) that have targets,
minus a row's own language. A `"*"` target (one over every language) is shared evenly by
`params.target_languages`, which it needs.

Assignment (`items`): eligible rows are ordered by sha256(seed, name, row id). Each language L
takes `ctx.wanted(L)` rows (all of them for "all") as a contiguous arc of that order, the arcs laid
end to end around the circle in language order: while the wanted rows add up to no more than the
input, every row goes to at most one language (no problem is translated twice); when they add up to
more (205k wanted from ~93k rows), the arcs wrap and a row goes to ceil(total / rows) languages at
most, never twice to one. Items come in input order, one per (row, language), keyed "<id>:<lang>".

Generation (`generate`): one call (`translation_system` + `translation_user`) asks for the
translation as two tagged blocks, <problem> and <solution>, not JSON: LaTeX backslashes inside JSON
strings are easy to get wrong (\\frac and \\boxed are valid JSON escapes for a form feed and a
backspace), and a wrong escape would silently corrupt the math. Checks, in order:
- `malformed_translation`: the two blocks are not there (or one is empty);
- `final_answer_changed`: the translated solution's last \\boxed{...} differs from the original's
  (all whitespace removed before comparing);
- `latex_changed`: the problem or the solution has a different number of `$`, `\\[`, `\\]`, `\\(`,
  `\\)`, code fences or `\\boxed` than the original (math or code lost, added or re-delimited);
- `not_translated`: the text came back unchanged;
- `wrong_language`: the prose is detectably another language (CLD2, which tells ca, es, eu, gl
  and pt apart: `filters.language_id.detected_instead`; plus an English-function-word check);
plus `truncated` and the LLM client's failures (`http_4xx`, `llm_retries_exhausted`).

Row: [user: translated problem, assistant: translated solution], in the target language, `key` =
the OpenR1 uuid; meta: `source_id` (the English record's id), `source_language`, `answer`, `boxed`,
`source`, `problem_type`, `question_type`.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from typing import Iterator

from filters.language_id import detected_instead
from generators.base import (LANGUAGE_NAMES, Context, GeneratorBroken, Item, Positive, hash_rank, prompt,
                             record_licences, record_origin, reply_text)
from generators.code_math import blank_code_and_math
from sftmix.record import message
from sftmix.sources.base import Converted, Drop
from sftmix.sources.common import last_boxed

log = logging.getLogger("sftmix.generators.translation")

NAME = "translation"
PROMPTS = ("translation_system", "translation_user")
PARAMS = {"target_languages": list[str], "max_source_chars": Positive, "max_tokens": Positive}  # the `params:` it reads
KEPT_ORIGIN = ("answer", "source", "problem_type", "question_type")
STRUCTURE = ("$", "\\[", "\\]", "\\(", "\\)", "```", "\\boxed")


# ------------------------------------------------------------------------------------------ helpers

def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def languages(params: dict, targets: dict) -> list[str]:
    """`target_languages` when given; otherwise every language a target names (a `"*"` target names
    none: translated into English by default, every English row would be skipped)."""
    return params.get("target_languages") or [lang for lang in targets if lang != "*"]


def _target_languages(ctx: Context) -> list[str]:
    wanted = languages(ctx.params, ctx.targets)
    if not wanted and any(n != 0 for n in ctx.targets.values()):  # a target of 0 wants nothing
        raise GeneratorBroken("a '*' target names no language to translate into: list them in params.target_languages")
    return [lang for lang in wanted if lang in ctx.targets or "*" in ctx.targets]


def _wanted(ctx: Context, language: str, takers: list[str]) -> int | None:
    """Rows wanted in `language`: its target's, or an even share of a `"*"` target, which the mixing
    keeps over every language together (each language asked for all of it paid for len(languages)
    times the rows kept), among the `takers`, the languages some row can be translated into (not
    its own: English input and `target_languages: [en, es]` made half the rows wanted)."""
    wanted = ctx.wanted(language)
    if wanted is None or "*" not in ctx.targets:
        return wanted
    return -(-wanted // len(takers)) if language in takers else 0


# --------------------------------------------------------------------------------------- selection

def _payload(record: dict, max_chars: int) -> dict | str:
    """What an item needs of a record, or why the record is not eligible."""
    turns = record.get("messages") or []
    if [t.get("role") for t in turns] != ["user", "assistant"] or (record.get("tools") or "[]").strip() not in ("[]", ""):
        return "shape"
    problem, solution = (turns[0].get("content") or "").strip(), (turns[1].get("content") or "").strip()
    boxed = last_boxed(solution)
    if not problem or boxed is None:
        return "no_boxed_answer"
    if len(problem) + len(solution) > max_chars:
        return "too_long"
    origin = record_origin(record)
    meta = {k: origin[k] for k in KEPT_ORIGIN if origin.get(k) is not None}
    return {"id": record["id"], "language": record.get("language") or "en", "problem": problem,
            "solution": solution, "boxed": boxed, "key": origin.get("key"), "meta": meta}


def items(records, ctx: Context) -> Iterator[Item]:
    languages = _target_languages(ctx)
    if not languages:
        return
    max_chars = int(ctx.params.get("max_source_chars", 10000))
    pool: list[tuple[int, int, dict, tuple[str, ...]]] = []  # (rank, input order, payload, the record's licences)
    seen: set[str] = set()
    skipped: Counter = Counter()
    for index, record in enumerate(records):
        if record["id"] in seen:
            skipped["duplicate"] += 1
            continue
        seen.add(record["id"])
        payload = _payload(record, max_chars)
        if isinstance(payload, str):
            skipped[payload] += 1
            continue
        pool.append((hash_rank(ctx.seed, NAME, record["id"]), index, payload, record_licences(record)))
    if skipped:
        log.info("%s: %d rows eligible, skipped %s", NAME, len(pool), dict(skipped))
    if not pool:
        return
    pool.sort(key=lambda entry: (entry[0], entry[1]))
    size = len(pool)
    assigned: dict[int, list[str]] = {}
    offset = 0
    takers = [language for language in languages if any(entry[2]["language"] != language for entry in pool)]
    for language in languages:
        wanted = _wanted(ctx, language, takers)
        take = size if wanted is None else min(wanted, size)
        for step in range(take):
            assigned.setdefault((offset + step) % size, []).append(language)
        offset += take
    for position in sorted(assigned, key=lambda p: pool[p][1]):
        _, _, payload, licences = pool[position]
        for language in assigned[position]:
            if language != payload["language"]:
                yield Item(key=f"{payload['id']}:{language}", payload=payload, language=language, licences=licences)


# ----------------------------------------------------------------------------------------- checks

_ENGLISH = {"the", "of", "and", "is", "are", "to", "in", "that", "this", "with", "for", "it", "we", "let",
            "be", "which", "by", "from", "then", "therefore", "find", "an"}


def _prose_words(text: str) -> list[str]:
    return re.findall(r"[^\W\d_]{2,}", blank_code_and_math(text, latex_commands=True).lower())


def _language_problem(text: str, language: str) -> str | None:
    """What language the prose of `text` detectably is instead of `language`, or None."""
    words = _prose_words(text)
    if len(words) >= 8 and sum(w in _ENGLISH for w in words) / len(words) > 0.2:
        return "en"
    prose = " ".join(words)
    return detected_instead(prose[:2000], language) if len(prose) >= 80 else None


_NON_SPACE = re.compile(r"\S")


def _blocks(text: str) -> tuple[str, str] | None:
    """The groups of `re.search(r"<problem>(.*?)</problem>\\s*<solution>(.*)</solution>", text,
    re.DOTALL)`, found with `str.find`: that regex tries every `<problem>` with every `</problem>`
    after it, each up to the text's end (cubic: 25 s for 24,000 characters of an unclosed reply).
    Every later `<problem>` has fewer `</problem>`s after it, so the first one
    matches if any does; its problem ends at the first `</problem>` followed by spaces and
    `<solution>`, and the solution at the last `</solution>`, if that comes after."""
    opener = text.find("<problem>")
    if opener < 0:
        return None
    closer = text.find("</problem>", opener + 9)
    while closer >= 0:
        after = _NON_SPACE.search(text, closer + 10)
        if after is not None and text.startswith("<solution>", after.start()):
            end = text.rfind("</solution>")
            start = after.start() + 10
            return (text[opener + 9:closer], text[start:end]) if end >= start else None
        closer = text.find("</problem>", closer + 10)
    return None


def _parse(text: str) -> tuple[str, str]:
    blocks = _blocks(text)
    if not blocks or not blocks[0].strip() or not blocks[1].strip():
        raise Drop("malformed_translation", "no <problem> and <solution> blocks")
    return blocks[0].strip(), blocks[1].strip()


def _structure_change(original: str, translated: str) -> str | None:
    for token in STRUCTURE:
        before, after = original.count(token), translated.count(token)
        if before != after:
            return f"{token!r} {before} -> {after}"
    return None


# -------------------------------------------------------------------------------------- generation

async def generate(item: Item, ctx: Context) -> list[Converted] | Drop:
    source, language = item.payload, item.language
    name = LANGUAGE_NAMES.get(language, language)
    asked = [
        {"role": "system", "content": prompt("translation_system").substitute(language_name=name).strip()},
        {"role": "user", "content": prompt("translation_user").substitute(
            language_name=name, problem=source["problem"], solution=source["solution"]).strip()},
    ]
    reply = await ctx.llm.complete(asked, max_tokens=int(ctx.params.get("max_tokens", 8192)))
    problem, solution = _parse(reply_text(reply))

    boxed = last_boxed(solution)
    if boxed is None or _squash(boxed) != _squash(source["boxed"]):
        raise Drop("final_answer_changed", f"{source['boxed']!r} -> {boxed!r}")
    for part, original, translated in (("problem", source["problem"], problem),
                                       ("solution", source["solution"], solution)):
        change = _structure_change(original, translated)
        if change:
            raise Drop("latex_changed", f"{part}: {change}")
    if _squash(problem + solution) == _squash(source["problem"] + source["solution"]) \
            and len(_prose_words(source["problem"] + source["solution"])) >= 5:
        raise Drop("not_translated", "the text came back unchanged")
    for text in (problem, solution):  # apart: a long translated solution hid a problem left in English
        wrong = _language_problem(text, language)
        if wrong:
            raise Drop("wrong_language", f"reads as {wrong}, wanted {language}")

    meta = {"source_id": source["id"], "source_language": source["language"], **source["meta"],
            "boxed": source["boxed"]}
    return [Converted(messages=[message("user", problem), message("assistant", solution)], language=language,
                      meta=meta, key=source.get("key"))]
