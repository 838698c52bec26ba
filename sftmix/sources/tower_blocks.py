"""Unbabel/TowerBlocks-v0.2: translation-related instructions in ShareGPT turns, mixed licences.

Raw layout (card `dataset_info` of TowerBlocks-v0.2, README at commit 0c00a3a): one config
`default`, one split `train` (637,563 rows) in `data/train-0000{0..3}-of-00004.parquet`, columns
- `conversations`: list of struct {`from`: string, `value`: string}; `from` is "human" or "gpt"
  (as read by public loaders); some `value`s are null (a public loader filters them out);
- `lang`: string, "either the language or language pair of the original dataset" (card), a pair
  written `src-tgt` (e.g. "en-pt");
- `split`: string, the split of the original dataset ("train", "dev");
- `dataset`: string, the original dataset (e.g. "general_mt_clean", the WMT/NTREX/Flores/...
  translation records), `task`: string (e.g. "machine_translation").
There is no id column. Empty or null turns are kept ("" in the record) for the empty-turn filter.

Licence: the card gives none ("We refer to the respective data sources below"), only the list of
sources. `Converted.licence` is set per row from `dataset` via `SOURCES` below; a row whose source
has no licence we could verify is dropped `licence_unknown` (mixtures keep only open-licensed
instances), a known non-open one `licence_not_open`. Open licences (share-alike included) are set
and left to the manifest's licence policy. Only the value "general_mt_clean" is verified; the other
`dataset` values are unknown, so sources are recognised by keyword (documented per entry).

Language: for a pair the assistant writes the target, so `lang` "en-pt" gives "pt"; a single code
("es", or a region-tagged "pt-BR") gives that language.
"""

from __future__ import annotations

import re

from sftmix.record import message
from sftmix.sources.base import Converted, Drop
from sftmix.sources.common import iso639_1

ROW_LANGUAGE = True  # the `lang` column (a pair's target)

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}

# (keyword in the normalized `dataset` value, source on the card, licence or None, where verified)
SOURCES: list[tuple[str, str, str | None, str]] = [
    ("ultrachat", "UltraChat 200k", "mit", "HuggingFaceH4/ultrachat_200k card: license mit"),
    ("glaive", "Glaive Code Assistant", "apache-2.0", "glaiveai/glaive-code-assistant card: license apache-2.0"),
    ("ntrex", "NTREX", "cc-by-sa-4.0", "MicrosoftTranslator/NTREX README: CC BY-SA 4.0"),
    ("flores", "Flores dev", "cc-by-sa-4.0", "FLORES-200 CC-BY-SA-4.0 (shared/reference/mixtures.md, flores-dev)"),
    ("tatoeba", "Tatoeba dev", "cc-by-2.0", "Helsinki-NLP/tatoeba_mt card: license cc-by-2.0"),
    ("geneval", "MT-GenEval", "cc-by-sa-3.0", "gsarti/mt_geneval card and arXiv 2211.01355: CC BY-SA 3.0"),
    ("multiconer", "MultiCoNER", "cc-by-4.0", "MultiCoNER mirrors (tomaarsen/MultiCoNER): cc-by-4.0"),
    # Sources without a licence we could verify: dropped, never guessed.
    ("general_mt", "WMT14-21 / NTREX / Flores / ... test records", None, "mixed sources in one label"),
    ("wmt", "WMT test sets / metrics (MQM, DA) / terminology", None, "WMT data on the Hub: license unknown"),
    ("paws", "PAWS-X", None, "custom Google terms, not verified"),
    ("frmt", "FRMT", None, "not verified"),
    ("qt21", "QT21", None, "not verified"),
    ("apequest", "ApeQuest", None, "not verified"),
    ("opus", "OPUS (quality filtered)", None, "per-corpus licences"),
]
NOT_OPEN: set[str] = set()  # keywords of sources whose known licence is not open (none verified yet)


def _norm(value: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", value.lower())


def licence_for(dataset: str | None) -> str:
    """The row's licence from its `dataset` value; Drop when it is unknown or not open."""
    name = _norm(dataset or "")
    for keyword, source, licence, _where in SOURCES:
        if keyword in name:
            if keyword in NOT_OPEN:
                raise Drop("licence_not_open", f"{dataset} ({source})")
            if licence is None:
                raise Drop("licence_unknown", f"{dataset} ({source})")
            return licence
    raise Drop("licence_unknown", f"unmapped dataset {dataset!r}")


def target_language(lang: str | None) -> str | None:
    """ISO 639-1 of what the assistant writes: the target of a `src-tgt` pair, else the code."""
    if not isinstance(lang, str) or not lang.strip():
        return None
    head, sep, tail = lang.strip().partition("-")
    # "pt-BR" / "es-419" is one language with a region, not a pair (regions are upper case or digits).
    if not sep or re.fullmatch(r"[A-Z]{2}|\d{3}", tail):
        return iso639_1(lang.strip())
    return iso639_1(tail)


def convert(row: dict) -> Converted:
    licence = licence_for(row.get("dataset"))
    turns = row["conversations"]
    if not turns:
        raise Drop("empty_conversation")
    messages = []
    for turn in turns:
        role = ROLES.get(turn["from"])
        if role is None:
            raise Drop("unknown_role", repr(turn["from"]))
        messages.append(message(role, turn["value"]))  # a null value becomes "" (empty-turn filter)
    # `split` is the split of the dataset the row was taken from ("dev" of Flores), not the Hub split
    meta = {"dataset": row.get("dataset"), "task": row.get("task"), "lang": row.get("lang"),
            "dataset_split": row.get("split")}
    return Converted(messages=messages, language=target_language(row.get("lang")), licence=licence, meta=meta)
