"""Building a manifest, stage by stage: the functions the Dagster assets call, and `build`, which
runs every stage in one process.

Stages per source: raw files (local, Hub at a pinned revision, or another mixture's train split)
-> normalized (converter) -> filtered (rule filters); then the mixture (train + validation shards)
and its dataset card. Each stage writes files under a `Layout` and returns counts; nothing here
knows about Dagster.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from filters import merge_config
from generators import GeneratorNotAvailable, get_generator
from sftmix import card, mixing
from sftmix.counts import Counts
from sftmix.manifest import Manifest, Source, load
from generators.base import Context, generate
from sftmix.llm import LLMClient, LLMSettings, MissingAPIKey, Stats, api_key_from_env
from sftmix.normalize import SourceInfo, nothing_converted, read_records
from sftmix.executor import ExecutorConfig, StageStep, available_cpus, run_stage
from sftmix.reader import shard_files
from sftmix.rejected import REJECTED_FILE, rejected_file, rejected_files
from sftmix.sources import filter_defaults, shardable

STAGES = ("normalized", "filtered")
AUTO_BYTES_PER_WORKER = 64 * 2**20  # below this a worker process costs more than it saves
log = logging.getLogger("sftmix")


class BuildError(Exception):
    """A build that cannot proceed for a reason the user must fix (one line, names the thing)."""


@dataclass(frozen=True)
class Layout:
    """Where a mixture's files live. The mixture directory is the publishable dataset; work files
    (per-source intermediate records and counts) live beside it, not inside it."""

    root: Path
    mixture: str

    @property
    def mixture_dir(self) -> Path:
        return self.root / self.mixture

    @property
    def work_dir(self) -> Path:
        return self.root / ".sftmix-work" / self.mixture

    def stage_dir(self, key: str, stage: str) -> Path:
        """A source's records after a stage: `part-<rank>.parquet`, one per worker."""
        return self.work_dir / stage / key

    def records(self, key: str, stage: str) -> list[Path]:
        return sorted(self.stage_dir(key, stage).glob("part-*.parquet"))

    @property
    def rejected_dir(self) -> Path:
        return self.mixture_dir / "rejected"

    def counts_file(self, key: str, stage: str) -> Path:
        return self.work_dir / stage / f"{key}.counts.json"

    def read_counts(self, key: str, stage: str) -> Counts | None:
        path = self.counts_file(key, stage)
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        return Counts.from_saved(data)


def filter_config(manifest: Manifest, source: Source, layout: Layout | None = None) -> dict:
    """The source's rule-filter settings: its format's defaults, then the manifest's; an enabled LLM
    judge gets the manifest's endpoint settings and the build's response cache."""
    config = merge_config(filter_defaults(source.converter or "openai_messages"), manifest.filter_config(source))
    judge = config.get("llm_judge", False)
    if judge is not False and layout is not None:
        config["llm_judge"] = {**(judge if isinstance(judge, dict) else {}),
                               "client": LLMClient(llm_settings(manifest, layout))}
    return config


def source_info(manifest: Manifest, source: Source, layout: Layout | None = None) -> SourceInfo:
    origin = {}
    if source.hub is not None:
        origin = {"hub_id": source.hub.id, "revision": source.hub.revision, "config": source.hub.config,
                  "split": source.hub.split}
        origin = {k: v for k, v in origin.items() if v is not None}
    elif source.mixture is not None:
        origin = {"mixture": source.mixture.manifest}
    return SourceInfo(
        key=source.key,
        converter=source.converter or "openai_messages",
        licence=source.licence,
        language=source.language,
        origin=origin,
        filters=filter_config(manifest, source, layout),
        manifest_hash=manifest.hash,
    )


