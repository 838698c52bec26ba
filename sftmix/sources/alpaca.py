"""Generic Alpaca-format SFT data, as LLaMA-Factory documents it.

Raw layout (LLaMA-Factory `data/README.md`, "Alpaca Format / Supervised Fine-Tuning Dataset",
and its `AlpacaDatasetConverter` in `src/llamafactory/data/converter.py`): a JSON array (or
JSON Lines / Parquet) of objects with
- `instruction` (str, required) and `input` (str, optional): the user prompt is
  `instruction\\ninput`, the non-empty ones joined by one newline;
- `output` (str, required): the model response;
- `system` (str, optional): the system prompt;
- `history` (optional list of `[prompt, response]` string pairs): earlier turns, oldest first,
  placed before the final instruction.
Extra columns are ignored, except an optional `id` (used as the key) and an optional `language`
column (ISO code or English name) when a dataset adds one.

Rows that are not usable are drops: no prompt at all or an empty output (`empty_turn`), history
entries that are not two strings (`malformed_row`).
"""

from __future__ import annotations

from sftmix.record import message
from sftmix.sources.base import Converted, Drop
from sftmix.sources.common import iso639_1, text_column

ROW_LANGUAGE = "where_given"  # an optional `language` column: rows without it get the source's `language:`


def convert(row: dict) -> Converted:
    if "instruction" not in row or "output" not in row:
        raise Drop("malformed_row", "instruction or output column missing")
    system = text_column(row, "system", optional=True).strip()
    messages = [message("system", system)] if system else []
    history = row.get("history") or []
    if not isinstance(history, list):
        raise Drop("malformed_row", f"history is {type(history).__name__}")
    for turn in history:
        if not (isinstance(turn, (list, tuple)) and len(turn) == 2 and all(isinstance(t, str) for t in turn)):
            raise Drop("malformed_row", f"history entry {str(turn)[:60]}")
        if not turn[0].strip() or not turn[1].strip():
            raise Drop("empty_turn", "empty turn in history")
        messages += [message("user", turn[0]), message("assistant", turn[1])]
    # LLaMA-Factory's prompt: the non-empty parts of instruction and input, newline-joined.
    prompt = "\n".join(p for p in (text_column(row, "instruction"), text_column(row, "input", optional=True)) if p)
    output = text_column(row, "output")
    if not prompt.strip():
        raise Drop("empty_turn", "instruction and input are empty")
    if not output.strip():
        raise Drop("empty_turn", "output is empty")
    messages += [message("user", prompt), message("assistant", output)]
    language = row.get("language")
    key = row.get("id")
    return Converted(
        messages=messages,
        language=iso639_1(language) if isinstance(language, str) else None,
        meta={"history_turns": len(history)} if history else {},
        key=str(key) if key not in (None, "") else None,
    )
