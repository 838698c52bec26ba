"""Peak memory of a full sample-style build as the raw sources grow.

    python bench/memory.py --rows 100000 1500000 [--layouts glaive,xlam,toucan] [--workers 1] [--reference-steps]

For each N, writes N raw rows per layout (bench/rawgen.py) and builds a manifest over them (every
stage: normalize, filters, mixing, shards, card) in a fresh process, whose peak RSS (and that of
its worker processes) is read with getrusage. With --reference-steps the manifest also has the
steps the reference manifests add: MinHash near-dedup (their settings) and decontamination against
an IFEval file of 3,000 prompts. Prints each figure and the ratio of the largest N's
peak to the smallest's (target: <= 1.2, and under 1.5 GiB); the LAST line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from rawgen import LAYOUTS, write_manifest  # noqa: E402

BUILD = """
import resource, sys
from pathlib import Path
from sftmix.build import build
from sftmix.manifest import load
if __name__ == "__main__":
    result = build(load(sys.argv[1]), Path(sys.argv[2]), workers=int(sys.argv[3]))
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(result.split_rows["train"], own, children)
"""


def build_peak(rows: int, layouts: list[str], workers: int, tmp: Path, reference_steps: bool = False) -> dict:
    work = tmp / f"n{rows}"
    work.mkdir()
    manifest = write_manifest(layouts, rows, work, reference_steps=reference_steps)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", BUILD, str(manifest), str(work / "out"), str(workers)],
                          capture_output=True, text=True, check=True)
    train, own_kb, children_kb = (int(x) for x in done.stdout.split()[-3:])
    return {"rows_per_source": rows, "train_rows": train, "seconds": round(time.perf_counter() - start, 1),
            "peak_rss_mib": round(max(own_kb, children_kb) / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--reference-steps", action="store_true", help="near-dedup and decontamination on")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="sftmix-memory-") as tmp:
        for rows in sorted(args.rows):
            run = build_peak(rows, args.layouts.split(","), args.workers, Path(tmp), args.reference_steps)
            runs.append(run)
            print(f"{rows:>10,} rows/source: peak RSS {run['peak_rss_mib']:>8,.1f} MiB, {run['seconds']} s, "
                  f"{run['train_rows']:,} train rows")
    ratio = runs[-1]["peak_rss_mib"] / runs[0]["peak_rss_mib"]
    print(f"peak RSS ratio largest/smallest: {ratio:.2f} (target <= 1.2); largest under 1.5 GiB: "
          f"{runs[-1]['peak_rss_mib'] < 1536}")
    print(json.dumps({"runs": runs, "ratio": round(ratio, 3), "workers": args.workers,
                      "reference_steps": args.reference_steps, "cpus": os.cpu_count(),
                      "page_size": resource.getpagesize()}))


if __name__ == "__main__":
    main()
