"""What a converter is: raw rows in, `Converted` conversations or `Drop`s out.

A converter module `sftmix/sources/<name>.py` defines either
- `convert(row: dict) -> Converted | list[Converted]`, raising `Drop(reason)` for a row it
  cannot use (most sources: one raw row is judged on its own), or
- `convert_stream(rows: Iterable[RawRow]) -> Iterator[tuple[key, Converted | Drop]]`, for raw
  layouts where a conversation spans several raw rows (oasst2's message table).
The module's file name is the converter name used by the CLI and the manifests. A module may set
`FILTER_DEFAULTS` (rule-filter config, e.g. `{"role_order": {"require_assistant": False}}` for
prompt-only rows); a source's own `filters:` in a manifest override it, the manifest's `filters:`
for every source do not. A module whose rows carry their own language (`Converted.language`) sets
`ROW_LANGUAGE = True` (`"where_given"` when the raw rows may lack it): rows of the others all get the
source's `language:`, so `sftmix plan` names a target in any other language as one no row can meet
(or, where given, as one only rows carrying their language can). A module whose rows hold no
assistant turn (prompts or documents for generators) sets `ANSWERS = False`: a manifest must read
such a source for generators only (`targets: {}`). A module that re-reads sftmix rows and keeps a
generated row's `origin.input_licences` sets `INPUT_LICENCES = True`: the mixing names them in the
shard footers and on the card.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

RawRow = tuple[str, dict]  # ("<file name>#<row>", the row exactly as the Hub stores it)
# What raw data that breaks a converter's assumptions raises: a counted `malformed_row` drop, not a crash.
# RecursionError: a value nested too deeply to encode, or a call literal too deep for `ast`.
MALFORMED_ROW_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError)


class Drop(Exception):
    """A raw row (or record) that cannot be used, with a short machine-readable reason."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.raw = None  # the raw row, attached by the stream so rejected output can show it
        self.licences: tuple[str, ...] = ()  # those of the text `raw` holds, where known (a generator's inputs)

    @classmethod
    def malformed_row(cls, error: Exception) -> "Drop":
        """A row whose data broke the code's assumptions (one of `MALFORMED_ROW_ERRORS`), named by the error."""
        return cls("malformed_row", f"{type(error).__name__}: {error}")


@dataclass
class Converted:
    """A conversation before the pipeline stamps source, licence, id and origin on it."""

    messages: list[dict]
    tools: list[dict] = field(default_factory=list)
    language: str | None = None  # ISO 639-1, when the raw row says it
    licence: str | None = None  # only where licences differ per row (TowerBlocks sub-datasets)
    meta: dict[str, Any] = field(default_factory=dict)  # kept in `origin` (flags, scores, raw ids)
    key: str | None = None  # the raw row's own id (uuid, message id...), kept in `origin`


def per_row(convert: Callable[[dict], Converted | list[Converted]]):
    """Lift a one-row converter to the stream interface, turning `Drop` and bad data into drops."""

    def convert_stream(rows: Iterable[RawRow]) -> Iterator[tuple[str, Converted | Drop]]:
        for index, row in rows:
            if isinstance(row, Drop):  # a line the raw reader could not decode keeps its own reason
                yield index, row
                continue
            try:
                out = convert(row)
            except Drop as drop:
                drop.raw = row
                yield index, drop
                continue
            except MALFORMED_ROW_ERRORS as error:
                drop = Drop.malformed_row(error)
                drop.raw = row
                yield index, drop
                continue
            for converted in out if isinstance(out, list) else [out]:
                yield index, converted

    return convert_stream
