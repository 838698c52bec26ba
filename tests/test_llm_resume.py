"""Kill -9 in the middle of an LLM run, start it again: nothing finished is paid twice, nothing is lost.

The standalone test server (a separate process, so it outlives the client) logs every finished request.
The run is a real `sftmix` subprocess at concurrency 8 (the CLI has no concurrency flag, so a two-line
`python -c` wrapper lowers it, and, for `generate`, registers a one-call test generator).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from sftmix.llm import request_key
from sftmix.record import make_record, message, to_table

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-test-resume-0001"
CONCURRENCY = 8
KILL_AFTER = 60  # requests answered with 200 before the SIGKILL

WRAPPER = """
import dataclasses, sys, types
import sftmix.cli as cli
settings = cli._llm_settings
cli._llm_settings = lambda manifest, cache_dir: dataclasses.replace(settings(manifest, cache_dir), concurrency=%d)
if sys.argv[1] == "generate":
    import generators
    from generators.base import Item, reply_text
    from sftmix.record import message
    from sftmix.sources.base import Converted
    module = types.ModuleType("generators.resume_test")
    module.PROMPTS = ()
    def items(records, ctx):
        for i in range(int(ctx.params.get("n", 200))):
            yield Item(key="topic-%%03d" %% i, payload="Write one friendly sentence about the number %%d." %% i, language="en")
    async def generate(item, ctx):
        reply = reply_text(await ctx.llm.complete([{"role": "user", "content": item.payload}]))
        return [Converted(messages=[message("user", item.payload), message("assistant", reply)])]
    module.items, module.generate = items, generate
    generators.get_generator = lambda name: module
sys.exit(cli.main(sys.argv[1:]))
""" % CONCURRENCY



class StandaloneServer:
    def __init__(self, tmp_path: Path, faults: list[dict] | None = None):
        self.log = tmp_path / "requests.jsonl"
        port_file = tmp_path / "port"
        command = [sys.executable, str(ROOT / "tests" / "openai_server.py"), "--port-file", str(port_file),
                   "--delay", "0.05", "--request-log", str(self.log)]
        if faults:
            command += ["--faults", json.dumps(faults)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while not port_file.exists():
            assert self.process.poll() is None, self.process.stderr.read().decode()
            assert time.monotonic() < deadline, "the test server did not start"
            time.sleep(0.02)
        self.host = f"127.0.0.1:{port_file.read_text()}"
        self.base_url = f"http://{self.host}/v1"

    def lines(self) -> list[dict]:
        if not self.log.exists():
            return []
        text = self.log.read_text(encoding="utf-8")
        return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]

    def stop(self) -> None:
        self.process.terminate()  # SIGTERM: the server's clean shutdown
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def server_factory(tmp_path):
    started: list[StandaloneServer] = []

    def start(faults=None) -> StandaloneServer:
        started.append(StandaloneServer(tmp_path, faults))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def sftmix(server: StandaloneServer, tmp_path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "SFTMIX_LLM_BASE_URL": server.base_url, "SFTMIX_LLM_API_KEY": KEY,
           "SFTMIX_LLM_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", WRAPPER, *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def cached_keys(tmp_path: Path) -> set[str]:
    """Keys of the answers stored: whole lines of the cache's logs (a kill can leave the last one torn)."""
    return {json.loads(line)["key"] for path in (tmp_path / "cache").glob("*.jsonl")
            for line in path.read_bytes().splitlines(keepends=True) if line.endswith(b"\n")}