def raw_files(manifest: Manifest, source: Source, layout: Layout, hub_cache: Path) -> list[Path]:
    """The raw input files of a source, downloading them when they come from the Hub."""
    if source.generator is not None:
        raise BuildError(f"source {source.key!r} is synthetic: it has no raw files (see generate_source)")
    if source.local is not None:
        files = [manifest.resolve(f) for f in source.local.files]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise BuildError(f"source {source.key!r}: input file not found: {', '.join(missing)}")
        return files
    if source.mixture is not None:
        other = load(manifest.resolve(source.mixture.manifest))
        try:
            return shard_files(Layout(layout.root, other.mixture).mixture_dir, "train")
        except FileNotFoundError:
            raise BuildError(
                f"source {source.key!r} samples mixture {other.mixture!r}, which is not built under {layout.root}: build it first"
            ) from None
    from sftmix.hub import HubError, download_source

    hub = source.hub
    if hub.revision is None:
        raise BuildError(f"source {source.key!r}: revision of {hub.id} is not pinned in {manifest.path}")
    try:
        return download_source(hub.id, hub.revision, hub.files, hub_cache)
    except HubError as error:
        raise BuildError(f"source {source.key!r}: {error}") from None


def llm_settings(manifest: Manifest, layout: Layout, overrides: dict | None = None) -> LLMSettings:
    """The manifest's endpoint settings (then the environment, then `overrides`); the response cache
    lives with the build's outputs."""
    return LLMSettings.from_config({"cache_dir": str(layout.root / ".sftmix-llm-cache"), **manifest.llm},
                                   **(overrides or {}))


def generate_source(manifest: Manifest, source: Source, layout: Layout,
                    llm_overrides: dict | None = None) -> tuple[Counts, Stats]:
    """A synthetic source: its generator reads its inputs' filtered records and writes its own
    filtered records (generated rows pass the same rule filters); returns counts and LLM stats."""
    try:
        api_key_from_env()  # fail fast, before any work, with the variable to set
        module = get_generator(source.generator.name)
    except (GeneratorNotAvailable, MissingAPIKey) as error:
        raise BuildError(f"source {source.key!r}: {error}") from None
    missing = [key for key in source.generator.inputs if not layout.records(key, "filtered")]
    if missing:
        raise BuildError(f"source {source.key!r}: inputs not built yet: {', '.join(missing)}")
    inputs = [path for key in source.generator.inputs for path in layout.records(key, "filtered")]
    client = LLMClient(llm_settings(manifest, layout, llm_overrides))
    context = Context(llm=client, targets=source.target_cells(), params=source.generator.params,
                      identity=manifest.identity, seed=manifest.seed)
    out_dir = layout.stage_dir(source.key, "filtered")
    shutil.rmtree(out_dir, ignore_errors=True)
    counts = generate(module, read_records(inputs), context, source_info(manifest, source, layout),
                      out_dir / "part-00000.parquet", rejected_file(layout.rejected_dir, source.key, "generated"))
    _save_counts(layout, source.key, "filtered", counts)
    return counts, client.stats


def _save_counts(layout: Layout, key: str, stage: str, counts: Counts) -> None:
    path = layout.counts_file(key, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(counts.saved()))


