"""Manifests: a mixture's recipe in YAML, validated (pydantic) before any work starts.

A bad field is reported as one line naming the file and the field path, e.g.
`manifests/x.yaml: sources.3.licence: unknown licence 'cc-by-9.0'`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, ValidationInfo, create_model,
                      field_validator, model_validator)
from pydantic_core import PydanticCustomError

import filters as rule_filters
from generators import KNOWN_GENERATORS
from sftmix.record import derivative_problem, licence_problem
from sftmix.sources import ROW_LICENSED, gives_answers
from sftmix.sources import available as available_converters
from sftmix.sources.common import iso639_1

ANY_LANGUAGE = "*"  # a target over every language of the source (the card gives no split)
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")
_SHA = re.compile(r"^[0-9a-f]{40}$")
# A cell's target: rows to take, or every row the cell has
_TARGET = TypeAdapter(Annotated[int, Field(ge=0)] | Literal["all"], config=ConfigDict(strict=True))


def asset_prefix(source_key: str) -> str:
    """The source's Dagster asset names start with this: they allow [A-Za-z0-9_], and source keys
    also use '-' and '.'."""
    return re.sub(r"[^A-Za-z0-9_]", "_", source_key)


def language_problem(language: str) -> str | None:
    """Why `language` cannot label rows (None when it can): rows are labelled with ISO 639-1 codes
    (639-3 where there is none, as `fil`), the codes targets are written in."""
    code = iso639_1(language)
    if _LANGUAGE.match(language):
        # `eng`, `tl`: a code of a language rows are labelled otherwise (`en`, `fil`) would select none of them
        if code is None:
            return f"language {language!r} is not a language code (ISO 639-1, or 639-3 where there is none)"
        return None if code == language else f"language {language!r} labels no row: rows in it are labelled {code!r}"
    return f"language {language!r} is not an ISO 639-1 code" + (f" (did you mean {code!r}?)" if code else "")


class ManifestError(Exception):
    """A manifest that cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # `targets: {en: yes}` was a target of 1 row


class HubInput(_Strict):
    id: str
    revision: str | None = Field(None, description="pinned commit sha; null until pinned (building then refuses)")
    config: str | None = None
    split: str = "train"
    files: list[str] = Field(min_length=1, description="raw files (glob patterns) inside the repo at that revision")
    gated: bool = False

    @field_validator("revision")
    @classmethod
    def _pinned(cls, value):
        if value is not None and not _SHA.match(value):
            raise ValueError(f"revision must be a 40-hex commit sha, got {value!r}")
        return value


class LocalInput(_Strict):
    files: list[str] = Field(min_length=1, description="paths relative to the manifest file (or absolute)")


class MixtureInput(_Strict):
    manifest: str = Field(description="another manifest, relative to this one; its built train split is the input")


class GeneratorInput(_Strict):
    name: str
    inputs: list[str] = Field(default_factory=list, description="source keys whose records feed the generator")
    params: dict = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, value):
        if value not in KNOWN_GENERATORS:
            raise ValueError(f"unknown generator {value!r}; known: {', '.join(KNOWN_GENERATORS)}")
        return value

    @model_validator(mode="after")
    def _params_it_reads(self):
        """A misspelt parameter was ignored, and the generator ran with its default."""
        from generators import GeneratorNotAvailable, get_generator

        try:
            reads = get_generator(self.name).PARAMS
        except GeneratorNotAvailable:  # declared, not written yet: building it stops, naming it
            return self
        for unknown in sorted(set(self.params) - set(reads)):
            close = difflib.get_close_matches(unknown, reads, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"generator {self.name!r} has no parameter {unknown!r} ({hint}it reads: "
                             f"{', '.join(reads) or 'none'})")
        # Typed and bounded (a string for a number, or 0 constraints, was found only as the
        # generator ran, as a drop of every row), and each `min_x` at most its `max_x`. A `null` is
        # taken only where the generator's type says what it means (`min_int_score: null`: no check);
        # elsewhere it stopped the stage with `int(None)`.
        params = create_model(f"{self.name}_params", __config__=ConfigDict(extra="forbid", strict=True),
                              **{name: (kind, None) for name, kind in reads.items()})
        try:
            params.model_validate(self.params)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ValueError(f"generator {self.name!r} parameter {where}: {first['msg']} (got {first['input']!r})") from None
        for name, low in self.params.items():
            bound = "max_" + name.removeprefix("min_")
            if name.startswith("min_") and self.params.get(bound) is not None and low > self.params[bound]:
                raise ValueError(f"generator {self.name!r}: {name} {low} is above {bound} {self.params[bound]}")
        return self


