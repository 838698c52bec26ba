"""The per-source stages give the same shards, byte for byte, on datatrove's local executor, on Ray and on Slurm."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from sftmix import executor
from sftmix import build as build_module
from sftmix.build import BuildError, Layout, build, executor_config
from sftmix.executor import ExecutorConfig, StageStep, run_stage
from sftmix.manifest import load
from sftmix.normalize import SourceInfo
from sftmix.rejected import rejected_file

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SLURM_STANDIN = Path(__file__).resolve().parent / "slurm_standin" / "slurm.py"
GLAIVE = FIXTURES / "glaive" / "glaive-function-calling-v2.json"
SLURM_OPTIONS = {"partition": "cpu", "time": "00:10:00"}


def _manifest(tmp_path: Path, raw: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.yaml"
    path.write_text(yaml.safe_dump({
        "mixture": "mini", "seed": 5, "holdout": {"size": 10}, "licence_policy": {"allow": ["apache-2.0"]},
        "executor": {"kind": kind, "workers": 2, **({"slurm": SLURM_OPTIONS} if kind == "slurm" else {})},
        "sources": [{"key": "g", "converter": "glaive", "licence": "apache-2.0", "language": "en",
                     "local": {"files": [str(raw)]}, "targets": {"en": 500}}],
    }))
    return path


def _grown_glaive(tmp_path: Path) -> Path:
    rows = json.loads((FIXTURES / "glaive" / "glaive-function-calling-v2.json").read_text())
    grown = [dict(r, chat=r["chat"].replace("USER: ", f"USER: ({i}) ", 1)) for i in range(150) for r in rows]
    raw = tmp_path / "glaive-function-calling-v2.json"
    raw.write_text(json.dumps(grown))
    return raw


def _assert_same_output_as_local(tmp_path: Path, raw: Path, kind: str, result) -> None:
    local = build(load(_manifest(tmp_path, raw, "local")), tmp_path / "local")
    parts = sorted((Layout(tmp_path / kind, "mini").stage_dir("g", "normalized")).glob("part-*.parquet"))
    assert len(parts) == 2  # the rows really were split across the two tasks
    assert result.split_rows == local.split_rows == {"train": 500, "validation": 10}
    for split in ("train", "validation"):
        ids = pq.read_table(tmp_path / kind / "mini" / split, columns=["id"])["id"].to_pylist()
        local_ids = pq.read_table(tmp_path / "local" / "mini" / split, columns=["id"])["id"].to_pylist()
        assert ids == local_ids
        # The manifests differ in their executor only, which is no part of the manifest hash: same bytes.
        shards = sorted((tmp_path / kind / "mini" / split).glob("*.parquet"))
        local_shards = sorted((tmp_path / "local" / "mini" / split).glob("*.parquet"))
        assert [p.name for p in shards] == [p.name for p in local_shards]
        assert [p.read_bytes() for p in shards] == [p.read_bytes() for p in local_shards]


def test_ray_cluster_of_two_workers_writes_the_local_executors_shards(tmp_path):
    ray = pytest.importorskip("ray")
    raw = _grown_glaive(tmp_path)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # a local cluster of 2 workers
    try:
        on_ray = build(load(_manifest(tmp_path, raw, "ray")), tmp_path / "ray")
    finally:
        ray.shutdown()
    _assert_same_output_as_local(tmp_path, raw, "ray", on_ray)


def test_auto_workers_on_ray_count_the_clusters_cpus_not_this_machines(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    raw = _grown_glaive(tmp_path)
    manifest = load(_manifest(tmp_path, raw, "ray")).model_copy(deep=True)
    manifest.executor.workers = "auto"
    monkeypatch.setattr(build_module, "AUTO_BYTES_PER_WORKER", 1)  # any input is worth a worker per CPU
    ray.init(num_cpus=(os.cpu_count() or 1) + 3, include_dashboard=False, log_to_driver=False)
    try:
        assert executor_config(manifest, [raw]).workers == (os.cpu_count() or 1) + 3
    finally:
        ray.shutdown()
    manifest.executor.kind = "local"
    assert executor_config(manifest, [raw]).workers == (os.cpu_count() or 1)


@pytest.fixture
def slurm(tmp_path, monkeypatch):
    """sbatch, srun, squeue, scancel and scontrol on PATH, played by tests/slurm_standin; yields its state folder."""
    bin_dir, state = tmp_path / "slurm-bin", tmp_path / "slurm-state"
    bin_dir.mkdir()
    for command in ("sbatch", "srun", "squeue", "scancel", "scontrol"):
        (bin_dir / command).write_text(f'#!/bin/sh\nexec "{sys.executable}" "{SLURM_STANDIN}" {command} "$@"\n')
        (bin_dir / command).chmod(0o755)
    # datatrove's task command (launch_pickled_pipeline) lives beside this interpreter
    monkeypatch.setenv("PATH", os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]]))
    monkeypatch.setenv("SLURM_STANDIN_STATE", str(state))
    monkeypatch.setattr(executor, "SLURM_POLL_SECONDS", 0.1)
    yield state
    (state / "held").unlink(missing_ok=True)
    deadline = time.monotonic() + 60  # jobs still queued (tasks past their counts) finish before tmp_path goes
    while any(state.glob("job-*/queued")) and time.monotonic() < deadline:
        time.sleep(0.1)


def test_slurm_job_arrays_of_two_tasks_write_the_local_executors_shards(tmp_path, slurm):
    raw = _grown_glaive(tmp_path)
    on_slurm = build(load(_manifest(tmp_path, raw, "slurm")), tmp_path / "slurm")
    scripts = [path.read_text() for path in sorted(slurm.glob("job-*/script.sh"))]
    arrays = [script for script in scripts if "#SBATCH --array=0-1" in script]
    assert len(arrays) == 2  # the normalize and filter stages, each a job array of 2 tasks
    assert all("#SBATCH --partition=cpu" in script and "launch_pickled_pipeline" in script for script in arrays)
    _assert_same_output_as_local(tmp_path, raw, "slurm", on_slurm)


@pytest.mark.parametrize("logs_folder", [None, "my-slurm-logs"])  # datatrove's, or the manifest's slurm_logs_folder
def test_a_failed_slurm_task_is_an_error_naming_its_logs_not_a_wait(tmp_path, slurm, logs_folder):
    info = SourceInfo(key="g", converter="glaive", licence="apache-2.0", language="en")
    step = StageStep("normalized", info, [str(tmp_path / "missing.json")], str(tmp_path / "parts"),
                     str(tmp_path / "rejected"))
    options = {**SLURM_OPTIONS, "wait_hours": 0.02}
    if logs_folder:
        options["slurm_logs_folder"] = str(tmp_path / logs_folder)
    with pytest.raises(RuntimeError, match=r"ended without task\(s\) 0, 1; their logs are in ") as raised:
        run_stage(step, ExecutorConfig(kind="slurm", workers=2, slurm=options))
    logs = Path(str(raised.value).rsplit(" ", 1)[1])
    assert logs == (tmp_path / logs_folder if logs_folder else tmp_path / "parts" / ".datatrove-logs" / "slurm_logs")
    assert "missing.json" in "".join(log.read_text() for log in logs.glob("*.out"))


@pytest.mark.parametrize("spaced", ["the stage directory (under the build's output)", "slurm_logs_folder"])
def test_a_slurm_stage_refuses_a_path_its_job_script_cannot_hold_before_submitting(tmp_path, slurm, spaced):
    """datatrove writes the paths into its job script unquoted: under "My Data" every task failed."""
    info = SourceInfo(key="g", converter="glaive", licence="apache-2.0", language="en")
    parts, logs = tmp_path / "data" / "parts", tmp_path / "My Data" / "logs"
    options = {**SLURM_OPTIONS, "wait_hours": 0.02}
    if spaced == "slurm_logs_folder":
        options["slurm_logs_folder"] = str(logs)
    else:
        parts = tmp_path / "My Data" / "parts"
    step = StageStep("normalized", info, [str(FIXTURES / "glaive" / "glaive-function-calling-v2.json")], str(parts),
                     str(tmp_path / "rejected"))
    named = logs if spaced == "slurm_logs_folder" else parts
    with pytest.raises(RuntimeError, match=f"^g: {re.escape(spaced)} '{re.escape(str(named))}' holds ' ': datatrove "
                                           "writes it unquoted into its Slurm job script"):
        run_stage(step, ExecutorConfig(kind="slurm", workers=2, slurm=options))
    assert not list(slurm.glob("job-*"))


@pytest.mark.parametrize("folder, character", [("run-{a,b}", "{"), ("logs-%x", "%")])
def test_a_slurm_path_the_shell_expands_or_sbatch_reads_is_refused(tmp_path, folder, character):
    """`{a,b}` is two paths to the shell (every task failed); `%x` in --output is sbatch's job name."""
    problem = executor._slurm_paths_problem(ExecutorConfig(kind="slurm", slurm=SLURM_OPTIONS), tmp_path / folder / "parts")
    assert problem and f"holds {character!r}: datatrove writes it unquoted" in problem


