"""The decontamination rule against the plain Python recipe, on the same rows and benchmark.

    python bench/decontamination.py [--rows 20000] [--prompts 3000] [--seed 0]

Writes an IFEval-format benchmark (`input_data.jsonl`) of `--prompts` prompts of the benches' prose
(bench/rawgen.py), and `--rows` chat rows of 1 to 3 user/assistant exchanges, one in ten quoting a
prompt's middle. Then times (a) what a user would write: every prompt's word 13-grams in a Python
set, every turn's 13-grams looked up in it (the GPT-3 recipe, with the rule's word normalization);
(b) sftmix's `DecontaminationFilter` as a pipeline runs it, `BATCH_ROWS` rows at a time. Both
indexes are built before timing. The verdicts must be equal. Prints µs a row for each and the
ratio a/b; the LAST line is a JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # sftmix from this checkout
sys.path.insert(0, str(Path(__file__).parent))
from rawgen import _text, write_ifeval  # noqa: E402
from repetition import best_of  # noqa: E402

NGRAM = 13


def rows_and_prompts(rng: random.Random, rows: int, prompts: int) -> tuple[list[list[tuple[str, str]]], list[str]]:
    prompt_texts = [_text(rng, (2, 4)) for _ in range(prompts)]
    conversations = []
    for i in range(rows):
        turns = []
        for _ in range(rng.randint(1, 3)):
            turns += [("user", _text(rng, (1, 3))), ("assistant", _text(rng, (2, 6)))]
        if i % 10 == 0:  # a quoted benchmark prompt, cut to its middle
            words = rng.choice(prompt_texts).split()
            cut = rng.randint(0, max(0, len(words) - NGRAM - 2))
            role, text = turns[rng.randrange(len(turns))]
            turns.append((role, f"{text} As asked: {' '.join(words[cut:cut + NGRAM + 2])}"))
        conversations.append(turns)
    return conversations, prompt_texts


def python_recipe(prompt_texts: list[str]):
    from filters.decontamination import words

    grams = set()
    for text in prompt_texts:
        tokens = words(text)
        grams.update(zip(*(tokens[k:] for k in range(NGRAM))))

    def contaminated(turns: list[tuple[str, str]]) -> bool:
        for _, text in turns:
            tokens = words(text)
            if any(gram in grams for gram in zip(*(tokens[k:] for k in range(NGRAM)))):
                return True
        return False

    return contaminated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--prompts", type=int, default=3_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from filters.base import BATCH_ROWS, record_document
    from filters.decontamination import DecontaminationFilter
    from sftmix.record import make_record, message

    conversations, prompt_texts = rows_and_prompts(random.Random(args.seed), args.rows, args.prompts)
    with tempfile.TemporaryDirectory(prefix="sftmix-bench-") as tmp:
        path = Path(tmp) / "input_data.jsonl"
        write_ifeval(path, prompt_texts)
        rule = DecontaminationFilter(benchmarks={"ifeval": str(path)}, ngram=NGRAM, max_prompts_per_ngram=None)
        rule.indexes  # built before timing, as the recipe's set is
    recipe = python_recipe(prompt_texts)
    records = [make_record(messages=[message(role, text) for role, text in turns], tools=[], source="bench",
                           licence="apache-2.0", language="en", origin={"row": str(i)})
               for i, turns in enumerate(conversations)]
    docs = [record_document(r) for r in records]
    batches = [docs[i:i + BATCH_ROWS] for i in range(0, len(docs), BATCH_ROWS)]
    expected = [recipe(turns) for turns in conversations]
    got = [result is not True for batch in batches for result in rule.filter_batch(batch)]
    if got != expected:
        raise SystemExit(f"verdicts differ from the recipe's on {sum(a != b for a, b in zip(got, expected))} rows")
    t_a = best_of(3, lambda: [recipe(turns) for turns in conversations])
    t_b = best_of(3, lambda: [rule.filter_batch(batch) for batch in batches])
    figures = {"rows": args.rows, "prompts": args.prompts, "ngrams": rule.index_stats()["ifeval"]["ngrams"],
               "dropped": sum(expected), "python_us": round(t_a / len(docs) * 1e6, 2),
               "sftmix_us": round(t_b / len(docs) * 1e6, 2), "a_over_b": round(t_a / t_b, 2),
               "python": platform.python_version()}
    print(f"{args.rows:,} rows, {args.prompts:,} prompts ({figures['ngrams']:,} 13-grams), {sum(expected):,} dropped | "
          f"python recipe {figures['python_us']:.1f} µs a row | sftmix {figures['sftmix_us']:.1f} µs a row | "
          f"a/b {figures['a_over_b']:.2f}", flush=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
