"""Configuration injected into assets: which manifest, where outputs and the Hub cache go."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Optional

from dagster import ConfigurableResource
from pydantic import Field

from sftmix.build import BuildError, Layout
from sftmix.manifest import Manifest, load

DEFAULT_MANIFEST = "manifests/sample.yaml"


def manifest_path_from_env() -> str:
    return os.environ.get("SFTMIX_MANIFEST", DEFAULT_MANIFEST)


class SftmixResource(ConfigurableResource):
    """The manifest being built and where its files go (`SFTMIX_MANIFEST`, `SFTMIX_OUTPUT`, `SFTMIX_HF_CACHE`)."""

    manifest_path: str
    output: str
    hub_cache: str = ""

    @cached_property
    def manifest(self) -> Manifest:
        return load(self.manifest_path)

    def manifest_as_defined(self, defined: Manifest) -> Manifest:
        """The manifest at `manifest_path` now, refused unless its settings are those the asset
        graph was defined from: which sources exist, their checks and their code versions are that
        manifest's, so another one (an edit before the definitions were reloaded, or another
        `manifest_path` in run config) stopped a step on a KeyError, or was recorded under the code
        versions of a manifest it is not."""
        manifest = self.manifest
        if manifest.hash != defined.hash:
            raise BuildError(f"{manifest.path} (hash {manifest.hash}) is not the manifest the asset definitions were "
                             f"loaded from ({defined.path}, hash {defined.hash}): reload the definitions (the web UI's "
                             "Reload button, or a restart; SFTMIX_MANIFEST names the manifest) and materialize again")
        return manifest

    @property
    def layout(self) -> Layout:
        return Layout(Path(self.output).resolve(), self.manifest.mixture)

    @property
    def hub_cache_dir(self) -> Path:
        return Path(self.hub_cache) if self.hub_cache else Path(self.output).resolve() / ".hf-cache"


class LLMResource(ConfigurableResource):
    """How fast and at what cost generators and the LLM judge ask the endpoint, over the manifest's
    `llm:` settings (empty fields keep them; the budget is each source step's own). Which endpoint
    and model answer is the manifest's, or `SFTMIX_LLM_BASE_URL` / `SFTMIX_LLM_MODEL`: it decides
    the rows, so it is part of a source's settings (and of its assets' code versions, known before
    any run config is). The API key is not configuration: it is read from `SFTMIX_LLM_API_KEY` /
    `DEEPSEEK_API_KEY` when a request is made, so it never appears in run config or metadata.
    """

    # None keeps the manifest's; a budget of 0 spends nothing, as in the manifest (it was taken for unset)
    concurrency: Optional[int] = Field(default=None, ge=1, description="requests in flight at once")
    budget_usd: Optional[float] = Field(default=None, ge=0, description="the most each source step may spend")

    def overrides(self) -> dict:
        return {k: v for k, v in {"concurrency": self.concurrency, "budget_usd": self.budget_usd}.items()
                if v is not None}
