"""Rule filters are datatrove filter steps over documents that carry one canonical record.

The record travels in `doc.metadata["record"]`; `doc.text` is the assistant text (what the model
learns to write), or the user text for prompt/document-only rows. A rule implements
`check(record, doc) -> reason | None`; `run` does what datatrove's `BaseFilter.run` does (drops go
to the exclusion writer, which is our rejected sink; the same stats) with its counters summed once
per run, and calls `check` directly: datatrove's batches of one document cost a rule about 1 µs a
row (10.5 µs over 9 no-op rules, 1.6 µs now). A rule that implements datatrove's `filter` or
`filter_batch` instead still gets its batches (`BatchRecordFilter`: the repetition and
decontamination rules, which hash a batch's words together); the LLM judge keeps rows in flight
its own way.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections import Counter
from pathlib import Path
from typing import Annotated

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter, get_filter_result
from datatrove.utils.batching import batched
from datatrove.utils.typeshelper import StatHints
from pydantic import Field

BATCH_ROWS = 1024  # rows a batch rule (`BatchRecordFilter`) takes at a time

# Argument types with their bounds, checked when a manifest loads (`filters._typed_arguments`)
Count = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]
Share = Annotated[float, Field(ge=0, le=1)]


class RecordFilter(BaseFilter):
    """Base of every rule: `name` is the key used in manifests and in rejected rows; `data_files`,
    the files besides its code that its verdicts depend on (a stage's settings digest both)."""

    name = "record_filter"
    data_files: tuple[Path, ...] = ()
    # Arguments the rule cannot run without: one layer of a source's settings may leave them to
    # another (the mixture's `benchmarks`, a source's own `roles`), so only merged layers must give them.
    required: tuple[str, ...] = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.matched = Counter()  # what the rule found in rows beside its verdicts (`Counts.matched`)

    def check(self, record: dict, doc: Document) -> str | None:
        raise NotImplementedError

    @classmethod
    def conflicts(cls, arguments: dict) -> str | None:
        """Why the rule's arguments, all of a source's layers merged (`filters.merge_config`), cannot
        go together; None when they can. Not the constructor's to say: it also checks one layer alone,
        whose missing arguments another layer may give."""
        return None

    @classmethod
    def argument(cls, arguments: dict, name: str):
        """`arguments[name]`, or the constructor's default for it."""
        return arguments[name] if name in arguments else inspect.signature(cls.__init__).parameters[name].default

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        reason = self.check(doc.metadata["record"], doc)
        return True if reason is None else (False, reason)

    def run(self, data, rank: int = 0, world_size: int = 1):
        # datatrove updates its stats several times per row and step (36 µs a row over the 9 default
        # rules, as much as the cheap rules themselves); the same counters are summed here and added once.
        # `seconds_with_upstream`: the time spent getting this step's rows, its own work and that of
        # every step before it (a rule like the judge pulls rows itself); `sftmix.normalize.run`
        # subtracts the steps' figures from each other. Two clock reads a row, no extra generator.
        forwarded, dropped = 0, Counter()
        clock, self.seconds_with_upstream = time.perf_counter, 0.0
        try:
            with self.exclusion_writer if self.exclusion_writer else contextlib.nullcontext() as writer:
                start = clock()
                for doc, keep, reason in self._verdicts(data):
                    if keep:
                        forwarded += 1
                        self.seconds_with_upstream += clock() - start
                        yield doc
                        start = clock()
                        continue
                    dropped[reason] += 1
                    if writer:
                        if reason:
                            doc.metadata["filter_reason"] = reason
                        writer.write(doc, rank)
                self.seconds_with_upstream += clock() - start
        finally:
            counters = {StatHints.total: forwarded + dropped.total(), StatHints.forwarded: forwarded,
                        StatHints.dropped: dropped.total(),
                        **{f"dropped_{reason}": n for reason, n in dropped.items() if reason}}
            for label, n in counters.items():
                if n:  # datatrove creates a counter on its first update only
                    self.stat_update(label, value=n)

    def _verdicts(self, data):
        """(document, keep, reason) for each document, in order."""
        if type(self).filter is RecordFilter.filter and type(self).filter_batch is BaseFilter.filter_batch:
            # A rule that only implements `check`: called directly, without datatrove's batches of one.
            for doc in data:
                reason = self.check(doc.metadata["record"], doc)
                yield doc, reason is None, reason
            return
        for batch in batched(data, self.batch_size):  # rules written to datatrove's `filter` / `filter_batch`
            if self.batch_size > 1:
                self.stat_update("batches")  # as datatrove counts them
            for doc, result in zip(batch, self.filter_batch(batch)):
                yield doc, *get_filter_result(result)


class BatchRecordFilter(RecordFilter):
    """A rule that judges its rows `BATCH_ROWS` at a time: `reasons(docs)` gives each one's drop
    reason or None, for datatrove's `filter_batch`; `check` judges one row the same way."""

    def __init__(self, **kwargs):
        super().__init__(batch_size=BATCH_ROWS, **kwargs)

    def reasons(self, docs: list[Document]) -> list[str | None]:
        raise NotImplementedError

    def check(self, record: dict, doc: Document) -> str | None:
        return self.reasons([doc])[0]

    def filter_batch(self, batch: list[Document]) -> list[bool | tuple[bool, str]]:
        return [True if reason is None else (False, reason) for reason in self.reasons(batch)]


def turn_texts(record: dict, roles: tuple[str, ...]) -> list[str]:
    return [m["content"] or "" for m in record["messages"] if m["role"] in roles]


_APOSTROPHES = ("\u2019", "\u2018", "\u02bc")


def folded(text: str) -> str:
    """`text` lowercased, its typographic apostrophes (’ ‘ ʼ) made ASCII: the phrase rules spell
    "i'm" and "can't", and "I’m sorry, but I can’t assist" slipped past them. (`str.translate`
    added 14 µs to each rule on a bench Toucan row; three searches, nothing measurable.)"""
    lowered = text.lower()
    if not lowered.isascii():
        for mark in _APOSTROPHES:
            if mark in lowered:
                lowered = lowered.replace(mark, "'")
    return lowered


def learned_turns(record: dict) -> list[str]:
    """The non-empty assistant turns, or the user turns of rows that have no assistant turn
    (prompts, documents)."""
    texts = turn_texts(record, ("assistant",)) or turn_texts(record, ("user",))
    return [t for t in texts if t]


def learned_text(record: dict) -> str:
    """`learned_turns`, one paragraph each."""
    return "\n\n".join(learned_turns(record))


def record_document(record: dict) -> Document:
    """The document the rules judge for `record`: its learned text, the record in its metadata."""
    return Document(text=learned_text(record), id=record["id"], metadata={"record": record})
