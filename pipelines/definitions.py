"""Dagster entry point: `dagster asset materialize -m pipelines.definitions --select '*'`.

The asset graph is the manifest's: per source raw -> normalized -> filtered (or one generated
asset for synthetic sources), then mixture + holdout and the dataset card. Which manifest and
where outputs go are resource configuration (`SFTMIX_MANIFEST`, `SFTMIX_OUTPUT`, `SFTMIX_HF_CACHE`);
without `SFTMIX_OUTPUT`, the manifest's `output:` (relative to the working directory).

A run launched from the web UI runs in a run worker that loads these definitions again, from the
manifest as it is then: after an edit the UI has not reloaded, the run stops there with one line
asking for the reload, instead of building (and recording under the new code versions) the edited
manifest's graph, or failing on the steps of a source taken out of it.
"""

from __future__ import annotations

import os

from dagster import Definitions, Field, define_asset_job, definitions, multiprocess_executor
from dagster._core.definitions.definitions_load_context import DefinitionsLoadContext, DefinitionsLoadType

from assets.mixture import mixture_assets
from assets.sources import source_assets
from pipelines.resources import LLMResource, SftmixResource, manifest_path_from_env
from sftmix.build import BuildError
from sftmix.manifest import load


# Each step in its own process, as Dagster's default executor runs them, but forked from a server that
# has imported the pipeline and Dagster's storage, instead of a new interpreter importing Dagster, sftmix,
# datatrove and polars for every step: the sample build's 62 steps took 94-98 s, now 23-25 s. Listed
# explicitly: with a job loaded by `-m`, Dagster's forkserver preloads only Dagster's executor. The
# asset modules are named too, for a job loaded by `-f` (this file under another module name).
# The rest of the executor's config (max_concurrent, tag_concurrency_limits, retries) stays run config.
FORKSERVER = {"forkserver": {"preload_modules": [
    "dagster._core.storage.base_storage", "assets.mixture", "assets.sources", __name__]}}
STEP_EXECUTOR = multiprocess_executor.configured(
    lambda config: {**config, "start_method": FORKSERVER}, name="multiprocess_forkserver",
    config_schema={name: Field(field.config_type, is_required=False, description=field.description)
                   for name, field in multiprocess_executor.config_schema.config_type.fields.items()
                   if name != "start_method"})

# the hash of the manifest the definitions were built from: in their metadata, and handed to a run's worker
MANIFEST_HASH = "sftmix/manifest_hash"


def build_definitions(manifest_path: str, output: str = "", hub_cache: str = "") -> Definitions:
    """`output` "" is the manifest's `output:`."""
    manifest = load(manifest_path)  # validated before any asset exists: a bad field fails here, named
    assets = [a for source in manifest.sources for a in source_assets(manifest, source)]
    assets += mixture_assets(manifest)
    return Definitions(
        assets=assets,
        jobs=[define_asset_job("build_mixture", selection="*", description=f"build {manifest.mixture}")],
        resources={"sftmix": SftmixResource(manifest_path=manifest_path, output=output or manifest.output,
                                            hub_cache=hub_cache),
                   "llm": LLMResource()},
        executor=STEP_EXECUTOR,
        metadata={MANIFEST_HASH: manifest.hash},
    )


defs = build_definitions(
    manifest_path_from_env(), os.environ.get("SFTMIX_OUTPUT", ""), os.environ.get("SFTMIX_HF_CACHE", "")
)


@definitions
def loaded_definitions() -> Definitions:
    """`defs`, as Dagster loads them from this module. Loaded again for a run (in the run worker the web
    UI launches), they are refused unless built from the manifest the run was launched from, whose
    hash Dagster hands over from the loading that launched it."""
    context = DefinitionsLoadContext.get()
    built = defs.metadata[MANIFEST_HASH].text
    if context.load_type == DefinitionsLoadType.INITIALIZATION:
        context.add_to_pending_reconstruction_metadata(MANIFEST_HASH, built)
    elif (launched := context.reconstruction_metadata.get(MANIFEST_HASH, built)) != built:
        raise BuildError(f"{defs.resources['sftmix'].manifest_path} changed (hash {launched} -> {built}) since the "
                         "definitions this run was launched from were loaded: reload them (the web UI's Reload button, "
                         "or a restart) and materialize again")
    return defs
