"""Drop rows that contain evaluation-benchmark prompts: word n-gram overlap (decontamination).

The GPT-3 / Llama recipe: a training row is contaminated by a benchmark when any word 13-gram of it
also occurs in one of the benchmark's prompts. Dropped rows get the reason `contaminated:<benchmark>`
(that of the row's first turn with a match; in it, the first benchmark of the config that
matches); `doc.metadata["filter_detail"]` names the benchmark item and the matched words. Benchmarks
overlap (most When2Call questions are BFCL prompts), so the rule also counts, per benchmark, every
row holding one of its prompts (`matched`, the stage's `Counts.matched`), whatever names its drop.

Normalization, the same on both sides: invisible format characters (soft hyphens, zero-width
spaces and joiners) and apostrophes taken out, Unicode NFKC, lower case, and every run of characters
that are neither letters nor digits (punctuation, symbols, `_`, whitespace) separates words. So
"Don't STOP—now!" is the words `dont stop now`, as "Dont stop now" is; diacritics and numbers are kept. Chinese and
Japanese, written without spaces, are split into one word per ideograph or kana (n-grams of
characters, as is usual for them): "我想知道上海的天气" is nine words. Korean separates its words
with spaces and is read like the others; so are scripts without spaces that are not split (Thai).

- Each turn of the row whose role is in `roles` (user and assistant by default) is checked on its
  own; n-grams do not span turns.
- A benchmark prompt shorter than `ngram` words has no n-gram: it is matched whole instead (its whole
  word sequence must occur, contiguous, in a turn) if it has at least `min_prompt_words` words
  (counted as written: "what's" is two);
  shorter ones ("What is 2+2?") are not used, they would match ordinary text.
- N-grams found in more than `max_prompts_per_ngram` distinct prompts of one benchmark are template
  wording, not an item (IFEval repeats "your entire response should be in english, and in all
  lowercase letters..." across dozens of prompts, and instruction-following training rows quote the
  same wording); they are not used. `None` uses every n-gram.
- N-grams are hashed to 64-bit ints (`filters.batch_words`), kept per benchmark in a sorted numpy
  array (8 bytes each, plus 4 for the item it came from, plus a 16-32 bit bitmap slot that lets most
  lookups skip the binary search), built once per process on first use. Rows are checked a batch
  at a time (`BatchRecordFilter`), every turn of the batch hashed and looked up at once: a bench
  Toucan row took 131.7 µs turn by turn, 25.5 now, against the test fixtures' IFEval, BFCL and
  When2Call files.

Benchmarks are local files in their released formats, detected per row:

- IFEval `input_data.jsonl` (`key, prompt, instruction_id_list, kwargs`): the `prompt`.
- BFCL v3 `BFCL_v3_*.json` (JSON Lines despite the name; `id`, `question` = list of turns, each a
  list of `{role, content}`, `function`): every user message of every turn.
- When2Call `when2call_test_mcq.jsonl` / `when2call_test_llm_judge.jsonl` (`uuid, question,
  correct_answer, answers, ...`): `question` and, when present, `orig_question`.
- Anything else (JSON Lines, a JSON array, or Parquet) with `text_fields`: the named fields (strings,
  lists of strings, or chat messages whose `content` is taken).
- JSON Lines or a JSON array may be gzip-compressed (`.gz`: HumanEval's `HumanEval.jsonl.gz`).
- BFCL v4 (`bfcl_eval/data/BFCL_v4_*.json`) has the v3 layout, but its directory also holds
  `BFCL_v4_format_sensitivity.json`, one JSON object of question ids: a path must not name it
  (the error says so).

Config: `benchmarks: {name: path | [paths] | {paths: path | [paths], text_fields: [fields]}}`;
paths may be globs (`bfcl/BFCL_v3_*.json`; the directories one matches are not benchmark files and are
left out), relative ones are resolved against `root` (default: the working directory). Files are
read on first use, not when the manifest is loaded; `check_files` (run before a source's raw files
are read) says first which path names no file, or which file's first row is in no format above.
"""

from __future__ import annotations

import glob
import gzip
import json
import unicodedata
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, TextIO

import numpy as np
import xxhash
from datatrove.data import Document

from filters.base import BatchRecordFilter
from filters.batch_words import CHUNK_BYTES, BatchWords, chunks_of_bytes
from filters.words import WordFinder, spaced_ideographs
from sftmix.jsontext import loads

