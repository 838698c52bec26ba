"""Throughput of `sftmix.llm.LLMClient` against the local test server at several concurrency limits.

    python bench/llm.py [--requests 256] [--delay 0.1] [--concurrency 1 8 32 128]

The server (tests/openai_server.py, imported by path) runs in its own process, so the client and the
server each have a core and their own GIL; it answers every request after a fixed `--delay`. Each
level sends max(--requests, 50 x concurrency) distinct requests. Starting a level (a new HTTP session,
c new connections, a first burst of c requests that client and server each handle one after the
other) costs one to two extra rounds once per run; 50 rounds keep that near 3% of the level, and
`first_reply_s` shows it. The best a client can do at concurrency c is c / delay requests per second.
Each run uses a fresh cache directory (nothing is served from the cache).
Prints one line per concurrency level, then a JSON object of the figures as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # sftmix from this checkout, even when run from elsewhere

MIN_ROUNDS = 50  # requests per level are at least this many times the concurrency


def load_test_server():
    spec = importlib.util.spec_from_file_location("openai_server", ROOT / "tests" / "openai_server.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def serve(delay: float, connection) -> None:
    """Server process: the test server, reporting its counters over `connection` until told to stop."""
    with load_test_server().serve_openai(delay=delay) as server:
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
def server_process(delay: float) -> Iterator[ServerProcess]:
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing shared with the client
    connection, child_connection = context.Pipe()
    process = context.Process(target=serve, args=(delay, child_connection), name="openai-test-server", daemon=True)
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


async def run_requests(client, n: int, tag: str) -> tuple[list, float]:
    """The n results, and the seconds until the first of them arrived."""
    start, first = time.perf_counter(), []

    async def one(i: int):
        result = await client.complete([{"role": "user", "content": f"bench {tag} request {i}"}])
        if not first:
            first.append(time.perf_counter() - start)
        return result

    try:
        return await asyncio.gather(*(one(i) for i in range(n))), first[0]
    finally:
        await client.aclose()


def bench(server: ServerProcess, n: int, concurrency: int, delay: float) -> dict:
    from sftmix.llm import Completion, LLMClient, LLMSettings

    before = server.counters()["requests"]
    with tempfile.TemporaryDirectory(prefix="sftmix-bench-cache-") as cache_dir:
        settings = LLMSettings(base_url=server.base_url, cache_dir=cache_dir, concurrency=concurrency,
                               max_retries=0, timeout_s=60.0)
        client = LLMClient(settings, api_key="sk-bench")
        start = time.perf_counter()
        results, first_reply = asyncio.run(run_requests(client, n, f"c{concurrency}"))
        elapsed = time.perf_counter() - start
    failed = sum(not isinstance(r, Completion) for r in results)
    counters = server.counters()
    rps = n / elapsed
    ideal = concurrency / delay  # n >= concurrency
    return {"concurrency": concurrency, "requests": n, "seconds": round(elapsed, 3), "requests_per_s": round(rps, 1),
            "ideal_per_s": round(ideal, 1), "ratio": round(rps / ideal, 3), "first_reply_s": round(first_reply, 3),
            "failed": failed,
            "server_requests": counters["requests"] - before,
            "server_max_concurrent": counters["max_concurrent"]}  # peak so far (levels run in increasing order)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=256,
                        help=f"distinct requests per concurrency level (at least {MIN_ROUNDS} x the concurrency)")
    parser.add_argument("--delay", type=float, default=0.1, help="server-side seconds per request")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 128])
    args = parser.parse_args(argv)

    runs = []
    with server_process(args.delay) as server:
        for concurrency in args.concurrency:
            figures = bench(server, max(args.requests, MIN_ROUNDS * concurrency), concurrency, args.delay)
            runs.append(figures)
            print(f"concurrency {concurrency:>4}: {figures['requests_per_s']:>8.1f} req/s "
                  f"({figures['requests']} requests in {figures['seconds']:.2f} s); "
                  f"ideal {figures['ideal_per_s']:.1f} req/s; ratio {figures['ratio']:.3f}; "
                  f"first reply after {figures['first_reply_s']:.3f} s"
                  + (f"; {figures['failed']} failed" if figures["failed"] else ""), flush=True)
    print(json.dumps({"requests": args.requests, "delay_s": args.delay, "runs": runs}))
    return 1 if any(r["failed"] for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
