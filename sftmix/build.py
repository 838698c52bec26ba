"""Building a manifest, stage by stage: the functions the Dagster assets call, and `build`, which
runs every stage in one process.

Stages per source: raw files (local, Hub at a pinned revision, or another mixture's train split)
-> normalized (converter) -> filtered (rule filters); then the mixture (train + validation shards)
and its dataset card. Each stage writes files under a `Layout` and returns counts; nothing here
knows about Dagster.
"""

from __future__ import annotations

import fcntl
import hashlib
import heapq
import json
import logging
import os
import shutil
import stat
from contextlib import ExitStack, contextmanager
import dataclasses
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import pyarrow.parquet as pq

from filters import enabled_filters
from filters.decontamination import DecontaminationFilter
from generators import GeneratorNotAvailable, get_generator
from sftmix import __version__, card, mixing
from sftmix.code_digests import code_digests
from sftmix.counts import Counts
from sftmix.manifest import LLM_ANSWER_SETTINGS, Manifest, Source, load
from generators.base import Context, GeneratorBroken, generate, prompt_file
from sftmix.llm import LLMClient, LLMSettings, MissingAPIKey, Spending, Stats, api_key_from_env, endpoint_from_env
from sftmix.normalize import SourceInfo, nothing_converted, records_in_order
from sftmix.executor import ExecutorConfig, StageStep, available_cpus, run_stage, stage_run_token
from sftmix.plan import unmakeable
from sftmix.reader import CARD, shard_files
from sftmix.rejected import REJECTED_FILE, rejected_file, rejected_files
from sftmix.shards import parquet_batches, write_text_whole
from sftmix.sources import shardable

STAGES = ("normalized", "filtered")
AUTO_BYTES_PER_WORKER = 64 * 2**20  # below this a worker process costs more than it saves
# The stage runner, and through its imports the rest of the record path every source shares: raw
# rows, the record and its id, the rejected and shard writers; and the modules of another package
# it calls (not followed from its imports): the document the rules see, and the language detector
# for rows a source gives no language. `sftmix.__version__` has stayed 0.1.0 through every change
# to them, so it cannot stand for them.
RECORD_PATH = ("sftmix.normalize", "filters.base", "filters.language_id")
# Which model replies a generator accepts (and so which rows it makes) is partly the client's.
LLM_CLIENT = "sftmix.llm"

log = logging.getLogger("sftmix")

# Lock files this process holds (`Layout.hold`). A process forked while one is held (datatrove's
# multiprocess manager and workers) shares its lock: killed by SIGTERM or SIGKILL, the build left
# that child alive, holding the lock, and every rebuild of the source stopped as "being written by
# another run". The child points those descriptors at /dev/null instead: its parent's lock alone.
_HELD_LOCKS: set[int] = set()


def _drop_held_locks_in_child() -> None:
    if _HELD_LOCKS:
        null = os.open(os.devnull, os.O_RDONLY)
        for descriptor in _HELD_LOCKS:
            os.dup2(null, descriptor)  # not closed: the file object that owns the number closes it
        os.close(null)
        _HELD_LOCKS.clear()


os.register_at_fork(after_in_child=_drop_held_locks_in_child)


