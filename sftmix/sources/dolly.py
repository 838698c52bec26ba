"""Dolly-format instruction data: databricks/databricks-dolly-15k and projecte-aina/dolly3k_ca.

Raw layouts (one converter, both files):
- databricks/databricks-dolly-15k: one JSON Lines file `databricks-dolly-15k.jsonl` at the repo
  root (15,011 lines, split `train`), keys `instruction`, `context`, `response`, `category`, all
  strings; `context` is "" (not null) when absent; no id. Verified from the many loaders that read
  `.../resolve/main/databricks-dolly-15k.jsonl` (litgpt `litgpt/data/dolly.py` and others) and
  the card. Licence CC-BY-SA-3.0.
- projecte-aina/dolly3k_ca: Parquet `data/train-*` (3,232 rows, split `train`); card
  `dataset_info` lists `id`, `category`, `instruction`, `response` (strings) and NO `context`.
  Catalan, CC-BY-SA-3.0. Whether the passage was folded into `instruction` is not documented.

Mapping: user = instruction, then a blank line, then context when context is non-empty (the
question first, as Dolly's own prompt template does); assistant = response. `context` is optional
so dolly3k_ca rows go through the same code.

Wikipedia citation markers ("[3]", "[12]", "[citation needed]") that Dolly contributors pasted
with the passages are removed from the context, and from the response of a row that shows it
copied from Wikipedia (its context had markers, or a marker follows a sentence's punctuation, as
in "in 2000.[3]"): a model should not learn to emit references it cannot resolve. The response
of any other row is left as written, since there "xs[0]" or "matrix[1][2]" is code. Code spans
(`...` and ``` fences) are never touched, nor are instructions. The number removed is kept in
meta so the cleaning stays auditable.
"""

from __future__ import annotations

import re

from sftmix.record import message
from sftmix.sources.base import Converted, Drop

# A marker glued to the text before it, e.g. "in 2000.[3] The" or "Paris[1][2],"; one space
# before it is eaten too ("word [3] next" -> "word next"). A marker opening a line ("[1] Smith,
# J.", a reference list) is not a citation in running text and is kept.
_MARKER = r"\[(?:\d{1,3}|citation needed|note \d{1,3})\]"
_CODE_OR_CITATION = re.compile(r"(```.*?```|`[^`\n]*`)|(?<=\S) ?" + _MARKER, re.DOTALL)
# Wikipedia's own: a marker after a sentence's punctuation (code indexes names and calls, not "."),
# or "[citation needed]" anywhere.
_COPIED_FROM_WIKIPEDIA = re.compile(r"[.,;:!?]" + _MARKER + r"|\[citation needed\]")


def _strip_citations(text: str) -> tuple[str, int]:
    removed = 0

    def replace(match: re.Match) -> str:
        nonlocal removed
        if match[1]:  # a code span, kept whole
            return match[1]
        removed += 1
        return ""

    return _CODE_OR_CITATION.sub(replace, text), removed


def convert(row: dict) -> Converted:
    instruction, response = row["instruction"], row["response"] or ""
    context = row.get("context") or ""
    if not isinstance(instruction, str) or not instruction.strip():
        raise Drop("empty_turn", "instruction is empty")
    if not isinstance(response, str):
        raise Drop("malformed_row", f"response is {type(response).__name__}")
    if not isinstance(context, str):
        raise Drop("malformed_row", f"context is {type(context).__name__}")
    context, removed_context = _strip_citations(context.strip())
    removed_response = 0
    if removed_context or _COPIED_FROM_WIKIPEDIA.search(response):
        response, removed_response = _strip_citations(response)
    if not response.strip():
        raise Drop("empty_turn", "response is empty")
    user = f"{instruction.strip()}\n\n{context}" if context else instruction.strip()
    meta = {"category": row.get("category")}
    if removed_context + removed_response:
        meta["citations_removed"] = removed_context + removed_response
    key = row.get("id")
    return Converted(
        messages=[message("user", user), message("assistant", response.strip())],
        meta={k: v for k, v in meta.items() if v is not None},
        key=str(key) if key not in (None, "") else None,
    )
