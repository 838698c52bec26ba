"""Peak memory of a full sample-style build as the raw sources grow.

    python bench/memory.py --rows 100000 1500000 [--layouts glaive,xlam,toucan] [--workers auto|N] [--reference-steps]

For each N, writes N raw rows per layout (bench/rawgen.py) and builds a manifest over them (every
stage: normalize, filters, mixing, shards, card) in a fresh process. Its peak is that of the whole
process tree (`bench/process_tree.py`: the build and its workers' summed PSS, sampled, or the
largest single process's RSS if more). `--workers auto` is what a build does by default (the
manifest's `workers: auto`: a worker per core once the input is worth it). With --reference-steps
the manifest also has the steps the reference manifests add: MinHash near-dedup (their settings)
and decontamination against an IFEval file of 3,000 prompts. Prints each figure and the ratio of
the largest N's peak to the smallest's (target: <= 1.2, and under 1.5 GiB); the LAST line is a
JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from process_tree import run_measured  # noqa: E402
from rawgen import LAYOUTS, write_manifest  # noqa: E402

BUILD = """
import resource, sys
from pathlib import Path
from sftmix.build import build
from sftmix.manifest import load
if __name__ == "__main__":
    result = build(load(sys.argv[1]), Path(sys.argv[2]), workers=int(sys.argv[3]) or None)  # 0: the manifest's
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(result.split_rows["train"], own, children)
"""


def build_peak(rows: int, layouts: list[str], workers: str, tmp: Path, reference_steps: bool = False) -> dict:
    work = tmp / f"n{rows}"
    work.mkdir()
    manifest = write_manifest(layouts, rows, work, reference_steps=reference_steps)
    start = time.perf_counter()
    done = run_measured([sys.executable, "-c", BUILD, str(manifest), str(work / "out"),
                         "0" if workers == "auto" else workers], work / "build.log")
    train, own_kib, children_kib = (int(x) for x in done.stdout.split()[-3:])
    largest = max(own_kib, children_kib)
    return {"rows_per_source": rows, "train_rows": train, "seconds": round(time.perf_counter() - start, 1),
            "peak_mib": round(max(largest, done.tree_pss_kib) / 1024, 1),
            "tree_pss_mib": round(done.tree_pss_kib / 1024, 1), "largest_process_rss_mib": round(largest / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--workers", default="auto", help="workers of every stage, or auto (the default build's)")
    parser.add_argument("--reference-steps", action="store_true", help="near-dedup and decontamination on")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="sftmix-memory-") as tmp:
        for rows in sorted(args.rows):
            run = build_peak(rows, args.layouts.split(","), args.workers, Path(tmp), args.reference_steps)
            runs.append(run)
            print(f"{rows:>10,} rows/source: peak {run['peak_mib']:>8,.1f} MiB (process tree PSS "
                  f"{run['tree_pss_mib']:,.1f}, largest process RSS {run['largest_process_rss_mib']:,.1f}), "
                  f"{run['seconds']} s, {run['train_rows']:,} train rows")
    ratio = runs[-1]["peak_mib"] / runs[0]["peak_mib"]
    print(f"peak ratio largest/smallest: {ratio:.2f} (target <= 1.2); largest under 1.5 GiB: "
          f"{runs[-1]['peak_mib'] < 1536}")
    print(json.dumps({"runs": runs, "ratio": round(ratio, 3), "workers": args.workers,
                      "reference_steps": args.reference_steps, "cpus": os.cpu_count(),
                      "page_size": resource.getpagesize()}))


if __name__ == "__main__":
    main()
