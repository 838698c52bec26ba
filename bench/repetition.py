"""The repetition rule against datatrove's own Gopher filter, on answers of growing length.

    python bench/repetition.py [--rows 1000] [--sentences 5,15,40,100] [--seed 0]

For each length, `--rows` texts of that many sentences of the benches' prose (bench/rawgen.py),
plus one in eight with a passage repeated in it, are judged by (a) datatrove's
`GopherRepetitionFilter` with the same word tokenizer (the baseline: every rule, every text) and
(b) sftmix's `RepetitionFilter` as a pipeline runs it, in batches of `BATCH_ROWS` (bounds for
the whole batch, then datatrove's filter with only the rules that may fire). The verdicts must be
equal. Prints µs a text for each, the ratio a/b, and how many texts still went through an n-gram
pass; the LAST line is a JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # sftmix from this checkout
sys.path.insert(0, str(Path(__file__).parent))
from rawgen import _sentence, _text  # noqa: E402


def texts(rng: random.Random, rows: int, sentences: int) -> list[str]:
    out = []
    for i in range(rows):
        text = _text(rng, (sentences, sentences))
        if i % 8 == 0:  # a passage said again: the duplicated n-gram rules have something to find
            passage = " ".join(_sentence(rng) for _ in range(max(1, sentences // 4)))
            text = f"{passage} {text} {passage}"
        out.append(text)
    return out


def best_of(runs: int, function, *args) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        function(*args)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--sentences", default="5,15,40,100")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from datatrove.data import Document
    from datatrove.pipeline.filters import GopherRepetitionFilter
    from datatrove.utils.text import split_into_words

    from filters.base import BATCH_ROWS
    from filters.repetition import RegexWordTokenizer, RepetitionFilter

    rule = RepetitionFilter()
    datatrove = GopherRepetitionFilter(language=RegexWordTokenizer())
    rng = random.Random(args.seed)
    figures = {"rows": args.rows, "python": platform.python_version()}
    for sentences in map(int, args.sentences.split(",")):
        docs = [Document(text=text, id=str(i)) for i, text in enumerate(texts(rng, args.rows, sentences))]
        expected = []
        for doc in docs:
            verdict = datatrove.filter(doc) if len(split_into_words(doc.text, rule.tokenizer)) >= rule.min_words else True
            expected.append(None if verdict is True else f"repetition_{verdict[1]}")
        batches = [docs[i:i + BATCH_ROWS] for i in range(0, len(docs), BATCH_ROWS)]
        got = [None if result is True else result[1] for batch in batches for result in rule.filter_batch(batch)]
        if got != expected:
            raise SystemExit(f"{sentences} sentences: verdicts differ from datatrove's")
        passes = sum(rules is not None and any(rules) for rules in rule.ngram_rules_that_may_fire([d.text for d in docs]))
        t_a = best_of(3, lambda: [datatrove.filter(doc) for doc in docs])
        t_b = best_of(3, lambda: [rule.filter_batch(batch) for batch in batches])
        chars = sum(len(doc.text) for doc in docs) / len(docs)
        row = {"chars": round(chars), "datatrove_us": t_a / len(docs) * 1e6, "sftmix_us": t_b / len(docs) * 1e6,
               "a_over_b": t_a / t_b, "ngram_passes": passes, "dropped": sum(v is not None for v in expected)}
        figures[f"sentences_{sentences}"] = {k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}
        print(f"{sentences:4d} sentences, {chars:7,.0f} chars | datatrove {row['datatrove_us']:8,.1f} µs | sftmix "
              f"{row['sftmix_us']:8,.1f} µs | a/b {row['a_over_b']:5.2f} | n-gram passes {passes}/{len(docs)} | "
              f"dropped {row['dropped']}", flush=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
