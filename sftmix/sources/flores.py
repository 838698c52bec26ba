"""FLORES dev sentences as translation conversations ("flores-dev" of the instruction mixture).

Raw layout read: openlanguagedata/flores_plus (FLORES+, the maintained FLORES-200; gated, licence
CC-BY-SA-4.0), one JSON Lines file per language and split, `dev/<lang>_<Script>.jsonl` (e.g.
`dev/cat_Latn.jsonl`, 997 rows; `devtest/` has 1,012), one row per sentence per language:
`id` (sentence id, the same across languages), `iso_639_3` ("cat"), `iso_15924` ("Latn"),
`glottocode`, `text`, `url`, `domain`, `topic`, `has_image`, `has_hyperlink`, `last_updated`.
Version 4.6 (the revision the instruct manifest pins, 5fec6c13) ships these JSON Lines files and
no Parquet; earlier revisions shipped `dev/<lang>_<Script>.parquet` with the same columns, which
are read the same way. Verified: the `dev/{lang}.jsonl` paths at that revision (a listing of its
485 files, .jsonl only, and code pinned to it) and the `iso_639_3` / `iso_15924` / `text` columns
(public loaders); the other column names are from project notes and no value's type was seen.
facebook/flores itself is a loading script; its Parquet per-language configs
(`<lang>/dev-00000-of-00001.parquet`: id, URL, domain, topic, has_image, has_hyperlink,
`sentence`) do not name the language in the row, so they cannot be used here. Rows in the
script's wide layout (`sentence_<lang>_<Script>` columns, its `all` and pair configs) are read too.
Feed the dev files of one split only: the same sentence id in two splits is a duplicate.

Mapping: sentences are grouped by id. For each sentence and each TARGET language among ca, en,
es, eu, gl, pt present, one conversation: the source language is one of the other languages
present, picked by a hash of (sentence id, target); the user turn is one of three templates
written in the target language, picked by the same hash (never random), holding the source text;
the assistant turn is the target text. The record's language is the target. Each raw row that
ends up in no conversation is dropped with a reason, so every row is accounted for.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable, Iterator

from sftmix.record import message
from sftmix.sources.base import MALFORMED_ROW_ERRORS, Converted, Drop, RawRow
from sftmix.sources.common import iso639_1

ROW_LANGUAGE = True  # each pair's target language

LANGUAGES = ("ca", "en", "es", "eu", "gl", "pt")

# Per target language: three prompt templates and the source-language names in the form they need.
TEMPLATES = {
    "ca": ("Tradueix al català el text següent, escrit en {src}:\n\n{text}",
           "Com es diria això en català?\n\n{text}",
           "Text en {src}:\n{text}\n\nTraducció al català:"),
    "en": ("Translate the following {src} text into English:\n\n{text}",
           "How would you say this in English?\n\n{text}",
           "{src} text:\n{text}\n\nEnglish translation:"),
    "es": ("Traduce al español el siguiente texto en {src}:\n\n{text}",
           "¿Cómo se diría esto en español?\n\n{text}",
           "Texto en {src}:\n{text}\n\nTraducción al español:"),
    "eu": ("Itzuli euskarara {src} idatzitako testu hau:\n\n{text}",
           "Nola esaten da hau euskaraz?\n\n{text}",
           "Testua {src}:\n{text}\n\nItzulpena euskaraz:"),
    "gl": ("Traduce ao galego o seguinte texto en {src}:\n\n{text}",
           "Como se diría isto en galego?\n\n{text}",
           "Texto en {src}:\n{text}\n\nTradución ao galego:"),
    "pt": ("Traduza para português o seguinte texto em {src}:\n\n{text}",
           "Como se diria isto em português?\n\n{text}",
           "Texto em {src}:\n{text}\n\nTradução para português:"),
}
NAMES = {  # NAMES[target][source]; Basque uses the instrumental ("ingelesez" = "in English")
    "ca": {"en": "anglès", "es": "castellà", "eu": "basc", "gl": "gallec", "pt": "portuguès"},
    "en": {"ca": "Catalan", "es": "Spanish", "eu": "Basque", "gl": "Galician", "pt": "Portuguese"},
    "es": {"ca": "catalán", "en": "inglés", "eu": "euskera", "gl": "gallego", "pt": "portugués"},
    "eu": {"ca": "katalanez", "en": "ingelesez", "es": "gaztelaniaz", "gl": "galizieraz", "pt": "portugesez"},
    "gl": {"ca": "catalán", "en": "inglés", "es": "castelán", "eu": "éuscaro", "pt": "portugués"},
    "pt": {"ca": "catalão", "en": "inglês", "es": "espanhol", "eu": "basco", "gl": "galego"},
}


@dataclass
class _Sentence:
    index: str  # the raw row it came from
    text: str
    domain: str | None


def _sentence_id(value) -> int | str:
    if isinstance(value, bool) or value is None or (isinstance(value, float) and not value.is_integer()):
        raise Drop("malformed_row", f"id is {value!r}")  # (1.5 would join sentence 1; inf and nan have no int)
    try:
        return int(value)
    except (TypeError, ValueError):
        return str(value)


def _entries(row: dict) -> list[tuple[str | None, object]]:
    """(ISO 639-1 code, text) pairs: one for a FLORES+ row, several for a wide-layout row."""
    if "iso_639_3" in row:
        return [(iso639_1(row["iso_639_3"]), row["text"])]
    wide = [(iso639_1(key[len("sentence_"):]), value) for key, value in row.items() if key.startswith("sentence_")]
    if not wide:
        raise Drop("malformed_row", "neither iso_639_3/text nor sentence_<lang> columns")
    return wide


def _choice(sentence_id, target: str) -> tuple[int, int]:
    # surrogatepass: an id with a lone surrogate is hashed here, and dropped as invalid_unicode with its record
    digest = hashlib.sha256(f"{sentence_id}|{target}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big"), int.from_bytes(digest[8:16], "big")


def _read(rows: Iterable[RawRow], groups: dict, accepted: list) -> Iterator[tuple[str, Drop]]:
    """Fill `groups` (sentence id -> language -> sentence); yield a drop for each unusable row."""
    for index, row in rows:
        if isinstance(row, Drop):
            yield index, row
            continue
        try:
            sentence_id = _sentence_id(row["id"])
            problems, taken = [], 0
            for language, text in _entries(row):
                if language not in LANGUAGES:
                    problems.append(Drop("unused_language", f"not one of {', '.join(LANGUAGES)}"))
                elif not isinstance(text, str):
                    problems.append(Drop("malformed_row", f"text is {type(text).__name__}"))
                elif not text.strip():
                    problems.append(Drop("empty_turn", f"{language} text is empty"))
                elif language in groups.setdefault(sentence_id, {}):
                    problems.append(Drop("duplicate_sentence", f"sentence {sentence_id} twice in {language}"))
                else:
                    groups[sentence_id][language] = _Sentence(index, text.strip(), row.get("domain"))
                    taken += 1
        except Drop as drop:
            problems = [drop]
        except MALFORMED_ROW_ERRORS as error:
            problems = [Drop.malformed_row(error)]
        else:
            if taken:
                accepted.append((index, row))  # held for its drop, should no other language pair with it
                continue
        problems[0].raw = row
        yield index, problems[0]


def convert_stream(rows: Iterable[RawRow]) -> Iterator[tuple[str, Converted | Drop]]:
    groups: dict[int | str, dict[str, _Sentence]] = {}
    accepted: list[tuple[str, dict]] = []
    yield from _read(rows, groups, accepted)  # every row must be seen before pairing
    used: set[str] = set()
    for sentence_id in sorted(groups, key=lambda i: (isinstance(i, str), i)):
        present = groups[sentence_id]
        for target in LANGUAGES:
            sources = [language for language in LANGUAGES if language != target and language in present]
            if target not in present or not sources:
                continue
            pick_source, pick_template = _choice(sentence_id, target)
            source = sources[pick_source % len(sources)]
            template = pick_template % len(TEMPLATES[target])
            src, tgt = present[source], present[target]
            prompt = TEMPLATES[target][template].format(src=NAMES[target][source], text=src.text)
            meta = {"sentence_id": sentence_id, "pair": f"{source}-{target}", "template": template,
                    "domain": tgt.domain or src.domain}
            used.update((src.index, tgt.index))
            yield f"{src.index}+{tgt.index}", Converted(
                messages=[message("user", prompt), message("assistant", tgt.text)],
                language=target,
                meta={k: v for k, v in meta.items() if v is not None},
                key=f"{sentence_id}:{source}-{target}",
            )
    for index, row in accepted:
        if index not in used:
            drop = Drop("unpaired_sentence", "no other language of this sentence was read")
            drop.raw = row
            yield index, drop