def test_slurm_waits_for_every_job_array_when_they_run_in_parallel(tmp_path, slurm, monkeypatch):
    """Two tasks in arrays of one, launched together: the first array still runs after the last ends."""
    raw = _grown_glaive(tmp_path)
    info = SourceInfo(key="g", converter="glaive", licence="apache-2.0", language="en")
    step = StageStep("normalized", info, [str(raw)], str(tmp_path / "parts"), str(tmp_path / "rejected"))
    monkeypatch.setenv("SLURM_STANDIN_SLOW_JOB", "1:3")
    config = ExecutorConfig(kind="slurm", workers=2, slurm={**SLURM_OPTIONS, "max_array_size": 1,
                                                            "max_array_launch_parallel": True, "wait_hours": 0.1})
    counts, parts = run_stage(step, config)
    arrays = [path for path in slurm.glob("job-*/script.sh") if "launch_pickled_pipeline" in path.read_text()]
    assert len(arrays) == 2 and all("#SBATCH --array=0-0" in path.read_text() for path in arrays)  # one per task
    assert counts.read == 150 * len(json.loads((FIXTURES / "glaive" / "glaive-function-calling-v2.json").read_text()))
    assert sorted((tmp_path / "parts").glob("part-*.parquet")) == parts == [
        tmp_path / "parts" / "part-00000.parquet", tmp_path / "parts" / "part-00001.parquet"]


