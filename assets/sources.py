"""Per-source assets: raw -> normalized -> filtered. Thin: each calls one `sftmix.build` stage.

The normalized and filtered assets report a data version: a digest of the records the stage wrote
(`sftmix.build.records_digest`). Dagster's own, derived from the code version and the inputs', does
not change when an LLM stage answers otherwise with both unchanged (refused part way, then run again
once topped up), and the mixture mixed from its earlier rows showed as fresh. The version holds the
stage's settings too (`records_version`).
"""

import hashlib
import json

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    asset,
)

from pipelines.resources import LLMResource, SftmixResource
from sftmix import build
from sftmix.counts import Counts
from sftmix.llm import Stats
from sftmix.manifest import Manifest, Source, asset_prefix
from sftmix.reader import column_counts


def counts_metadata(counts: Counts, paths: list) -> dict:
    by = column_counts(paths) if paths else {"language": {}, "licence": {}}
    return {
        "rows_in": counts.read,
        "rows_out": counts.kept,
        "dropped": sum(counts.dropped.values()),
        "drops_by_reason": MetadataValue.json(dict(sorted(counts.dropped.items()))),
        "by_language": MetadataValue.json(by["language"]),
        "by_licence": MetadataValue.json(by["licence"]),
        "path": MetadataValue.path(str(paths[0].parent) if paths else ""),
        # where the stage's time went, summed over its workers: which rule to look at in a slow build
        "seconds_by_step": MetadataValue.json({step: round(s, 2) for step, s in counts.seconds.items()}),
    }


def filtered_metadata(manifest: Manifest, source: Source, counts: Counts, paths: list) -> dict:
    """`counts_metadata`, and per decontamination benchmark its drops and index."""
    metadata = counts_metadata(counts, paths)
    if (report := build.decontamination_report(manifest, source, counts)) is not None:
        metadata["decontamination"] = MetadataValue.json(report)
    return metadata


def records_version(layout: build.Layout, key: str, stage: str) -> DataVersion:
    """The data version of a source's records after `stage`: its done file's records digest and the
    settings they were made with. The settings too: the mixing holds a source's settings
    (`stats.json`), so records made again alike with other settings (a raw file rewritten in place,
    a rule's code edited) leave the mixture stale, as sftmix's own checks have it."""
    done = layout.read_done(key, stage)
    return DataVersion(hashlib.sha256(json.dumps([done["records"], done["settings"]], sort_keys=True).encode())
                       .hexdigest()[:16])


def llm_metadata(stats: list[Stats]) -> dict:
    """Requests, cache hits, tokens and cost of an LLM stage's clients together (never the endpoint's key)."""
    return {f"llm_{k}": v for k, v in Stats.total(stats).summary().items()}


def llm_answered(context: AssetExecutionContext, key: AssetKey, stats: list[Stats]) -> AssetCheckResult:
    """Fails (not blocking: each row is a counted drop) when an endpoint of the stage (its
    generator's, or its judge's) answered no request, or refused the account part way."""
    problem = next(filter(None, (part.unanswered() for part in stats)), None)
    if problem:
        context.log.warning(problem)
    return AssetCheckResult(check_name="llm_answered", asset_key=key, passed=problem is None,
                            severity=AssetCheckSeverity.ERROR, metadata={"problem": problem or ""})


def rows_kept(context: AssetExecutionContext, key: AssetKey, source: Source, counts: Counts) -> AssetCheckResult:
    """Fails (not blocking, as `rows_converted`: the drops are counted, and the other sources mix)
    when the source's rules, or its generator, dropped every record it had."""
    problem = build.unkept(source, counts)
    if problem:
        context.log.warning(problem)
    return AssetCheckResult(check_name="rows_kept", asset_key=key, passed=problem is None,
                            severity=AssetCheckSeverity.ERROR, metadata={"problem": problem or ""})


def _rows_kept_spec(key: AssetKey) -> AssetCheckSpec:
    return AssetCheckSpec("rows_kept", asset=key, description="its rules (and generator) kept some of its records")


def _llm_answered_spec(key: AssetKey) -> AssetCheckSpec:
    return AssetCheckSpec("llm_answered", asset=key,
                          description="the LLM endpoint answered some requests and did not refuse the account")


