"""Rule filters, one module each, applied in `DEFAULT_ORDER` and configured per source.

A manifest's `filters` mapping (mixture-wide, then per source) maps a filter name to `false`
(off), `true` (defaults) or a dict of keyword arguments for its constructor.
"""

from __future__ import annotations

import inspect
import typing
from functools import cache

from datatrove.pipeline.filters.base_filter import BaseFilter
from pydantic import ConfigDict, TypeAdapter, ValidationError

from filters.base import RecordFilter
from filters.boilerplate import BoilerplateFilter
from filters.decontamination import DecontaminationFilter
from filters.dedup import ExactDedupFilter
from filters.empty_turns import EmptyTurnsFilter
from filters.identity import IdentityFilter
from filters.language import LanguageFilter
from filters.length import LengthFilter
from filters.llm_judge import LLMJudgeFilter
from filters.repetition import RepetitionFilter
from filters.reserved_markup import ReservedMarkupFilter
from filters.role_order import RoleOrderFilter
from filters.tool_calls import ToolCallsFilter

# Cheap structural checks first, so expensive ones (language detection) see fewer rows.
DEFAULT_ORDER: tuple[type[RecordFilter], ...] = (
    EmptyTurnsFilter, ReservedMarkupFilter, RoleOrderFilter, ToolCallsFilter, LengthFilter, BoilerplateFilter,
    IdentityFilter, RepetitionFilter, LanguageFilter, ExactDedupFilter,
)
# Rules that cost money or need an endpoint: run only where a manifest turns them on, after the rest.
# Decontamination (cheap) goes before the judge (paid), so contaminated rows are never graded.
OPT_IN: tuple[type[RecordFilter], ...] = (DecontaminationFilter, LLMJudgeFilter)
FILTERS: dict[str, type[RecordFilter]] = {f.name: f for f in DEFAULT_ORDER + OPT_IN}
# datatrove's own filter arguments, which a rule passes on with the Gopher thresholds it does not
# name: the pipeline sets them (`build_filters`), a manifest may not.
_PIPELINE_ARGUMENTS = frozenset(inspect.signature(BaseFilter.__init__).parameters) - {"self", "args", "kwargs"}


def merge_config(*layers: dict | None, complete: bool = True) -> dict[str, bool | dict]:
    """Later layers override earlier ones, key by key within a filter's keyword arguments; `true`
    keeps the arguments an earlier layer gave, `false` turns the rule off.

    Raises ValueError for an unknown filter or argument, so a manifest typo fails at load time, and
    when the layers are `complete` (all of a source's), for arguments that cannot go together
    (`RecordFilter.conflicts`: a source's `min_chars` above the mixture's `max_chars`) or a
    `RecordFilter.required` one missing (`decontamination: true` without `benchmarks`). One layer of
    several is not complete: another may give what it lacks.
    """
    merged: dict[str, bool | dict] = {}
    for layer in layers:
        for name, value in (layer or {}).items():
            if name not in FILTERS:
                raise ValueError(f"unknown filter {name!r}; known: {', '.join(FILTERS)}")
            if isinstance(value, dict):
                if pipeline_arguments := sorted(set(value) & _PIPELINE_ARGUMENTS):
                    raise ValueError(f"filter {name!r}: {', '.join(map(repr, pipeline_arguments))} is set by the "
                                     "pipeline, not a rule setting")
                value = _typed_arguments(name, value)
            elif not isinstance(value, bool):
                raise ValueError(f"filter {name!r}: expected true, false or a mapping of arguments")
            if isinstance(merged.get(name), dict) and value is not False:
                # `true` turns the rule on with the earlier layers' arguments: it reset them (a source's
                # `decontamination: true` lost the mixture's benchmarks)
                merged[name] = {**merged[name], **value} if isinstance(value, dict) else merged[name]
            else:
                merged[name] = value
    for name, value in merged.items():
        arguments = value if isinstance(value, dict) else {}
        if value is False or not complete and any(argument not in arguments for argument in FILTERS[name].required):
            continue  # a layer leaving a required argument to another is checked with the others, merged
        if isinstance(value, dict) or FILTERS[name].required:
            try:  # constructing a rule is cheap and checks every argument
                FILTERS[name](**arguments)
            except TypeError as error:
                raise ValueError(f"filter {name!r}: {error}") from None
            if complete and (problem := FILTERS[name].conflicts(arguments)):
                raise ValueError(f"filter {name!r}: {problem}")
    return merged


@cache
def _argument_types(rule: type[RecordFilter]) -> dict[str, TypeAdapter]:
    """The rule's keyword arguments as its constructor annotates them (arbitrary classes, as the
    judge's client, are checked with isinstance)."""
    hints = typing.get_type_hints(rule.__init__, include_extras=True)
    hints.pop("return", None)
    return {name: TypeAdapter(hint, config=ConfigDict(arbitrary_types_allowed=True)) for name, hint in hints.items()}


def _typed_arguments(name: str, arguments: dict) -> dict:
    """`arguments` checked, and converted, to the rule's annotated types: a manifest's `min_chars: x`
    is an error when it loads, not a TypeError in the middle of a build. Arguments the rule does not
    annotate (the Gopher thresholds it passes on to datatrove) are handed on as given."""
    types = _argument_types(FILTERS[name])
    typed = dict(arguments)
    for argument, value in arguments.items():
        if argument in types:
            try:
                # a bool is taken only where one is meant: `threshold: true` is not threshold 1
                typed[argument] = types[argument].validate_python(value, strict=isinstance(value, bool))
            except ValidationError as error:
                problem = error.errors()[0]["msg"]
                raise ValueError(f"filter {name!r}: argument {argument!r}: {problem} (got {value!r})") from None
    return typed


def enabled_filters(config: dict[str, bool | dict] | None = None) -> list[tuple[type[RecordFilter], dict]]:
    """The enabled filters in their fixed order, each with its keyword arguments."""
    config = merge_config(config)
    enabled = []
    for cls in DEFAULT_ORDER + OPT_IN:
        setting = config.get(cls.name, cls not in OPT_IN)
        if setting is not False:
            enabled.append((cls, setting if isinstance(setting, dict) else {}))
    return enabled


def build_filters(config: dict[str, bool | dict] | None = None, exclusion_writer=None) -> list[RecordFilter]:
    """Instantiate the enabled filters in their fixed order."""
    steps = []
    for cls, kwargs in enabled_filters(config):
        step = cls(**kwargs)
        step.exclusion_writer = exclusion_writer
        steps.append(step)
    return steps
