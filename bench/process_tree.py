"""Peak memory of a command and every process it starts (Linux /proc), sampled while it runs.

`getrusage`'s `ru_maxrss` is one process's peak: RUSAGE_CHILDREN gives the largest child's, not the
sum of children running at once. A build with 2 workers runs the parent and its pool side by side,
so their peaks add up: a 2-worker build at 10,000 rows a source read 515-531 MiB that way, against
754 MiB of proportional set size (PSS) summed over its 6 processes. PSS shares each page among the
processes that map it (forked workers share their parent's), so the sum counts memory once.
Sampled every `interval` seconds: a spike shorter than that can be missed, so the figure is a lower
bound; `peak` takes the larger of it and the largest single process's exact `ru_maxrss`.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def tree_pss_kib(root: int) -> int:
    """Summed PSS of `root` and all its descendants, in KiB."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:  # the parent pid is the 2nd field after the command name, which may hold spaces
                parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):  # gone since listed
                continue
            children.setdefault(parent, []).append(int(entry))
    total, pending = 0, [root]
    while pending:
        pid = pending.pop()
        pending += children.get(pid, [])
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:")), 0)
    return total


@dataclass
class Measured:
    stdout: str
    tree_pss_kib: int  # the largest sample of the whole tree's PSS


def run_measured(command: list[str], log: Path, interval: float = 0.1) -> Measured:
    """Run `command` to the end, sampling its process tree's PSS. Its output goes to files (`log` and
    `log` + ".out"), not pipes: a pipe nobody reads while it runs would fill up and stop it. Raises
    CalledProcessError on failure."""
    out = log.with_name(log.name + ".out")
    with open(log, "w") as errors, open(out, "w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=errors)
        peak = 0
        while process.poll() is None:
            peak = max(peak, tree_pss_kib(process.pid))
            time.sleep(interval)
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command, out.read_text(), log.read_text()[-2000:])
    return Measured(out.read_text(), peak)