def _held_stage(tmp_path: Path, monkeypatch, stop: str) -> tuple[StageStep, ExecutorConfig]:
    """A stage of two tasks whose array waits 20 s in the queue, and the build stopped meanwhile:
    by Ctrl-C as it waits, or by the wait's deadline."""
    info = SourceInfo(key="g", converter="glaive", licence="apache-2.0", language="en")
    step = StageStep("normalized", info, [str(FIXTURES / "glaive" / "glaive-function-calling-v2.json")],
                     str(tmp_path / "parts"), str(tmp_path / "rejected"))
    monkeypatch.setenv("SLURM_STANDIN_SLOW_JOB", "1:20")
    if stop == "ctrl-c":
        def interrupted(job_ids):
            raise KeyboardInterrupt
        monkeypatch.setattr(executor, "_slurm_jobs_queued", interrupted)
    return step, ExecutorConfig(kind="slurm", workers=2, slurm={**SLURM_OPTIONS, "wait_hours": 0.0005})


@pytest.mark.parametrize("stop", ["ctrl-c", "deadline"])
def test_a_stopped_slurm_stage_cancels_its_jobs(tmp_path, slurm, monkeypatch, stop):
    """Left running, a stopped build's tasks wrote their rows into the next run of the stage."""
    step, config = _held_stage(tmp_path, monkeypatch, stop)
    with pytest.raises(KeyboardInterrupt if stop == "ctrl-c" else RuntimeError):
        run_stage(step, config)
    assert sorted(path.parent.name for path in slurm.glob("job-*/runner")) == ["job-1"]  # the array
    assert not list(slurm.glob("job-*/queued"))  # the array, held for 20 s, did not end by itself


def test_a_failed_scancel_leaves_the_stages_own_error(tmp_path, slurm, monkeypatch):
    scancel = tmp_path / "slurm-bin" / "scancel"
    scancel.write_text("#!/bin/sh\necho 'scancel: error: Kill job error on job id 1: Access denied' >&2\nexit 1\n")
    step, config = _held_stage(tmp_path, monkeypatch, "deadline")
    with pytest.raises(RuntimeError, match="did not finish in time") as raised:
        run_stage(step, config)
    assert raised.value.__notes__ == [
        "scancel 1 failed (exit code 1: scancel: error: Kill job error on job id 1: Access denied): "
        "those jobs may still be running"]
    subprocess.run([sys.executable, str(SLURM_STANDIN), "scancel", "1"], check=True)  # not left to the fixture's wait


