"""How each converter's and rule's time grows with the length of one field: finds quadratic code.

    python bench/growth.py [--chars 10000] [--converters aya,when2call] [--confirm 3]

For every converter with real-format rows in `tests/fixtures/<converter>/`, each string field of
a few rows that convert (and each string inside a field holding JSON text) gets a repeated unit
(`UNITS`: brackets, quotes, whitespace, role markers, call openers...) put at its start, middle or
end, or in its place, once `--chars` characters long and once twice that. The converter runs on the
row, then every default rule on its record: the baseline is the same work at `--chars`, measured in
the same run. Linear code takes about ×2 for twice the text; ×4 is quadratic. Where the longer run
took 1 ms or more, both sizes are timed again, best of `--confirm`; the variant is flagged when that
grew ×3 or more and took 10 ms or more. "Worst growth" is the largest such ratio (none: nothing took 1 ms).
Prints one line per converter and per flagged variant; the LAST line is a JSON object of them.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # sftmix from this checkout

FIXTURES = ROOT / "tests" / "fixtures"
UNITS = (" ", "\n", "\t", "\\", '"', "'", "[", "]", "{", "}", "(", ")", "<", ">", ",", ":", ".", "`", "$", "a ",
         ": ", "\\n", "\\[", "\\(", "USER: ", "ASSISTANT: ", "<functioncall>", "<tool_call>", "<TOOLCALL>", "[f(",
         "f(", "a=", "\\u00e9", "\\ud83d", "</")
PLACES = ("start", "middle", "end", "whole")
ROWS_PER_FILE = 2
FLAG_GROWTH, FLAG_SECONDS = 3.0, 0.010
MEASURABLE_SECONDS = 0.001  # below it, growth is the clock's, not the code's


def string_fields(value, path=()):
    """(path, text) of every string in a raw row; a path step ("json",) enters a string's JSON text."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from string_fields(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value[:3]):
            yield from string_fields(item, path + (index,))
    elif isinstance(value, str):
        yield path, value
        try:
            inner = json.loads(value)
        except ValueError:
            return
        if isinstance(inner, (dict, list)):
            yield from string_fields(inner, path + (("json",),))


def replaced(value, path, new):
    """`value` with the string at `path` replaced by `new`."""
    if not path:
        return new
    step, rest = path[0], path[1:]
    if step == ("json",):
        return json.dumps(replaced(json.loads(value), rest, new), ensure_ascii=False)
    if isinstance(value, dict):
        return {**value, step: replaced(value[step], rest, new)}
    return [*value[:step], replaced(value[step], rest, new), *value[step + 1:]]


def placed(text: str, blob: str, place: str) -> str:
    middle = len(text) // 2
    return {"start": blob + text, "middle": text[:middle] + blob + text[middle:], "end": text + blob, "whole": blob}[place]


class ConverterRun:
    """One converter's path for a row: convert (with the rows it needs beside it), then the record and every rule."""

    def __init__(self, name: str):
        from filters import build_filters
        from sftmix.normalize import SourceInfo
        from sftmix.raw import iter_raw_rows
        from sftmix.sources import Drop, get_converter

        self.name, self.convert, self.Drop, self.rules = name, get_converter(name), Drop, build_filters()
        self.info = SourceInfo(key=name, converter=name, licence="apache-2.0", language="en")
        files = sorted(p for p in (FIXTURES / name).rglob("*") if p.suffix in (".parquet", ".json", ".jsonl"))
        per_file = [[row for _, row in iter_raw_rows([file]) if not isinstance(row, Drop)] for file in files]
        rows = [row for file_rows in per_file for row in file_rows]
        # A converter that joins rows (a tree, a sentence pair) converts the changed row among all the others.
        joined = not any(self._converted([row]) for row in rows)
        self.context = rows if joined else []
        # from every file: a source's files can hold different layouts (When2Call's train and test)
        self.bases = [row for file_rows in per_file
                      for row in [row for row in file_rows if joined or self._converted([row])][:ROWS_PER_FILE]]

    def _converted(self, rows: list) -> list:
        keyed = ((f"row#{index}", row) for index, row in enumerate(rows))
        return [out for _, out in self.convert(keyed) if not isinstance(out, self.Drop)]

    def seconds(self, row, base) -> tuple[float, float]:
        """(converting `row`, the changed `base`; the record path and every rule on what it gave)."""
        from filters.base import record_document
        from sftmix.normalize import _to_record

        start = time.perf_counter()
        converted = self._converted([row if other is base else other for other in self.context] or [row])
        middle = time.perf_counter()
        for out in converted:
            record = _to_record(self.info, "row#0", out)
            if isinstance(record, self.Drop):
                continue  # the normalize stage drops it here: nothing for the rules
            document = record_document(record)
            for rule in self.rules:
                rule.check(record, document)
        return middle - start, time.perf_counter() - middle


