"""LLM judge: Prometheus-style absolute grading of a conversation's last assistant turn.

The judge sees the row's tools (their definitions, as stored) and the conversation up to its last
assistant turn (the instruction; a tool result names its tool), that turn (the response), an
optional reference answer and a rubric, and must end its feedback with `[RESULT] n` (1-5). Parsing
is strict; an unparsable verdict is asked again (with a reminder of the format) a bounded number of
times, then the row is dropped as `judge_unparsable`; a verdict cut at `max_tokens` is not asked
again (it would be cut again) but dropped as `judge_truncated`. Each such drop keeps why in its
detail (the reply's end, the server's error). Score and feedback are kept in the row's `origin`
under `scores.llm_judge`; rows below `threshold` are dropped as `judge_below_threshold`, and rows
the judge refuses to grade (OpenAI's `message.refusal`) as `judge_refused`.

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
from sftmix.llm import Failure, LLMClient, LLMSettings, RunStopped, in_order, stage_event_loop, stage_window

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


def _turn_text(m: dict) -> str:
    """A turn's text and calls (`.get`: a records file written without the optional fields)."""
    text = m.get("content") or ""
    if m.get("tool_calls"):
        text += "\n" + "\n".join(f"[call] {c['function']['name']}({c['function']['arguments']})" for c in m["tool_calls"])
    return text.strip()


def _conversation_text(messages: list[dict]) -> str:
    lines = []
    for m in messages:
        # a tool result names its tool, so parallel results are matched to their calls
        role = f"TOOL ({m['name']})" if m["role"] == "tool" and m.get("name") else m["role"].upper()
        lines.append(f"{role}: {_turn_text(m)}".strip())
    return "\n\n".join(lines)


def judge_prompt(record: dict, rubric: str, reference: str | None = None) -> str | None:
    """The grading prompt for a record, or None when it has no assistant turn to grade. The tools
    the conversation may call come first in the instruction: a call is judged against them."""
    messages = record["messages"]
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None:
        return None
    template = Template(JUDGE_TEMPLATE.read_text(encoding="utf-8"))
    tools = (record.get("tools") or "").strip()
    instruction = _conversation_text(messages[:last])
    if tools not in ("", "[]"):  # the stored JSON text as it is: a file's broken text is shown, not a crash
        instruction = f"TOOLS the assistant may call (OpenAI tool definitions, JSON Schema parameters):\n{tools}\n\n{instruction}"
    return template.substitute(instruction=instruction, response=_turn_text(messages[last]) or "(empty)",
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

    async def grade(self, record: dict) -> tuple[str, int] | Failure:
        """(feedback, score), or why the row was not graded (the drop's reason and detail)."""
        prompt = judge_prompt(record, self.rubric)
        if prompt is None:
            return Failure("judge_no_response", "no assistant turn")
        messages = [{"role": "user", "content": prompt}]
        for _ in range(self.attempts):
            try:
                reply = await self.client.complete(messages)
            except RunStopped as error:  # the budget reached, the account refused
                return Failure(error.reason, str(error))  # not graded; the rows already graded are kept
            if isinstance(reply, Failure):
                # the judge's refusal is named as the judge's, apart from its generator's in one count
                return Failure("judge_refused", reply.detail) if reply.reason == "model_refused" else reply
            if reply.truncated:  # asked again it is cut again, and paid again
                return Failure("judge_truncated", f"finish_reason=length at max_tokens {self.client.settings.max_tokens}")
            verdict = parse_verdict(reply.content)
            if verdict is not None:
                return verdict
            messages = messages + [
                {"role": "assistant", "content": reply.content},
                {"role": "user", "content": 'End your answer with "[RESULT] " and an integer from 1 to 5, nothing after it.'},
            ]
        return Failure("judge_unparsable", reply.content[-200:])

    def _verdicts(self, data):
        """(document, keep, reason) in order, with up to `window` rows being graded at a time
        (`sftmix.llm.in_order`: a new row starts when the oldest is done, no batch waits for its
        slowest row)."""
        def grade(doc: Document):
            return self.grade(doc.metadata["record"])

        # Closed here, not when collected: the rows still in flight are cancelled before `run` closes the loop.
        with contextlib.closing(in_order(self._loop, grade, data, self.window)) as rows:
            for doc, verdict in rows:
                yield doc, *get_filter_result(self._result(doc, verdict))

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        """One row on its own (a stage calls `run`)."""
        with stage_event_loop() as loop:
            try:
                return self._result(doc, loop.run_until_complete(self.grade(doc.metadata["record"])))
            finally:
                loop.run_until_complete(self.client.aclose())

    def _result(self, doc: Document, verdict: tuple[str, int] | Failure) -> bool | tuple[bool, str]:
        """The filter's answer for a row graded `verdict`; the score and feedback go into its origin,
        a failure's detail (the server's error, the unparsable reply's end) into the rejected row's."""
        if isinstance(verdict, Failure):
            doc.metadata["filter_detail"] = verdict.detail
            return False, verdict.reason
        record = doc.metadata["record"]
        feedback, score = verdict
        origin = json.loads(record["origin"])
        origin.setdefault("scores", {})["llm_judge"] = {"score": score, "feedback": feedback,
                                                         "threshold": self.threshold, "model": self.client.settings.model}
        record["origin"] = json.dumps(origin, ensure_ascii=False)
        return True if score >= self.threshold else (False, "judge_below_threshold")

    def run(self, data, rank: int = 0, world_size: int = 1):
        # the loop of the generator before it, if any (`stage_event_loop`)
        with stage_event_loop() as self._loop:
            try:
                yield from super().run(data, rank, world_size)
            finally:
                self._loop.run_until_complete(self.client.aclose())
                self._loop = None