def test_a_finished_slurm_stage_leaves_nothing_queued(tmp_path, slurm):
    """datatrove's stats merge, a job after the arrays whose stats.json nothing reads, stayed queued
    after every stage that succeeded: until the arrays ended and a node was free, and for good on a
    cluster without kill_invalid_depend when the last array ended badly after its tasks' counts."""
    info = SourceInfo(key="g", converter="glaive", licence="apache-2.0", language="en")
    step = StageStep("normalized", info, [str(FIXTURES / "glaive" / "glaive-function-calling-v2.json")],
                     str(tmp_path / "parts"), str(tmp_path / "rejected"))
    run_stage(step, ExecutorConfig(kind="slurm", workers=2, slurm=SLURM_OPTIONS))
    scripts = {path.parent: path.read_text() for path in slurm.glob("job-*/script.sh")}
    assert [("launch_pickled_pipeline" in script, "merge_stats" in script) for script in scripts.values()] == [
        (True, False)]  # the stage's array, whose tasks have written their counts, and nothing else
    deadline = time.monotonic() + 30
    while any((job / "queued").exists() for job in scripts) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not list(slurm.glob("job-*/queued"))


DRIVER = """
import logging
import sys
from pathlib import Path
from sftmix import executor
from sftmix.build import Layout, normalize_source
from sftmix.manifest import load

logging.basicConfig(level=logging.INFO)
executor.SLURM_POLL_SECONDS = 0.1
asked = executor._slurm_jobs_queued
def waiting(job_ids):  # says the stage submitted its jobs and waits for them
    Path(sys.argv[3]).write_text(" ".join(job_ids))
    return asked(job_ids)
executor._slurm_jobs_queued = waiting
manifest = load(Path(sys.argv[1]))
normalize_source(manifest, manifest.sources[0], [Path(sys.argv[4])], Layout(Path(sys.argv[2]), manifest.mixture))
"""


def _glaive_manifest(tmp_path: Path, mixture: str) -> Path:
    """A manifest of mixture `mixture` whose source glaive is built on Slurm, in two tasks."""
    path = tmp_path / f"{mixture}.yaml"
    path.write_text(yaml.safe_dump({
        "mixture": mixture, "seed": 5, "holdout": {"size": 10}, "licence_policy": {"allow": ["apache-2.0"]},
        "executor": {"kind": "slurm", "workers": 2, "slurm": SLURM_OPTIONS},
        "sources": [{"key": "glaive", "converter": "glaive", "licence": "apache-2.0", "language": "en",
                     "local": {"files": [str(GLAIVE)]}, "targets": {"en": 500}}],
    }))
    return path


def _glaive_stage_dir(tmp_path: Path, mixture: str) -> Path:
    return Layout(tmp_path / "out", mixture).stage_dir("glaive", "normalized")


def _waiting_build(tmp_path: Path, mixture: str, **popen) -> tuple[subprocess.Popen, list[str]]:
    """A build of mixture `mixture` (its glaive source's normalized stage on Slurm, under `<tmp_path>/out`)
    in a process of its own, once it has submitted its array and waits for it, its stderr in
    `<mixture>.log`; and the ids of the jobs it waits for."""
    waiting, log = tmp_path / f"{mixture}.waiting", tmp_path / f"{mixture}.log"
    waiting.unlink(missing_ok=True)
    with log.open("w") as stderr:
        build = subprocess.Popen([sys.executable, "-c", DRIVER, str(_glaive_manifest(tmp_path, mixture)),
                                  str(tmp_path / "out"), str(waiting), str(GLAIVE)], stderr=stderr, **popen)
    deadline = time.monotonic() + 120
    while not waiting.exists():
        assert build.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    return build, waiting.read_text().split()


def _held(state: Path) -> None:
    """A busy partition: every job waits in the queue."""
    state.mkdir()
    (state / "held").touch()


def _queued(state: Path, job_ids: list[str]) -> list[bool]:
    return [(state / f"job-{job_id}" / "queued").exists() for job_id in job_ids]


def test_a_killed_builds_jobs_are_cancelled_by_a_name_no_other_run_has(tmp_path, slurm):
    """Two manifests building a source of one key on one account (alia-40b-fc's glaive and
    alia-40b-instruct's), their builds killed outright: README's `scancel --name` for one of them,
    `sftmix-glaive` then, cancelled the other's jobs too."""
    _held(slurm)
    builds = {output: _waiting_build(tmp_path, output) for output in ("alia-40b-fc", "alia-40b-instruct")}
    for build, _ in builds.values():
        build.kill()
        build.wait()
    token = (_glaive_stage_dir(tmp_path, "alia-40b-fc") / ".run-token").read_text()
    subprocess.run(["scancel", f"--name=sftmix-glaive-normalized-{token}"], check=True)  # as README says
    fc_jobs, instruct_jobs = builds["alia-40b-fc"][1], builds["alia-40b-instruct"][1]
    assert _queued(slurm, fc_jobs) == [False] and _queued(slurm, instruct_jobs) == [True]
    subprocess.run(["scancel", *instruct_jobs], check=True)


