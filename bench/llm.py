"""Throughput of the LLM stages against the local test server at several concurrency limits.

    python bench/llm.py [--rows 256] [--delay 0.1] [--spread 1.0] [--concurrency 1 8 32 128]

The server (tests/openai_server.py, imported by path) runs in its own process, so the client and the
server each have a core and their own GIL. Three things are timed at each concurrency c:
  client:    `LLMClient.complete` for every row at once (asyncio.gather): the client alone;
  generator: the wildchat_responses generator through `generators.base.generate`, the stage as a
             build runs it (prompts from records, the default rule filters, shards written);
  judge:     the LLM judge through `sftmix.normalize.filter_records`, as `sftmix judge` runs it.
Each row is one request. Answer times are first fixed (`--delay` for every request), then spread
(`--spread` > 0): log-normal with median `--delay` and sigma `--spread`, in 32 equally likely steps
(a tag in each row's text picks its step; the server's `slow` faults sleep that long), as long and
short answers from a real endpoint are. The best any client can do at concurrency c is
c x rows / (sum of the rows' answer times) requests per second (c / delay when fixed); the ratio to
that is printed. Each level sends max(--rows, 50 x c) rows, so starting a level (new connections, a
first burst the server answers one after the other) stays near 3% of it.
Each run uses a fresh cache directory (nothing is served from the cache). The modules the kinds use are
imported before the first level, as a build's stage process has them: importing datatrove and the
rule filters (about 0.5 s) inside the first timed level took up to 0.1 off that kind's ratio at c=32.
Prints one line per level and kind, then a JSON object of the figures as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import math
import multiprocessing
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # sftmix from this checkout, even when run from elsewhere
sys.path.insert(0, str(Path(__file__).parent))
from rawgen import _text  # noqa: E402

MIN_ROUNDS = 50  # rows per level are at least this many times the concurrency
STEPS = 32  # answer-time steps of the spread distribution: its slowest is 8.6 times the median at sigma 1
KINDS = ("client", "generator", "judge")


def load_test_server():
    spec = importlib.util.spec_from_file_location("openai_server", ROOT / "tests" / "openai_server.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def answer_times(delay: float, spread: float) -> list[float]:
    """The answer time of each step: the log-normal's quantiles at the steps' midpoints."""
    normal = statistics.NormalDist()
    return [delay * math.exp(spread * normal.inv_cdf((k + 0.5) / STEPS)) for k in range(STEPS)]


def tag(step: int) -> str:
    return f"[answer-time {step}]"


def respond(messages: list[dict], body: dict) -> str:
    """A judge's verdict for judge prompts, a paragraph of prose for anything else."""
    last = messages[-1]["content"]
    if "[RESULT]" in last:
        return "Feedback: The response answers the instruction fully and correctly. [RESULT] 5"
    return _text(random.Random(last), (4, 8))


def serve(times: list[float], connection) -> None:
    """Server process: the test server, reporting its counters over `connection` until told to stop."""
    server_module = load_test_server()
    faults = [server_module.Fault("slow", match=tag(step), count=None, seconds=seconds) for step, seconds in enumerate(times)]
    with server_module.serve_openai(responder=respond, faults=faults, delay=0.0) as server:
        connection.send(server.base_url)
        while connection.recv() != "stop":
            connection.send({"requests": server.count(), "max_concurrent": server.max_concurrent})


class ServerProcess:
    """The parent's view of the server process."""

    def __init__(self, base_url: str, connection):
        self.base_url = base_url
        self._connection = connection

    def counters(self) -> dict:
        self._connection.send("counters")
        return self._connection.recv()


@contextlib.contextmanager
def server_process(times: list[float]) -> Iterator[ServerProcess]:
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing shared with the client
    connection, child_connection = context.Pipe()
    process = context.Process(target=serve, args=(times, child_connection), name="openai-test-server", daemon=True)
    process.start()
    try:
        yield ServerProcess(connection.recv(), connection)
    finally:
        with contextlib.suppress(OSError):
            connection.send("stop")
        process.join(timeout=10)
        if process.is_alive():
            process.terminate()
            process.join()


def prompts(n: int, label: str, steps: list[int]) -> list[str]:
    return [f"Bench {label} question {i} {tag(steps[i])}: how do rivers shape the valleys they run through?"
            for i in range(n)]


def records(questions: list[str], *, answered: bool) -> list[dict]:
    from sftmix.record import make_record, message

    out = []
    for i, question in enumerate(questions):
        messages = [message("user", question)]
        if answered:
            messages.append(message("assistant", _text(random.Random(i), (4, 8))))
        out.append(make_record(messages=messages, tools=[], source="bench", licence="odc-by", language="en",
                               origin={"row": f"bench.parquet#{i}", "conversation_hash": f"{i:032x}", "key": str(i)}))
    return out


