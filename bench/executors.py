"""The same build on datatrove's local executor and on a local Ray cluster: same shards, and how fast.

    python bench/executors.py --rows N [--layouts glaive,xlam,toucan] [--workers 2]

Writes N raw rows per layout (bench/rawgen.py) and a manifest over them (every stage: normalize,
filters, mixing, shards, card), then builds it in this process three times: (1) local executor,
1 worker, the baseline; (2) local executor, `--workers` processes; (3) Ray, `--workers` tasks per
stage on a local Ray cluster of `--workers` CPUs (started before the clock, as a cluster would be).
Prints each run's raw rows/s, its ratio to the baseline, and whether its train and validation
shards are byte-identical to the baseline's; the LAST line is a JSON object of the figures.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from rawgen import layout_bench_parser, write_manifest  # noqa: E402


def shard_digest(mixture_dir: Path) -> str:
    """sha256 over the train and validation shards' names and bytes, in order."""
    digest = hashlib.sha256()
    for split in ("train", "validation"):
        for path in sorted((mixture_dir / split).glob("*.parquet")):
            digest.update(f"{split}/{path.name}\n".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def timed_build(manifest_path: Path, output: Path, workers: int) -> dict:
    from sftmix.build import build
    from sftmix.manifest import load

    start = time.perf_counter()
    result = build(load(manifest_path), output, workers=workers)
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 1), "train_rows": result.split_rows["train"],
            "validation_rows": result.split_rows["validation"], "digest": shard_digest(output / "bench")}


def main() -> None:
    args = layout_bench_parser(__doc__).parse_args()
    layouts = args.layouts.split(",")
    raw_rows = args.rows * len(layouts)
    runs = {}
    with tempfile.TemporaryDirectory(prefix="sftmix-executors-") as tmp:
        local_manifest = write_manifest(layouts, args.rows, Path(tmp))
        ray_manifest = Path(tmp) / "bench-ray.yaml"
        ray_manifest.write_text(yaml.safe_dump({**yaml.safe_load(local_manifest.read_text()),
                                                "executor": {"kind": "ray", "workers": args.workers}}))
        runs["local_1"] = timed_build(local_manifest, Path(tmp) / "local-1", 1)
        runs[f"local_{args.workers}"] = timed_build(local_manifest, Path(tmp) / "local-n", args.workers)
        import ray

        start = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - start
        try:
            runs[f"ray_{args.workers}"] = timed_build(ray_manifest, Path(tmp) / "ray", args.workers)
        finally:
            ray.shutdown()
    baseline = runs["local_1"]
    for name, run in runs.items():
        run["rows_s"] = round(raw_rows / run["seconds"])
        run["speedup"] = round(baseline["seconds"] / run["seconds"], 2)
        run["identical_to_local_1"] = run["digest"] == baseline["digest"]
        print(f"{name:8s} {raw_rows:>9,} raw rows in {run['seconds']:>7.1f} s = {run['rows_s']:>6,} rows/s | "
              f"x{run['speedup']:.2f} of local_1 | train {run['train_rows']:,}, validation {run['validation_rows']:,} | "
              f"shards identical to local_1: {run['identical_to_local_1']}", flush=True)
    print(json.dumps({"rows_per_source": args.rows, "layouts": layouts, "workers": args.workers,
                      "cpus": os.cpu_count(), "ray_start_s": round(ray_start, 1), "runs": runs}))


if __name__ == "__main__":  # datatrove's worker processes re-import this module
    main()