def test_a_killed_builds_jobs_are_cancelled_by_the_next_run_of_its_stage_and_no_others(tmp_path, slurm):
    """A build killed outright (SIGKILL, the out-of-memory killer) cannot cancel its jobs, and they ran
    on for nothing. The next run of its stage cancels them: not those of a run still waiting (it holds
    the stage), of another manifest's source of the same key, or of another stage of that run's token."""
    _held(slurm)
    builds = {mixture: _waiting_build(tmp_path, mixture) for mixture in ("alia-40b-fc", "alia-40b-instruct")}
    manifest = load(_glaive_manifest(tmp_path, "alia-40b-fc"))
    with pytest.raises(BuildError, match="^source 'glaive': its normalized records are being written or read"):
        build_module.normalize_source(manifest, manifest.sources[0], [GLAIVE], Layout(tmp_path / "out", "alia-40b-fc"))
    for build, _ in builds.values():
        build.kill()
        build.wait()
    token = (_glaive_stage_dir(tmp_path, "alia-40b-fc") / ".run-token").read_text()
    other_stage = tmp_path / "other-stage.sh"
    other_stage.write_text(f"#!/bin/sh\n#SBATCH --job-name=sftmix-glaive-filtered-{token}\ntrue\n")
    submitted = subprocess.run(["sbatch", str(other_stage)], check=True, capture_output=True, text=True).stdout
    other_stage_job = submitted.split()[-1]
    fc_jobs, instruct_jobs = builds["alia-40b-fc"][1], builds["alia-40b-instruct"][1]
    assert _queued(slurm, fc_jobs + instruct_jobs + [other_stage_job]) == [True, True, True]
    rebuild, rebuild_jobs = _waiting_build(tmp_path, "alia-40b-fc")  # once it has submitted its own jobs
    assert _queued(slurm, fc_jobs + instruct_jobs + [other_stage_job] + rebuild_jobs) == [False, True, True, True]
    assert (f"INFO:sftmix:glaive: cancelling any Slurm jobs the normalized stage's previous run left (a build killed "
            f"outright leaves them): scancel --name=sftmix-glaive-normalized-{token}\n") in \
        (tmp_path / "alia-40b-fc.log").read_text()
    rebuild.send_signal(signal.SIGINT)
    assert rebuild.wait(timeout=120) == -signal.SIGINT
    subprocess.run(["scancel", *instruct_jobs, other_stage_job], check=True)


def test_a_failed_scancel_of_the_previous_runs_jobs_is_logged_and_the_run_goes_on(tmp_path, slurm, monkeypatch, caplog):
    scancel = tmp_path / "slurm-bin" / "scancel"
    scancel.write_text("#!/bin/sh\necho 'scancel: error: Invalid user for job name' >&2\nexit 1\n")
    info = SourceInfo(key="g", converter="glaive", licence="apache-2.0", language="en")
    step = StageStep("normalized", info, [str(GLAIVE)], str(tmp_path / "parts"), str(tmp_path / "rejected"))
    with caplog.at_level("WARNING", logger="sftmix"):
        counts, _ = run_stage(step, ExecutorConfig(kind="slurm", workers=2, slurm=SLURM_OPTIONS), previous_run="0123")
    assert counts.kept > 0
    assert [record.getMessage() for record in caplog.records if record.levelname == "WARNING"] == [
        "g: scancel --name=sftmix-g-normalized-0123 failed (exit code 1: scancel: error: Invalid user for job name): "
        "the normalized stage's previous run's jobs may still be running; this run goes on"]


@pytest.mark.parametrize("stop, handler", [(signal.SIGHUP, "default"), (signal.SIGHUP, "ignored"),
                                           (signal.SIGTERM, "default")])