class Source(_Strict):
    key: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    hub: HubInput | None = None
    local: LocalInput | None = None
    mixture: MixtureInput | None = None
    generator: GeneratorInput | None = None
    internal: bool = Field(False, description="in-house data not on the Hub; `local` must point at it")
    converter: str | None = None
    licence: str | None = Field(None, description="null only when the converter sets a licence per row")
    language: str | None = Field(None, description="language of rows that do not carry their own")
    targets: dict[str, int | Literal["all"]] | Literal["all"]
    filters: dict[str, bool | dict] = Field(default_factory=dict)

    @field_validator("converter")
    @classmethod
    def _converter(cls, value):
        if value is not None and value not in available_converters():
            raise ValueError(f"unknown converter {value!r}; known: {', '.join(available_converters())}")
        return value

    @field_validator("licence", "language")
    @classmethod
    def _label(cls, value, info: ValidationInfo):
        """A label every row of the source gets, checked as `sftmix normalize` checks it."""
        problem = value is not None and {"licence": licence_problem, "language": language_problem}[info.field_name](value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("targets", mode="wrap")
    @classmethod
    def _target_values(cls, value, handler):
        """A wrong target is named with its language and what a target may be: the union's own error
        was a path through its types (`targets.dict[str,union[int,literal['all']]].en.int`), whether
        the value was `'1,000'`, `true` or `'All'`."""
        if not isinstance(value, dict):
            if value != "all":
                raise PydanticCustomError(
                    "targets", "targets is all (every row of the source) or a mapping of languages to targets, "
                    "as {en: 1000, ca: all}; got {got}{hint}", {"got": _shown(value), "hint": _top_level_hint(value)})
            return handler(value)
        for language, count in value.items():
            if not isinstance(language, str):  # YAML 1.1 reads an unquoted `no` (Norwegian) as false
                raise PydanticCustomError(
                    "target_language", "target language {got} is not a language code: write it as text, quoted "
                    "where YAML reads it otherwise ('no', not no)", {"got": _shown(language)})
            try:
                _TARGET.validate_python(count)
            except ValidationError:
                raise PydanticCustomError(
                    "target", "the target for {language} is {got}: a target is a whole number of rows, 0 or more, "
                    "written as plain digits (1000), or all{hint}", {
                        "language": repr(language), "got": _shown(count),
                        "hint": f" (did you mean {meant}?)" if (meant := _meant_target(count)) is not None else ""}) from None
        return handler(value)

    @field_validator("targets")
    @classmethod
    def _targets(cls, value):
        if isinstance(value, dict):
            for language in value:
                if language != ANY_LANGUAGE and not _LANGUAGE.match(language):
                    raise ValueError(f"target language {language!r} is not an ISO 639-1 code or '*'")
                if language != ANY_LANGUAGE and (problem := language_problem(language)):
                    raise ValueError(f"target {problem}")
            if ANY_LANGUAGE in value and len(value) > 1:
                raise ValueError("a '*' target covers every language and cannot be combined with others")
        return value

    @field_validator("filters")
    @classmethod
    def _filters(cls, value):
        rule_filters.merge_config(value, complete=False)  # raises on unknown filter names; `_consistent` merges
        return value

    @model_validator(mode="after")
    def _one_input(self):
        given = [name for name in ("hub", "local", "mixture", "generator") if getattr(self, name) is not None]
        if len(given) == 0:
            raise ValueError("a source needs one of hub, local, mixture, generator")
        if len(given) > 1:  # with hub and local, rows came from the file and provenance named the Hub
            raise ValueError(f"a source takes one input of hub, local, mixture, generator; got {', '.join(given)}")
        if self.internal and self.local is None:  # in-house data is on no Hub: only a local file holds it
            raise ValueError(f"an internal source reads local files; got {', '.join(given)}")
        if (self.hub or self.local) and self.converter is None:
            raise ValueError("a hub or local source needs a converter")
        if self.generator is None and self.mixture is None and self.licence is None and self.converter not in ROW_LICENSED:
            raise ValueError(f"licence is required (only {', '.join(sorted(ROW_LICENSED))} rows carry their own)")
        if self.generator is not None and self.licence is None:
            raise ValueError("a generator source needs the licence of what it generates")
        return self

    @property
    def kind(self) -> str:
        if self.generator is not None:
            return "generator"
        if self.mixture is not None:
            return "mixture"
        return "local" if self.local is not None else "hub"

    @property
    def converter_name(self) -> str:
        """The converter named, or openai_messages where none is: a mixture source's train shards
        are records already, and a generator makes records."""
        return self.converter or "openai_messages"

    @property
    def rule_defaults(self) -> dict:
        """The rule-filter settings the source's rows need whatever the manifest says (the
        `format_defaults` of `Manifest.rule_settings`): its generator's `FILTER_DEFAULTS` (fc_synthesis's
        no-tool-fits apologies), or else its converter's (When2Call's refusals)."""
        if self.generator is not None:
            from generators import filter_defaults as generator_defaults
            return generator_defaults(self.generator.name)
        from sftmix.sources import filter_defaults
        return filter_defaults(self.converter_name)

    @property
    def is_input_only(self) -> bool:
        """`targets: {}`: the source feeds generators and puts no rows of its own in the mixture."""
        return self.targets == {}

    @property
    def gives_no_answers(self) -> bool:
        """Its converter's rows hold no assistant turn (WildChat's prompts, FineWeb-Edu's documents: a
        module's `ANSWERS = False`): a generator's input, not training rows."""
        return not gives_answers(self.converter_name)

    def target_cells(self) -> dict[str, int | str]:
        return {ANY_LANGUAGE: "all"} if self.targets == "all" else dict(self.targets)


def _shown(value) -> str:
    """`value` as a message names it: text told from a number, as YAML's quotes told it."""
    if isinstance(value, str):
        return f"the text {json.dumps(value, ensure_ascii=False)}"
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):  # a mapping keyed by what JSON has no key for (a YAML date): as YAML writes it
        return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=1 << 16).strip()


