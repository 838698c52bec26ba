"""Code run in a Python process of its own, for an input that once took half an hour or more: a
regression fails its test after `timeout` seconds instead of hanging the whole run."""

import subprocess
import sys


def stdout_of(code: str, timeout: float = 120) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-500:]
    return done.stdout