def run_client(client, questions: list[str], work: Path) -> int:
    from sftmix.llm import Completion

    async def all_rows():
        try:
            return await asyncio.gather(*(client.complete([{"role": "user", "content": q}]) for q in questions))
        finally:
            await client.aclose()

    return sum(isinstance(r, Completion) for r in asyncio.run(all_rows()))


def run_generator(client, questions: list[str], work: Path) -> int:
    from generators import get_generator
    from generators.base import Context, generate
    from sftmix.normalize import SourceInfo

    info = SourceInfo(key="wildchat_responses", converter="openai_messages", licence="odc-by", filters={})
    context = Context(llm=client, targets={"en": "all"})
    counts = generate(get_generator("wildchat_responses"), records(questions, answered=False), context, info,
                      work / "generated.parquet", work / "generated.rejected.parquet")
    return counts.kept


def run_judge(client, questions: list[str], work: Path) -> int:
    import filters as rule_filters
    import pyarrow.parquet as pq
    from filters.llm_judge import LLMJudgeFilter
    from sftmix.normalize import SourceInfo, filter_records
    from sftmix.record import to_table

    source = work / "answered.parquet"
    pq.write_table(to_table(records(questions, answered=True)), source)
    config = {name: False for name in rule_filters.FILTERS}  # as `sftmix judge`: only the judge
    config[LLMJudgeFilter.name] = {"threshold": 4, "client": client}
    counts = filter_records(SourceInfo(key="judged", converter="openai_messages", filters=config), [source],
                            work / "judged.parquet", work / "judged.rejected.parquet")
    return counts.kept


RUNNERS = {"client": run_client, "generator": run_generator, "judge": run_judge}


def import_kinds() -> None:
    """Import, untimed, every module the runners import, so no level pays for a first import."""
    import filters.llm_judge  # noqa: F401
    import generators.base  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import sftmix.normalize  # noqa: F401
    from generators import get_generator

    get_generator("wildchat_responses")  # imports the generator's module


def bench(server: ServerProcess, kind: str, n: int, concurrency: int, times: list[float], label: str) -> dict:
    from sftmix.llm import LLMClient, LLMSettings

    rng = random.Random(f"{label}:{kind}:{concurrency}")
    steps = [rng.randrange(STEPS) for _ in range(n)]
    questions = prompts(n, f"{label} {kind} c{concurrency}", steps)
    before = server.counters()["requests"]
    with tempfile.TemporaryDirectory(prefix="sftmix-bench-llm-") as tmp:
        settings = LLMSettings(base_url=server.base_url, cache_dir=str(Path(tmp) / "cache"), concurrency=concurrency,
                               max_retries=0, timeout_s=60.0)
        client = LLMClient(settings, api_key="sk-bench")
        start = time.perf_counter()
        done = RUNNERS[kind](client, questions, Path(tmp))
        elapsed = time.perf_counter() - start
    counters = server.counters()
    ideal = concurrency * n / sum(times[step] for step in steps)  # n >= concurrency
    rps = n / elapsed
    return {"kind": kind, "answer_times": label, "concurrency": concurrency, "rows": n, "seconds": round(elapsed, 3),
            "requests_per_s": round(rps, 1), "ideal_per_s": round(ideal, 1), "ratio": round(rps / ideal, 3),
            "rows_out": done, "server_requests": counters["requests"] - before,
            "server_max_concurrent": counters["max_concurrent"]}  # peak so far (levels run in increasing order)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", "--requests", type=int, default=256,
                        help=f"rows (one request each) per concurrency level and kind (at least {MIN_ROUNDS} x the concurrency)")
    parser.add_argument("--delay", type=float, default=0.1, help="server-side seconds per request (the median when spread)")
    parser.add_argument("--spread", type=float, default=1.0,
                        help="sigma of the log-normal answer times of the second pass; 0 skips it")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {','.join(KINDS)}")
    args = parser.parse_args(argv)
    kinds = args.kinds.split(",")
    if unknown := set(kinds) - set(KINDS):
        parser.error(f"unknown kinds: {', '.join(sorted(unknown))}")

    import_kinds()
    passes = [("fixed", [args.delay] * STEPS)] + ([("spread", answer_times(args.delay, args.spread))] if args.spread > 0 else [])
    runs = []
    for label, times in passes:
        with server_process(times) as server:
            for concurrency in args.concurrency:
                for kind in kinds:
                    figures = bench(server, kind, max(args.rows, MIN_ROUNDS * concurrency), concurrency, times, label)
                    runs.append(figures)
                    print(f"{label:6s} {kind:9s} concurrency {concurrency:>4}: {figures['requests_per_s']:>8.1f} req/s "
                          f"({figures['rows']} rows in {figures['seconds']:.2f} s, {figures['rows_out']} out); "
                          f"ideal {figures['ideal_per_s']:.1f} req/s; ratio {figures['ratio']:.3f}", flush=True)
    print(json.dumps({"rows": args.rows, "delay_s": args.delay, "spread": args.spread, "runs": runs}))
    return 1 if any(r["server_requests"] != r["rows"] for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
