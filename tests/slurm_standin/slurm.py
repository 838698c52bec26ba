"""A stand-in for the Slurm commands datatrove's SlurmPipelineExecutor and sftmix call (sbatch, srun,
scontrol, squeue, scancel), so the Slurm path runs for real on a machine without Slurm.

`sbatch` queues the script and returns at once, as Slurm does; a detached runner then runs each
array task with the environment Slurm gives it (`SLURM_ARRAY_TASK_ID`, `SLURM_JOB_ID`, the
`--export`ed variables), logs to the `--output` pattern, and honours `--dependency=afterok:`, given
on the command line or as an `#SBATCH` line of the script (datatrove's stats merge).
`squeue` lists a job while it is queued or running, and refuses its id afterwards, like Slurm
once a finished job is purged. `scancel` ends a job's tasks (SIGTERM) and takes it off the queue:
the jobs it is given by id, or with `--name=<job name>` every job of that name.
State lives in `$SLURM_STANDIN_STATE`; `$SLURM_STANDIN_SLOW_JOB` (`<job id>:<seconds>`) holds one
job back, as a busy partition would, and a file `held` there holds every job back while it exists.

    python slurm.py <command> [arguments...]
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

STATE = Path(os.environ["SLURM_STANDIN_STATE"])


def _directives(script: Path) -> dict[str, str]:
    found = re.findall(r"^#SBATCH --([\w-]+)(?:=(.*))?$", script.read_text(), flags=re.M)
    return {key: value for key, value in found}


def sbatch(args: list[str]) -> None:
    *options, script = args
    STATE.mkdir(parents=True, exist_ok=True)
    job_id = str(len(list(STATE.glob("job-*"))) + 1)
    job_dir = STATE / f"job-{job_id}"
    job_dir.mkdir()
    kept = job_dir / "script.sh"
    kept.write_text(Path(script).read_text())  # sbatch copies the script: the caller deletes its file
    (job_dir / "queued").touch()
    runner = subprocess.Popen([sys.executable, __file__, "run-job", job_id, *options], start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (job_dir / "runner").write_text(str(runner.pid))  # its process group: the job's tasks, for scancel
    print(f"Submitted batch job {job_id}")


def run_job(job_id: str, options: list[str]) -> None:
    job_dir = STATE / f"job-{job_id}"
    script = job_dir / "script.sh"
    directives = _directives(script)
    env = {**os.environ, "SLURM_JOB_ID": job_id, "SLURM_NODELIST": "localhost", "SLURM_NODEID": "0"}
    slow_job, _, seconds = os.environ.get("SLURM_STANDIN_SLOW_JOB", "").partition(":")
    if slow_job == job_id:
        time.sleep(float(seconds))
    while (STATE / "held").exists():
        time.sleep(0.05)
    run = True
    # sbatch reads its options from the script's #SBATCH lines too; the command line's come after them
    for option in [f"--{key}={value}" for key, value in directives.items() if key == "dependency"] + options:
        if option.startswith("--export=ALL,"):
            env.update(pair.split("=", 1) for pair in option.removeprefix("--export=ALL,").split(","))
        elif option.startswith("--dependency="):
            for condition in option.removeprefix("--dependency=").split(","):
                kind, other = condition.split(":", 1)
                while (STATE / f"job-{other}" / "queued").exists():
                    time.sleep(0.05)
                run = run and (kind != "afterok" or not (STATE / f"job-{other}" / "failed").exists())
    array = re.fullmatch(r"(\d+)-(\d+)(?:%\d+)?", directives.get("array", ""))
    indices = range(int(array[1]), int(array[2]) + 1) if array else [None]
    for index in indices if run else ():
        task_env = dict(env) if index is None else {**env, "SLURM_ARRAY_JOB_ID": job_id, "SLURM_ARRAY_TASK_ID": str(index)}
        log = Path(directives.get("output", job_dir / "slurm-%A_%a.out").replace("%A", job_id).replace("%a", str(index)))
        with log.open("a") as out:
            if subprocess.run(["bash", str(script)], env=task_env, stdout=out, stderr=subprocess.STDOUT).returncode:
                (job_dir / "failed").touch()
    (job_dir / "queued").unlink()


def srun(args: list[str]) -> None:
    while args and args[0].startswith("-"):  # srun's own options: "-l", "-n 1", "--key=value"
        args = args[2:] if args[0] == "-n" else args[1:]
    os.execvp(args[0], args)


def squeue(args: list[str]) -> None:
    job_id = next(a.split("=", 1)[1] for a in args if a.startswith("--jobs="))
    if not (STATE / f"job-{job_id}" / "queued").exists():
        sys.exit("slurm_load_jobs error: Invalid job id specified")
    print(job_id)


def scancel(args: list[str]) -> None:
    named = [a.split("=", 1)[1] for a in args if a.startswith("--name=")]
    job_ids = [a for a in args if not a.startswith("-")] + [
        job_dir.name.removeprefix("job-") for job_dir in STATE.glob("job-*")
        if _directives(job_dir / "script.sh").get("job-name") in named]
    for job_id in job_ids:
        job_dir = STATE / f"job-{job_id}"
        if not (job_dir / "queued").exists():
            continue
        try:
            os.killpg(int((job_dir / "runner").read_text()), signal.SIGTERM)
        except ProcessLookupError:  # ended meanwhile
            pass
        (job_dir / "failed").touch()  # a job depending on it with afterok never runs
        (job_dir / "queued").unlink(missing_ok=True)


def scontrol(args: list[str]) -> None:
    if args[:2] == ["show", "hostnames"]:
        print(args[2])


if __name__ == "__main__":
    command, rest = sys.argv[1], sys.argv[2:]
    if command == "run-job":
        run_job(rest[0], rest[1:])
    else:
        {"sbatch": sbatch, "srun": srun, "squeue": squeue, "scancel": scancel, "scontrol": scontrol}[command](rest)