def executor_config(manifest: Manifest, files: list[Path], workers: int | None = None) -> ExecutorConfig:
    """The manifest's executor; `workers: auto` uses every core (of the Ray cluster, on Ray) once the
    input is worth it.
    `workers` overrides the manifest (the output does not depend on it)."""
    config = manifest.executor
    workers = workers or config.workers
    if workers == "auto":
        size = sum(f.stat().st_size for f in files)
        workers = max(1, min(available_cpus(config.kind), size // AUTO_BYTES_PER_WORKER))
    return ExecutorConfig(kind=config.kind, workers=int(workers), slurm=config.slurm)


def normalize_source(manifest: Manifest, source: Source, files: list[Path], layout: Layout,
                     workers: int | None = None) -> Counts:
    step = StageStep("normalized", source_info(manifest, source), [str(f) for f in files],
                     str(layout.stage_dir(source.key, "normalized")), str(layout.rejected_dir), apply_filters=False)
    counts = run_stage(step, executor_config(manifest, files, workers), shardable=shardable(step.info.converter))
    _save_counts(layout, source.key, "normalized", counts)
    return counts


def unconverted(layout: Layout, source: Source, counts: Counts) -> str | None:
    """Why none of a source's rows converted, if every one was dropped as not in its converter's
    layout (see `nothing_converted`); None otherwise."""
    rejected = rejected_files(layout.rejected_dir, source.key, "normalized")
    problem = nothing_converted(counts, source.converter or "openai_messages", rejected)
    return problem and f"source {source.key!r}: {problem}"


def filter_source(manifest: Manifest, source: Source, layout: Layout,
                  workers: int | None = None) -> tuple[Counts, Stats | None]:
    """The rule filters (and the LLM judge where the manifest turns it on); returns counts and the
    judge's LLM stats (None without a judge)."""
    info = source_info(manifest, source, layout)
    # Exact duplicates within a source are removed at mixing, over all workers' rows at once: a
    # worker's own dedup would keep whichever copy it met first, so the output would depend on the
    # number of workers. (The judge's client caches by content, so a repeat is never paid twice.)
    info.filters = {**info.filters, "dedup": False}
    judge = info.filters.get("llm_judge", False)
    if judge is not False:
        try:
            api_key_from_env()
        except MissingAPIKey as error:
            raise BuildError(f"source {source.key!r} (llm_judge): {error}") from None
    inputs = layout.records(source.key, "normalized")
    step = StageStep("filtered", info, [str(f) for f in inputs], str(layout.stage_dir(source.key, "filtered")),
                     str(layout.rejected_dir))
    # The judge's client is shared with this process to report its stats: the judge runs here.
    config = ExecutorConfig() if judge is not False else executor_config(manifest, inputs, workers)
    counts = run_stage(step, config)
    _save_counts(layout, source.key, "filtered", counts)
    return counts, (judge["client"].stats if judge is not False else None)


def mix(manifest: Manifest, layout: Layout) -> mixing.MixResult:
    inputs = {s.key: layout.records(s.key, "filtered") for s in manifest.sources if not s.is_input_only}
    missing = [k for k, files in inputs.items() if not files]
    if missing:
        raise BuildError(f"sources not filtered yet: {', '.join(missing)}")
    result = mixing.build(manifest, inputs, layout.mixture_dir, layout.work_dir / "mixing", rejected_dir=layout.rejected_dir)
    for stale in stale_rejected_files(manifest, layout):
        log.info("removed %s: %s no longer builds it", stale, manifest.path or "the manifest")
        stale.unlink()
    for deficit in result.deficits:
        log.warning("deficit in %s: %s", manifest.mixture, json.dumps(deficit))
    mixing.write_stats(result, layout.mixture_dir / "stats.json")
    return result


def stale_rejected_files(manifest: Manifest, layout: Layout) -> list[Path]:
    """Rejected files an earlier build left in the mixture directory that this manifest's build
    does not write: of a source no longer in the manifest, or of a stage the source no longer has
    (now input-only: no mixing; now generated: no normalize). The published drops must be those
    of the sources and stages the card lists. Files not named as sftmix names them are left alone."""
    stages = {source.key: rejected_stages(source) for source in manifest.sources}
    named = ((path, REJECTED_FILE.fullmatch(path.name)) for path in sorted(layout.rejected_dir.glob("*.parquet")))
    return [path for path, match in named if match and match["stage"] not in stages.get(match["source"], ())]


def rejected_stages(source: Source) -> set[str]:
    """The stages whose drops a build of `source` writes to `rejected/`."""
    stages = {"generated"} if source.generator is not None else {"normalized", "filtered"}
    return stages if source.is_input_only else stages | {"mixing"}


def write_card(manifest: Manifest, layout: Layout, result: mixing.MixResult) -> Path:
    stage_counts = {
        s.key: {stage: layout.read_counts(s.key, stage) for stage in STAGES} for s in manifest.sources if s.generator is None
    }
    path = layout.mixture_dir / "README.md"
    path.write_text(card.render(manifest, result, stage_counts), encoding="utf-8")
    return path


def build(manifest: Manifest, output: Path, hub_cache: Path | None = None, workers: int | None = None) -> mixing.MixResult:
    """Every stage in order, in this process (what `dagster asset materialize --select '*'` does)."""
    layout = Layout(Path(output), manifest.mixture)
    hub_cache = hub_cache or Path(output) / ".hf-cache"
    for source in manifest.sources:  # manifest order puts generator inputs first
        if source.generator is not None:
            generate_source(manifest, source, layout)
            continue
        files = raw_files(manifest, source, layout, hub_cache)
        problem = unconverted(layout, source, normalize_source(manifest, source, files, layout, workers))
        if problem:
            log.warning(problem)
        filter_source(manifest, source, layout, workers)
    result = mix(manifest, layout)
    write_card(manifest, layout, result)
    return result