def _top_level_hint(value) -> str:
    """What a wrong whole `targets:` most likely means: `All` all, a number that many rows over every language."""
    meant = _meant_target(value)
    return "" if meant is None else " (did you mean all?)" if meant == "all" else f" (did you mean {{'*': {meant}}}?)"


def _meant_target(value) -> int | str | None:
    """The target a wrong one most likely means: `'1,000'`, `'1e3'` and `1000.0` mean 1000, `All` all
    (and a whole `targets: 1000`, 1000)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else None
    if isinstance(value, str):
        if value.strip().lower() == "all":
            return "all"
        try:
            value = float(value.replace(",", "").replace("_", ""))
        except ValueError:
            return None
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    return None


class Holdout(_Strict):
    """The validation split's size. Its rows are each cell's first ranks under the manifest's `seed`
    (`sftmix.mixing`): there is no seed of its own."""

    size: int = Field(ge=0)


class Identity(_Strict):
    name: str
    developer: str
    languages: list[str] = Field(default_factory=list)
    licence: str | None = None
    knowledge_cutoff: str | None = None
    description: str = ""


class Executor(_Strict):
    """Where per-source stages run: this machine's cores, or a Ray / Slurm cluster through datatrove."""

    kind: Literal["local", "ray", "slurm"] = "local"
    workers: int | Literal["auto"] = Field("auto", description="tasks per stage; auto: every core once input is large")
    slurm: dict | None = None

    @field_validator("workers")
    @classmethod
    def _positive(cls, value):
        if value != "auto" and value < 1:
            raise ValueError("workers must be at least 1")
        return value

    @model_validator(mode="after")
    def _slurm_options(self):
        """Slurm options are datatrove's `SlurmPipelineExecutor` arguments: checked here, so a typo or a
        missing partition fails at load time instead of when the first stage is submitted."""
        if self.kind != "slurm":
            if self.slurm:
                raise ValueError(f"slurm options given for executor kind {self.kind!r}")
            return self
        if self.workers == "auto":  # auto counts the cores of the machine submitting, not the cluster's
            raise ValueError("slurm needs workers: N, the tasks of each stage's job array")
        from sftmix.executor import slurm_options_problem

        problem = slurm_options_problem(self.slurm or {})
        if problem:
            raise ValueError(problem)
        return self


