"""Mixture-level assets: train + validation shards (one selection, two assets) and the dataset card,
with the checks a user relies on before training."""


import json

import pyarrow.dataset as ds
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    MaterializeResult,
    MetadataValue,
    asset,
    multi_asset,
)

from assets.sources import asset_prefix
from pipelines.resources import SftmixResource
from sftmix import build
from sftmix.manifest import Manifest
from sftmix.mixing import HOLDOUT_DEFICIT
from sftmix.reader import shard_files
from sftmix.record import SCHEMA

MIXTURE = AssetKey("mixture")
HOLDOUT = AssetKey("holdout")
GROUP = "mixture"  # not Dagster's "default": the UI shows the splits and the card together, apart from the sources


def _split_ids(path, split):
    return ds.dataset([str(f) for f in shard_files(path, split)], format="parquet").to_table(columns=["id", "licence"])


def mixture_assets(manifest: Manifest):
    # every source's: the mixing reads those feeding generators only too (their intake, for the card),
    # and no generator orders them before it when none reads them
    deps = [AssetKey([asset_prefix(s.key), "filtered"]) for s in manifest.sources]

    @multi_asset(
        specs=[
            AssetSpec(MIXTURE, deps=deps, code_version=manifest.hash, group_name=GROUP,
                      description="train split: sampled per source x language to the manifest targets"),
            AssetSpec(HOLDOUT, deps=deps, code_version=manifest.hash, group_name=GROUP,
                      description="validation split: the stratified holdout, disjoint from train"),
        ],
        check_specs=[
            AssetCheckSpec("licence_policy_respected", asset=MIXTURE,
                           description="every row's licence is one the manifest's licence_policy allows"),
            AssetCheckSpec("schema_valid", asset=MIXTURE, description="every shard has the record schema"),
            AssetCheckSpec("targets_met", asset=MIXTURE,
                           description="every source x language cell reached its target (not blocking)"),
            AssetCheckSpec("holdout_exact_and_disjoint", asset=HOLDOUT,
                           description="the holdout has exactly holdout.size rows, none of them in train"),
        ],
    )
    def mixture_and_holdout(context: AssetExecutionContext, sftmix: SftmixResource):
        m = sftmix.manifest_as_defined(manifest)
        result = build.mix(m, sftmix.layout)
        for deficit in result.deficits:  # also logged by sftmix; here so the Dagster run log shows it
            context.log.warning(f"deficit: {json.dumps(deficit)}")
        unused_work = build.unused_work(m, sftmix.layout)
        for unused in unused_work:
            context.log.warning(unused.message(m))
        for key, split in ((MIXTURE, "train"), (HOLDOUT, "validation")):
            yield MaterializeResult(asset_key=key, metadata={
                "rows": result.split_rows[split],
                "by_source": MetadataValue.json(result.by_source[split]),
                "by_language": MetadataValue.json(result.by_language[split]),
                "by_licence": MetadataValue.json(result.by_licence[split]),
                "deficits": MetadataValue.json(result.deficits),
                "not_selected": MetadataValue.json(result.excluded),
                "files": MetadataValue.json(result.files[split]),
                "path": MetadataValue.path(str(sftmix.layout.mixture_dir / split)),
                "unused_work": MetadataValue.json({u.source: {"stages": u.stages, "bytes": u.bytes,
                                                              "paths": list(map(str, u.paths))} for u in unused_work}),
            })
        mixture_dir = sftmix.layout.mixture_dir
        train, validation = _split_ids(mixture_dir, "train"), _split_ids(mixture_dir, "validation")
        allowed = set(m.licence_policy.get("allow", []))
        found = set(train["licence"].to_pylist()) | set(validation["licence"].to_pylist())
        yield AssetCheckResult(check_name="licence_policy_respected", asset_key=MIXTURE, passed=found <= allowed,
                               metadata={"licences": sorted(found), "not_allowed": sorted(found - allowed)})
        schemas_ok = all(ds.dataset(str(f), format="parquet").schema.remove_metadata().equals(SCHEMA.remove_metadata())
                         for split in ("train", "validation") for f in shard_files(mixture_dir, split))
        yield AssetCheckResult(check_name="schema_valid", asset_key=MIXTURE, passed=schemas_ok)
        # Not blocking: a short source still gives all it has; the card lists the deficits too.
        short = [d for d in result.deficits if d["source"] != HOLDOUT_DEFICIT]  # the holdout has its own check
        yield AssetCheckResult(check_name="targets_met", asset_key=MIXTURE, passed=not short,
                               severity=AssetCheckSeverity.WARN,
                               metadata={"deficits": MetadataValue.json(short), "rows_short": sum(d["deficit"] for d in short)})
        overlap = set(train["id"].to_pylist()) & set(validation["id"].to_pylist())
        yield AssetCheckResult(
            check_name="holdout_exact_and_disjoint", asset_key=HOLDOUT,
            passed=validation.num_rows == m.holdout.size and not overlap,
            metadata={"rows": validation.num_rows, "expected": m.holdout.size, "ids_also_in_train": len(overlap)},
        )

    @asset(deps=[MIXTURE, HOLDOUT], code_version=manifest.hash, group_name=GROUP,
           description="Hugging Face dataset card (README.md) beside the shards")
    def dataset_card(context: AssetExecutionContext, sftmix: SftmixResource) -> MaterializeResult:
        m = sftmix.manifest_as_defined(manifest)
        path = build.write_card(m, sftmix.layout, build.mixed_result(sftmix.layout))
        return MaterializeResult(metadata={"path": MetadataValue.path(str(path)),
                                           "card": MetadataValue.md(path.read_text()[:20000])})

    return [mixture_and_holdout, dataset_card]