def sweep(run: ConverterRun, chars: int, confirm: int) -> tuple[dict, list[dict]]:
    variants, worst, flagged = 0, {"convert": None, "rules": None}, []
    for base_index, base in enumerate(run.bases):
        for field, text in string_fields(base):
            for unit in UNITS:
                copies = max(1, chars // len(unit))
                for place in PLACES:
                    def rows(extra: int) -> list:  # `extra` more copies: a text no cache has seen
                        return [replaced(base, field, placed(text, unit * (n + extra), place)) for n in (copies, 2 * copies)]

                    variants += 1
                    seconds = [run.seconds(row, base) for row in rows(0)]
                    for stage, index in (("convert", 0), ("rules", 1)):
                        if seconds[1][index] < MEASURABLE_SECONDS:
                            continue
                        # one run can catch a pause of the machine: the best of `confirm` more runs of each size
                        again = [[run.seconds(row, base)[index] for row in rows(extra)] for extra in range(1, confirm + 1)]
                        small, large = min(pair[0] for pair in again), min(pair[1] for pair in again)
                        growth = large / max(small, 1e-9)
                        worst[stage] = max(worst[stage] or 0.0, growth)
                        if large >= FLAG_SECONDS and growth >= FLAG_GROWTH:
                            flagged.append({"converter": run.name, "stage": stage, "row": base_index,
                                            "field": _field_name(field), "unit": unit, "place": place,
                                            "seconds": [round(small, 4), round(large, 4)], "growth": round(growth, 2)})
    summary = {"rows": len(run.bases), "variants": variants,
               "worst_growth": {stage: None if g is None else round(g, 2) for stage, g in worst.items()},
               "flagged": len(flagged)}
    return summary, flagged


def _field_name(field: tuple) -> str:
    return ".".join("<json>" if step == ("json",) else str(step) for step in field)


def main() -> None:
    from sftmix.sources import available

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=10_000, help="length of the smaller repeated text")
    parser.add_argument("--converters", default=None, help="comma-separated; default: every one with fixtures")
    parser.add_argument("--confirm", type=int, default=3, help="runs of each size that confirm a flag")
    args = parser.parse_args()
    names = args.converters.split(",") if args.converters else [n for n in available() if (FIXTURES / n).is_dir()]
    unknown = sorted(set(names) - set(available()) | {n for n in names if not (FIXTURES / n).is_dir()})
    if unknown:
        parser.error(f"no converter with fixtures: {', '.join(unknown)}")

    print(f"# {platform.python_version()}, {args.chars:,} and {2 * args.chars:,} characters, {len(UNITS)} units, "
          f"{len(PLACES)} places; flagged: ×{FLAG_GROWTH:g} or more and {FLAG_SECONDS * 1e3:g} ms or more")
    converters, all_flagged = {}, []
    for name in names:
        start = time.perf_counter()
        summary, flagged = sweep(ConverterRun(name), args.chars, args.confirm)
        converters[name], all_flagged = summary, all_flagged + flagged
        growth = ", ".join(f"{stage} " + ("none" if g is None else f"×{g}") for stage, g in summary["worst_growth"].items())
        print(f"{name}: {summary['rows']} rows, {summary['variants']} variants, worst growth {growth}, "
              f"{summary['flagged']} flagged ({time.perf_counter() - start:.0f} s)", flush=True)
        for f in flagged:
            print(f"  FLAGGED {f['stage']} {f['field']} {f['unit']!r} {f['place']}: "
                  f"{f['seconds'][0] * 1e3:.1f} -> {f['seconds'][1] * 1e3:.1f} ms (×{f['growth']})", flush=True)
    print(json.dumps({"chars": args.chars, "converters": converters, "flagged": all_flagged}))


if __name__ == "__main__":
    main()