class NearDedup(_Strict):
    """MinHash near-duplicate removal across every candidate row of the mixture (datatrove's steps)."""

    threshold_bands: int = Field(14, gt=0)
    rows_per_band: int = Field(8, gt=0)
    ngram: int = Field(5, gt=0)


class Manifest(_Strict):
    mixture: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    output: str = "./output"
    seed: int = 0
    shard_rows: int = Field(50_000, gt=0)
    holdout: Holdout
    licence_policy: dict[Literal["allow"], list[str]]
    identity: Identity | None = None
    llm: dict = Field(default_factory=dict, validate_default=True,  # SFTMIX_LLM_* apply without an `llm:` too
                      description="sftmix.llm.LLMSettings fields (endpoint, model, limits, prices, budget)")
    executor: Executor = Field(default_factory=Executor)
    near_dedup: NearDedup | None = Field(None, description="off unless given")
    filters: dict[str, bool | dict] = Field(default_factory=dict)
    sources: list[Source] = Field(min_length=1)

    @field_validator("licence_policy")
    @classmethod
    def _policy(cls, value):
        for licence in value.get("allow", []):
            if problem := licence_problem(licence):
                raise ValueError(problem)
        return value

    @field_validator("filters")
    @classmethod
    def _filters(cls, value):
        rule_filters.merge_config(value, complete=False)
        return value

    @field_validator("llm")
    @classmethod
    def _llm(cls, value):
        from sftmix.llm import LLMSettings, settings_problem

        try:
            LLMSettings.from_config(value)
        except ValidationError as error:  # one line, naming the setting, as the manifest's own errors do
            raise ValueError(settings_problem(error)) from None
        return value

    @model_validator(mode="after")
    def _consistent(self):
        keys = [s.key for s in self.sources]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ValueError(f"duplicate source keys: {duplicates}")
        names = {}
        for key in keys:
            names.setdefault(asset_prefix(key), []).append(key)
        clashes = [(name, same) for name, same in names.items() if len(same) > 1]
        if clashes:
            name, same = clashes[0]
            raise ValueError(f"source keys {same} would name the same Dagster assets ({name}/...): rename one")
        if cycle := _generator_cycle(self.sources):
            raise ValueError(f"generator sources read each other in a circle: {' -> '.join(cycle)}")
        # The holdout is drawn from the cells that give rows (`mixing._shares`): with none, the build
        # ran every stage and wrote an empty validation split, logged only as a deficit.
        if self.holdout.size and all(n == 0 for s in self.sources for n in s.target_cells().values()):
            raise ValueError(f"holdout.size is {self.holdout.size:,}, but no source gives a row to hold out (every "
                             "target is 0, or {}: an input of generators only): set holdout.size: 0, or give a "
                             "source a target above 0 or all")
        allowed = set(self.licence_policy.get("allow", []))
        for source in self.sources:
            try:  # each layer was checked alone; merged, a source's `min_chars` may pass the mixture's `max_chars`
                self.rule_settings(source, source.rule_defaults)
            except ValueError as error:
                raise ValueError(f"source {source.key!r}: its filters (the mixture's, then its own): {error}") from None
            # An input-only source (feeding generators, never a training row) is outside the policy,
            # but what it derives from is checked: its rows become another generator's training rows.
            if not source.is_input_only and source.licence is not None and source.licence not in allowed:
                raise ValueError(f"source {source.key!r} has licence {source.licence!r}, not allowed by licence_policy")
            # Under an assistant-only loss such a row trains nothing; on the whole text, it teaches a bare
            # prompt or document as a chat.
            if not source.is_input_only and source.gives_no_answers:
                raise ValueError(f"source {source.key!r}: converter {source.converter_name!r} gives rows with no "
                                 "assistant turn (generator input), which train nothing: set `targets: {}` to read it "
                                 "for generators only")
            for name in source.generator.inputs if source.generator else ():
                if name not in keys:
                    raise ValueError(f"generator source {source.key!r} reads unknown source {name!r}")
                origin = self.sources[keys.index(name)]
                problem = derivative_problem(origin.licence, source.licence)
                if problem:
                    raise ValueError(f"generator source {source.key!r} reads {name!r} ({origin.licence}): {problem}")
                if on := self._rules_dropping_what_it_reads(source, origin):
                    raise ValueError(
                        f"generator source {source.key!r} reads {name!r}, whose rule {on[0]!r} drops the rows "
                        f"{source.generator.name} exists to rewrite: set `filters: {{{on[0]}: false}}` on {name!r} "
                        "(the generated rows pass that rule themselves)")
        return self

    def _rules_dropping_what_it_reads(self, source: Source, origin: Source) -> list[str]:
        """The rules in the generator's `INPUT_RULES_OFF` that `origin`'s records pass through."""
        from generators import GeneratorNotAvailable, get_generator

        try:
            off = getattr(get_generator(source.generator.name), "INPUT_RULES_OFF", ())
        except GeneratorNotAvailable:
            return []
        if not off:
            return []
        enabled = {rule.name for rule, _ in rule_filters.enabled_filters(
            self.rule_settings(origin, origin.rule_defaults))}
        return [name for name in off if name in enabled]

    # set by load(); not part of the YAML
    _path: Path | None = None
    _hash: str = ""

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def hash(self) -> str:
        return self._hash

    def source(self, key: str) -> Source:
        for source in self.sources:
            if source.key == key:
                return source
        raise KeyError(f"no source {key!r} in manifest {self.mixture}")

    def resolve(self, relative: str) -> Path:
        path = Path(relative)
        return path if path.is_absolute() or self._path is None else (self._path.parent / path)

    def rule_settings(self, source: Source, format_defaults: dict | None = None) -> dict:
        """The source's rule-filter settings as written: the manifest's for every source, then
        `format_defaults` (what its raw format or generator needs, `Source.rule_defaults`: When2Call's
        refusals are its lesson, WildChat's rows are prompts), then the source's own. A setting for
        every source does not undo what one format needs, and what a format only adjusts does not
        turn on a rule the manifest turned off (WildChat's `role_order: {require_assistant: false}`
        switched a manifest-wide `false` back on)."""
        adjusting = {name: value for name, value in (format_defaults or {}).items() if self.filters.get(name) is not False}
        return rule_filters.merge_config(self.filters, adjusting, source.filters)

    def filter_config(self, source: Source, format_defaults: dict | None = None) -> dict:
        """`rule_settings`, with what the rules need beside them: where benchmark files are named
        from, and the identity card."""
        config = self.rule_settings(source, format_defaults)
        decontamination = config.get("decontamination")
        if isinstance(decontamination, dict) and self._path is not None:
            # benchmark files are named relative to the manifest, like its local sources
            config["decontamination"] = {"root": str(self._path.parent), **decontamination}
        if self.identity is not None and config.get("identity", True) is not False:
            identity = config.get("identity") if isinstance(config.get("identity"), dict) else {}
            config["identity"] = {"name": self.identity.name, "developer": self.identity.developer, **identity}
        return config


