"""open-r1/OpenR1-Math-220k, config `default` (93,733 rows, split `train`): R1 math solutions.

Raw layout (verified on the dataset card's `dataset_info`, its config/file listing at several
revisions, and loaders that read the shards): Parquet `data/train-000NN-of-00010.parquet`
(the first revisions had one config `all` with splits `default`/`extended` under
`default/train-*`; today `default` is `data/train-*`, `extended` is `extended/train-*`, and `all`
is `all/train-*` = default + extended, so never mix `all` with the others). 14 columns:
- strings: `problem`, `solution` (NuminaMath reference), `answer` (reference final answer),
  `problem_type`, `question_type`, `source` (NuminaMath origin, e.g. "olympiads", "amc_aime"),
  `uuid`;
- parallel per-generation lists (`sequence` on the card, so a list or null): `generations`
  (list[str], 2-4 DeepSeek-R1 outputs), `is_reasoning_complete` (list[bool]),
  `correctness_math_verify` (list[bool]), `correctness_llama` (list[bool], null unless the Llama
  judge was used), `finish_reasons` (list[str], the inference server's finish reason, "stop" or
  "length" when the 16k-token cap cut the output);
- `correctness_count` (int64);
- `messages` (list of struct {content, role}): the user problem and ONE selected generation as
  the assistant turn, "<think>\\n...</think>" then the written-up solution with \\boxed{}.

Mapping decisions:
- The reasoning trace is removed; the assistant turn is the text after </think>, R1's complete
  written solution ending in \\boxed{}. The target model (ALIA-40b-instruct) is not a reasoning
  model and its chat template has no thinking channel; open-r1's own Mixture-of-Thoughts keeps
  the traces only because it trains reasoning models. The trace length is kept in meta.
- The selected generation is found by matching the assistant content in `generations`: up to
  surrounding whitespace (the kept solution is stripped of it anyway), else up to Unicode form, line
  endings and the <think> opener, else by its solution (the text after </think>, which the verdicts
  judge); its finish reason, completeness flag and correctness flags then decide drops. Content
  that is no generation, that matches several whose flags lead to different verdicts, or whose
  generation has neither a Math-Verify nor a judge verdict, is `unverified_answer`: nothing says
  its answer is right, and keeping it would let the correctness checks pass it unseen.
- `answer` (reference) and the last \\boxed{...} of the kept solution go to meta, so the later
  translation step can check that a translated solution keeps the same final answer.
"""

from __future__ import annotations

import unicodedata

from sftmix.record import message
from sftmix.sources.base import Converted, Drop
from sftmix.sources.common import last_boxed

_OPEN, _CLOSE = "<think>", "</think>"


def _at(values, index):
    """values[index] for a per-generation list that may be null or shorter than `generations`."""
    if isinstance(values, list) and index is not None and index < len(values):
        return values[index]
    return None


def _trace(text: str) -> str:
    """A trace in one Unicode form and line ending, without surrounding white space or <think> opener."""
    return unicodedata.normalize("NFC", text.replace("\r\n", "\n")).strip().removeprefix(_OPEN).strip()


def _solution(text: str) -> str:
    """What a trace's verdicts judge: its text after the last </think>, as `_trace` writes it."""
    return _trace(text.rsplit(_CLOSE, 1)[-1])


def _verdict(row: dict, index: int | None) -> Drop | None:
    """Why generation `index` (None: none found) cannot be kept, by the flags the row has for it."""
    if _at(row.get("finish_reasons"), index) == "length":
        return Drop("truncated", f"generation {index} stopped at the length cap")
    if _at(row.get("is_reasoning_complete"), index) is False:
        return Drop("incomplete_reasoning", f"generation {index} is_reasoning_complete=false")
    verified, judged = _at(row.get("correctness_math_verify"), index), _at(row.get("correctness_llama"), index)
    # incorrect by a verdict it has, and correct by none (a missing Math-Verify verdict let a
    # generation the Llama judge failed through)
    if False in (verified, judged) and True not in (verified, judged):
        return Drop("incorrect_answer", f"generation {index}: Math-Verify {verified}, judge {judged}")
    if verified is None and judged is None:
        return Drop("unverified_answer", f"generation {index} has no verdict" if index is not None
                    else f"the assistant text is not among the {len(row.get('generations') or [])} generations")
    return None


def _judged(content: str, row: dict) -> tuple[int | None, Drop | None]:
    """The generation the assistant text is, and its verdict: the same text up to surrounding white
    space, else up to Unicode form, line endings and the <think> opener, else the one with the same
    solution (another trace to it). `messages` is thought to copy a generation verbatim (not
    verified). Where several generations match and their verdicts differ, the text is unverified
    rather than judged by the first."""
    texts = [(i, text) for i, text in enumerate(row.get("generations") or []) if isinstance(text, str)]
    for form in (str.strip, _trace, _solution):
        wanted = form(content)
        if same := [i for i, text in texts if form(text) == wanted]:
            verdicts = [_verdict(row, i) for i in same]
            if len({verdict and verdict.reason for verdict in verdicts}) > 1:
                return None, Drop("unverified_answer", f"it matches generations {same}, whose verdicts differ")
            return same[0], verdicts[0]
    return None, _verdict(row, None)


def convert(row: dict) -> Converted:
    raw = row.get("messages")
    if not raw:
        raise Drop("missing_messages", "messages is null or empty")
    roles = [turn["role"] for turn in raw]
    if roles != ["user", "assistant"]:
        raise Drop("malformed_row", f"roles {roles}")
    problem, content = raw[0]["content"], raw[1]["content"]
    if not problem or not problem.strip():
        raise Drop("empty_turn", "empty problem")
    if not content:
        raise Drop("empty_turn", "empty assistant message")

    index, verdict = _judged(content, row)
    if verdict is not None:
        raise verdict

    if content.count(_CLOSE) != 1 or content.count(_OPEN) > 1:
        raise Drop("incomplete_reasoning", f"{content.count(_CLOSE)} </think> tags")
    reasoning, solution = content.split(_CLOSE)
    solution = solution.strip()
    if not solution:
        raise Drop("missing_final_answer", "nothing after </think>")

    meta = {
        "answer": row.get("answer"),
        "boxed": last_boxed(solution),
        "source": row.get("source"),
        "problem_type": row.get("problem_type"),
        "question_type": row.get("question_type"),
        "correctness_count": row.get("correctness_count"),
        "generation_index": index,
        "reasoning_chars": len(reasoning.replace(_OPEN, "", 1).strip()),
    }
    return Converted(
        messages=[message("user", problem), message("assistant", solution)],
        meta={k: v for k, v in meta.items() if v is not None},
        key=row.get("uuid") or None,
    )
