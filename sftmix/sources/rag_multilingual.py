"""projecte-aina/RAG_Multilingual: extractive QA turned into generative answers (ca/es/en).

Raw layout: three JSON Lines files at the repo root, `train.jsonl` (42.3k rows),
`validation.jsonl` (8.46k), `test.jsonl` (5.64k); one config `default`; 56,406 rows in all
(card and Hub viewer). One object per line with `id`, `instruction` (the question),
`context` (the passage), `response` (the Mixtral-8x7B "expanded", human-like answer),
`category`, `lang` ("ca" / "es" / "en") and `extractive` (the human-reviewed answer span from
CatalanQA / SQuAD / SQAC that the answer was generated around). Column names verified from
third-party loaders that read the files (a RAG fine-tuning script listing "id | instruction |
context | response | category | lang | extractive", and a trial script pinned to revision
a7020cf that reads `id`, `lang`, `context`, `extractive`, `instruction`); the type of `id` and
the `category` values are not documented, so `id` is stringified and `category` passed through.
Repo history: "remove Expanded response" / "Fixed expanded response in Catalan and Spanish"
(July 2024) rewrote the data files; this reads the current (a7020cf) layout.
Licence CC-BY-SA-4.0 (card).

Mapping (same prompt layout as the `dolly` and `mentor` converters): user = instruction, a
blank line, then the context; assistant = response. The row's `lang` becomes the language; the
extractive span and category stay in meta so a filter can check the answer keeps its "kernel of
truth".
"""

from __future__ import annotations

from sftmix.record import message
from sftmix.sources.base import Converted, Drop
from sftmix.sources.common import iso639_1, text_column

ROW_LANGUAGE = True  # the `lang` column

LANGUAGES = {"ca", "es", "en"}


def convert(row: dict) -> Converted:
    if "instruction" not in row or "response" not in row:
        raise Drop("malformed_row", "instruction or response column missing")
    instruction, response = text_column(row, "instruction").strip(), text_column(row, "response").strip()
    context = text_column(row, "context", optional=True).strip()
    if not instruction:
        raise Drop("empty_turn", "instruction is empty")
    if not response:
        raise Drop("empty_turn", "response is empty")
    lang = row.get("lang")
    language = iso639_1(lang) if isinstance(lang, str) else None
    if lang and language not in LANGUAGES:  # the card lists exactly these three
        raise Drop("unknown_language", str(lang))
    meta = {"category": row.get("category"), "extractive": row.get("extractive")}
    key = row.get("id")
    return Converted(
        messages=[message("user", f"{instruction}\n\n{context}" if context else instruction), message("assistant", response)],
        language=language,
        meta={k: v for k, v in meta.items() if v not in (None, "")},
        key=str(key) if key not in (None, "") else None,
    )
