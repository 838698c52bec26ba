"""HuggingFaceFW/fineweb-edu: educational web documents, kept as seeds for QA generators.

Raw layout (verified on a stored copy of the dataset card, v1.4.0, whose `configs` declare the
features, and on the `dataset_info` of several re-uploads made with `datasets`): Parquet, one
split `train`; configs `default` (`data/*/*`), `sample-10BT` / `sample-100BT` / `sample-350BT`
(`sample/10BT/*` ...) and one per dump `CC-MAIN-YYYY-WW` (`data/CC-MAIN-YYYY-WW/*`); shards are
named `000_00000.parquet`, `001_00000.parquet`... (paths used by public download scripts).
Columns: `text` (string), `id` (string, "<urn:uuid:...>"), `dump` (string, "CC-MAIN-2024-10"),
`url` (string), `file_path` (string, s3 WARC path), `language` (string, "en"),
`language_score` (float64), `token_count` (int64, GPT-2 tokens), `score` (float64, classifier
score 0-5), `int_score` (int64, rounded score; the release keeps int_score >= 3). The v1.4.0
card also declares `date` (string); older shards and re-uploads lack it. It is not read here.
Licence ODC-BY 1.0 (plus the CommonCrawl terms of use).

Mapping: a document is a record with ONE user message holding the text verbatim; generators turn
it into QA conversations and choose documents by the scores kept in meta.
"""

from __future__ import annotations

from sftmix.record import message
from sftmix.sources.base import Converted, Drop
from sftmix.sources.common import iso639_1

ROW_LANGUAGE = True  # the `language` column

ANSWERS = False  # documents only: QA comes from a generator
FILTER_DEFAULTS = {"role_order": {"require_assistant": False}}  # so no rule drops its rows for that

META_FIELDS = ("score", "int_score", "url", "dump", "token_count")


def convert(row: dict) -> Converted:
    text = row["text"]
    if not isinstance(text, str):
        raise Drop("malformed_row", f"text is {type(text).__name__}")
    if not text.strip():
        raise Drop("empty_turn", "text is empty")
    return Converted(
        messages=[message("user", text)],
        language=iso639_1(row.get("language")),
        meta={name: row.get(name) for name in META_FIELDS if row.get(name) is not None},
        key=row.get("id") or None,
    )