_WORDS = WordFinder(r"[^\W_]", str.isalnum)
_EMPTY = np.empty(0, dtype=np.uint64)


# Invisible characters written inside words (a soft hyphen from a web page, zero-width spaces and
# joiners, direction marks and isolates, variation selectors, a byte-order mark): taken out,
# "alti\u00adtude" is the word "altitude", not two.
_INVISIBLE = [0x00AD, 0x034F, 0x061C, 0x180E, *range(0x200B, 0x2010), *range(0x202A, 0x202F),
              *range(0x2060, 0x2065), *range(0x2066, 0x206A), *range(0xFE00, 0xFE10), 0xFEFF]
# Apostrophes (straight, curly, the modifier letter, and the acute accent and fullwidth one typed for
# it): taken out, not word breaks. A copy that drops them ("Mikes handle", "Ive sent") was missed as
# "mike s", "i ve" were not its words: 283 of the 4,050 BFCL v3 and When2Call prompts of 8 or more words.
_APOSTROPHES = "'\u2018\u2019\u02bc\u00b4\uff07"
_TAKEN_OUT = dict.fromkeys([*_INVISIBLE, *map(ord, _APOSTROPHES)])
# `min_prompt_words` counts an apostrophe as a break, as written ("what's" is two words), so taking
# it out leaves no exact copy of a prompt of 7 words and a contraction unchecked
_AS_BREAKS = {ord(apostrophe): " " for apostrophe in _APOSTROPHES}


def _normalized(text: str) -> str:
    if text.isascii():
        return text.lower().replace("'", "")
    # each ideograph or kana a word: else most Chinese and Japanese prompts would be too short to use
    return spaced_ideographs(unicodedata.normalize("NFKC", text.translate(_TAKEN_OUT))).lower()


def words(text: str) -> list[str]:
    """The normalized words of `text` (see the module docstring)."""
    return _WORDS.findall(_normalized(text))


# --- benchmark files ------------------------------------------------------------------------------


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        if "content" in value:
            yield from _strings(value["content"])
        else:
            for item in value.values():
                yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def _open_text(path: Path) -> TextIO:
    """-sig: a leading byte-order mark is not text, as in raw inputs. HumanEval ships as `.jsonl.gz`."""
    return gzip.open(path, "rt", encoding="utf-8-sig") if path.suffix == ".gz" else path.open(encoding="utf-8-sig")


def _rows(path: Path) -> Iterator[dict]:
    if path.suffix == ".parquet":
        from sftmix.shards import parquet_batches

        for batch in parquet_batches(path, ValueError, batch_size=1024):  # a broken file: named, like bad JSON
            yield from batch.to_pylist()
        return
    try:
        with _open_text(path) as handle:
            head = handle.read(1024).lstrip()
            handle.seek(0)
            if head.startswith("["):  # a JSON array (some re-uploads); the released files are JSON Lines
                yield from loads(handle.read())
                return
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        yield loads(line)
                    except json.JSONDecodeError as error:
                        raise ValueError(_not_json_lines(path, number, error)) from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error})") from None
    except json.JSONDecodeError as error:  # the JSON array's
        raise ValueError(f"{path}: not a JSON array ({error})") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise ValueError(f"{path}: not a whole gzip file ({error})") from None


def _not_json_lines(path: Path, number: int, error: json.JSONDecodeError) -> str:
    """Says so when the file is one JSON object over many lines: BFCL v4's data directory holds
    `BFCL_v4_format_sensitivity.json`, a map of categories to question ids, beside the question
    files that `BFCL_v4_*.json` is meant to name."""
    if number == 1:
        try:
            with _open_text(path) as handle:
                whole = loads(handle.read())
        except (json.JSONDecodeError, UnicodeDecodeError, OSError, EOFError, zlib.error):
            whole = None
        if isinstance(whole, dict):
            return (f"{path}: one JSON object over several lines (keys {sorted(whole)[:6]}), not benchmark rows "
                    "one per line; if it is not a question file (BFCL v4's BFCL_v4_format_sensitivity.json "
                    "lists ids), name the benchmark's files without it")
    return f"{path}:{number}: not JSON Lines ({error.msg})"