def kill_and_resume(server: StandaloneServer, tmp_path: Path, args: list[str], out: Path) -> dict:
    """Run, SIGKILL once >= KILL_AFTER requests were answered, run again to the end; check the request log."""
    first = sftmix(server, tmp_path, *args)
    deadline = time.monotonic() + 30
    while sum(1 for line in server.lines() if line["status"] == 200) < KILL_AFTER:
        if first.poll() is not None:
            pytest.fail(f"the run ended (code {first.returncode}) before it could be killed:\n{first.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline, "the run made too few requests"
        time.sleep(0.005)
    answered_before = server.lines()
    # the server logs a 200 just before sending it: wait (briefly) until the client has stored those answers
    wanted = {request_key(server.host, line["body"]) for line in answered_before if line["status"] == 200}
    deadline = time.monotonic() + 5
    while not wanted <= cached_keys(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.005)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=10)
    assert first.returncode == -signal.SIGKILL
    assert not out.exists()  # outputs appear only when a run finishes
    time.sleep(0.2)  # requests in flight at the kill finish (server side, delay 0.05 s) and are logged
    at_kill = server.lines()
    stored = cached_keys(tmp_path)
    assert KILL_AFTER <= len(stored) <= len(at_kill)

    second = sftmix(server, tmp_path, *args)
    stdout, stderr = second.communicate(timeout=60)
    assert second.returncode == 0, stderr[-3000:]
    assert KEY not in stdout + stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    after = server.lines()[len(at_kill):]
    assert len(after) >= KILL_AFTER // 2, "the kill came too late to leave work for the restart"

    # 1. nothing answered (200) before the kill was asked again after the restart
    done_before = {line["hash"] for line in answered_before if line["status"] == 200}
    asked_after = Counter(line["hash"] for line in after)
    assert not done_before & set(asked_after), f"{len(done_before & set(asked_after))} finished requests sent again"
    # 2. stronger: nothing the killed run had stored was asked again (the cache key is computed from the logged body)
    after_keys = {request_key(server.host, line["body"]) for line in after}
    assert not after_keys & stored
    # 3. the only repeats are answers that were still on their way to the killed client: at most one per slot
    in_flight = {line["hash"] for line in at_kill[len(answered_before):]}
    repeated = {line["hash"] for line in at_kill if line["status"] == 200} & set(asked_after)
    assert repeated <= in_flight and len(repeated) <= CONCURRENCY
    assert set(asked_after.values()) == {1}  # and the rerun asks each thing once
    # the restart was served from the cache for everything the first run stored
    assert summary["requests"] == len(after) and summary["cache_hits"] == len(stored)
    # sanity of the key mapping used in 2.: every answered request is in the cache now
    assert {request_key(server.host, line["body"]) for line in server.lines() if line["status"] == 200} <= cached_keys(tmp_path)
    return summary


def test_kill_and_resume_generate(tmp_path, server_factory):
    server = server_factory()
    out = tmp_path / "generated.parquet"
    summary = kill_and_resume(server, tmp_path, ["generate", "resume_test", "-o", str(out), "--language", "en"], out)
    rows = pq.read_table(out).to_pylist()
    rejected = pq.read_table(tmp_path / "generated.rejected.parquet").to_pylist()
    keys = [json.loads(r["origin"])["seed_id"] for r in rows] + [r["key"] for r in rejected]
    assert sorted(keys) == [f"topic-{i:03d}" for i in range(200)]  # every item exactly once, kept or dropped
    assert len({r["id"] for r in rows}) == len(rows) == summary["generated"]
    assert len(rows) >= 190, Counter(r["reason"] for r in rejected)
    for row in rows:
        number = int(json.loads(row["origin"])["seed_id"].split("-")[1])
        assert row["messages"][1]["content"] == f"echo: Write one friendly sentence about the number {number}."
    assert summary["requests"] + summary["cache_hits"] == 200


def test_kill_and_resume_judge(tmp_path, server_factory):
    # the standalone server echoes; `bad_verdict` faults turn the echo into a judge verdict for tagged rows
    faults = [{"kind": "bad_verdict", "match": "GRADE-FIVE", "count": None, "text": "Feedback: Correct. [RESULT] 5"},
              {"kind": "bad_verdict", "match": "GRADE-TWO", "count": None, "text": "Feedback: Mostly wrong. [RESULT] 2"}]
    server = server_factory(faults)
    records = []
    for i in range(200):
        tag = "" if i % 10 == 0 else "GRADE-TWO" if i % 5 == 4 else "GRADE-FIVE"  # untagged: unparsable, 3 asks
        records.append(make_record(messages=[message("user", f"What is {i} squared?"), message("assistant", f"{i * i}. {tag}")],
                                   tools=[], source="s", licence="mit", language="en", origin={"row": f"in#{i}"}))
    pq.write_table(to_table(records), tmp_path / "in.parquet")
    out = tmp_path / "judged.parquet"
    summary = kill_and_resume(server, tmp_path, ["judge", str(tmp_path / "in.parquet"), "-o", str(out)], out)
    kept = pq.read_table(out).column("id").to_pylist()
    rejected = pq.read_table(tmp_path / "judged.rejected.parquet").to_pylist()
    assert sorted(kept + [r["id"] for r in rejected]) == sorted(r["id"] for r in records)
    assert summary["kept"] == len(kept) == 140
    assert summary["dropped"] == {"judge_below_threshold": 40, "judge_unparsable": 20}
    assert summary["requests"] + summary["cache_hits"] == 140 + 40 + 20 * 3