def held_locks() -> list[int]:
    """The descriptors of the lock files this process holds: a stage's tasks hold them too."""
    return sorted(_HELD_LOCKS)


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

    def done_file(self, key: str, stage: str) -> Path:
        """Written last, when a source's stage has completed: its counts, its parts, a digest of its
        records (`records_digest`) and the settings they were made with (`built_settings`); removed
        when the stage starts again."""
        return self.work_dir / stage / f"{key}.done.json"

    @contextmanager
    def rewriting(self, key: str, stage: str) -> Iterator[str | None]:
        """A source's stage starts again, held for this run. Its done file goes first, so that no
        later stage reads parts of a run that stops part-way. Yields the token of the stage's previous
        run (`run_stage`'s `previous_run`), read before its directory goes."""
        with self.hold(*self.stage_lock(key, stage)):
            previous_run = stage_run_token(self.stage_dir(key, stage))
            self.done_file(key, stage).unlink(missing_ok=True)
            shutil.rmtree(self.stage_dir(key, stage), ignore_errors=True)
            yield previous_run

    def stage_lock(self, key: str, stage: str) -> tuple[str, str]:
        """The lock file of a source's stage, and what it holds (for `hold`)."""
        return f"{stage}/.{key}.lock", f"source {key!r}: its {stage} records"

    @property
    def mixture_lock(self) -> tuple[str, str]:
        """The lock file of the mixture directory (its shards, stats and card), and what it holds."""
        return ".mixing.lock", f"mixture {self.mixture!r}: its shards"

    @contextmanager
    def hold(self, lock: str, what: str, shared: bool = False) -> Iterator[None]:
        """`what`, held for this run: alone to write it, shared to read it. A second run that gets
        there meanwhile (the same assets materialized twice from the web UI) stops with a message
        instead of deleting or mixing files the first is writing. The lock goes with the process."""
        path = self.work_dir / lock
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as file:
            try:
                fcntl.flock(file, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except BlockingIOError:
                doing = "written" if shared else "written or read"
                raise BuildError(f"{what} are being {doing} by another run: let it finish, then try again") from None
            except OSError as error:  # a file system without locks (some network mounts)
                log.warning("cannot lock %s (%s): two runs of it at once would collide", path, error)
            _HELD_LOCKS.add(file.fileno())
            try:
                yield
            finally:
                _HELD_LOCKS.discard(file.fileno())

    def read_done(self, key: str, stage: str) -> dict | None:
        path = self.done_file(key, stage)
        if not path.is_file():
            return None
        try:
            done = json.loads(path.read_text())
            kinds = (type(done["counts"]), type(done["parts"]), type(done["settings"]))
            if kinds != (dict, list, dict):
                raise TypeError("counts, parts or settings of the wrong type")
        except (ValueError, KeyError, TypeError) as error:  # edited or damaged by hand: never a traceback mid-build
            raise BuildError(f"{path} is not a done file as sftmix writes it ({type(error).__name__}: {error}): "
                             f"build source {key!r} again") from None
        return done

    def read_counts(self, key: str, stage: str) -> Counts | None:
        done = self.read_done(key, stage)
        return None if done is None else Counts.from_saved(done["counts"])


def filter_config(manifest: Manifest, source: Source, layout: Layout | None = None,
                  llm_overrides: dict | None = None, spending: Spending | None = None,
                  judge_settings: Callable[[dict | None], LLMSettings] | None = None) -> dict:
    """The source's rule-filter settings (`Manifest.filter_config`, with `Source.rule_defaults`); an
    enabled LLM judge gets the manifest's endpoint settings (then `llm_overrides`, as a generator
    does) and the build's response cache, or `judge_settings(its own llm)` (the CLI's), and spends
    with `spending` (its generator's, in a generated source). Without either, the judge is left
    to make its own client."""
    config = manifest.filter_config(source, source.rule_defaults)
    judge = config.get("llm_judge", False)
    if judge is not False and (layout is not None or judge_settings is not None):
        judge = judge if isinstance(judge, dict) else {}
        settings = (judge_settings(judge.get("llm")) if judge_settings is not None
                    else llm_settings(manifest, layout, llm_overrides, judge.get("llm")))
        config["llm_judge"] = {**judge, "client": LLMClient(settings, spending=spending,
                                                            judges_generated_rows=spending is not None)}
    return config


def source_info(manifest: Manifest, source: Source, layout: Layout | None = None,
                llm_overrides: dict | None = None, spending: Spending | None = None) -> SourceInfo:
    origin = {}
    if source.hub is not None:
        origin = {"hub_id": source.hub.id, "revision": source.hub.revision, "config": source.hub.config,
                  "split": source.hub.split}
        origin = {k: v for k, v in origin.items() if v is not None}
    elif source.mixture is not None:
        origin = {"mixture": source.mixture.manifest}
    return SourceInfo(
        key=source.key,
        converter=source.converter_name,
        licence=source.licence,
        language=source.language,
        origin=origin,
        filters=filter_config(manifest, source, layout, llm_overrides, spending),
        manifest_hash=manifest.hash,
    )


def raw_files(manifest: Manifest, source: Source, layout: Layout, hub_cache: Path) -> list[Path]:
    """The raw input files of a source, downloading them when they come from the Hub."""
    if source.generator is not None:
        raise BuildError(f"source {source.key!r} is synthetic: it has no raw files (see generate_source)")
    check_benchmarks(manifest, source)  # before a download: its filter stage would stop on it
    if source.local is not None:
        files = [manifest.resolve(f) for f in source.local.files]
        if folders := [str(f) for f in files if f.is_dir()]:
            raise BuildError(f"source {source.key!r}: {', '.join(folders)} is a directory; local.files names its files")
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise BuildError(f"source {source.key!r}: input file not found: {', '.join(missing)}")
        return files
    if source.mixture is not None:
        return _mixture_shards(manifest, source, layout)
    from sftmix.hub import HubError, download_source

    hub = source.hub
    if hub.revision is None:
        raise BuildError(f"source {source.key!r}: revision of {hub.id} is not pinned in {manifest.path}")
    try:
        return download_source(hub.id, hub.revision, hub.files, hub_cache)
    except HubError as error:
        raise BuildError(f"source {source.key!r}: {error}") from None


def _mixture_shards(manifest: Manifest, source: Source, layout: Layout) -> list[Path]:
    """The other mixture's train shards, mixed from its manifest as it is now (the source's
    settings name that manifest's hash)."""
    other = load(manifest.resolve(source.mixture.manifest))
    try:
        shards = shard_files(Layout(layout.root, other.mixture).mixture_dir, "train")
    except FileNotFoundError:
        raise BuildError(
            f"source {source.key!r} samples mixture {other.mixture!r}, which is not built under {layout.root}: build it first"
        ) from None
    except ValueError as error:  # its last mixing stopped part way
        raise BuildError(f"source {source.key!r} samples mixture {other.mixture!r}: {error}") from None
    mixed_from = _mixed_from(shards[0])
    if mixed_from != other.hash:
        raise BuildError(f"source {source.key!r} samples mixture {other.mixture!r}, mixed from another version "
                         f"(hash {mixed_from}) of {other.path} (hash {other.hash}): build it again first")
    recorded = mixed_result(Layout(layout.root, other.mixture)).mixed_sources
    if recorded != mixed_sources_digest(other):
        why = ("mixed from records its sources' settings no longer make (a raw file, the code or a benchmark file "
               "changed since, or, for a generated source, SFTMIX_LLM_BASE_URL or SFTMIX_LLM_MODEL differs)"
               if recorded else "mixed by an sftmix that did not record its sources' settings")
        raise BuildError(f"source {source.key!r} samples mixture {other.mixture!r}, {why}: build it again first")
    return shards


def _mixed_from(shard: Path) -> str:
    """The hash of the manifest a mixture shard was mixed from."""
    return pq.read_schema(shard).metadata[b"manifest_hash"].decode()


def mixed_sources_digest(manifest: Manifest) -> str:
    """The settings of the records `manifest` mixes (each mixed source's `stage_settings` after its
    filters) as a short hash. The mixing writes it in stats.json (`MixResult.mixed_sources`), and a
    source that samples the mixture takes only shards of the settings its sources have now: its
    manifest's hash does not change when a raw file, the code or a benchmark file does."""
    settings = {s.key: stage_settings(manifest, s, "filtered") for s in manifest.sources if not s.is_input_only}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def stage_settings(manifest: Manifest, source: Source, stage: str) -> dict:
    """What a source's records after `stage` are made from, as the manifest says now. Shards carry
    the manifest's hash, so the mixing (and each later stage) takes only records made from these
    settings, not those of an earlier manifest that a partial re-materialization left behind."""
    settings = {"sftmix_version": __version__, "licence": source.licence, "language": source.language,
                "code": _stage_code(manifest, source, stage)}
    if source.generator is None:
        settings |= {"converter": source.converter_name, "raw": raw_settings(manifest, source)}
        if stage == "normalized":
            return settings
    settings |= {"filters": manifest.rule_settings(source, source.rule_defaults),
                 "identity": manifest.identity and manifest.identity.model_dump(mode="json")}
    if benchmarks := _benchmark_states(manifest, source):
        settings["benchmark_files"] = benchmarks
    if source.generator is not None:
        inputs = {key: stage_settings(manifest, manifest.source(key), "filtered") for key in source.generator.inputs}
        settings |= {"generator": source.generator.model_dump(mode="json"), "targets": source.target_cells(),
                     "seed": manifest.seed, "inputs": inputs}
    if source.generator is not None or settings["filters"].get("llm_judge", False) is not False:
        # which model answered, and how: the environment's endpoint overrides the manifest's, as in the client
        # (a judge's own `llm:` settings are in its filter settings)
        settings["llm"] = {k: v for k, v in {**manifest.llm, **endpoint_from_env()}.items() if k in LLM_ANSWER_SETTINGS}
    return settings


def built_settings(manifest: Manifest, source: Source, stage: str, layout: Layout) -> dict:
    """`stage_settings`, and what only the output tells: for a source sampling another mixture, which
    rows that mixture's shards hold (the `rows_digest` of their footer; None before it is mixed). A
    generated or judged source of it rebuilt with its settings unchanged (once a refused account is
    topped up) changes them, and the rows sampled from its earlier shards would be mixed again."""
    settings = stage_settings(manifest, source, stage)
    if source.mixture is not None:
        other = Layout(layout.root, load(manifest.resolve(source.mixture.manifest)).mixture)
        try:
            footer = pq.read_schema(shard_files(other.mixture_dir, "train")[0]).metadata
        except (FileNotFoundError, ValueError):  # not mixed, or its mixing stopped part way (`_mixture_shards`)
            footer = {}
        settings["raw"]["rows_digest"] = footer[b"rows_digest"].decode() if b"rows_digest" in footer else None
    return settings


def _stage_code(manifest: Manifest, source: Source, stage: str) -> dict:
    """The code that makes the source's records after `stage`, as digests (`sftmix.code_digests`):
    the record path, its converter or generator (with its prompt templates and the LLM client), and
    for "filtered" the rules it runs."""
    if source.generator is not None:
        generator = get_generator(source.generator.name)
        modules = [*RECORD_PATH, LLM_CLIENT, generator.__name__]
        data_files = [prompt_file(name) for name in generator.PROMPTS]
    else:
        modules, data_files = [*RECORD_PATH, f"sftmix.sources.{source.converter_name}"], []
    if stage == "filtered":
        for rule, _ in enabled_filters(_filtered_stage_rules(filter_config(manifest, source), source)):
            modules.append(rule.__module__)
            if rule.name == "llm_judge" and LLM_CLIENT not in modules:
                modules.append(LLM_CLIENT)  # the client's reading of replies decides verdicts too
            data_files += rule.data_files
    return code_digests(modules, data_files)


def raw_settings(manifest: Manifest, source: Source) -> dict:
    """What a converted source's raw input is: what the manifest names (a pinned revision, the other
    mixture's manifest, its hash and its sources' settings) and, for local files, their size and
    modification time."""
    if source.hub is not None:
        return source.hub.model_dump(mode="json")
    if source.local is not None:
        return {**source.local.model_dump(mode="json"),
                "file_states": {name: _file_state(manifest.resolve(name)) for name in source.local.files}}
    other = load(manifest.resolve(source.mixture.manifest))
    return {**source.mixture.model_dump(mode="json"), "manifest_hash": other.hash,
            "mixed_sources": mixed_sources_digest(other)}


def _file_state(path: Path) -> dict | None:
    """What tells a local file rewritten in place (None: there is no such file). Not a hash of its
    bytes: raw files run to gigabytes, and the settings are checked at every stage and web UI load."""
    try:
        state = path.stat()
    except OSError:
        return None
    seconds, nanoseconds = divmod(state.st_mtime_ns, 10**9)
    modified = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return {"bytes": state.st_size, "modified": f"{modified}.{nanoseconds:09d}Z"}


def _decontamination(manifest: Manifest, source: Source) -> DecontaminationFilter | None:
    """The source's decontamination rule as its filter stage runs it (the manifest's load checked
    its arguments); None when it is off, or on without benchmarks (the filter stage names that)."""
    config = manifest.filter_config(source).get("decontamination")
    return DecontaminationFilter(**config) if isinstance(config, dict) else None


def check_benchmarks(manifest: Manifest, source: Source) -> None:
    """BuildError naming a decontamination benchmark file of the source's rules that is missing, a
    directory, or in a format the rule cannot read."""
    if (decontamination := _decontamination(manifest, source)) is None:
        return
    try:
        decontamination.check_files()
    except (OSError, ValueError) as error:
        raise BuildError(f"source {source.key!r}: {error}") from None


def _benchmark_states(manifest: Manifest, source: Source) -> dict:
    """The decontamination benchmark files the source's filter stage reads, each with its state: an
    evaluation set updated in place, or one more file a glob matches, changes what it removes."""
    if (decontamination := _decontamination(manifest, source)) is None:
        return {}
    root = decontamination.root
    return {str(path.relative_to(root) if root is not None and path.is_relative_to(root) else path): _file_state(path)
            for path in decontamination.benchmark_files()}


def decontamination_report(manifest: Manifest, source: Source, counts: Counts) -> dict | None:
    """Per benchmark of the source's decontamination (None when it is off): the rows dropped in its
    name and the rows holding its prompts (`rows_matched`: benchmarks overlap, and a row matching two
    is dropped in one's name), 0 included, and what its index holds (prompts read, skipped as too
    short, n-grams), so that a benchmark that removed nothing because few of its prompts were usable
    is told apart from one the source is clean of."""
    if (decontamination := _decontamination(manifest, source)) is None:
        return None
    return {name: {"rows_dropped": counts.dropped.get(f"contaminated:{name}", 0),
                   "rows_matched": counts.matched.get(f"decontamination:{name}", 0), **index}
            for name, index in decontamination.index_stats().items()}


def stage_version(manifest: Manifest, source: Source, stage: str) -> str:
    """`stage_settings` (for "raw": `raw_settings`) as a short hash: the asset's Dagster code version,
    so that the web UI marks a source's assets stale once the manifest or a file changes what they make."""
    settings = raw_settings(manifest, source) if stage == "raw" else stage_settings(manifest, source, stage)
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _parts_problem(manifest: Manifest, source: Source, stage: str, done: dict | None,
                   parts: list[Path], layout: Layout) -> str | None:
    """Why a source's records after `stage` (its done file `done`, its `parts`) cannot be used now
    (None: they can)."""
    if done is None:
        return f"its {stage} stage has not completed"
    now = built_settings(manifest, source, stage, layout)
    gone = [name for name, state in ((now.get("raw") or {}).get("file_states") or {}).items() if state is None]
    if gone:  # its settings say "-> null"; building again cannot read them either
        return (f"its raw file(s) {', '.join(map(str, map(manifest.resolve, gone)))} no longer exist (put them "
                "back, or name others in local.files)")
    changes = list(_differences(done["settings"], now))
    if changes:
        where = manifest.path or "the manifest"
        return f"its {stage} records were made with other settings than {where} has now ({'; '.join(changes)})"
    missing = [part.name for part in parts if not part.is_file()]
    if missing:
        return f"its {stage} part(s) {', '.join(missing)} are missing"
    return None


def _differences(then, now, path: str = ""):
    """`path: then -> now` for each setting that differs, down to the innermost mapping."""
    if isinstance(then, dict) and isinstance(now, dict):
        for key in sorted(then.keys() | now.keys()):
            yield from _differences(then.get(key), now.get(key), f"{path}.{key}" if path else key)
    elif then != now:
        yield f"{path}: {json.dumps(then)} -> {json.dumps(now)}"


@contextmanager
def completed_records(manifest: Manifest, sources: list[Source], layout: Layout,
                      stage: str) -> Iterator[dict[str, list[Path]]]:
    """The records of each source after `stage`, held for reading; a BuildError naming every source
    whose records are missing, incomplete or made from other settings."""
    with ExitStack() as held:
        for s in sources:
            held.enter_context(layout.hold(*layout.stage_lock(s.key, stage), shared=True))
        done = {s.key: layout.read_done(s.key, stage) for s in sources}
        parts = {key: [layout.stage_dir(key, stage) / name for name in (saved["parts"] if saved else [])]
                 for key, saved in done.items()}
        problems = [f"source {s.key!r}: {problem}" for s in sources
                    if (problem := _parts_problem(manifest, s, stage, done[s.key], parts[s.key], layout))]
        if problems:
            again = "that source again (its" if len(problems) == 1 else "those sources again (their"
            raise BuildError(f"{'; '.join(problems)}: build {again} assets, or the whole manifest)")
        yield parts


def llm_settings(manifest: Manifest, layout: Layout, overrides: dict | None = None,
                 judge_llm: dict | None = None) -> LLMSettings:
    """The manifest's endpoint settings (for a judge, then its own `llm`; then the environment, then
    `overrides`); the response cache lives with the build's outputs."""
    config = {"cache_dir": str(layout.root / ".sftmix-llm-cache"), **manifest.llm, **(judge_llm or {})}
    return LLMSettings.from_config(config, **(overrides or {}))


def generate_source(manifest: Manifest, source: Source, layout: Layout,
                    llm_overrides: dict | None = None) -> tuple[Counts, list[Stats]]:
    """A synthetic source: its generator reads its inputs' filtered records and writes its own
    filtered records (generated rows pass the same rule filters); returns counts and the LLM stats
    of the generator and, when the source has one, of its judge: they spend from one budget."""
    try:
        api_key_from_env()  # fail fast, before any work, with the variable to set
        module = get_generator(source.generator.name)
    except (GeneratorNotAvailable, MissingAPIKey) as error:
        raise BuildError(f"source {source.key!r}: {error}") from None
    check_benchmarks(manifest, source)  # before any request is paid for
    if problem := unmakeable(source):
        log.warning(problem)
    spending = Spending()
    client = LLMClient(llm_settings(manifest, layout, llm_overrides), spending=spending)
    context = Context(llm=client, targets=source.target_cells(), params=source.generator.params,
                      identity=manifest.identity, seed=manifest.seed)
    with ExitStack() as held:
        try:
            inputs = held.enter_context(completed_records(
                manifest, [manifest.source(key) for key in source.generator.inputs], layout, "filtered"))
        except BuildError as error:
            raise BuildError(f"source {source.key!r} ({source.generator.name}) reads: {error}") from None
        settings = built_settings(manifest, source, "filtered", layout)
        held.enter_context(layout.rewriting(source.key, "filtered"))
        # each input's records in the order of its raw rows, whatever the workers that made them
        records = (record for parts in inputs.values() for record in records_in_order(parts))
        info = source_info(manifest, source, layout, llm_overrides, spending)
        try:
            counts = generate(module, records, context, info,
                              layout.stage_dir(source.key, "filtered") / "part-00000.parquet",
                              rejected_file(layout.rejected_dir, source.key, "generated"))
        except GeneratorBroken as error:
            raise BuildError(f"source {source.key!r} ({source.generator.name}): {error}") from error
        # written in this process alone, into the directory `rewriting` emptied
        _save_done(layout, source.key, "filtered", counts, layout.records(source.key, "filtered"), settings)
    judge = info.filters.get("llm_judge", False)
    return counts, [client.stats] + ([judge["client"].stats] if judge is not False else [])


def _save_done(layout: Layout, key: str, stage: str, counts: Counts, parts: list[Path], settings: dict) -> None:
    """`parts`: those the stage's own tasks wrote. `settings` as they were when the stage began to
    read: a raw or benchmark file rewritten while it ran leaves the records stale."""
    path = layout.done_file(key, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    # whole or not at all: a later stage reads it as the stage's completion
    write_text_whole(path, json.dumps({"counts": counts.saved(), "parts": [p.name for p in parts],
                                       "records": records_digest(parts), "settings": settings}))


# What a record holds beside its id (a hash of its messages and tools): a judge's scores in
# `origin`, a converter's labels
_DIGESTED = ["position", "id", "origin", "language", "licence"]


def records_digest(parts: list[Path]) -> str:
    """A short digest of a stage's records: their ids, origins, languages and licences in the order
    of their positions, so the same records give the same digest whatever the number of workers that
    wrote them. Settings do not say which rows an LLM stage made: one refused part way, or over its
    budget, and run again once topped up, answers otherwise with settings and inputs unchanged."""
    digest = hashlib.sha256()
    rows = max(64, 2**16 // max(1, len(parts)))  # one batch of each part is held: a Slurm stage writes hundreds
    for position, *fields in heapq.merge(*(_positioned_rows(part, rows) for part in parts)):
        digest.update(b"%d %s\n" % (position, "\t".join(fields).encode()))
    return digest.hexdigest()[:16]


def _positioned_rows(part: Path, rows: int) -> Iterator[tuple]:
    for batch in parquet_batches(part, batch_size=rows, columns=_DIGESTED):
        yield from zip(*(batch.column(name).to_pylist() for name in _DIGESTED))


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
    if problem := unmakeable(source):
        log.warning(problem)
    step = StageStep("normalized", source_info(manifest, source), [str(f) for f in files],
                     str(layout.stage_dir(source.key, "normalized")), str(layout.rejected_dir), apply_filters=False)
    settings = built_settings(manifest, source, "normalized", layout)
    with layout.rewriting(source.key, "normalized") as previous_run:
        counts, parts = run_stage(step, executor_config(manifest, files, workers),
                                  shardable=shardable(step.info.converter), previous_run=previous_run)
        _save_done(layout, source.key, "normalized", counts, parts, settings)
    return counts


def unconverted(layout: Layout, source: Source, counts: Counts) -> str | None:
    """Why none of a source's rows converted: its raw files hold no rows, or every one was dropped
    as not in its converter's layout (see `nothing_converted`); None otherwise."""
    if not counts.read:  # an empty source (a JSON `[]`, a Parquet file of no rows) converts nothing either
        return f"source {source.key!r}: its raw files hold no rows"
    rejected = rejected_files(layout.rejected_dir, source.key, "normalized")
    problem = nothing_converted(counts, source.converter_name, rejected)
    return problem and f"source {source.key!r}: {problem}"


def unkept(source: Source, counts: Counts) -> str | None:
    """Why a source that had records kept none: every one dropped by its rules (a `max_tokens: 8`
    meant as 8k, a wrong `language:`), or for a generated source by its generator too; None
    otherwise. A cell taking `all` rows has no target to fall short of, so nothing else said it."""
    if not counts.read or counts.kept:
        return None
    reasons = ", ".join(f"{reason} {n:,}" for reason, n in counts.dropped.most_common(3))
    if source.generator is not None:
        return f"source {source.key!r}: all {counts.read:,} rows it generated or tried were dropped ({reasons})"
    return f"source {source.key!r}: the rules dropped all {counts.read:,} of its records ({reasons})"


def filter_source(manifest: Manifest, source: Source, layout: Layout, workers: int | None = None,
                  llm_overrides: dict | None = None) -> tuple[Counts, list[Stats]]:
    """The rule filters (and the LLM judge where the manifest turns it on, asking as `llm_overrides`
    say: the Dagster `llm` resource's concurrency and budget); returns counts and the judge's LLM
    stats (none without a judge)."""
    info = source_info(manifest, source, layout, llm_overrides)
    info.filters = _filtered_stage_rules(info.filters, source)
    judge = info.filters.get("llm_judge", False)
    if judge is not False:
        try:
            api_key_from_env()
        except MissingAPIKey as error:
            raise BuildError(f"source {source.key!r} (llm_judge): {error}") from None
    with completed_records(manifest, [source], layout, "normalized") as normalized, \
            layout.rewriting(source.key, "filtered") as previous_run:
        settings = built_settings(manifest, source, "filtered", layout)
        inputs = normalized[source.key]
        step = StageStep("filtered", info, [str(f) for f in inputs], str(layout.stage_dir(source.key, "filtered")),
                         str(layout.rejected_dir))
        # The judge's client is shared with this process to report its stats: the judge runs here.
        config = ExecutorConfig() if judge is not False else executor_config(manifest, inputs, workers)
        counts, parts = run_stage(step, config, previous_run=previous_run)
        _save_done(layout, source.key, "filtered", counts, parts, settings)
    return counts, ([judge["client"].stats] if judge is not False else [])


def _filtered_stage_rules(config: dict, source: Source) -> dict:
    """The rule filters as the source's filtered stage runs them (`config`: `filter_config`'s).
    Exact duplicates within a converted source are removed at mixing, over all workers' rows at
    once: a worker's own dedup would keep whichever copy it met first, so the output would depend
    on the number of workers. (The judge's client caches by content, so a repeat is never paid
    twice.) A generator's rows are made in one process, in order."""
    return config if source.generator is not None else {**config, "dedup": False}


def mix(manifest: Manifest, layout: Layout) -> mixing.MixResult:
    mixed = [s for s in manifest.sources if not s.is_input_only]
    # The card's intake and the published drops, of every source (those that only feed generators
    # too), are those of each stage's done file: a normalized run made with other settings since
    # (a converter tried on the source alone) is not the one the filtered records came from.
    with layout.hold(*layout.mixture_lock), \
            completed_records(manifest, mixed, layout, "filtered") as inputs, \
            completed_records(manifest, [s for s in manifest.sources if s.is_input_only], layout, "filtered"), \
            completed_records(manifest, [s for s in manifest.sources if s.generator is None], layout, "normalized"):
        # a generated source has no normalized stage: its filtered counts hold the generator's and rules' drops
        intake = {s.key: {stage: (counts := layout.read_counts(s.key, stage)) and counts.saved() for stage in STAGES}
                  for s in manifest.sources}
        _restore_rejected(manifest, layout)
        result = mixing.build(manifest, inputs, layout.mixture_dir, layout.work_dir / "mixing",
                              rejected_dir=layout.rejected_dir, intake=intake,
                              mixed_sources=mixed_sources_digest(manifest))
        for stale in stale_rejected_files(manifest, layout):
            if (kept := _kept_rejected_dir(layout, stale)) is not None:
                kept.mkdir(exist_ok=True)
                os.replace(stale, kept / stale.name)
                log.info("moved %s beside its records: %s no longer builds it", stale, manifest.path or "the manifest")
            else:
                log.info("removed %s: %s no longer builds it", stale, manifest.path or "the manifest")
                stale.unlink()
    for deficit in result.deficits:
        log.warning("deficit in %s: %s", manifest.mixture, json.dumps(deficit))
    for unused in unused_work(manifest, layout):
        log.warning("%s", unused.message(manifest))
    return result


@dataclass
class UnusedWork:
    """A source's records in the work directory that the manifest's build never reads."""

    source: str
    stages: list[str]
    bytes: int
    paths: list[Path]  # its stage directories and done files

    def message(self, manifest: Manifest) -> str:
        return (f"source {self.source!r}: {manifest.path or 'the manifest'} no longer builds its "
                f"{' and '.join(self.stages)} records ({self.bytes:,} bytes): delete "
                f"{', '.join(map(str, self.paths))} to free the space")


def unused_work(manifest: Manifest, layout: Layout) -> list[UnusedWork]:
    """Records an earlier build left in the work directory that this manifest's build does not
    read: of a source no longer in it, or of a stage the source no longer has (now generated: no
    normalize). They are reported, not removed: taking a source out of a manifest for one mixing
    should not cost a normalize run of millions of rows when it comes back."""
    used = {(stage, source.key) for source in manifest.sources
            for stage in (("filtered",) if source.generator is not None else STAGES)}  # a generator writes no normalized
    found: dict[str, UnusedWork] = {}
    for stage in STAGES:
        stage_dir = layout.work_dir / stage
        for path in sorted(stage_dir.iterdir()) if stage_dir.is_dir() else ():
            if path.is_dir():
                key = path.name
            elif path.name.endswith(".done.json"):
                key = path.name.removesuffix(".done.json")
            else:
                continue  # lock files (empty), and files sftmix does not name
            if (stage, key) in used:
                continue
            unused = found.setdefault(key, UnusedWork(key, [], 0, []))
            if stage not in unused.stages:
                unused.stages.append(stage)
            unused.paths.append(path)
            unused.bytes += sum(map(_file_bytes, path.rglob("*"))) if path.is_dir() else _file_bytes(path)
    return [found[key] for key in sorted(found)]


def _file_bytes(path: Path) -> int:
    try:
        state = path.stat()
    except OSError:  # removed meanwhile by a run of another manifest that builds that source, or unreadable
        return 0
    return state.st_size if stat.S_ISREG(state.st_mode) else 0


def stale_rejected_files(manifest: Manifest, layout: Layout) -> list[Path]:
    """Rejected files an earlier build left in the mixture directory that this manifest's build
    does not write: of a source no longer in the manifest, or of a stage the source no longer has
    (now input-only: no mixing; now generated: no normalize). The published drops must be those
    of the sources and stages the card lists. Files not named as sftmix names them are left alone."""
    stages = {source.key: rejected_stages(source) for source in manifest.sources}
    named = ((path, REJECTED_FILE.fullmatch(path.name)) for path in sorted(layout.rejected_dir.glob("*.parquet")))
    return [path for path, match in named if match and match["stage"] not in stages.get(match["source"], ())]


# The work stage whose records a stage's rejected file goes with (a generated source's drops: its filtered records').
_RECORDS_STAGE = {"normalized": "normalized", "filtered": "filtered", "generated": "filtered"}


def _kept_rejected_dir(layout: Layout, rejected: Path) -> Path | None:
    """Where a stage's rejected file waits while its source is out of the manifest: beside the
    records it goes with, which are kept (`unused_work`) and reused if the source comes back; a
    new run of the stage removes both. None for the mixing's own drops, or when no records are kept."""
    match = REJECTED_FILE.fullmatch(rejected.name)
    stage = _RECORDS_STAGE.get(match["stage"]) if match else None
    if stage is None or not layout.done_file(match["source"], stage).is_file():
        return None
    return layout.stage_dir(match["source"], stage) / "rejected"


def _restore_rejected(manifest: Manifest, layout: Layout) -> None:
    """The rejected files of a source back in the manifest, put back where its stages wrote them
    (an earlier mixing without it moved them beside its records)."""
    for source in manifest.sources:
        for stage in rejected_stages(source) & _RECORDS_STAGE.keys():
            kept = layout.stage_dir(source.key, _RECORDS_STAGE[stage]) / "rejected"
            waiting = rejected_files(kept, source.key, stage)
            if waiting and not rejected_files(layout.rejected_dir, source.key, stage):
                for path in waiting:
                    os.replace(path, layout.rejected_dir / path.name)
                if not any(kept.iterdir()):
                    kept.rmdir()
                log.info("put back the %s drops of source %r in %s", stage, source.key, layout.rejected_dir)


def rejected_stages(source: Source) -> set[str]:
    """The stages whose drops a build of `source` writes to `rejected/`."""
    stages = {"generated"} if source.generator is not None else {"normalized", "filtered"}
    return stages if source.is_input_only else stages | {"mixing"}


def mixed_result(layout: Layout) -> mixing.MixResult:
    """The last mixing's result, as its stats.json holds it; refused before any mixing."""
    path = layout.mixture_dir / mixing.STATS
    if not path.is_file():
        raise BuildError(f"{layout.mixture_dir}: not mixed yet: materialize the mixture and holdout first")
    return mixing.MixResult(**{**json.loads(path.read_text()), "out_dir": layout.mixture_dir})


def write_card(manifest: Manifest, layout: Layout, result: mixing.MixResult) -> Path:
    """The dataset card of the mixture as mixed; refused when the manifest changed since the mixing
    (the card would pair its targets and licences with the older mixture's counts), or when the
    splits and `result` (stats.json) are not all of one mixing: one that was stopped after putting
    its train split in place leaves the validation split and stats.json of the one before (the
    mixing's marker says so; without it, as an sftmix before the marker left them, their hashes). A
    stats.json of an earlier sftmix, without the counts by source x language and licence or by input
    licence, has them counted from the shards."""
    with layout.hold(*layout.mixture_lock):
        if (layout.mixture_dir / mixing.MIXING_STOPPED).exists():
            raise BuildError(f"{layout.mixture_dir}: its last mixing was stopped part way, so its splits, rejected files "
                             "and stats.json may be of two mixings: mix it again first")
        mixed_from = _mixed_from(shard_files(layout.mixture_dir, "train")[0])
        if mixed_from != manifest.hash:
            raise BuildError(f"{layout.mixture_dir} was mixed from another manifest (hash {mixed_from}) than "
                             f"{manifest.path or 'this one'} (hash {manifest.hash}): mix it again first")
        validation = sorted((layout.mixture_dir / "validation").glob("part-*.parquet"))
        parts = {"validation split": _mixed_from(validation[0]) if validation else manifest.hash,
                 "stats.json": result.manifest_hash or "none"}
        for part, hash_ in parts.items():
            if hash_ != manifest.hash:
                raise BuildError(f"{layout.mixture_dir}: its {part} is of another mixing (hash {hash_}) than its train "
                                 f"split (hash {manifest.hash}), which was stopped part way: mix it again first")
        if None in (result.by_cell, result.by_source_licence, result.by_input_licence):  # an sftmix's that did not count them
            result = dataclasses.replace(result, **mixing.counted_in_shards(layout.mixture_dir))
        path = layout.mixture_dir / CARD
        write_text_whole(path, card.render(manifest, result))  # a stopped write leaves the card as it was
    return path


def _inputs_first(sources: list[Source]) -> list[Source]:
    """`sources` in manifest order, but each generated source after the sources it reads (Dagster
    orders the assets so; a manifest may list a generator before its inputs)."""
    by_key = {source.key: source for source in sources}
    ordered: dict[str, Source] = {}

    def place(source: Source) -> None:
        if source.key not in ordered:
            for key in source.generator.inputs if source.generator else ():
                place(by_key[key])  # the manifest refuses unknown inputs
            ordered[source.key] = source

    for source in sources:
        place(source)
    return list(ordered.values())


def build(manifest: Manifest, output: Path, hub_cache: Path | None = None, workers: int | None = None) -> mixing.MixResult:
    """Every stage in order, in this process (what `dagster asset materialize --select '*'` does)."""
    layout = Layout(Path(output), manifest.mixture)
    hub_cache = hub_cache or Path(output) / ".hf-cache"
    for source in _inputs_first(manifest.sources):
        if source.generator is not None:
            counts, llm_stats = generate_source(manifest, source, layout)
        else:
            files = raw_files(manifest, source, layout, hub_cache)
            problem = unconverted(layout, source, normalize_source(manifest, source, files, layout, workers))
            if problem:
                log.warning(problem)
            counts, llm_stats = filter_source(manifest, source, layout, workers)
        if problem := unkept(source, counts):
            log.warning(problem)
        for problem in filter(None, (stats.unanswered() for stats in llm_stats)):
            log.warning("source %r: %s", source.key, problem)
    result = mix(manifest, layout)
    write_card(manifest, layout, result)
    return result