def test_a_build_hung_up_or_terminated_cancels_its_slurm_jobs_unless_it_ignores_the_signal(tmp_path, slurm, stop,
                                                                                          handler):
    """SIGHUP (its terminal closed) or SIGTERM (`kill`) killed the build at once, and its arrays ran on
    for nothing; under nohup (SIGHUP ignored) the build is meant to go on without its terminal, and does."""
    _held(slurm)
    ignored = {"preexec_fn": lambda: signal.signal(stop, signal.SIG_IGN)} if handler == "ignored" else {}
    build, job_ids = _waiting_build(tmp_path, "alia-40b-fc", **ignored)
    build.send_signal(stop)
    if handler == "default":
        assert build.wait(timeout=120) == -signal.SIGINT, (tmp_path / "alia-40b-fc.log").read_text()  # as by Ctrl-C
        assert _queued(slurm, job_ids) == [False]  # cancelled: held, the array had not run
    else:
        with pytest.raises(subprocess.TimeoutExpired):
            build.wait(timeout=2)
        (slurm / "held").unlink()
        assert build.wait(timeout=120) == 0, (tmp_path / "alia-40b-fc.log").read_text()
        assert (_glaive_stage_dir(tmp_path, "alia-40b-fc") / ".counts-00001.json").is_file()


@pytest.mark.parametrize("earlier_task", ["starts", "ends"])
def test_a_task_of_an_earlier_run_is_not_counted_as_the_next_runs(tmp_path, slurm, monkeypatch, earlier_task):
    """A stopped run's task that nothing cancelled (its build was killed) starts, or ends, while the
    next run of the stage (its language corrected: en -> es) waits for its own task: the next run
    keeps its own task's rows, not the earlier run's."""
    def step(language: str) -> StageStep:
        info = SourceInfo(key="g", converter="glaive", licence="apache-2.0", language=language)
        return StageStep("normalized", info, [str(FIXTURES / "glaive" / "glaive-function-calling-v2.json")],
                         str(tmp_path / "parts"), str(tmp_path / "rejected"), apply_filters=False)

    earlier = step("en")
    run_stage(earlier, ExecutorConfig())
    ended = {name: (tmp_path / "parts" / name).read_bytes() for name in ("part-00000.parquet", ".counts-00000.json")}
    refused, queued = [], executor._slurm_jobs_queued

    def earlier_task_meanwhile(job_ids):
        if earlier_task == "starts" and not refused:
            with pytest.raises(RuntimeError) as raised:
                list(earlier.run(None, 0, 1))
            refused.append(str(raised.value))
        elif earlier_task == "ends" and ended:
            for name in list(ended):
                (tmp_path / "parts" / name).write_bytes(ended.pop(name))
        return queued(job_ids)

    monkeypatch.setattr(executor, "_slurm_jobs_queued", earlier_task_meanwhile)
    monkeypatch.setenv("SLURM_STANDIN_SLOW_JOB", "1:2")  # the next run's own task waits in the queue
    run_stage(step("es"), ExecutorConfig(kind="slurm", workers=1, slurm=SLURM_OPTIONS))
    languages = pq.read_table(tmp_path / "parts" / "part-00000.parquet", columns=["language"])["language"]
    assert set(languages.to_pylist()) == {"es"}
    if earlier_task == "starts":
        assert refused == ["g: task 0 of the normalized stage belongs to a run of the stage that a later run "
                           "replaced: it writes nothing"]


def test_a_task_whose_run_was_replaced_while_it_ran_puts_no_file_in_place(tmp_path, monkeypatch):
    """A task of a stopped run that passed its first check just before the next run made the stage
    directory anew put its part there and, the rejected directory being the same, replaced the next
    run's rejected file with its own (review)."""
    def step(language: str) -> StageStep:
        info = SourceInfo(key="g", converter="glaive", licence="apache-2.0", language=language)
        return StageStep("normalized", info, [str(FIXTURES / "glaive" / "glaive-function-calling-v2.json")],
                         str(tmp_path / "parts"), str(tmp_path / "rejected"), apply_filters=False)

    earlier, later = step("en"), step("es")
    run_stage(earlier, ExecutorConfig())
    run_stage(later, ExecutorConfig())  # the next run, with a token of its own in the stage directory
    published = [tmp_path / "parts" / "part-00000.parquet", rejected_file(tmp_path / "rejected", "g", "normalized", 0)]
    before = [(path.stat().st_ino, path.read_bytes()) for path in published]
    check, checked = executor.StageStep._check_run_is_current, []

    def passed_at_its_start(task, rank):  # it began before the next run made the directory anew
        checked.append(rank)
        if len(checked) > 1:
            check(task, rank)

    monkeypatch.setattr(executor.StageStep, "_check_run_is_current", passed_at_its_start)
    with pytest.raises(RuntimeError, match="belongs to a run of the stage that a later run replaced"):
        list(earlier.run(None, 0, 1))
    assert [(path.stat().st_ino, path.read_bytes()) for path in published] == before


