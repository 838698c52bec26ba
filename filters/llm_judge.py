"""LLM judge: Prometheus-style absolute grading of a conversation's last assistant turn.

The judge sees the conversation up to the last user turn (the instruction), the last assistant
turn (the response), an optional reference answer and a rubric, and must end its feedback with
`[RESULT] n` (1-5). Parsing is strict; an unparsable verdict is asked again (with a reminder of the
format) a bounded number of times, then the row is dropped as `judge_unparsable`. Score and
feedback are kept in the row's `origin` under `scores.llm_judge`; rows below `threshold` are
dropped as `judge_below_threshold`.

It is a datatrove filter like the rule filters; rows are graded concurrently, up to `window`
(default `sftmix.llm.stage_window`) at a time, and leave in order. It costs money, so it is never
on by default: a manifest enables it per source (`llm_judge: {threshold: 4}`).
"""

import asyncio
import contextlib
import json
from pathlib import Path
from string import Template

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import get_filter_result

from filters.base import Positive, RecordFilter
from sftmix.llm import BudgetExhausted, Failure, LLMClient, LLMSettings, in_order, stage_window

JUDGE_TEMPLATE = Path(__file__).parent / "prompts" / "judge_absolute.txt"
DEFAULT_RUBRIC = Path(__file__).parent / "prompts" / "rubric_default.txt"


def parse_verdict(text: str) -> tuple[str, int] | None:
    """(feedback, score) from a Prometheus-style output, or None when it does not end in `[RESULT] n`.

    Exactly one `[RESULT]` marker, at the end, with an integer 1-5 after it: "…[RESULT] 4".
    Split with `str` methods: a lazy regex for the feedback retried each whitespace run in the
    reply from every one of its characters (0.5 s for 16,000 spaces, quadratic).
    """
    feedback, marker, score = text.partition("[RESULT]")
    score = score.strip()
    if not marker or len(score) != 1 or score not in "12345":  # one marker: a second is in `score`
        return None
    return feedback.lstrip().removeprefix("Feedback:").strip(), int(score)


def _conversation_text(messages: list[dict]) -> str:
    lines = []
    for m in messages:
        text = m["content"] or ""
        if m["tool_calls"]:
            text += "\n" + "\n".join(f"[call] {c['function']['name']}({c['function']['arguments']})" for c in m["tool_calls"])
        lines.append(f"{m['role'].upper()}: {text}".strip())
    return "\n\n".join(lines)


def judge_prompt(record: dict, rubric: str, reference: str | None = None) -> str | None:
    """The grading prompt for a record, or None when it has no assistant turn to grade."""
    messages = record["messages"]
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None:
        return None
    template = Template(JUDGE_TEMPLATE.read_text(encoding="utf-8"))
    response = _conversation_text([messages[last]]).removeprefix("ASSISTANT: ")
    return template.substitute(instruction=_conversation_text(messages[:last]), response=response,
                               reference=reference or "(none given)", rubric=rubric)


class LLMJudgeFilter(RecordFilter):
    name = "llm_judge"
    data_files = (JUDGE_TEMPLATE, DEFAULT_RUBRIC)

    def __init__(self, threshold: int = 4, rubric: str | None = None, attempts: Positive = 3, window: int | None = None,
                 llm: dict | None = None, client: LLMClient | None = None, **kwargs):
        if not 1 <= threshold <= 5:
            raise ValueError("threshold must be between 1 and 5")
        if window is not None and not (isinstance(window, int) and window >= 1):
            raise ValueError(f"window must be a whole number of rows, at least 1, not {window!r}")
        # A given client (whose stats the caller reads) or one from `llm` settings, started on first use.
        client = client or LLMClient(LLMSettings.from_config(llm))
        super().__init__(**kwargs)
        self.client = client
        # Rows being graded at a time: enough for every connection to stay busy while the oldest
        # row waits for a slow answer.
        self.window = window or stage_window(client.settings.concurrency)
        self.threshold, self.attempts = threshold, attempts
        self.rubric = rubric or DEFAULT_RUBRIC.read_text(encoding="utf-8").strip()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def grade(self, record: dict) -> tuple[str, int] | str:
        """(feedback, score), or a drop reason."""
        prompt = judge_prompt(record, self.rubric)
        if prompt is None:
            return "judge_no_response"
        messages = [{"role": "user", "content": prompt}]
        for _ in range(self.attempts):
            try:
                reply = await self.client.complete(messages)
            except BudgetExhausted:
                return "budget_exhausted"  # this row is not graded; the ones already graded are kept
            if isinstance(reply, Failure):
                return reply.reason
            verdict = parse_verdict(reply.content)
            if verdict is not None:
                return verdict
            messages = messages + [
                {"role": "assistant", "content": reply.content},
                {"role": "user", "content": 'End your answer with "[RESULT] " and an integer from 1 to 5, nothing after it.'},
            ]
        return "judge_unparsable"

    def _verdicts(self, data):
        """(document, keep, reason) in order, with up to `window` rows being graded at a time
        (`sftmix.llm.in_order`: a new row starts when the oldest is done, no batch waits for its
        slowest row)."""
        def grade(doc: Document):
            return self.grade(doc.metadata["record"])

        # Closed here, not when collected: the rows still in flight are cancelled before `run` closes the loop.
        with contextlib.closing(in_order(self._event_loop(), grade, data, self.window)) as rows:
            for doc, verdict in rows:
                yield doc, *get_filter_result(self._result(doc.metadata["record"], verdict))

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        record = doc.metadata["record"]
        return self._result(record, self._event_loop().run_until_complete(self.grade(record)))

    def _result(self, record: dict, verdict: tuple[str, int] | str) -> bool | tuple[bool, str]:
        """The filter's answer for a row graded `verdict`; the score and feedback go into its origin."""
        if isinstance(verdict, str):
            return False, verdict
        feedback, score = verdict
        origin = json.loads(record["origin"])
        origin.setdefault("scores", {})["llm_judge"] = {"score": score, "feedback": feedback,
                                                         "threshold": self.threshold, "model": self.client.settings.model}
        record["origin"] = json.dumps(origin, ensure_ascii=False)
        return True if score >= self.threshold else (False, "judge_below_threshold")

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop

    def run(self, data, rank: int = 0, world_size: int = 1):
        try:
            yield from super().run(data, rank, world_size)
        finally:
            if self._loop is not None:
                self._loop.run_until_complete(self.client.aclose())
                self._loop.close()
                self._loop = None
