"""Run a per-source stage on one or many workers through datatrove's executors.

A stage (normalize raw files, or filter records) is one datatrove `PipelineStep` whose task
`rank` of `world_size` handles its share of the rows (raw blocks; batches of the normalized parts)
and writes `part-<rank>.parquet`, its own rejected file and its counts. On one machine each task
runs as datatrove's local executor runs it, in a process of its own that the stage watches
(`_run_local_ranks`); datatrove's Ray and Slurm executors run the very same step on a cluster.
Each run of a stage has a token of its own, in the stage directory and in each of its tasks: a task
of an earlier run still running (a Slurm job outlives the build that submitted it) writes nothing
there, and counts that are not the run's are not its tasks' (`_own_counts`).
The parts are merged by the mixing step, which orders rows by content hash, and by a generator's
input, which reads them in the order of their raw rows (`sftmix.normalize.records_in_order`), so
the output does not depend on the number of workers.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

from datatrove.executor import SlurmPipelineExecutor
from datatrove.pipeline.base import PipelineStep

from sftmix.counts import Counts
from sftmix.normalize import SourceInfo, filter_records, normalize
from sftmix.rejected import rejected_file, rejected_files
from sftmix.shards import write_text_whole

log = logging.getLogger("sftmix")

EXECUTORS = ("local", "ray", "slurm")
LOCAL_START_METHOD = "forkserver"  # datatrove's default: workers never inherit the caller's threads
SLURM_POLL_SECONDS = 30
SCANCEL_SECONDS = 120  # the most a stopped stage waits for scancel
# The SlurmPipelineExecutor arguments the stage runner sets itself, in the order `_executor` passes
# them; a manifest's `slurm:` options give the others (checked by `slurm_options_problem`).
SLURM_SET_BY_SFTMIX = ("pipeline", "tasks", "logging_dir", "skip_completed", "job_name", "job_id_retriever")
RUN_TOKEN_FILE = ".run-token"  # in a stage directory: the token of the run writing it
# What the shell (and sbatch, reading its #SBATCH lines) splits or reads in a word: datatrove writes
# the paths of its job script unquoted (the task's and the stats merge's command lines, --output).
# Braces expand ({a,b} is two paths); sbatch reads %x, %u... in --output as its own patterns.
SHELL_SPECIAL = re.compile(r"""[\s'"\\$`;&|<>()*?\[{}%]""")


@dataclass(frozen=True)
class ExecutorConfig:
    kind: Literal["local", "ray", "slurm"] = "local"
    workers: int = 1
    slurm: dict | None = None  # SlurmPipelineExecutor arguments (partition, time, cpus_per_task, ...)


class StageStep(PipelineStep):
    """One source's stage; task `rank` writes `<out_dir>/part-<rank>.parquet` and its counts, with
    `run_token` (set by `run_stage`), while the stage directory is still its run's."""

    name = "sftmix stage"
    type = "sftmix"

    def __init__(self, stage: Literal["normalized", "filtered"], info: SourceInfo, inputs: list[str], out_dir: str,
                 rejected_dir: str, apply_filters: bool = True):
        super().__init__()
        self.stage, self.info, self.inputs = stage, info, inputs
        self.out_dir, self.rejected_dir, self.apply_filters = out_dir, rejected_dir, apply_filters
        self.run_token: str | None = None

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        self._check_run_is_current(rank)
        out = _part_file(Path(self.out_dir), rank)
        rejected = rejected_file(self.rejected_dir, self.info.key, self.stage, rank)
        # A stage allocates dicts and lists for every row, and each of the collector's full passes
        # walked every object the imports made (70 ms each: 12 µs a row on glaive): they are
        # frozen out of its sight for the stage, and handed back after it.
        gc.collect()
        gc.freeze()
        # checked again just before the part and the rejected file are put in place: the rejected
        # directory is not made anew by a later run, so a task that began before it would replace its files
        still_current = partial(self._check_run_is_current, rank)
        try:
            with self.track_time(unit="task"):  # datatrove's logs then show the task's runtime
                if self.stage == "normalized":
                    counts = normalize(self.info, self.inputs, out, rejected, apply_filters=self.apply_filters,
                                       rank=rank, world_size=world_size, before_publishing=still_current)
                else:
                    counts = filter_records(self.info, self.inputs, out, rejected, rank=rank, world_size=world_size,
                                            stage_parts=True, before_publishing=still_current)
        finally:
            gc.unfreeze()
        for reason, n in counts.dropped.items():
            self.stat_update(f"dropped_{reason}", value=n)
        self.stat_update("kept", value=counts.kept)
        self._check_run_is_current(rank)
        # whole: a Slurm stage reads the counts while its tasks run
        write_text_whole(_counts_file(Path(self.out_dir), rank),
                         json.dumps({"run": self.run_token, "counts": counts.saved()}))
        yield from ()

    def _check_run_is_current(self, rank: int) -> None:
        """Stops a task of a run that a later run of the stage replaced (it deleted and made the
        stage directory again), before it writes there. A part whose file it opened before that is
        in the deleted directory: it cannot be renamed into the new one."""
        if stage_run_token(Path(self.out_dir)) != self.run_token:
            raise RuntimeError(f"{self.info.key}: task {rank} of the {self.stage} stage belongs to a run of the stage "
                               "that a later run replaced: it writes nothing")


def stage_run_token(out_dir: Path) -> str | None:
    """The token of the run that last wrote the stage directory, or None (no run has since it was emptied)."""
    token_file = out_dir / RUN_TOKEN_FILE
    return token_file.read_text() if token_file.is_file() else None


def _part_file(out_dir: Path, rank: int) -> Path:
    return out_dir / f"part-{rank:05d}.parquet"


def _counts_file(out_dir: Path, rank: int) -> Path:
    return out_dir / f".counts-{rank:05d}.json"


def _own_counts(out_dir: Path, rank: int, run_token: str) -> Counts | None:
    """Task `rank`'s counts if this run's task wrote them, else None (not yet, or another run's)."""
    path = _counts_file(out_dir, rank)
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    return Counts.from_saved(saved["counts"]) if saved.get("run") == run_token else None


class SlurmStageExecutor(SlurmPipelineExecutor):
    """datatrove's Slurm executor without the job it submits after the arrays to merge the tasks' stats
    into one stats.json, which nothing reads (the stage counts its rows itself; each task's stats stay in
    stats/). That job waits for the last array to end well (afterok): every stage that succeeded left it
    queued, and for good on a cluster without kill_invalid_depend where the array ended otherwise after
    its tasks had written their counts (its time limit reached while datatrove ended a task)."""

    def launch_merge_stats(self):
        pass


class SlurmJobIds:
    """datatrove's job-id retriever, also remembering every job it launched. With more tasks than
    `max_array_size` datatrove submits several arrays but keeps only the last id, and with
    `max_array_launch_parallel` an earlier array can still run after the last one has ended."""

    def __init__(self, job_id_position: int = -1):
        self.job_id_position, self.launched = job_id_position, []

    def __call__(self, sbatch_output: str) -> str:
        from datatrove.executor.slurm import default_job_id_retriever

        job_id = default_job_id_retriever(sbatch_output, job_id_position=self.job_id_position)
        self.launched.append(job_id)
        return job_id


def slurm_options_problem(options: dict) -> str | None:
    """Why a manifest's `slurm:` options cannot be given to SlurmPipelineExecutor, or None."""
    import inspect

    parameters = inspect.signature(SlurmPipelineExecutor).parameters
    allowed = set(parameters) - set(SLURM_SET_BY_SFTMIX) | {"wait_hours"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        return f"unknown slurm option(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}"
    # sbatch_args come after datatrove's own: a job name there would defeat `scancel --name` of this run's
    # jobs (`slurm_job_name`), a dependency hold them on another job
    if set_here := sorted({"job-name", "dependency"} & set(options.get("sbatch_args") or {})):
        return (f"slurm sbatch_args {', '.join(set_here)}: set by sftmix (the jobs' name is this run's, to cancel them "
                "by; a stage's jobs depend on no other job)")
    missing = [name for name, p in parameters.items()
               if p.default is inspect.Parameter.empty and name not in SLURM_SET_BY_SFTMIX and name not in options]
    return f"slurm needs {', '.join(missing)}" if missing else None


def _ray():
    import ray

    if not ray.is_initialized():
        # RAY_ADDRESS names an existing cluster; without it Ray starts one on this machine.
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False)
    return ray


def available_cpus(kind: str) -> int:
    """The CPUs tasks can run on: the Ray cluster's for Ray, otherwise those this process may run on
    (a job's --cpus-per-task, taskset: the machine's count gave 128 workers on a 4-CPU Slurm job).
    Slurm has no such answer: its manifests name their workers."""
    if kind == "ray":
        return max(1, int(_ray().cluster_resources().get("CPU", 1)))
    return len(os.sched_getaffinity(0)) or 1


def _executor(config: ExecutorConfig, step: StageStep, tasks: int, logging_dir: str):
    if config.kind == "local":
        import multiprocess
        from datatrove.executor import LocalPipelineExecutor

        # datatrove's workers fork from a forkserver (started once per process, at the first stage).
        # With this module preloaded there, they start with sftmix, datatrove and the rules already
        # imported, instead of importing them again in every worker of every stage (1.0-1.35 s each).
        multiprocess.get_context(LOCAL_START_METHOD).set_forkserver_preload([__name__])
        return LocalPipelineExecutor(pipeline=[step], tasks=tasks, workers=tasks, logging_dir=logging_dir,
                                     skip_completed=False, start_method=LOCAL_START_METHOD)
    if config.kind == "ray":
        from datatrove.executor import RayPipelineExecutor

        _ray()
        return RayPipelineExecutor(pipeline=[step], tasks=tasks, workers=tasks, logging_dir=logging_dir,
                                   skip_completed=False, mem_per_cpu_gb=1)
    options = {k: v for k, v in (config.slurm or {}).items() if k != "wait_hours"}
    job_ids = SlurmJobIds(options.get("job_id_position", -1))
    job_name = slurm_job_name(step, step.run_token)
    fixed = dict(zip(SLURM_SET_BY_SFTMIX, ([step], tasks, logging_dir, False, job_name, job_ids), strict=True))
    return SlurmStageExecutor(**fixed, **options)


def slurm_job_name(step: StageStep, run_token: str) -> str:
    """The name of the Slurm jobs of the stage's run of `run_token`, and of no other: `scancel --name`
    ends exactly them. Named by the source alone, it ended the jobs of every manifest with a source of
    that key (alia-40b-fc's glaive and alia-40b-instruct's) on the cluster account."""
    return f"sftmix-{step.info.key}-{step.stage}-{run_token}"


def _slurm_paths_problem(config: ExecutorConfig, out_dir: Path) -> str | None:
    """Why a path datatrove writes into the Slurm job script cannot be there, or None. Quoting it
    would take rewriting datatrove's script: it builds the task's command line itself."""
    options = config.slurm or {}
    paths = {"the stage directory (under the build's output)": str(out_dir.absolute()),
             "slurm_logs_folder": options.get("slurm_logs_folder"), "venv_path": options.get("venv_path")}
    for what, path in paths.items():
        if path and (special := SHELL_SPECIAL.search(path)):
            return (f"{what} {path!r} holds {special[0]!r}: datatrove writes it unquoted into its Slurm job script, "
                    "where the shell would split or read it, and every task would fail; choose a path without "
                    "whitespace or any of ' \" \\ $ ` ; & | < > ( ) * ? [ { } %")
    return None


def _slurm_jobs_queued(job_ids: list[str]) -> bool | None:
    """Whether Slurm still lists any of the jobs (pending or running); None when squeue could not say."""
    answers = [_slurm_job_queued(job_id) for job_id in job_ids]
    return True if True in answers else None if None in answers else False


def _slurm_job_queued(job_id: str) -> bool | None:
    """Whether Slurm still lists the job; None when squeue could not say."""
    try:
        result = subprocess.run(["squeue", "--noheader", f"--jobs={job_id}", "--format=%i"],
                                capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode == 0:
        return bool(result.stdout.strip())
    # A job that ended long enough ago is purged: squeue then refuses its id instead of listing nothing.
    return False if "invalid job id" in result.stderr.lower() else None


def _run_on_slurm(config: ExecutorConfig, step: StageStep, tasks: int, out_dir: Path, previous_run: str | None) -> None:
    """Submit the stage as a job array and wait until every task has written its counts.

    Slurm jobs outlive this call: logs go beside the parts (a shared filesystem). A task that fails
    writes no counts; once the array has left the queue, that is an error naming the logs, not a
    wait until the deadline. Stopped in any way (Ctrl-C, a terminated run, its terminal closed, the
    deadline, a failed task), the stage cancels every job it submitted: left running, they ran on past
    the build. A build killed outright cannot: the next run of the stage cancels them (`previous_run`).
    """
    if previous_run:
        _cancel_previous_run(step, previous_run)
    logging_dir = out_dir / ".datatrove-logs"
    executor = _executor(config, step, tasks, str(logging_dir))
    launched = executor.job_id_retriever.launched
    with _stops_as_interrupt():  # from before the first sbatch: from then on there are jobs to cancel
        try:
            executor.run()
            deadline = time.monotonic() + (config.slurm or {}).get("wait_hours", 48) * 3600
            while True:
                queued = _slurm_jobs_queued(launched)  # asked before counting: a task may finish in between
                missing = [rank for rank in range(tasks) if _own_counts(out_dir, rank, step.run_token) is None]
                if not missing:
                    return
                if queued is False:
                    raise RuntimeError(f"{step.info.key}: Slurm job(s) {', '.join(launched)} of the {step.stage} stage "
                                       f"ended without task(s) {', '.join(map(str, missing))}; their logs are in "
                                       f"{executor.slurm_logs_folder}")  # datatrove's, or the manifest's
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{step.info.key}: Slurm tasks of the {step.stage} stage did not finish in time")
                time.sleep(SLURM_POLL_SECONDS)
        except BaseException as error:
            if launched:
                _cancel_slurm_jobs(launched, error)
            raise


@contextmanager
def _stops_as_interrupt():
    """SIGHUP (the terminal of the build closed, its login session ended) and SIGTERM (`kill`, a
    scheduler or a container stopping the build) stop the stage as Ctrl-C does, so that it cancels
    its jobs. Left to their default, either killed the build at once, and the arrays then ran on, for
    nothing: no later run takes their rows. Python handles neither, nor does Dagster SIGHUP; Dagster
    maps SIGTERM to its SIGINT handler, and a signal with a handler of its own, or ignored (nohup, for
    a build that is to outlive its terminal), is left as it is. Signal handlers are the main thread's:
    a stage run in another thread is left as it was."""
    signals = [number for number in (signal.SIGHUP, signal.SIGTERM) if signal.getsignal(number) is signal.SIG_DFL]
    if threading.current_thread() is not threading.main_thread() or not signals:
        yield
        return

    stopped = False

    def interrupt(signum, frame):
        # Once: a closing terminal often sends SIGHUP twice (the shell forwards one, the kernel another as
        # the shell exits), and a second signal before scancel has started would stop the stage from cancelling.
        nonlocal stopped
        if stopped:
            return
        stopped = True
        # the SIGINT handler in force when the signal comes: Dagster's raises its interrupt error in a step
        handler = signal.getsignal(signal.SIGINT)
        (handler if callable(handler) else signal.default_int_handler)(signum, frame)

    for number in signals:
        signal.signal(number, interrupt)
    try:
        yield
    finally:
        for number in signals:
            if signal.getsignal(number) is interrupt:  # not one the stage put in its place
                signal.signal(number, signal.SIG_DFL)


def _cancel_previous_run(step: StageStep, previous_run: str) -> None:
    """scancel the jobs of the stage's previous run, by their name, before this run submits its own.
    A run holds the stage's lock (`Layout.rewriting`) until it has ended, cancelling its jobs if it
    stopped: a run that gets here follows one that ended, and jobs of that run still queued or running
    are those of a build killed outright (SIGKILL, the out-of-memory killer). Whatever they do is for
    nothing (they write nothing for this run: `_check_run_is_current`), so where scancel fails, this
    run goes on and says so."""
    name = slurm_job_name(step, previous_run)
    log.info("%s: cancelling any Slurm jobs the %s stage's previous run left (a build killed outright leaves "
             "them): scancel --name=%s", step.info.key, step.stage, name)
    try:
        result = subprocess.run(["scancel", f"--name={name}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, timeout=SCANCEL_SECONDS)
        failure = _scancel_failure(result.returncode, result.stderr)
    except (OSError, subprocess.TimeoutExpired) as cancel_error:
        failure = f"{type(cancel_error).__name__}: {cancel_error}"
    if failure:
        log.warning("%s: scancel --name=%s failed (%s): the %s stage's previous run's jobs may still be running; "
                    "this run goes on", step.info.key, name, failure, step.stage)


def _scancel_failure(returncode: int, stderr: str) -> str | None:
    return f"exit code {returncode}: {stderr.strip()[:500]}" if returncode else None


def _cancel_slurm_jobs(job_ids: list[str], error: BaseException) -> None:
    """scancel the jobs; where that fails, a note on `error`, the stage's own error, which it raises."""
    try:
        # its own session, and waited for through further interrupts (Dagster forwards a terminal's
        # Ctrl-C to its step a second time): subprocess.run killed scancel at the second one
        process = subprocess.Popen(["scancel", *job_ids], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True, start_new_session=True)
        deadline, interrupted = time.monotonic() + SCANCEL_SECONDS, None
        while True:
            if (left := deadline - time.monotonic()) <= 0:  # interrupts may come faster than any wait
                process.kill()
                raise subprocess.TimeoutExpired(process.args, SCANCEL_SECONDS)
            try:
                _, stderr = process.communicate(timeout=left)
                break
            except subprocess.TimeoutExpired:
                process.kill()
                raise subprocess.TimeoutExpired(process.args, SCANCEL_SECONDS) from None
            except BaseException as again:  # another interrupt: let scancel finish
                interrupted = type(again).__name__
        if interrupted:
            error.add_note(f"interrupted again ({interrupted}) while cancelling: waited for scancel")
        failure = _scancel_failure(process.returncode, stderr)
    except (OSError, subprocess.TimeoutExpired) as cancel_error:
        failure = f"{type(cancel_error).__name__}: {cancel_error}"
    if failure:
        error.add_note(f"scancel {' '.join(job_ids)} failed ({failure}): those jobs may still be running")


def _run_local_ranks(executor, step: StageStep, tasks: int) -> None:
    """datatrove's own run of each rank (`_run_for_rank`: its task logs and stats), one process a rank
    from the executor's forkserver, each watched. LocalPipelineExecutor's process pool lost the task of
    a worker killed by the OOM killer, and the build waited for it for ever; here the stage stops,
    naming the task. A task's error is raised here as it was raised there. Each task holds the locks
    the build holds (`_LockForTask`), so a killed build's tasks keep them while they run on."""
    import multiprocess
    from multiprocess.connection import wait

    from sftmix.build import held_locks

    context = multiprocess.get_context(LOCAL_START_METHOD)
    channels = [context.Pipe(duplex=False) for _ in range(tasks)]
    locks = [_LockForTask(descriptor) for descriptor in held_locks()]
    workers = [context.Process(target=_run_rank, args=(executor, rank, sender, locks),
                               name=f"{step.info.key}-{step.stage}-{rank}")
               for rank, (_, sender) in enumerate(channels)]
    try:
        for worker in workers:
            worker.start()
        for _, sender in channels:
            sender.close()
        running = {worker.sentinel: rank for rank, worker in enumerate(workers)}
        # read as soon as sent: an error too large for the pipe's buffer waited for a reader that
        # waited for the task to end
        reading = {channels[rank][0]: rank for rank in range(tasks)}
        sent: dict[int, list] = {rank: [] for rank in range(tasks)}
        while running:
            for ready in wait([*running, *reading]):
                if ready in reading:
                    _receive(ready, reading, sent[reading[ready]])
                    continue
                if ready not in running:  # a pipe drained when its task's end, seen first, was handled
                    continue
                rank = running.pop(ready)
                workers[rank].join()
                receiver = channels[rank][0]
                while receiver in reading:
                    _receive(receiver, reading, sent[rank])
                if sent[rank]:
                    # the error as raised, or, where it cannot be rebuilt here, its text
                    raise next((m for m in reversed(sent[rank]) if isinstance(m, BaseException)), None) or \
                        RuntimeError(f"{step.info.key}: task {rank} of the {step.stage} stage raised {sent[rank][0]}")
                if code := workers[rank].exitcode:
                    how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
                    raise RuntimeError(f"{step.info.key}: task {rank} of the {step.stage} stage died ({how}"
                                       + (", out of memory?" if code == -signal.SIGKILL else "") + ")")
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
        for worker in workers:
            if worker.pid is not None:
                worker.join()
        for receiver, _ in channels:
            receiver.close()


def _receive(receiver, reading: dict, sent: list) -> None:
    """One message of a task (its error's text, then the error), or its end."""
    try:
        sent.append(receiver.recv())
    except EOFError:
        del reading[receiver]
    except Exception:  # sent, but not to be rebuilt here (an error with keyword-only arguments): the text stays
        pass


class _LockForTask:
    """A lock the build holds, handed to a task as a duplicate of its descriptor: the same open file,
    so the lock is held until the task ends too. Killed by SIGTERM or SIGKILL, a build's tasks ran on
    and wrote into the parts of the next run, which found the stage free."""

    def __init__(self, descriptor: int):
        self.descriptor = descriptor

    def __reduce__(self):
        from multiprocess.reduction import DupFd

        return _kept_open, (DupFd(self.descriptor),)


def _kept_open(duplicate) -> int:
    return duplicate.detach()  # held for the task's life, never closed by it


def _run_rank(executor, rank: int, sender, locks: list[int]) -> None:
    """A rank's process: its error, if any, goes back to the stage through `sender`, its text first.
    `locks`, the build's lock files, stay open until the process ends."""
    try:
        executor._run_for_rank(rank, local_rank=rank)
    except BaseException as error:
        sender.send(f"{type(error).__name__}: {error}"[:2000])
        try:
            sender.send(error)
        except Exception:  # an error that cannot be pickled: its text was sent
            pass
        raise
    finally:
        sender.close()


def run_stage(step: StageStep, config: ExecutorConfig, *, shardable: bool = True,
              previous_run: str | None = None) -> tuple[Counts, list[Path]]:
    """Run `step` as `config.workers` tasks (one in this process when there is a single local task)
    and return the merged counts and the parts of its tasks, in the order of their ranks. Stale
    parts of an earlier run are removed first; a part another run writes beside them is not one.
    `previous_run`: the token of the stage's previous run (`stage_run_token`, read under the stage's
    lock), whose Slurm jobs a stage on Slurm cancels first."""
    out_dir = Path(step.out_dir)
    if config.kind == "slurm" and (problem := _slurm_paths_problem(config, out_dir)):
        raise RuntimeError(f"{step.info.key}: {problem}")
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    step.run_token = uuid.uuid4().hex
    (out_dir / RUN_TOKEN_FILE).write_text(step.run_token)
    for stale in rejected_files(step.rejected_dir, step.info.key, step.stage):
        stale.unlink()
    tasks = config.workers if shardable else 1
    if tasks == 1 and config.kind == "local":
        for _ in step.run(None, 0, 1):
            pass
    elif config.kind == "slurm":
        _run_on_slurm(config, step, tasks, out_dir, previous_run)
    elif config.kind == "ray":
        # kept beside the parts: a Ray task's error is only in its log (local workers raise it here)
        _executor(config, step, tasks, str(out_dir / ".datatrove-logs")).run()
    else:
        with tempfile.TemporaryDirectory(prefix="sftmix-datatrove-") as logging_dir:
            _run_local_ranks(_executor(config, step, tasks, logging_dir), step, tasks)
    total = Counts()
    for rank in range(tasks):
        counts = _own_counts(out_dir, rank, step.run_token)
        if counts is None:
            raise RuntimeError(f"{step.info.key}: task {rank} of the {step.stage} stage did not finish"
                               + _task_failure(out_dir / ".datatrove-logs" / "logs" / f"task_{rank:05d}.log"))
        total.add(counts)
    return total, [_part_file(out_dir, rank) for rank in range(tasks)]


_RAISED = re.compile(r"^[\w.]*(?:Error|Exception|Interrupt|Exit)\b.*$", re.MULTILINE)


def _task_failure(log: Path) -> str:
    """What a task's datatrove log says it raised (its traceback's last line), and where the log
    is; nothing where there is no log (a local task raises its error itself)."""
    if not log.is_file():
        return ""
    raised = _RAISED.findall(log.read_text(encoding="utf-8", errors="replace"))
    return (f": {raised[-1][:500]}" if raised else "") + f" (its log: {log})"
