r"""Code and math spans blanked out of a text, so that a generator's language check reads only its prose.

The spans are those `re.sub` finds with the pattern (DOTALL)
    ```.*?```|\$\$.*?\$\$|\$[^$]*\$|\\\[.*?\\\]|\\\(.*?\\\)
and, with `latex_commands`, also `\\[a-zA-Z]+`; but found in one pass. `re` retries each opener
that never closes from scratch, to the end of the text, so a reply repeating `\[` took 4.4 s for
48 KB and grew with the square of its length. Here a closer missing from some point on is
remembered as missing.
"""

import re

_CANDIDATE = re.compile(r"```|[$\\]")
_COMMAND = re.compile(r"[a-zA-Z]+")
# Opener, closer; in the order the pattern tries them at one position.
_DELIMITED = (("```", "```"), ("$$", "$$"), ("$", "$"), ("\\[", "\\]"), ("\\(", "\\)"))


def blank_code_and_math(text: str, latex_commands: bool = False) -> str:
    """`text` with every code block, math span (and LaTeX command) replaced by one space."""
    closer_missing_from: dict[str, int] = {}
    pieces: list[str] = []
    kept_from = position = 0
    while (candidate := _CANDIDATE.search(text, position)) is not None:
        start = candidate.start()
        end = _span_end(text, start, closer_missing_from, latex_commands)
        if end is None:
            position = start + 1
            continue
        pieces += (text[kept_from:start], " ")
        kept_from = position = end
    pieces.append(text[kept_from:])
    return "".join(pieces)


def _span_end(text: str, start: int, closer_missing_from: dict[str, int], latex_commands: bool) -> int | None:
    for opener, closer in _DELIMITED:
        if not text.startswith(opener, start):
            continue
        search_from = start + len(opener)
        # Positions only grow, so the first start a closer is missing from is the smallest one.
        if search_from >= closer_missing_from.get(closer, len(text) + 1):
            continue
        found = text.find(closer, search_from)
        if found >= 0:
            return found + len(closer)
        closer_missing_from[closer] = search_from
    if latex_commands and text[start] == "\\" and (command := _COMMAND.match(text, start + 1)) is not None:
        return command.end()
    return None