def prompts(path: Path, text_fields: list[str] | None = None) -> Iterator[tuple[str, str]]:
    """(item key, prompt text) of one benchmark file, in its released format (or `text_fields`)."""
    for index, row in enumerate(_rows(path)):
        if not isinstance(row, dict):
            raise ValueError(f"{path}: row {index} is not a JSON object")
        if text_fields:
            key = row.get("id", row.get("key", row.get("uuid", f"{path.name}#{index}")))
            for name in text_fields:
                for text in _strings(row.get(name)):
                    yield str(key), text
        elif "instruction_id_list" in row and isinstance(row.get("prompt"), str):  # IFEval
            yield str(row.get("key", index)), row["prompt"]
        elif "correct_answer" in row and "answers" in row and "question" in row:  # When2Call test
            for name in ("question", "orig_question"):
                if isinstance(row.get(name), str):
                    yield str(row.get("uuid", index)), row[name]
        elif "question" in row and ("function" in row or isinstance(row["question"], list)):  # BFCL
            question = row["question"]
            turns = question if isinstance(question, list) else [question]
            for turn in turns:
                for message in (turn if isinstance(turn, list) else [turn]):
                    if isinstance(message, str):
                        yield str(row.get("id", index)), message
                    elif isinstance(message, dict) and message.get("role") == "user" and isinstance(message.get("content"), str):
                        yield str(row.get("id", index)), message["content"]
        else:
            raise ValueError(f"{path}: unknown benchmark format (keys {sorted(row)[:12]}); "
                             "give `text_fields` for this benchmark")


# --- the index ------------------------------------------------------------------------------------