def test_a_stage_hides_the_imported_objects_from_the_collector_only_while_it_runs(tmp_path, monkeypatch):
    import gc

    frozen_during = []
    real_normalize = executor.normalize

    def normalize(*args, **kwargs):
        frozen_during.append(gc.get_freeze_count())
        return real_normalize(*args, **kwargs)

    monkeypatch.setattr(executor, "normalize", normalize)
    frozen_before = gc.get_freeze_count()
    info = SourceInfo(key="g", converter="glaive", licence="apache-2.0", language="en", filters=None)
    step = StageStep("normalized", info, [str(FIXTURES / "glaive" / "glaive-function-calling-v2.json")],
                     str(tmp_path / "parts"), str(tmp_path / "rejected"))
    list(step.run())
    assert frozen_during[0] > frozen_before + 1000  # the modules' objects, at least
    assert gc.get_freeze_count() == frozen_before  # a long-lived process (Dagster, pytest) gets them back
    assert pq.read_table(tmp_path / "parts" / "part-00000.parquet").num_rows > 0


def test_auto_workers_are_the_cpus_this_process_may_use():
    """`os.cpu_count()` is the machine's: on a 4-CPU Slurm job of a 128-core node, 128 workers."""
    import os

    from sftmix.executor import available_cpus

    allowed = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(allowed)})
        assert available_cpus("local") == 1
    finally:
        os.sched_setaffinity(0, allowed)
    assert available_cpus("local") == len(allowed)


def test_a_ray_task_s_error_is_read_from_its_log(tmp_path):
    """Ray said only "task 0 of the normalized stage did not finish": the error was in the task's
    datatrove log, in a directory deleted as the executor returned."""
    from sftmix.executor import _task_failure

    log = tmp_path / "task_00000.log"
    log.write_text(
        "2026-12-07 13:59:50.100 | INFO     | datatrove.utils.logging:add_task_logger:58 - Launching pipeline for rank=0\n"
        "2026-12-07 13:59:52.600 | ERROR    | datatrove.executor.base:_run_for_rank:108 - g.json: broken JSON array\n"
        "Traceback (most recent call last):\n"
        '  File "/work/main/sftmix/raw.py", line 329, in positioned_raw_rows\n'
        "    raise RawInputError(f\"{path}: broken JSON array after row {index}: {error}\") from None\n"
        "sftmix.raw.RawInputError: /data/g.json: broken JSON array after row 2399: Unterminated string\n")
    assert _task_failure(log) == (": sftmix.raw.RawInputError: /data/g.json: broken JSON array after row 2399: "
                                  f"Unterminated string (its log: {log})")
    assert _task_failure(tmp_path / "none.log") == ""  # a local task raises its error itself


class _KilledAtRankOne(StageStep):
    """A stage whose second task's process is killed, as the OOM killer does."""

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if rank == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        yield from super().run(data, rank, world_size)


def test_a_worker_killed_stops_the_stage_naming_its_task(tmp_path):
    """datatrove's process pool lost the task of a killed worker, and the build waited for ever."""
    info = SourceInfo(key="g", converter="glaive", licence="apache-2.0", language="en")
    step = _KilledAtRankOne("normalized", info, [str(_grown_glaive(tmp_path))], str(tmp_path / "parts"),
                            str(tmp_path / "rejected"))
    assert _stage_failure(step) == "g: task 1 of the normalized stage died (killed by SIGKILL, out of memory?)"


def _stage_failure(step: StageStep) -> str:
    """The error of a 2-task stage, as text; a failed test, not a hung run, where it waits for ever."""
    failure = []

    def stage():
        try:
            run_stage(step, ExecutorConfig(workers=2))
        except Exception as error:
            failure.append(f"{type(error).__name__}: {error}")

    running = threading.Thread(target=stage, daemon=True)
    running.start()
    running.join(120)
    assert not running.is_alive(), "the stage still waits for its task"
    return failure[0].split(": ", 1)[1] if failure[0].startswith("RuntimeError") else failure[0]


