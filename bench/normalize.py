"""Normalization throughput against two baselines measured in the same run.

    python bench/normalize.py --rows N [--layouts glaive,xlam,toucan] [--workers 2] [--without-rules]

For each layout, N raw rows in its real Hub format (bench/rawgen.py, ~5% malformed), then:
  (a) limit:    read the raw file into Arrow and write it as Parquet, no transformation
                (a JSON array has no Arrow reader: json.load + Table.from_pylist, the fastest route);
  (b) datasets: what a user would write instead: `datasets.load_dataset` + `.map` running the same
                converter function (no filters, no validation), written to Parquet;
  (c) sftmix:   the normalize stage with every default rule filter, on `--workers` processes, in one
                pass (what `sftmix normalize` runs);
  (d) build:    the same conversion and rules as a build runs them (`sftmix.build.normalize_source`,
                then `filter_source` re-reading its parts: two stages, two writes), as Dagster does;
  with --without-rules, also the same stage with every rule off (c0): what the record path itself
                costs (read, convert, hash, write), and so how much of (c) the rules take.
Prints rows/s for each and the ratios c/a, c/b, d/a and d/b; the LAST line is a JSON object of the
figures.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from rawgen import layout_bench_parser, write_raw  # noqa: E402


def limit(raw: Path, out: Path) -> None:
    if raw.suffix == ".parquet":
        pq.write_table(pq.read_table(raw), out)
    else:
        with raw.open("rb") as handle:
            pq.write_table(pa.Table.from_pylist(json.load(handle)), out)


def with_datasets(converter: str, raw: Path, out: Path, workers: int) -> None:
    from datasets import disable_progress_bars, load_dataset

    from sftmix.sources import Drop, get_converter

    disable_progress_bars()
    stream = get_converter(converter)

    def convert(row):
        (_, result), = stream([("row", row)])
        if isinstance(result, Drop):
            return {"messages": None, "tools": None}
        return {"messages": json.dumps(result.messages), "tools": json.dumps(result.tools)}

    kind = "parquet" if raw.suffix == ".parquet" else "json"
    dataset = load_dataset(kind, data_files=str(raw), split="train", cache_dir=str(out.parent / "hf-cache"))
    dataset = dataset.map(convert, remove_columns=dataset.column_names, num_proc=workers if workers > 1 else None)
    dataset.to_parquet(str(out))


def with_sftmix(converter: str, raw: Path, out_dir: Path, workers: int, rules: bool = True) -> dict:
    import filters
    from sftmix.executor import ExecutorConfig, StageStep, run_stage
    from sftmix.normalize import SourceInfo
    from sftmix.sources import DEFAULT_LANGUAGES, DEFAULT_LICENCES, filter_defaults

    setting = filter_defaults(converter) if rules else {rule.name: False for rule in filters.DEFAULT_ORDER}
    info = SourceInfo(key=converter, converter=converter, licence=DEFAULT_LICENCES[converter],
                      language=DEFAULT_LANGUAGES.get(converter, "en"), filters=setting)
    step = StageStep("normalized", info, [str(raw)], str(out_dir / "parts"), str(out_dir / "rejected"))
    counts, _ = run_stage(step, ExecutorConfig(workers=workers))
    return counts.summary()


def with_build(converter: str, raw: Path, out_dir: Path, workers: int) -> dict:
    import yaml

    from sftmix.build import Layout, filter_source, normalize_source
    from sftmix.manifest import load
    from sftmix.sources import DEFAULT_LANGUAGES, DEFAULT_LICENCES

    out_dir.mkdir()
    licence = DEFAULT_LICENCES[converter]
    source = {"key": converter, "converter": converter, "licence": licence,
              "language": DEFAULT_LANGUAGES.get(converter, "en"), "local": {"files": [str(raw)]}, "targets": "all"}
    path = out_dir / "bench.yaml"
    path.write_text(yaml.safe_dump({"mixture": "bench", "seed": 1, "holdout": {"size": 0},
                                    "licence_policy": {"allow": [licence]}, "sources": [source]}))
    manifest = load(path)
    layout = Layout(out_dir / "out", manifest.mixture)
    normalize_source(manifest, manifest.sources[0], [raw], layout, workers)
    counts, _ = filter_source(manifest, manifest.sources[0], layout, workers)
    return counts.summary()


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def main() -> None:
    parser = layout_bench_parser(__doc__)
    parser.add_argument("--without-rules", action="store_true", help="also time (c) with every rule filter off (c0)")
    args = parser.parse_args()
    figures = {"rows": args.rows, "workers": args.workers, "cpus": os.cpu_count(), "python": platform.python_version()}
    with tempfile.TemporaryDirectory(prefix="sftmix-bench-") as tmp:
        for layout in args.layouts.split(","):
            work = Path(tmp) / layout
            work.mkdir()
            raw = write_raw(layout, args.rows, work)
            t_a, _ = timed(limit, raw, work / "limit.parquet")
            try:
                t_b, _ = timed(with_datasets, layout, raw, work / "datasets.parquet", args.workers)
                datasets_error = None
            except Exception as error:  # a baseline that cannot load the file is a finding, not the end of the run
                cause = error.__cause__ or error.__context__
                t_b, datasets_error = None, (f"{type(error).__name__}: {error}"
                                             + (f" (from {type(cause).__name__}: {cause})" if cause else ""))[:300]
            t_c, counts = timed(with_sftmix, layout, raw, work / "sftmix", args.workers)
            t_d, build_counts = timed(with_build, layout, raw, work / "build", args.workers)
            row = {"limit_rows_s": args.rows / t_a, "datasets_rows_s": t_b and args.rows / t_b,
                   "sftmix_rows_s": args.rows / t_c, "c_over_a": t_a / t_c, "c_over_b": t_b and t_b / t_c,
                   "build_rows_s": args.rows / t_d, "d_over_a": t_a / t_d, "d_over_b": t_b and t_b / t_d,
                   "kept": counts["kept"], "build_kept": build_counts["kept"],
                   "raw_mb": round(raw.stat().st_size / 2**20, 1), "datasets_error": datasets_error}
            if args.without_rules:
                t_c0, _ = timed(with_sftmix, layout, raw, work / "sftmix-without-rules", args.workers, False)
                row.update(sftmix_without_rules_rows_s=args.rows / t_c0, c0_over_a=t_a / t_c0, c0_over_b=t_b and t_b / t_c0)
            figures[layout] = {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}
            datasets = (f"datasets {row['datasets_rows_s']:>8,.0f} rows/s" if t_b else f"datasets FAILED ({datasets_error})")
            c_over_b = f"{row['c_over_b']:.2f}" if t_b else "n/a"
            c0_over_b = f"{row['c0_over_b']:.2f}" if args.without_rules and t_b else "n/a"
            without_rules = (f" | without rules {row['sftmix_without_rules_rows_s']:>8,.0f} rows/s, "
                             f"c0/a {row['c0_over_a']:.3f}, c0/b {c0_over_b}" if args.without_rules else "")
            d_over_b = f"{row['d_over_b']:.2f}" if t_b else "n/a"
            print(f"{layout:7s} {args.rows:>9,} rows {row['raw_mb']:>7} MB | limit {row['limit_rows_s']:>9,.0f} rows/s | "
                  f"{datasets} | sftmix {row['sftmix_rows_s']:>8,.0f} rows/s | "
                  f"c/a {row['c_over_a']:.3f} (target >= 0.25) | c/b {c_over_b} (target >= 3) | "
                  f"build {row['build_rows_s']:>8,.0f} rows/s, d/a {row['d_over_a']:.3f}, d/b {d_over_b}" + without_rules,
                  flush=True)
    print(json.dumps(figures))


if __name__ == "__main__":  # datatrove's worker processes re-import this module
    main()
