"""The README's main job, `dagster asset materialize`, with each step started two ways.

    python bench/dagster_steps.py [--manifest manifests/sample.yaml] [--runs 2]

(1) the baseline: Dagster's default executor, multiprocess with `spawn`, a new interpreter for every
step, which imports Dagster, sftmix, datatrove and polars again; (2) the project's
(`pipelines.definitions.STEP_EXECUTOR`): each step forked from a server that imported them once.
Runs alternate, `--runs` of each, each a new Dagster instance and output directory. Prints each
run's seconds, the ratio of the means, and whether every run wrote the same train and validation
shards; the LAST line is a JSON object of the figures.

Loaded by Dagster (`-f` this file) it is the project's definitions with Dagster's default executor:
the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def materialize(definitions: list[str], manifest: Path, output: Path) -> float:
    home = output.with_name(output.name + "-dagster-home")  # in the run's temporary directory, removed with it
    home.mkdir()
    env = {**os.environ, "SFTMIX_MANIFEST": str(manifest), "SFTMIX_OUTPUT": str(output), "DAGSTER_HOME": str(home)}
    start = time.perf_counter()
    done = subprocess.run(["dagster", "asset", "materialize", *definitions, "--select", "*"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0 or "RUN_SUCCESS" not in done.stderr:
        sys.exit(f"dagster asset materialize {' '.join(definitions)} failed:\n{done.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=ROOT / "manifests" / "sample.yaml")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from executors import shard_digest
    from sftmix.manifest import load

    mixture = load(args.manifest).mixture
    kinds = {"spawn": ["-f", str(Path(__file__).resolve())], "forkserver": ["-m", "pipelines.definitions"]}
    seconds: dict[str, list[float]] = {kind: [] for kind in kinds}
    digests = set()
    with tempfile.TemporaryDirectory(prefix="sftmix-dagster-steps-") as tmp:
        for run in range(args.runs):
            for kind, definitions in kinds.items():
                output = Path(tmp) / f"{kind}-{run}"
                seconds[kind].append(round(materialize(definitions, args.manifest, output), 2))
                digests.add(shard_digest(output / mixture))
                print(f"{kind:10s} run {run + 1}: {seconds[kind][-1]:7.2f} s", flush=True)
    mean = {kind: sum(values) / len(values) for kind, values in seconds.items()}
    ratio = mean["spawn"] / mean["forkserver"]
    print(f"forkserver against spawn: x{ratio:.2f} ({mean['spawn']:.1f} s -> {mean['forkserver']:.1f} s); "
          f"same shards in every run: {len(digests) == 1}")
    print(json.dumps({"manifest": str(args.manifest), "cpus": os.cpu_count(), "seconds": seconds,
                      "speedup": round(ratio, 3), "same_shards": len(digests) == 1}))


if __name__ == "__main__":
    main()
else:  # loaded by Dagster as the baseline's definitions
    from dagster import Definitions

    import pipelines.definitions as project

    defs = Definitions(assets=list(project.defs.assets), jobs=list(project.defs.jobs),
                       resources=dict(project.defs.resources))
