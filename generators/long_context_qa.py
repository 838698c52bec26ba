"""long-context-qa: questions about a long document that the user pastes into the conversation.

Input: records of the `fineweb_edu` converter (one user message holding the document verbatim;
`origin` JSON with `token_count` (GPT-2 tokens), `int_score`, `url`, `key` = the document's urn).
The manifest's fineweb-edu source must not cut long rows (`filters: {length: {max_tokens: null}}`).

Selection (`items`): documents of `min_tokens` to `max_tokens` tokens (defaults 2000 and 24000,
so document + question + answer stay inside the mixture's 32k limit), counted from `token_count`
when the record has it, else as characters / `chars_per_token` (default 4); optionally
`int_score >= min_int_score` (default: no check) and a hash-based share `keep_fraction` (default
1.0). Each document is given ONE target language, drawn with a per-document random stream
weighted by the rows each language still needs, until every language has
`ceil(ctx.wanted(lang) / questions_per_document)` documents; then reading stops.

Generation (`generate`): one JSON-validated LLM call (`long_context_qa`) writes
`questions_per_document` (default 1) request(s) in the target language, each with an answer in
that language and 2-5 evidence passages copied verbatim from the document. The kind of request
(multi-part question, summary, causes, comparison, easy-to-miss detail, step-by-step
explanation: `long_context_qa_tasks`, one per line) and the layout of the user turn (document then
question, question then document, quoted, tagged) are drawn per document with `ctx.rng`, so the
mixture does not teach one fixed format. Grounding is checked locally, at no cost: an answer is kept
only if at least `min_evidence` (default 1) of its evidence passages (of 4+ words) occur in the
document (case, whitespace, quote marks and ellipses normalised). The row is user (document +
request) -> assistant (answer), one row per kept request, the document verbatim (outer whitespace
stripped).

Drops: `no_questions` (the model found the document unusable), `ungrounded_answer` (no evidence
passage found in the document), and the LLM client's failures passed through: `invalid_json`,
`truncated`, `http_4xx`, `llm_retries_exhausted`.
"""

from __future__ import annotations

import re
from typing import Iterator

from generators.base import (LANGUAGE_NAMES, Context, Count, Fraction, Item, LanguageQuotas, Positive, Ratio, Score,
                             first_user_text, hash_fraction, prompt, record_licences, record_origin)
from sftmix.llm import Failure
from sftmix.record import message
from sftmix.sources.base import Converted, Drop

NAME = "long_context_qa"
PROMPTS = ("long_context_qa", "long_context_qa_tasks")
PARAMS = {"min_int_score": Score | None, "keep_fraction": Fraction, "min_tokens": Positive, "max_tokens": Positive,  # the `params:` it reads
          "chars_per_token": Ratio, "questions_per_document": Positive, "min_evidence": Count}

SCHEMA = {
    "type": "object",
    "required": ["items"],
    "properties": {
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["question", "answer", "evidence"],
                "properties": {"question": {"type": "string"}, "answer": {"type": "string"},
                               "evidence": {"type": "array", "items": {"type": "string"}}},
            },
        }
    },
}

LAYOUTS = {  # how the user pastes the document; no words, so every language can use them
    "document_first": lambda document, question: f"{document}\n\n{question}",
    "question_first": lambda document, question: f"{question}\n\n{document}",
    "quoted": lambda document, question: f'{question}\n\n"""\n{document}\n"""',
    "tagged": lambda document, question: f"<document>\n{document}\n</document>\n\n{question}",
}


# --------------------------------------------------------------------------------------- selection

def _tokens(text: str, origin: dict, chars_per_token: float) -> int:
    count = origin.get("token_count")
    return int(count) if isinstance(count, (int, float)) and count > 0 else int(len(text) / chars_per_token)


