"""Deterministic raw rows in the real glaive, xlam and Toucan layouts, for the benches.

Lengths vary, and about 5% of rows are malformed the way real rows are (broken argument quoting,
cut-off JSON strings, unparsable call dicts), so benches measure the drop paths too.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

WORDS = ("weather city price stock flight hotel book movie song recipe distance time zone currency rate news "
         "score team player market index order item user account email message calendar event note task "
         "temperature forecast traffic route address restaurant review rating translate language convert").split()


# Prose from a small grammar with wide slots: real answers rarely repeat a 5-word sequence, and
# text built from a few dozen fixed phrases fails Gopher's duplicated-n-gram rule on most long rows.
SUBJECTS = ("the service", "our team", "the latest report", "a local guide", "the booking system", "the city office",
            "this tool", "the weather station", "a recent survey", "the official website", "the travel agency",
            "the support desk", "your account page", "the regional network", "a trusted source", "the national agency",
            "the hotel staff", "the airline", "the museum", "the market data", "the public registry", "a quick search",
            "the dashboard", "the team leader", "the app", "the monthly summary", "the archive", "the help centre")
VERBS = ("shows", "suggests", "confirms", "lists", "expects", "reports", "estimates", "recommends", "mentions",
         "describes", "compares", "tracks", "predicts", "highlights", "records", "updates", "publishes", "checks",
         "reviews", "explains", "notes", "covers", "includes", "measures", "returns", "summarises", "flags", "ranks")
ADJECTIVES = ("current", "average", "expected", "lowest", "highest", "weekly", "daily", "official", "estimated",
              "recent", "typical", "total", "updated", "seasonal", "local", "main", "next", "previous", "usual", "final",
              "exact", "new", "cheapest", "fastest", "nearest", "best", "overall", "annual", "monthly", "hourly")
PLACES = ("Barcelona", "València", "Bilbao", "Lisboa", "Santiago de Compostela", "Madrid", "Girona", "Porto", "Sevilla",
          "Zaragoza", "Málaga", "Donostia", "Vigo", "Tarragona", "Lleida", "Coimbra", "Braga", "Faro", "Murcia",
          "Palma", "Pamplona", "Oviedo", "Santander", "Salamanca", "Córdoba", "Granada", "Alicante", "Reus")
PREPOSITIONS = ("in", "near", "around", "for", "across", "outside", "within", "north of", "south of", "close to")
TAILS = ("for the coming days", "as of this morning", "compared with last month", "for a family of four",
         "during the morning rush", "after the recent changes", "for two people", "before the weekend",
         "with taxes included", "for both options", "on public holidays", "at the end of the month",
         "over the last year", "for early bookings", "in the current season", "for the whole route",
         "at peak times", "for returning customers", "since the last update", "within the next hour")
FRAMES = (
    "{S} {V} the {A} {W} {P} {C}, {T}.",
    "According to {S}, the {A} {W} {P} {C} is {N} {T}.",
    "If you need the {A} {W}, {S} {V} it {P} {C} {T}.",
    "You can check the {A} {W} {P} {C}; {S} {V} about {N} {T}.",
    "It seems that {S} {V} a {A} {W} of {N} {P} {C}.",
    "Please note that the {A} {W} {P} {C} may change {T}.",
)


def _sentence(rng: random.Random) -> str:
    sentence = rng.choice(FRAMES).format(
        S=rng.choice(SUBJECTS), V=rng.choice(VERBS), A=rng.choice(ADJECTIVES), W=rng.choice(WORDS),
        P=rng.choice(PREPOSITIONS), C=rng.choice(PLACES), T=rng.choice(TAILS), N=rng.randint(2, 9999))
    return sentence[0].upper() + sentence[1:]


def _text(rng: random.Random, sentences: tuple[int, int]) -> str:
    return " ".join(_sentence(rng) for _ in range(rng.randint(*sentences)))


def _function(rng: random.Random, index: int) -> dict:
    params = {f"{rng.choice(WORDS)}_{k}": {"type": rng.choice(["string", "integer", "number", "boolean"]),
                                           "description": _sentence(rng)} for k in range(rng.randint(1, 4))}
    return {"name": f"get_{rng.choice(WORDS)}_{index}", "description": _sentence(rng),
            "parameters": {"type": "object", "properties": params, "required": list(params)[:1]}}


def _arguments(rng: random.Random, function: dict) -> dict:
    values = {"string": lambda: rng.choice(PLACES), "integer": lambda: rng.randint(1, 500),
              "number": lambda: round(rng.uniform(0, 100), 2), "boolean": lambda: rng.random() < 0.5}
    return {name: values[spec["type"]]() for name, spec in function["parameters"]["properties"].items()}


POOL_SIZE = 3000  # real sources draw their tools from a few thousand APIs, reused across rows


def _functions(rng: random.Random, pool: list[dict], lo: int, hi: int) -> list[dict]:
    return rng.sample(pool, rng.randint(lo, hi))


MALFORMED_SHARE = 0.05  # of rows, whatever the number of calls in a row


def _broken_one_of(rng: random.Random, calls: int) -> int | None:
    """Which of a row's `calls` to break (None: none), so that MALFORMED_SHARE of rows hold one."""
    return rng.randrange(calls) if rng.random() < MALFORMED_SHARE else None


