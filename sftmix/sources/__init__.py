"""Converter registry: one module per raw format, found by file name."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from sftmix.sources.base import Converted, Drop, RawRow, per_row

__all__ = ["DEFAULT_LANGUAGES", "DEFAULT_LICENCES", "ROW_LICENSED", "Converted", "Drop", "RawRow", "available", "carries_input_licences", "filter_defaults", "gives_answers", "get_converter", "per_row", "sets_row_language", "shardable"]

_NOT_CONVERTERS = {"base", "common"}

# Each Hub source's licence as the reference tables give it; used when no manifest says otherwise.
# Generic converters (sharegpt, alpaca, openai_messages) have none, nor has tower_blocks, whose
# licence is per row (per sub-dataset).
DEFAULT_LICENCES = {
    "when2call": "cc-by-4.0", "xlam": "cc-by-4.0", "glaive": "apache-2.0", "toolace": "apache-2.0",
    "toucan": "apache-2.0", "dolci_tool_use": "cc-by-sa-4.0", "aya": "apache-2.0", "dolly": "cc-by-sa-3.0",
    "no_robots": "cc-by-nc-4.0", "openr1_math": "apache-2.0", "oasst2": "apache-2.0", "wildchat": "odc-by",
    "fineweb_edu": "odc-by", "coqcat": "cc-by-nc-nd-4.0", "flores": "cc-by-sa-4.0", "mentor": "cc-by-4.0",
    "rag_multilingual": "cc-by-sa-4.0",
}
# Language of the monolingual sources, as the reference mixtures declare them; rows of other
# converters carry their own language, or get `--language`, or are detected.
DEFAULT_LANGUAGES = {
    "when2call": "en", "xlam": "en", "glaive": "en", "toucan": "en", "dolci_tool_use": "en", "no_robots": "en",
    "openr1_math": "en", "coqcat": "ca",
}
# Converters whose rows carry their own licence (TowerBlocks sub-datasets; re-read canonical shards).
ROW_LICENSED = frozenset({"tower_blocks", "openai_messages"})


@cache
def available() -> tuple[str, ...]:
    return tuple(
        sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in _NOT_CONVERTERS and not m.name.startswith("_"))
    )


def _module_setting(name: str, setting: str, default):
    """A converter module's `setting` (sftmix.sources.base lists them), or `default` where it sets none."""
    get_converter(name)  # validates the name
    return getattr(importlib.import_module(f"sftmix.sources.{name}"), setting, default)


def filter_defaults(name: str) -> dict:
    """Rule-filter settings a raw format needs whatever the manifest says (a module's `FILTER_DEFAULTS`),
    e.g. prompt-only WildChat rows have no assistant turn to require. A source's own settings in a
    manifest override them (`Manifest.filter_config`)."""
    return dict(_module_setting(name, "FILTER_DEFAULTS", {}))


def shardable(name: str) -> bool:
    """Whether rows can be split across workers: not for converters that assemble conversations
    from several raw rows (`convert_stream`, e.g. oasst2's message trees)."""
    return _module_setting(name, "convert_stream", None) is None


def sets_row_language(name: str) -> bool | str:
    """Whether the converter gives rows a language of their own (a module's `ROW_LANGUAGE`): True, or
    "where_given" where the raw rows may lack it; every row of another (and a row lacking it) is
    labelled with its source's `language:`, or detected where that names none."""
    return _module_setting(name, "ROW_LANGUAGE", False)


def gives_answers(name: str) -> bool:
    """Whether the converter's rows hold assistant turns: not those of a module with `ANSWERS = False`
    (prompts or documents alone, a generator's input), which train nothing."""
    return _module_setting(name, "ANSWERS", True)


def carries_input_licences(name: str) -> bool:
    """Whether the converter's rows may name input licences in their origin (a module's
    `INPUT_LICENCES`): those of sftmix rows it re-reads, generated from data under other licences."""
    return _module_setting(name, "INPUT_LICENCES", False)


def get_converter(name: str):
    """The converter's stream function: Iterable[RawRow] -> Iterator[(key, Converted | Drop)]."""
    if name not in available():
        raise KeyError(f"unknown converter {name!r}; known: {', '.join(available())}")
    module = importlib.import_module(f"sftmix.sources.{name}")
    if hasattr(module, "convert_stream"):
        return module.convert_stream
    return per_row(module.convert)