def source_assets(manifest: Manifest, source: Source) -> list[AssetsDefinition]:
    prefix = asset_prefix(source.key)
    group = prefix
    if source.generator is not None:
        inputs = [AssetKey([asset_prefix(k), "filtered"]) for k in source.generator.inputs]

        filtered_key = AssetKey([prefix, "filtered"])

        @asset(key=filtered_key, deps=inputs, group_name=group,
               description=f"{source.key}: synthetic ({source.generator.name})",
               code_version=build.stage_version(manifest, source, "filtered"),
               check_specs=[_rows_kept_spec(filtered_key), _llm_answered_spec(filtered_key)])
        def generated(context: AssetExecutionContext, sftmix: SftmixResource, llm: LLMResource) -> MaterializeResult:
            m = sftmix.manifest_as_defined(manifest)
            counts, llm_stats = build.generate_source(m, m.source(source.key), sftmix.layout, llm.overrides())
            context.log.info(f"{source.key}: LLM {Stats.total(llm_stats).summary()}")
            metadata = filtered_metadata(m, m.source(source.key), counts, sftmix.layout.records(source.key, "filtered"))
            metadata.update(llm_metadata(llm_stats))
            return MaterializeResult(metadata=metadata, check_results=[rows_kept(context, filtered_key, m.source(source.key), counts),
                                                                       llm_answered(context, filtered_key, llm_stats)],
                                     data_version=records_version(sftmix.layout, source.key, "filtered"))

        return [generated]

    where = source.hub.id if source.hub else (source.mixture.manifest if source.mixture else "local files")

    @asset(key=AssetKey([prefix, "raw"]), group_name=group, description=f"{source.key}: raw files from {where}",
           code_version=build.stage_version(manifest, source, "raw"))
    def raw(context: AssetExecutionContext, sftmix: SftmixResource) -> MaterializeResult:
        m = sftmix.manifest_as_defined(manifest)
        files = build.raw_files(m, m.source(source.key), sftmix.layout, sftmix.hub_cache_dir)
        meta = {"files": MetadataValue.json([str(f) for f in files]), "bytes": sum(f.stat().st_size for f in files)}
        if source.hub:
            meta.update({"hub_id": source.hub.id, "revision": source.hub.revision or "unpinned"})
        return MaterializeResult(metadata=meta)

    normalized_key = AssetKey([prefix, "normalized"])

    @asset(key=normalized_key, deps=[raw], group_name=group,
           description=f"{source.key}: canonical records from converter {source.converter_name}",
           code_version=build.stage_version(manifest, source, "normalized"),
           check_specs=[AssetCheckSpec("rows_converted", asset=normalized_key,
                                       description="the raw files hold rows, and some are in the converter's layout")])
    def normalized(context: AssetExecutionContext, sftmix: SftmixResource) -> MaterializeResult:
        m = sftmix.manifest_as_defined(manifest)
        s = m.source(source.key)
        files = build.raw_files(m, s, sftmix.layout, sftmix.hub_cache_dir)  # cached: no second download
        counts = build.normalize_source(m, s, files, sftmix.layout)
        problem = build.unconverted(sftmix.layout, s, counts)
        if problem:
            context.log.warning(problem)
        # Not blocking: an all-bad source is still counted drops, and the mixture reports its deficit.
        check = AssetCheckResult(check_name="rows_converted", passed=problem is None, severity=AssetCheckSeverity.ERROR,
                                 metadata={"problem": problem or ""})
        return MaterializeResult(metadata=counts_metadata(counts, sftmix.layout.records(s.key, "normalized")),
                                 check_results=[check], data_version=records_version(sftmix.layout, s.key, "normalized"))

    filtered_key = AssetKey([prefix, "filtered"])
    judged = build.filter_config(manifest, source).get("llm_judge", False) is not False

    @asset(key=filtered_key, deps=[normalized], group_name=group,
           description=f"{source.key}: records that passed the rule filters",
           code_version=build.stage_version(manifest, source, "filtered"),
           check_specs=[_rows_kept_spec(filtered_key), *([_llm_answered_spec(filtered_key)] if judged else [])])
    def filtered(context: AssetExecutionContext, sftmix: SftmixResource, llm: LLMResource) -> MaterializeResult:
        m = sftmix.manifest_as_defined(manifest)
        counts, judge_stats = build.filter_source(m, m.source(source.key), sftmix.layout, llm_overrides=llm.overrides())
        metadata = filtered_metadata(m, m.source(source.key), counts, sftmix.layout.records(source.key, "filtered"))
        checks = [rows_kept(context, filtered_key, m.source(source.key), counts)]
        if judge_stats:
            metadata.update(llm_metadata(judge_stats))
            checks.append(llm_answered(context, filtered_key, judge_stats))
        return MaterializeResult(metadata=metadata, check_results=checks,
                                 data_version=records_version(sftmix.layout, source.key, "filtered"))

    return [raw, normalized, filtered]