def test_a_task_s_end_and_its_pipe_seen_in_one_wait_end_the_stage_normally(tmp_path, monkeypatch):
    """A parent late to wait (a busy machine) got a task's end and its pipe's EOF in one list; the end,
    handled first, drained the pipe, which was then taken for an end: KeyError on a stage that
    succeeded (a helper's case, 1 in 4 Dagster runs on 2 workers)."""
    import multiprocess.connection

    real_wait = multiprocess.connection.wait

    def late_wait(objects, timeout=None):  # returns only once the tasks have ended, all at once
        deadline = time.monotonic() + 60
        while len(ready := real_wait(objects, 0.05)) < len(objects) and time.monotonic() < deadline:
            time.sleep(0.05)
        return ready

    monkeypatch.setattr(multiprocess.connection, "wait", late_wait)
    info = SourceInfo(key="g", converter="glaive", licence="apache-2.0", language="en")
    step = StageStep("normalized", info, [str(_grown_glaive(tmp_path))], str(tmp_path / "parts"), str(tmp_path / "rejected"))
    counts, _ = run_stage(step, ExecutorConfig(workers=2))
    assert counts.read > 0 and counts.kept > 0


class _LibraryError(Exception):
    """An error pickled without its keyword-only argument: it cannot be rebuilt where it is received."""

    def __init__(self, message: str, *, status: int):
        super().__init__(message)
        self.status = status


class _FailingAtRankOne(StageStep):
    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if rank == 1:
            if self.info.key == "large":  # keeps its 100 kB of bytes: more than a pipe holds
                raise UnicodeDecodeError("utf-8", b"\xff" * 100_000, 0, 1, "invalid start byte")
            raise _LibraryError("the real cause: upstream returned 503", status=503)
        yield from super().run(data, rank, world_size)


@pytest.mark.parametrize("key, expected", [
    # the task waited to write it, the stage for the task to end
    ("large", "UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"),
    # a TypeError of unpickling stood for it
    ("library", "large: task 1 of the normalized stage raised _LibraryError: the real cause: upstream returned 503"),
])
def test_a_task_s_error_reaches_the_stage_whatever_it_holds(tmp_path, key, expected):
    info = SourceInfo(key=key, converter="glaive", licence="apache-2.0", language="en")
    step = _FailingAtRankOne("normalized", info, [str(_grown_glaive(tmp_path))], str(tmp_path / "parts"),
                             str(tmp_path / "rejected"))
    assert _stage_failure(step) == expected.replace("large:", f"{key}:")


class _ListingItsFiles(StageStep):
    def run(self, data=None, rank: int = 0, world_size: int = 1):
        (Path(self.out_dir) / f"files-{rank}.txt").write_text(
            "\n".join(os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                      if os.path.exists(f"/proc/self/fd/{fd}")))
        yield from super().run(data, rank, world_size)


def test_the_tasks_of_a_stage_hold_its_lock_too(tmp_path):
    """Killed by SIGTERM or SIGKILL, a build's tasks ran on, and wrote into the parts of the next run,
    which found the stage free."""
    layout = Layout(tmp_path / "out", "mini")
    info = SourceInfo(key="g", converter="glaive", licence="apache-2.0", language="en")
    step = _ListingItsFiles("normalized", info, [str(_grown_glaive(tmp_path))], str(tmp_path / "parts"),
                            str(tmp_path / "rejected"))
    with layout.hold(*layout.stage_lock("g", "normalized")):
        run_stage(step, ExecutorConfig(workers=2))
    lock = str(layout.work_dir / layout.stage_lock("g", "normalized")[0])
    assert all(lock in (tmp_path / "parts" / f"files-{rank}.txt").read_text().split("\n") for rank in (0, 1))


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signal handlers are the main thread's")
def test_a_second_hangup_does_not_stop_the_cancelling():
    """A closing terminal often sends SIGHUP twice; a second one before scancel had started raised again
    out of the cancelling, and the jobs stayed queued (review7). A handler the stage put in place is kept,
    and one already there (Dagster's for SIGTERM) is left alone."""
    def hang_up():
        os.kill(os.getpid(), signal.SIGHUP)
        time.sleep(0.05)  # the handler runs between bytecodes of the main thread

    def dagsters(signum, frame):
        pass

    before = {number: signal.signal(number, signal.SIG_DFL) for number in (signal.SIGHUP, signal.SIGTERM)}
    try:
        cancelled = False
        with pytest.raises(KeyboardInterrupt):
            with executor._stops_as_interrupt():
                try:
                    hang_up()
                except KeyboardInterrupt:
                    hang_up()  # the second: ignored
                    cancelled = True
                    raise
        assert cancelled and signal.getsignal(signal.SIGHUP) is signal.SIG_DFL
        with executor._stops_as_interrupt():
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        signal.signal(signal.SIGTERM, dagsters)
        with executor._stops_as_interrupt():
            assert signal.getsignal(signal.SIGTERM) is dagsters
        assert signal.getsignal(signal.SIGTERM) is dagsters
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)