def items(records, ctx: Context) -> Iterator[Item]:
    params = ctx.params
    min_tokens, max_tokens = int(params.get("min_tokens", 2000)), int(params.get("max_tokens", 24000))
    chars_per_token = float(params.get("chars_per_token", 4.0))
    min_score = params.get("min_int_score")
    keep_fraction = float(params.get("keep_fraction", 1.0))
    quotas = LanguageQuotas(ctx, float(params.get("questions_per_document", 1)))
    if quotas.full():
        return
    for record in records:
        text = first_user_text(record)
        if text is None or not text.strip():
            continue
        origin = record_origin(record)
        tokens = _tokens(text, origin, chars_per_token)
        if not min_tokens <= tokens <= max_tokens:
            continue
        if min_score is not None and (origin.get("int_score") is None or origin["int_score"] < min_score):
            continue
        key = record["id"]
        if keep_fraction < 1.0 and hash_fraction(ctx.seed, NAME, key) >= keep_fraction:
            continue
        language = quotas.draw(ctx.rng(f"{NAME}:language:{key}"))
        quotas.take(language)
        yield Item(key=key, language=language, licences=record_licences(record), payload={
            "document": text.strip(), "key": origin.get("key"), "url": origin.get("url"), "tokens": tokens})
        if quotas.full():
            return  # every language has its documents: read no further input


# -------------------------------------------------------------------------------------- generation

_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "«": '"', "»": '"', "‘": "'", "’": "'", "–": "-", "—": "-"})
_ELLIPSIS = re.compile(r"\.\.\.|…|\[\.\.\.\]")


def _normal(text: str) -> str:
    return " ".join(text.translate(_QUOTES).lower().split())


def grounded(evidence: list[str], document: str) -> int:
    """How many evidence passages occur in the document: every fragment around an ellipsis as whole
    words, and one of them of 4+ words (single words joined by ellipses quote nothing)."""
    normal_document = _normal(document)
    found = 0
    for passage in evidence:
        fragments = [_normal(f).strip(" \"'") for f in _ELLIPSIS.split(passage)]
        fragments = [f for f in fragments if f]
        if fragments and max(len(f.split()) for f in fragments) >= 4 and all(
                re.search(rf"(?<!\w){re.escape(f)}(?!\w)", normal_document) for f in fragments):
            found += 1
    return found


def _tasks() -> list[str]:
    return [line.strip() for line in prompt("long_context_qa_tasks").template.splitlines() if line.strip()]


async def generate(item: Item, ctx: Context) -> list[Converted]:
    rng = ctx.rng(f"{NAME}:task:{item.key}")
    task = rng.choice(_tasks())
    layout = rng.choice(sorted(LAYOUTS))
    wanted = int(ctx.params.get("questions_per_document", 1))
    min_evidence = int(ctx.params.get("min_evidence", 1))
    document = item.payload["document"]
    text = prompt("long_context_qa").substitute(document=document, n_questions=wanted, task=task,
                                                language_name=LANGUAGE_NAMES.get(item.language, item.language))
    result = await ctx.llm.complete_json([{"role": "user", "content": text}], SCHEMA)
    if isinstance(result, Failure):
        raise Drop(result.reason, result.detail)
    entries = [e for e in result[0]["items"] if e["question"].strip() and e["answer"].strip()][:wanted]
    if not entries:
        raise Drop("no_questions", "the model found nothing to ask about this document")
    meta = {k: v for k, v in (("url", item.payload.get("url")), ("document_tokens", item.payload["tokens"]),
                              ("task", _tasks().index(task)), ("layout", layout)) if v is not None}
    rows = []
    for index, entry in enumerate(entries):
        found = grounded(entry["evidence"], document)
        if found < min_evidence:
            continue
        question, answer = entry["question"].strip(), entry["answer"].strip()
        rows.append(Converted(
            messages=[message("user", LAYOUTS[layout](document, question)), message("assistant", answer)],
            language=item.language, key=item.payload.get("key"),
            meta={**meta, "question_index": index, "evidence_found": found, "evidence_given": len(entry["evidence"])}))
    if not rows:
        raise Drop("ungrounded_answer", f"none of {len(entries)} answer(s) quotes the document verbatim")
    return rows