def glaive_row(rng: random.Random, i: int, pool: list[dict]) -> dict:
    functions = _functions(rng, pool, 1, 3)
    system = ("SYSTEM: You are a helpful assistant with access to the following functions. Use them if required -\n"
              + "\n\n".join(json.dumps(f, indent=4) + "\n" for f in functions))
    turns = []
    exchanges = rng.randint(1, 3)
    broken = _broken_one_of(rng, exchanges)
    for exchange in range(exchanges):
        function = rng.choice(functions)
        arguments = json.dumps(_arguments(rng, function))
        if exchange == broken:
            arguments = arguments[:-3]  # the malformed quoting glaive really has
        turns += [f"USER: {_text(rng, (1, 4))}",
                  f"ASSISTANT: <functioncall> {{\"name\": \"{function['name']}\", \"arguments\": '{arguments}'}} <|endoftext|>",
                  f"FUNCTION RESPONSE: {json.dumps({'result': _sentence(rng)})}",
                  f"ASSISTANT: {_text(rng, (1, 6))} <|endoftext|>"]
    return {"system": system, "chat": "\n\n\n".join(turns)}


def xlam_row(rng: random.Random, i: int, pool: list[dict]) -> dict:
    functions = _functions(rng, pool, 1, 4)
    tools = [{"name": f["name"], "description": f["description"],
              "parameters": {n: {"description": s["description"], "type": {"string": "str", "integer": "int",
                                                                              "number": "float", "boolean": "bool"}[s["type"]]}
                             for n, s in f["parameters"]["properties"].items()}} for f in functions]
    answers = [{"name": f["name"], "arguments": _arguments(rng, f)} for f in rng.sample(functions, rng.randint(1, len(functions)))]
    answers_json = json.dumps(answers)
    if rng.random() < MALFORMED_SHARE:  # one string a row; this draw keeps xlam's rows those of earlier figures
        answers_json = answers_json[: len(answers_json) // 2]  # a cut-off JSON string
    return {"id": i, "query": _text(rng, (1, 4)), "answers": answers_json, "tools": json.dumps(tools)}


def toucan_row(rng: random.Random, i: int, pool: list[dict]) -> dict:
    functions = _functions(rng, pool, 1, 4)
    tools = [{"type": "function", "function": f} for f in functions]
    messages = [{"role": "user", "content": _text(rng, (1, 5))}]
    called = rng.sample(functions, rng.randint(1, len(functions)))
    broken = _broken_one_of(rng, len(called))
    for number, function in enumerate(called):
        call = repr({"name": function["name"], "arguments": json.dumps(_arguments(rng, function))})
        if number == broken:
            call = call[:-2]  # an unparsable call dict
        messages.append({"role": "tool_call", "content": call})
    for _ in range(len(messages) - 1):
        messages.append({"role": "tool_response", "content": json.dumps({"result": _sentence(rng)})})
    messages.append({"role": "assistant", "content": _text(rng, (2, 10))})
    return {"uuid": f"u{i:08d}", "subset_name": "single-turn-original", "question": messages[0]["content"],
            "target_tools": functions[0]["name"], "tools": json.dumps(tools), "messages": json.dumps(messages)}


LAYOUTS = {"glaive": (glaive_row, "glaive-function-calling-v2.json"), "xlam": (xlam_row, "xlam_function_calling_60k.json"),
           "toucan": (toucan_row, "train-00000-of-00003.parquet")}


def write_raw(layout: str, rows: int, directory, seed: int = 0):
    """Write `rows` raw rows of `layout` in its Hub file format; returns the path."""
    row, name = LAYOUTS[layout]
    rng = random.Random(f"{seed}:{layout}")
    pool = [_function(rng, k) for k in range(POOL_SIZE)]

    def make(rng, i):
        return row(rng, i, pool)

    path = directory / name
    if name.endswith(".parquet"):
        writer = None
        for start in range(0, rows, 10_000):
            table = pa.Table.from_pylist([make(rng, i) for i in range(start, min(rows, start + 10_000))])
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
        writer.close()
    else:  # a JSON array, one element per line (a one-line array of GBs defeats `datasets`' JSON builder)
        with path.open("w", encoding="utf-8") as handle:
            handle.write("[\n")
            for i in range(rows):
                handle.write((",\n" if i else "") + json.dumps(make(rng, i), ensure_ascii=False))
            handle.write("\n]\n")
    return path


def write_ifeval(path, prompts: list[str]) -> None:
    """`prompts` as an IFEval `input_data.jsonl` (one JSON object a line, as released)."""
    with path.open("w", encoding="utf-8") as handle:
        for key, text in enumerate(prompts):
            handle.write(json.dumps({"key": key, "prompt": text, "instruction_id_list": [], "kwargs": []}) + "\n")


# The steps the reference manifests add to the sample's: near-dedup with their settings, and
# decontamination against an IFEval file of this many prompts of the benches' prose.
REFERENCE_MANIFEST = Path(__file__).resolve().parents[1] / "manifests" / "alia-40b-fc.yaml"
REFERENCE_PROMPTS = 3_000


def write_manifest(layouts: list[str], rows: int, directory, executor: dict | None = None,
                   reference_steps: bool = False):
    """Write `rows` raw rows of each layout and a manifest taking all of them (the sample's shape);
    with `reference_steps`, near-dedup and decontamination on, as the reference manifests have
    them. Returns the manifest's path."""
    sources = [{"key": layout, "converter": layout, "licence": "apache-2.0", "language": "en",
                "local": {"files": [write_raw(layout, rows, directory).name]}, "targets": "all"} for layout in layouts]
    manifest = {"mixture": "bench", "seed": 1, "holdout": {"size": 100}, "licence_policy": {"allow": ["apache-2.0"]},
                "sources": sources, **({"executor": executor} if executor else {})}
    if reference_steps:
        rng = random.Random("reference-steps")
        write_ifeval(directory / "input_data.jsonl", [_text(rng, (2, 4)) for _ in range(REFERENCE_PROMPTS)])
        manifest["near_dedup"] = yaml.safe_load(REFERENCE_MANIFEST.read_text(encoding="utf-8"))["near_dedup"]
        manifest["filters"] = {"decontamination": {"benchmarks": {"ifeval": "input_data.jsonl"}}}
    path = directory / "bench.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


def layout_bench_parser(doc: str) -> argparse.ArgumentParser:
    """--rows (per layout), --layouts and --workers, as the benches over raw layouts take them."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    return parser