def _generator_cycle(sources: list[Source]) -> list[str]:
    """Keys of generated sources that read each other in a circle (the first key again at the end),
    or none: no order makes their inputs first."""
    inputs = {source.key: source.generator.inputs for source in sources if source.generator is not None}
    done: set[str] = set()

    def visit(key: str, path: list[str]) -> list[str]:
        if key in path:
            return path[path.index(key):] + [key]
        if key in done or key not in inputs:
            return []
        for read in inputs[key]:
            if cycle := visit(read, path + [key]):
                return cycle
        done.add(key)
        return []

    return next(filter(None, (visit(key, []) for key in inputs)), [])


def _field_path(location: tuple, data: dict) -> str:
    """`sources.3.licence` plus the source key when the path goes through a source."""
    path = ".".join(str(part) for part in location)
    if len(location) >= 2 and location[0] == "sources" and isinstance(location[1], int):
        try:
            path += f" (source {data['sources'][location[1]]['key']!r})"
        except (KeyError, IndexError, TypeError):
            pass
    return path


class _UniqueKeys:
    """YAML keeps the last of duplicated keys silently; a recipe with two `licence:` lines is an error."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicated key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


class _UniqueKeyLoader(_UniqueKeys, yaml.SafeLoader):
    """Pure Python: its errors quote the offending line and mark the column."""


# libyaml's parser reads the instruct manifest in 1.9 ms against 13.5; its errors name the line and
# column but quote nothing, so a manifest it refuses is read again by `_UniqueKeyLoader` for the message.
class _FastUniqueKeyLoader(_UniqueKeys, getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """libyaml's parser (PyYAML's wheels bundle it; the pure one where it is missing)."""


# libyaml composes nested nodes by recursing in C, with no guard: some 25,000 levels overflow an
# 8 MiB stack and kill the process. Every level opens with one of these indicators, so a text with
# fewer of them cannot nest deeper (the bundled manifests have 243 to 565); others go to the pure
# parser, whose recursion Python bounds.
_NESTING_INDICATORS = "[{-:?"
_LIBYAML_MAX_INDICATORS = 4_000


def _parse_yaml(text: str):
    if sum(map(text.count, _NESTING_INDICATORS)) < _LIBYAML_MAX_INDICATORS:
        try:
            return yaml.load(text, Loader=_FastUniqueKeyLoader)  # noqa: S506 - a SafeLoader
        except yaml.YAMLError:
            pass  # read again below, for a message that quotes the line
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader


def load(path: Path | str) -> Manifest:
    path = Path(path)
    if not path.is_file():
        # Dagster's code location and the CLI read a relative path from wherever they were started
        where = "" if path.is_absolute() else f" (from the working directory {Path.cwd()})"
        raise ManifestError(f"{path}: manifest not found{where}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ManifestError(f"{path}: a manifest is YAML text; this file is not UTF-8 ({error.reason} at byte "
                            f"{error.start})") from None
    try:
        data = _parse_yaml(text)
    except yaml.YAMLError as error:
        raise ManifestError(f"{path}: not valid YAML: {error}".replace("\n", " ")) from None
    except RecursionError:
        raise ManifestError(f"{path}: YAML nested too deeply to read") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: a manifest is a YAML mapping")
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
        message = first["msg"].removeprefix("Value error, ")
        raise ManifestError(f"{path}: {_field_path(first['loc'], data) or '<root>'}: {message}{more}") from None
    manifest._path = path.resolve()
    for source in manifest.sources:
        if source.mixture is None:
            continue
        # it would wait for ever for its own mixture to be built first
        through = _path_back(manifest.resolve(source.mixture.manifest).resolve(), manifest._path, set())
        if through == []:
            raise ManifestError(f"{path}: source {source.key!r} samples the mixture of this manifest itself")
        if through:
            raise ManifestError(f"{path}: source {source.key!r} samples the mixture of this manifest itself, through "
                                + " -> ".join(str(p) for p in through))
    manifest._hash = settings_hash(manifest)
    return manifest


def _path_back(start: Path, home: Path, seen: set[Path]) -> list[Path] | None:
    """The manifests through which `start` samples `home`'s mixture ([] when it is `home`), or None.
    Read as plain YAML: a manifest broken otherwise is named when it is loaded itself."""
    if start == home:
        return []
    if start in seen:
        return None
    seen.add(start)
    try:
        sources = _parse_yaml(start.read_text(encoding="utf-8")).get("sources") or []
    except (OSError, UnicodeDecodeError, RecursionError, yaml.YAMLError, AttributeError):
        return None
    for source in sources if isinstance(sources, list) else []:
        mixture = source.get("mixture") if isinstance(source, dict) else None
        if isinstance(mixture, dict) and isinstance(mixture.get("manifest"), str):
            other = Path(mixture["manifest"])
            found = _path_back((other if other.is_absolute() else start.parent / other).resolve(), home, seen)
            if found is not None:
                return [start, *found]
    return None


# Where a build runs and where its files go do not decide a single row: manifests that differ only
# in these (or in comments, layout or defaults written out) stamp the same hash, so their shards are
# byte-identical.
RUN_SETTINGS = {"executor", "output"}
# Of the `llm:` settings, those that change answers; the others (concurrency, rate limits, timeouts,
# retries, the budget and prices, the cache's place) say how a build asks, as the Dagster `llm`
# resource does, and stages made under other values of them are current too.
LLM_ANSWER_SETTINGS = ("base_url", "model", "temperature", "top_p", "max_tokens", "reply_starts_in_thinking")


def settings_hash(manifest: Manifest) -> str:
    """sha256 prefix of the validated settings, run settings and the `llm:` settings that change no
    answer left out, as canonical JSON."""
    settings = manifest.model_dump(mode="json", exclude=RUN_SETTINGS)
    settings["llm"] = {name: value for name, value in settings["llm"].items() if name in LLM_ANSWER_SETTINGS}
    canonical = json.dumps(settings, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
