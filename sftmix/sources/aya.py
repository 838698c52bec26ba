"""CohereForAI/aya_dataset (now CohereLabs/aya_dataset), `default` config: one prompt/completion per row.

Raw layout (verified on the dataset card's `dataset_info`, the SEACrowd loader
`seacrowd/sea_datasets/aya_dataset` and several re-uploads' cards): Parquet files
`data/train-00000-of-00001.parquet` (202,362 rows) and `data/test-00000-of-00001.parquet`
(1,750 rows), all six columns plain strings:
- `inputs` (prompt), `targets` (completion),
- `language` (English name, e.g. "Standard Arabic", "Basque"; the card history has a
  "fix language names for train split" commit, so the name is the weaker signal),
- `language_code` (ISO 639-3, e.g. "eng", "spa", "eus", "por", "arb"),
- `annotation_type` ("original-annotations" | "re-annotations"),
- `user_id` (64-hex annotator hash; not kept: it identifies a person, not content).
Single turn, no system prompt, no row id. The `test` split is the same text as
aya_evaluation_suite/aya_human_annotated: it is an eval set, not training data.
"""

from __future__ import annotations

from sftmix.record import message
from sftmix.sources.base import Converted, Drop
from sftmix.sources.common import iso639_1

ROW_LANGUAGE = True  # `language_code`, else `language`


def convert(row: dict) -> Converted:
    prompt, completion = row["inputs"], row["targets"]
    if not isinstance(prompt, str) or not prompt.strip():
        raise Drop("empty_turn", "inputs is empty")
    if not isinstance(completion, str) or not completion.strip():
        raise Drop("empty_turn", "targets is empty")
    code = row.get("language_code")
    # The ISO 639-3 code is authoritative; the English name is only a fallback.
    language = iso639_1(code) or iso639_1(row.get("language"))
    meta = {"annotation_type": row.get("annotation_type"), "language_code": code}
    return Converted(
        messages=[message("user", prompt), message("assistant", completion)],
        language=language,
        meta={k: v for k, v in meta.items() if v},
    )