@dataclass
class _Index:
    """One benchmark's sorted n-gram hashes (and whole short prompts by length), with item indices."""

    name: str
    items: list[str]
    ngrams: np.ndarray = field(default_factory=lambda: _EMPTY)
    ngram_items: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint32))
    whole: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)
    bits: np.ndarray = field(default_factory=lambda: np.zeros(1, np.uint8))  # a one-hash Bloom filter

    def seal(self) -> None:
        """Build the bitmap of all hashes (~16 bits per hash, so ~6% false positives), which lets
        most windows skip the binary search."""
        tables = [self.ngrams] + [h for h, _ in self.whole.values()]
        total = sum(len(t) for t in tables)
        size = 1 << max(16, int(total * 16).bit_length())
        bits = np.zeros(size, bool)
        for table in tables:
            bits[table & np.uint64(size - 1)] = True
        self.bits = np.packbits(bits, bitorder="little")  # 2-4 bytes per hash

    def candidates(self, n: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """(length, hashes, items) in the order a turn is matched: whole prompts by length, then n-grams."""
        return [(k, h, i) for k, (h, i) in sorted(self.whole.items())] + [(n, self.ngrams, self.ngram_items)]

    def lookup(self, hashes: np.ndarray, table: np.ndarray, items: np.ndarray,
               positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions, items) of the `positions` whose hash is in `table`, in order."""
        slot = hashes[positions] & np.uint64(len(self.bits) * 8 - 1)
        positions = positions[(self.bits[slot >> np.uint64(3)] >> (slot & np.uint64(7)).astype(np.uint8)) & 1 == 1]
        at = np.searchsorted(table, hashes[positions])
        at[at == len(table)] = 0
        hit = table[at] == hashes[positions]
        return positions[hit], items[at[hit]]


def _build_index(name: str, files: list[Path], text_fields: list[str] | None, n: int, min_prompt_words: int,
                 max_prompts_per_ngram: int | None) -> _Index:
    index = _Index(name, items=[])
    kept: list[list[str]] = []
    written: list[int] = []  # words as `min_prompt_words` counts them, the most of a prompt's spellings
    position: dict[int, int] = {}  # a prompt's place in `kept`, by its words' digest
    stats = dict(prompts=0, duplicate_prompts=0, short_prompts_skipped=0, whole_prompts=0)
    for path in files:
        for key, text in prompts(path, text_fields):
            tokens = words(text)
            if not tokens:
                continue
            digest = xxhash.xxh3_64_intdigest(" ".join(tokens).encode())
            count = len(words(text.translate(_AS_BREAKS)))
            if digest in position:  # the same prompt in several files (e.g. BFCL categories): count it once
                stats["duplicate_prompts"] += 1
                written[position[digest]] = max(written[position[digest]], count)  # whatever the files' order
                continue
            position[digest] = len(kept)
            stats["prompts"] += 1
            index.items.append(key)
            kept.append(tokens)
            written.append(count)
    if not stats["prompts"]:
        raise ValueError(f"benchmark {name!r}: no prompts in {', '.join(map(str, files))}")
    batch = BatchWords([" ".join(tokens).encode() for tokens in kept])  # hashed as the rows' words are
    grams = batch.ngram_hashes(n)
    starts = np.flatnonzero(batch.words_left[:len(grams)] >= n)
    if len(starts):
        # one entry per (prompt, n-gram), by hash: a hash found in more than max_prompts_per_ngram prompts is template wording
        pairs = np.unique(np.rec.fromarrays([grams[starts], batch.text_of_word[starts].astype(np.uint32)]))
        hashes, first, counts = np.unique(pairs.f0, return_index=True, return_counts=True)
        keep = np.ones(len(hashes), bool) if max_prompts_per_ngram is None else counts <= max_prompts_per_ngram
        stats["template_ngrams_ignored"] = int((~keep).sum())
        index.ngrams, index.ngram_items = hashes[keep], pairs.f1[first[keep]]
    stats["ngrams"] = len(index.ngrams)
    long_enough = np.array(written) >= min_prompt_words
    short = np.flatnonzero(long_enough & (batch.words < n))
    stats["whole_prompts"] = len(short)
    stats["short_prompts_skipped"] = int((~long_enough & (batch.words < n)).sum())
    for length in np.unique(batch.words[short]).tolist():
        prompts_of_length = short[batch.words[short] == length]
        table = batch.ngram_hashes(length)[batch.first_word[prompts_of_length]]
        order = np.argsort(table, kind="stable")
        index.whole[length] = (table[order], prompts_of_length[order].astype(np.uint32))
    index.stats = stats
    index.seal()
    return index


def _spec(name: str, value: Any) -> tuple[list[str], list[str] | None]:
    text_fields = None
    if isinstance(value, dict):
        unknown = set(value) - {"paths", "text_fields"}
        if unknown or "paths" not in value:
            raise ValueError(f"benchmark {name!r}: expected {{paths, text_fields}}, got keys {sorted(value)}")
        text_fields = value.get("text_fields")
        if text_fields is not None and (not isinstance(text_fields, list) or not all(isinstance(f, str) for f in text_fields)):
            raise ValueError(f"benchmark {name!r}: text_fields must be a list of field names")
        value = value["paths"]
    paths = [value] if isinstance(value, (str, Path)) else value
    if not isinstance(paths, list) or not paths or not all(isinstance(p, (str, Path)) for p in paths):
        raise ValueError(f"benchmark {name!r}: expected a path, a list of paths or {{paths, text_fields}}")
    return [str(p) for p in paths], text_fields


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


class DecontaminationFilter(BatchRecordFilter):
    name = "decontamination"
    required = ("benchmarks",)

    def __init__(self, benchmarks: dict[str, Any] | None = None, ngram: int = 13, min_prompt_words: int = 8,
                 max_prompts_per_ngram: int | None = 10, roles: list[str] | tuple[str, ...] = ("user", "assistant"),
                 root: str | None = None, **kwargs):
        super().__init__(**kwargs)
        if not benchmarks or not isinstance(benchmarks, dict):
            raise ValueError("decontamination needs `benchmarks`: {name: path | [paths] | {paths, text_fields}}")
        if ngram < 1 or min_prompt_words < 1:
            raise ValueError("ngram and min_prompt_words must be positive")
        if max_prompts_per_ngram is not None and max_prompts_per_ngram < 1:
            raise ValueError("max_prompts_per_ngram must be positive or null")
        unknown_roles = set(roles) - {"system", "user", "assistant", "tool"}
        if unknown_roles:
            raise ValueError(f"unknown roles {sorted(unknown_roles)}")
        self.specs = {name: _spec(name, value) for name, value in benchmarks.items()}
        self.ngram, self.min_prompt_words, self.max_prompts_per_ngram = ngram, min_prompt_words, max_prompts_per_ngram
        self.roles = tuple(roles)
        self.root = Path(root) if root else None
        self._indexes: list[_Index] | None = None

    def _path(self, pattern: str) -> Path:
        path = Path(pattern)
        return self.root / path if self.root is not None and not path.is_absolute() else path

    def _matches(self, pattern: str) -> list[Path]:
        """The files a benchmark path names now: a glob's matching files, sorted (not its directories:
        `bfcl/*` in BFCL's data directory also matches `possible_answer/`), or the file (none if missing)."""
        path = self._path(pattern)
        if _is_glob(pattern):
            return sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_file())
        return [path] if path.is_file() else []

    def _files(self, name: str, patterns: list[str]) -> list[Path]:
        files = []
        for pattern in patterns:
            matched = self._matches(pattern)
            if not matched:
                path = self._path(pattern)
                if not _is_glob(pattern) and path.is_dir():
                    raise IsADirectoryError(f"benchmark {name!r}: {path} is a directory; name its files "
                                            f"(a glob such as {path / '*'})")
                problem = "no file matches" if _is_glob(pattern) else "no such file"
                raise FileNotFoundError(f"benchmark {name!r}: {problem} {path}")
            files.extend(matched)
        return files

    def check_files(self) -> None:
        """OSError naming the first benchmark path that names no file now, or ValueError naming the
        first file whose first row is in no format read here (a broken first row included): said
        before a source is downloaded or its rows are paid for, not when the first row reaches the
        rule. Only the rows up to a file's first prompt are read (all of a JSON array): the index is
        built once, by the rule. A benchmark none of whose files has a prompt (an empty file, a
        misspelt `text_fields`) is the rule's error too, said here."""
        for name, (patterns, text_fields) in self.specs.items():
            files, prompted = self._files(name, patterns), False
            for path in files:
                try:
                    prompted = any(words(text) for _, text in prompts(path, text_fields)) or prompted
                except ValueError as error:
                    raise ValueError(f"benchmark {name!r}: {error}") from None
            if not prompted:
                raise ValueError(f"benchmark {name!r}: no prompts in {', '.join(map(str, files))}")

    def benchmark_files(self) -> list[Path]:
        """Every file the benchmarks name now, as their paths name them (relative ones under `root`)."""
        return [path for patterns, _ in self.specs.values() for pattern in patterns for path in self._matches(pattern)]

    @property
    def indexes(self) -> list[_Index]:
        if self._indexes is None:
            self._indexes = [
                _build_index(name, self._files(name, patterns), text_fields, self.ngram, self.min_prompt_words,
                             self.max_prompts_per_ngram)
                for name, (patterns, text_fields) in self.specs.items()
            ]
        return self._indexes

    def index_stats(self) -> dict[str, dict[str, int]]:
        """Per benchmark: prompts read, duplicates, whole-matched and skipped short prompts, n-grams."""
        return {index.name: index.stats for index in self.indexes}

    def reasons(self, docs: list[Document]) -> list[str | None]:
        """Per row, `contaminated:<benchmark>` or None. A row's first turn with a match decides; in
        it the first benchmark of the config, then whole prompts by length before n-grams, then the
        first position. `filter_detail` names the item and the matched words."""
        indexes = self.indexes
        turns = [(row, message) for row, doc in enumerate(docs) for message in doc.metadata["record"]["messages"]
                 if message["role"] in self.roles and message["content"]]
        reasons: list[str | None] = [None] * len(docs)
        if not turns:
            return reasons
        first: dict[int, tuple] = {}  # turn -> its first match: ((benchmark, candidate, position), item, length, start word)
        matched: set[tuple[int, int]] = set()  # (row, benchmark)
        word_bytes = [(turn, _WORDS.word_bytes(_normalized(message["content"]))) for turn, (_, message) in enumerate(turns)]
        for chunk in chunks_of_bytes(word_bytes, CHUNK_BYTES):
            batch = BatchWords([turn_words for _, turn_words in chunk])
            for benchmark, index in enumerate(indexes):
                for candidate, (length, table, items) in enumerate(index.candidates(self.ngram)):
                    if not len(table):
                        continue
                    hashes = batch.ngram_hashes(length)
                    valid = np.flatnonzero(batch.words_left[:len(hashes)] >= length)
                    positions, found = index.lookup(hashes, table, items, valid)
                    for position, item in zip(positions.tolist(), found.tolist()):
                        text = int(batch.text_of_word[position])
                        turn, key = chunk[text][0], (benchmark, candidate, position)
                        matched.add((turns[turn][0], benchmark))
                        if turn not in first or key < first[turn][0]:
                            first[turn] = (key, item, length, position - int(batch.first_word[text]))
        self.matched.update(indexes[benchmark].name for _, benchmark in matched)
        for turn in sorted(first):  # in row and message order
            row, message = turns[turn]
            if reasons[row] is not None:
                continue
            (benchmark, _, _), item, length, start = first[turn]
            index = indexes[benchmark]
            reasons[row] = f"contaminated:{index.name}"
            docs[row].metadata["filter_detail"] = (f"{index.name} item {index.items[item]} ({message['role']} turn): "
                                                   + " ".join(words(message["content"])[start:start + length]))
        return reasons
