"""Manifests: the two reference mixtures load and plan to the model cards' numbers; bad ones fail in one line.

Expected numbers are hard-coded from /work/shared/reference/mixtures.md (the ALIA-40b-instruct and
ALIA-40b-fc model cards), never parsed, so a manifest edit that drifts from the cards fails here.
"""

from __future__ import annotations

import ast
import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from datatrove.data import Document

import filters as rule_filters
from filters.base import learned_text
from sftmix import plan
from generators import get_generator, implemented
from sftmix.build import filter_config
from sftmix.manifest import ManifestError, load
from sftmix.record import make_record, message
from sftmix.normalize import SourceInfo, normalize
from sftmix.sources import available, filter_defaults, sets_row_language

ROOT = Path(__file__).resolve().parents[1]
INSTRUCT = ROOT / "manifests" / "alia-40b-instruct.yaml"
FC = ROOT / "manifests" / "alia-40b-fc.yaml"

# --- mixtures.md, mixture 2 (ALIA-40b-instruct): source -> {language: instances} ----------------
INSTRUCT_CELLS = {
    "aya-dataset": {"en": 2977, "es": 2568, "eu": 715, "pt": 7006},
    "coqcat-train": {"ca": 2429},
    "databricks-dolly-15k": {"en": 12044},
    "dolly-ca": {"ca": 2449},
    "eif-augmentation": {"ca": 6540, "en": 27860, "es": 7646, "eu": 2615, "gl": 2691},
    "fineweb-edu_qa": {"ca": 19389, "en": 17837, "es": 19992, "eu": 17787, "gl": 18605},
    "flores-dev": {"ca": 766, "en": 918, "es": 1745, "eu": 359, "gl": 419},
    "long-context-qa": {"ca": 33, "en": 96, "es": 33, "eu": 34, "gl": 34, "pt": 33},
    "mentor-ca": {"ca": 5047},
    "mentor-es": {"es": 5281},
    "multiturn-augmentation": {"ca": 5982, "en": 23901, "es": 2132, "eu": 2470},
    "no-robots": {"en": 7813},
    "oasst2_self-identity-rephrase": {"ca": 2, "en": 700, "es": 323, "eu": 6},
    "openr1-math": {"en": 69052},
    "openr1-math-translated": {"ca": 35142, "es": 68136, "eu": 33899, "gl": 33810, "pt": 34074},
    "rag-multilingual": {"ca": 13880, "en": 12922, "es": 9611},
    "self-identity": {"ca": 1259, "en": 1286, "es": 1314, "eu": 1318, "gl": 1272},
    "system-prompt-eif-translation": {"ca": 50, "en": 50, "es": 50, "eu": 50, "gl": 50},
    "tower-blocks": {"en": 1923, "es": 965, "pt": 5914},
    "wildchat-curated-deepseekv3": {"en": 141717, "es": 15192},
}
INSTRUCT_TOTALS = {
    "aya-dataset": 13266, "coqcat-train": 2429, "databricks-dolly-15k": 12044, "dolly-ca": 2449,
    "eif-augmentation": 47352, "fineweb-edu_qa": 93610, "flores-dev": 4207, "long-context-qa": 263,
    "mentor-ca": 5047, "mentor-es": 5281, "multiturn-augmentation": 34485, "no-robots": 7813,
    "oasst2_self-identity-rephrase": 1031, "openr1-math": 69052, "openr1-math-translated": 205061,
    "rag-multilingual": 36413, "self-identity": 6449, "system-prompt-eif-translation": 250, "tower-blocks": 8802,
    "wildchat-curated-deepseekv3": 156909,
}
INSTRUCT_BY_LANGUAGE = {"ca": 92968, "en": 321096, "es": 134988, "eu": 59253, "gl": 56881, "pt": 47027}
INSTRUCT_LICENCES = {  # None: licence per row (TowerBlocks sub-datasets)
    "aya-dataset": "apache-2.0", "coqcat-train": "cc-by-nc-nd-4.0", "databricks-dolly-15k": "cc-by-sa-3.0",
    "dolly-ca": "cc-by-sa-3.0", "flores-dev": "cc-by-sa-4.0", "mentor-es": "cc-by-4.0", "mentor-ca": "cc-by-4.0",
    "no-robots": "cc-by-nc-4.0", "rag-multilingual": "cc-by-sa-4.0", "tower-blocks": None,
    "oasst2_self-identity-rephrase": "apache-2.0", "self-identity": "apache-2.0", "openr1-math": "apache-2.0",
    "openr1-math-translated": "apache-2.0", "fineweb-edu_qa": "apache-2.0", "wildchat-curated-deepseekv3": "apache-2.0",
    "eif-augmentation": "apache-2.0", "multiturn-augmentation": "apache-2.0", "long-context-qa": "apache-2.0",
    "system-prompt-eif-translation": "cc-by-4.0",
}

# --- mixtures.md, mixture 1 (ALIA-40b-fc), by manifest key (the table names Hub ids) -------------
FC_TOTALS = {
    "When2Call": 14800,  # nvidia/When2Call
    "xlam-function-calling-60k": 59800,  # Salesforce/xlam-function-calling-60k
    "glaive-function-calling-v2": 102891,  # glaiveai/glaive-function-calling-v2
    "ToolACE": 11068,  # Team-ACE/ToolACE
    "Toucan-1.5M": 119079,  # Agent-Ark/Toucan-1.5M
    "Dolci-Instruct-SFT-Tool-Use-SA": 1369,  # allenai/Dolci-Instruct-SFT-Tool-Use (SA subset)
    "in-house-function-calling": 19227,  # in-house, DeepSeek-V3-0324
    "instruction-tuning-sample": 399800,  # a sample of mixture 2
}
FC_LICENCES = {
    "When2Call": "cc-by-4.0", "xlam-function-calling-60k": "cc-by-4.0", "glaive-function-calling-v2": "apache-2.0",
    "ToolACE": "apache-2.0", "Toucan-1.5M": "apache-2.0", "Dolci-Instruct-SFT-Tool-Use-SA": "cc-by-sa-4.0",
    "in-house-function-calling": "apache-2.0",
    "instruction-tuning-sample": None,  # rows keep the licences they have in mixture 2
}
HOLDOUT = 2000


@pytest.fixture(scope="module")
def instruct():
    return load(INSTRUCT)


@pytest.fixture(scope="module")
def fc():
    return load(FC)


# --- the reference mixtures -------------------------------------------------------------------


def test_reference_tables_add_up():
    """Guard against a typo in the hard-coded expectations themselves."""
    assert {k: sum(v.values()) for k, v in INSTRUCT_CELLS.items()} == INSTRUCT_TOTALS
    assert sum(INSTRUCT_TOTALS.values()) == 712_213 == sum(INSTRUCT_BY_LANGUAGE.values())
    for language, total in INSTRUCT_BY_LANGUAGE.items():
        assert sum(cells.get(language, 0) for cells in INSTRUCT_CELLS.values()) == total
    assert sum(FC_TOTALS.values()) == 728_034


def test_instruct_summary(instruct):
    summary = plan.summary(instruct)
    assert summary["mixture"] == "alia-40b-instruct"
    assert summary["train"] == 712_213
    assert summary["holdout"] == HOLDOUT
    assert summary["by_language"] == INSTRUCT_BY_LANGUAGE
    assert summary["by_source"] == INSTRUCT_TOTALS
    assert sum(summary["by_licence"].values()) == 712_213


def test_instruct_cells_match_the_card_table(instruct):
    got: dict[str, dict[str, int]] = {}
    for cell in plan.cells(instruct):
        assert cell.target is not None, f"{cell.source}: the card gives a number for every cell"
        got.setdefault(cell.source, {})[cell.language] = cell.target
    assert got == INSTRUCT_CELLS


def test_instruct_licences(instruct):
    by_key = {s.key: s.licence for s in instruct.sources if not s.is_input_only}
    assert by_key == INSTRUCT_LICENCES


def test_the_fc_sample_is_not_held_to_rules_the_instruct_manifest_waived(instruct, fc):
    """The sampled rows passed the instruct manifest's rules; the fc build ran its own rules on them
    again, without that manifest's exemptions: self-identity rows stating their knowledge cutoff and
    eif-augmentation rows (IFEval's wording) were dropped from the fc mixture."""
    sample = filter_config(fc, fc.source("instruction-tuning-sample"))
    cutoff = make_record(messages=[message("user", "¿Cuál es tu fecha de corte de conocimiento?"),
                                   message("assistant", "Soy ALIA. Mi fecha de corte de conocimiento es 2024.")],
                         tools=[], source="self-identity", licence="apache-2.0", language="es", origin={})
    rules = {name: value for name, value in sample.items() if name != "decontamination"}  # no benchmark files here
    doc = Document(text=learned_text(cutoff), id=cutoff["id"], metadata={"record": cutoff})
    assert [step.name for step in rule_filters.build_filters(rules) if step.filter(doc) is not True] == []
    assert filter_config(instruct, instruct.source("eif-augmentation"))["decontamination"] is False
    checked_for_instruct = set(instruct.filters["decontamination"]["benchmarks"])
    assert set(sample["decontamination"]["benchmarks"]) == set(fc.filters["decontamination"]["benchmarks"]) - checked_for_instruct


@pytest.mark.parametrize("key", ["eif-augmentation", "multiturn-augmentation"])
def test_augmentations_can_reach_their_targets_from_the_mixture_s_own_rows(instruct, key):
    """Each of their cells that the generator can write needs at least as many input rows in that
    language: the inputs' own targets count them (a generator makes one row of each input). With
    aya, the Mentors and oasst2 alone, English had 2,977 planned rows (and oasst2's) for 27,860, and
    Catalan 5,047 for 6,540."""
    source = instruct.source(key)
    declared = getattr(get_generator(source.generator.name), "languages", None)  # none: every language
    writable = declared(source.generator.params, source.target_cells()) if declared else source.targets
    inputs = [instruct.source(name) for name in source.generator.inputs]
    for language, target in source.targets.items():
        if language in writable:
            assert sum(s.targets.get(language, 0) for s in inputs if not s.is_input_only) >= target, language


def test_instruct_generator_inputs_feed_nothing_themselves(instruct):
    inputs_only = {s.key for s in instruct.sources if s.is_input_only}
    assert inputs_only == {"fineweb-edu", "wildchat", "oasst2", "oasst2-identity"}
    assert not inputs_only & {c.source for c in plan.cells(instruct)}


def test_fc_summary(fc):
    summary = plan.summary(fc)
    assert summary["mixture"] == "alia-40b-fc"
    assert summary["train"] == 728_034
    assert summary["holdout"] == HOLDOUT
    assert summary["by_source"] == FC_TOTALS
    assert sum(summary["by_language"].values()) == 728_034


def test_fc_licences_and_instruct_sample(fc):
    assert {s.key: s.licence for s in fc.sources} == FC_LICENCES
    sample = fc.source("instruction-tuning-sample")
    assert sample.kind == "mixture"
    assert fc.resolve(sample.mixture.manifest).resolve() == INSTRUCT.resolve()


@pytest.mark.parametrize("name", ["instruct", "fc"])
def test_holdout_shares_sum_to_exactly_the_holdout(name, request):
    manifest = request.getfixturevalue(name)
    cells = plan.cells(manifest)
    assert sum(c.holdout for c in cells) == HOLDOUT
    assert all(c.holdout >= 0 for c in cells)
    assert all(c.holdout == 0 for c in cells if c.target is None)
    # proportional: the biggest cell gets the biggest share
    biggest = max(cells, key=lambda c: c.target or 0)
    assert biggest.holdout == max(c.holdout for c in cells)


def test_allocate_is_exact_and_deterministic():
    weights = {"a": 1, "b": 1, "c": 1}
    assert plan.allocate(weights, 2000) == plan.allocate(dict(reversed(weights.items())), 2000)
    assert sum(plan.allocate(weights, 2000).values()) == 2000
    assert plan.allocate({"a": 0, "b": 0}, 10) == {"a": 0, "b": 0}


def test_identity_reaches_the_identity_filter(instruct):
    config = instruct.filter_config(instruct.source("aya-dataset"))
    assert config["identity"]["name"] == "ALIA"
    assert config["identity"]["developer"] == "Barcelona Supercomputing Center"
    assert config["length"] == {"max_tokens": 32768}
    fineweb = instruct.filter_config(instruct.source("fineweb-edu"))
    assert fineweb["identity"]["name"] == "ALIA"
    assert fineweb["length"] == {"max_tokens": None}


def test_load_sets_path_and_hash(instruct):
    assert instruct.path == INSTRUCT.resolve()
    assert len(instruct.hash) == 16 and int(instruct.hash, 16) >= 0
    assert load(INSTRUCT).hash == instruct.hash


def test_the_hash_covers_what_decides_rows_not_where_they_run(tmp_path):
    text = INSTRUCT.read_text()
    data = yaml.safe_load(text)

    def hash_of(name: str, content: str) -> str:
        (tmp_path / name).write_text(content)
        return load(tmp_path / name).hash

    reference = hash_of("same.yaml", text)
    assert hash_of("commented.yaml", "# built nightly\n" + text) == reference
    assert hash_of("reordered.yaml", yaml.safe_dump(dict(reversed(data.items())))) == reference
    without_llm = {key: value for key, value in data.items() if key != "llm"}
    assert hash_of("defaults.yaml", yaml.safe_dump({**without_llm, "llm": {}})) == hash_of(
        "no-llm.yaml", yaml.safe_dump(without_llm)) != reference  # the model names which rows it makes
    run_settings = {**data, "output": "/shared/mixtures",
                    "executor": {"kind": "slurm", "workers": 64, "slurm": {"partition": "cpu", "time": "04:00:00"}}}
    assert hash_of("on-slurm.yaml", yaml.safe_dump(run_settings)) == reference
    # how a build asks the endpoint: a higher budget or a lower concurrency made the mixture stale, and
    # a mixture sampling it had to be built again, though not one row changed
    asking = {"concurrency": 4, "budget_usd": 500.0, "timeout_s": 600, "max_retries": 9,
              "cache_dir": "/scratch/llm-cache", "requests_per_minute": 60, "prices": {"completion": 2.19}}
    assert hash_of("asking.yaml", yaml.safe_dump({**data, "llm": {**data["llm"], **asking}})) == reference
    for answering in ({"model": "deepseek-reasoner"}, {"temperature": 0.2}, {"max_tokens": 512},
                      {"reply_starts_in_thinking": True}):
        assert hash_of("answering.yaml", yaml.safe_dump({**data, "llm": {**data["llm"], **answering}})) != reference
    for changed in ({**data, "seed": data.get("seed", 0) + 1}, {**data, "shard_rows": 1234},
                    {**data, "holdout": {**data["holdout"], "size": data["holdout"]["size"] + 1}}):
        assert hash_of("changed.yaml", yaml.safe_dump(changed)) != reference


# --- bad manifests ----------------------------------------------------------------------------

BASE = {
    "mixture": "tiny",
    "holdout": {"size": 10},
    "licence_policy": {"allow": ["apache-2.0", "cc-by-4.0"]},
    "sources": [
        {"key": "alpha", "local": {"files": ["alpha.jsonl"]}, "converter": "glaive", "licence": "apache-2.0",
         "targets": {"en": 100}},
        {"key": "beta", "hub": {"id": "org/beta", "files": ["*.parquet"]}, "converter": "xlam", "licence": "cc-by-4.0",
         "targets": {"*": 50}},
    ],
}


def write(tmp_path: Path, data: dict | str, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def edited(edit) -> dict:
    data = copy.deepcopy(BASE)
    edit(data)
    return data


def load_error(path: Path) -> str:
    with pytest.raises(ManifestError) as info:
        load(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_base_manifest_is_valid(tmp_path):
    manifest = load(write(tmp_path, BASE, "good.yaml"))
    assert plan.summary(manifest)["train"] == 150
    assert sum(c.holdout for c in plan.cells(manifest)) == 10


def _set(path: str, value):
    """An edit: set a dotted path (list indices as numbers) to `value`."""

    def edit(data):
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return edit


@pytest.mark.parametrize("edit, expected", [
    pytest.param(_set("licence_policy.allow", ["apache-2.0", "cc-by-9.0"]), ["licence_policy", "cc-by-9.0"],
                 id="unknown-licence-in-policy"),
    pytest.param(_set("sources.1.converter", "nope"), ["sources.1.converter", "'beta'", "nope"], id="unknown-converter"),
    pytest.param(_set("sources.0.licence", "cc-by-9.0"), ["sources.0.licence", "'alpha'", "cc-by-9.0"],
                 id="unknown-source-licence"),
    pytest.param(_set("sources.1.licence", "mit"), ["'beta'", "mit", "licence_policy"], id="licence-not-allowed"),
    pytest.param(_set("sources.1.key", "alpha"), ["duplicate", "alpha"], id="duplicate-source-key"),
    pytest.param(_set("sources.0.targets", {"english": 5}), ["sources.0.targets", "'alpha'", "english"],
                 id="bad-target-language"),
    pytest.param(_set("sources.0.targets", {"*": 5, "en": 3}), ["sources.0.targets", "'alpha'", "*"],
                 id="star-mixed-with-language"),
    pytest.param(_set("holdout.size", "10"), ["holdout.size", "valid integer"], id="quoted-holdout"),
    pytest.param(_set("sources.1.hub.revision", "main"), ["sources.1.hub.revision", "main"], id="unpinned-revision"),
    pytest.param(_set("sources.0.converter", None), ["sources.0", "converter"], id="local-without-converter"),
    pytest.param(_set("sources.0.colour", "red"), ["sources.0.colour"], id="unknown-field"),
    pytest.param(_set("sources.1.internal", True), ["sources.1", "an internal source reads local files; got hub"],
                 id="internal-on-the-hub"),
    pytest.param(_set("sources.0.hub", {"id": "org/alpha", "files": ["*.parquet"]}),
                 ["sources.0", "a source takes one input of hub, local, mixture, generator; got hub, local"],
                 id="hub-and-local"),
    pytest.param(_set("holdout.size", -1), ["holdout.size"], id="negative-holdout"),
    pytest.param(_set("executor", {"kind": "slurm", "workers": 8, "slurm": {"partition": "cpu"}}),
                 ["executor", "slurm needs time"], id="slurm-without-time"),
    pytest.param(_set("executor", {"kind": "slurm", "workers": 8,
                                   "slurm": {"partition": "cpu", "time": "1:00:00", "cpu_per_task": 2}}),
                 ["executor", "unknown slurm option(s) cpu_per_task", "cpus_per_task"], id="slurm-option-typo"),
    pytest.param(_set("executor", {"kind": "slurm", "workers": 8,
                                   "slurm": {"partition": "cpu", "time": "1:00:00", "tasks": 9}}),
                 ["executor", "unknown slurm option(s) tasks"], id="slurm-option-set-by-sftmix"),
    pytest.param(_set("executor", {"kind": "slurm", "workers": 8, "slurm": {
        "partition": "cpu", "time": "1:00:00", "sbatch_args": {"account": "a", "job-name": "mine"}}}),
                 ["executor", "slurm sbatch_args job-name: set by sftmix"], id="slurm-job-name"),  # review7
    pytest.param(_set("executor", {"kind": "slurm", "workers": 8, "slurm": {
        "partition": "cpu", "time": "1:00:00", "sbatch_args": {"dependency": "afterok:1"}}}),
                 ["executor", "slurm sbatch_args dependency: set by sftmix", "depend on no other job"],
                 id="slurm-dependency"),
    pytest.param(_set("executor", {"kind": "slurm", "slurm": {"partition": "cpu", "time": "1:00:00"}}),
                 ["executor", "slurm needs workers"], id="slurm-auto-workers"),
    pytest.param(_set("executor", {"kind": "local", "slurm": {"partition": "cpu"}}), ["executor", "'local'"],
                 id="slurm-options-on-local"),
])
def test_bad_manifest_names_file_and_field(tmp_path, edit, expected):
    message = load_error(write(tmp_path, edited(edit)))
    for part in expected:
        assert part in message, (part, message)


def test_missing_manifest(tmp_path):
    path = tmp_path / "nowhere.yaml"
    message = load_error(path)
    assert "not found" in message


def test_not_yaml(tmp_path):
    load_error(write(tmp_path, "mixture: [unclosed\n  - x: :"))


def test_a_file_that_is_not_utf8_text_is_a_manifest_error(tmp_path):
    """A Parquet file given for the manifest, or a YAML file saved as Latin-1."""
    parquet = ROOT / "tests" / "fixtures" / "toucan" / "train-00000-of-00003.parquet"
    assert load_error(parquet) == (f"{parquet}: a manifest is YAML text; this file is not UTF-8 "
                                   "(invalid start byte at byte 7)")
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("mixture: sample\ndescription: Català\n".encode("latin-1"))
    assert "not UTF-8 (invalid continuation byte at byte 34)" in load_error(latin1)


def test_not_a_mapping(tmp_path):
    load_error(write(tmp_path, "- just\n- a list\n"))


@pytest.mark.parametrize("value, problem", [
    ("english", "language 'english' is not an ISO 639-1 code (did you mean 'en'?)"),
    ("es-ES", "language 'es-ES' is not an ISO 639-1 code (did you mean 'es'?)"),
    ("Elvish", "language 'Elvish' is not an ISO 639-1 code"),
    # codes of a language rows are labelled otherwise: its rows would stand apart from the others'
    ("eng", "language 'eng' labels no row: rows in it are labelled 'en'"),
    ("tl", "language 'tl' labels no row: rows in it are labelled 'fil'"),
    # two or three letters that name no language: no row would be labelled with them
    ("jp", "language 'jp' is not a language code (ISO 639-1, or 639-3 where there is none)"),
])
def test_a_source_language_that_is_not_a_code_is_a_manifest_error(tmp_path, value, problem):
    """Its rows would be labelled with it, and meet none of the targets, which are codes."""
    message = load_error(write(tmp_path, edited(_set("sources.0.language", value))))
    assert message.endswith(f"sources.0.language (source {BASE['sources'][0]['key']!r}): {problem}")


TARGET_IS = "a target is a whole number of rows, 0 or more, written as plain digits (1000), or all"
TARGETS_ARE = "targets is all (every row of the source) or a mapping of languages to targets, as {en: 1000, ca: all}"


@pytest.mark.parametrize("written, problem", [
    ("{en: '1,000'}", f"the target for 'en' is the text \"1,000\": {TARGET_IS} (did you mean 1000?)"),
    ("{en: '1000'}", f"the target for 'en' is the text \"1000\": {TARGET_IS} (did you mean 1000?)"),
    ("{en: 1e3}", f"the target for 'en' is the text \"1e3\": {TARGET_IS} (did you mean 1000?)"),  # YAML 1.1: text
    ("{en: 1000.0}", f"the target for 'en' is 1000.0: {TARGET_IS} (did you mean 1000?)"),
    ("{en: 300, es: -5}", f"the target for 'es' is -5: {TARGET_IS}"),
    ("{en: 0.5}", f"the target for 'en' is 0.5: {TARGET_IS}"),
    ("{en: yes}", f"the target for 'en' is true: {TARGET_IS}"),  # was a target of 1 row before strict types
    ("{en: }", f"the target for 'en' is null: {TARGET_IS}"),
    ("{en: All}", f"the target for 'en' is the text \"All\": {TARGET_IS} (did you mean all?)"),
    ("{en: [1000]}", f"the target for 'en' is [1000]: {TARGET_IS}"),
    ("{no: 500}", "target language false is not a language code: write it as text, quoted where YAML reads it "
                  "otherwise ('no', not no)"),
    ("All", f"{TARGETS_ARE}; got the text \"All\" (did you mean all?)"),
    ("1000", f"{TARGETS_ARE}; got 1000 (did you mean {{'*': 1000}}?)"),
    ("{en: {2024-01-01: 5}}", f"the target for 'en' is {{2024-01-01: 5}}: {TARGET_IS}"),  # review4: a crash
    ("[en, es]", f"{TARGETS_ARE}; got [\"en\", \"es\"]"),
    ("null", f"{TARGETS_ARE}; got null"),
])
def test_a_wrong_target_is_named_with_its_source_language_and_what_a_target_may_be(tmp_path, written, problem):
    """`targets: {en: '1,000'}`, like every other wrong value, was refused as pydantic's path through
    the type's union: `sources.0.targets.dict[str,union[int,literal['all']]].en.int (source 'alpha'):
    Input should be a valid integer (and 2 more)`."""
    targets = yaml.safe_load(written)  # as the manifest's YAML reads what was written
    message = load_error(write(tmp_path, edited(_set("sources.0.targets", targets))))
    assert message.endswith(f": sources.0.targets (source 'alpha'): {problem}")


@pytest.mark.parametrize("written, targets", [
    ("{en: 1000, ca: all, es: 0}", {"en": 1000, "ca": "all", "es": 0}),
    ("{'*': 5}", {"*": 5}), ("all", "all"), ("{}", {})])
def test_a_target_written_as_a_target_loads_as_written(tmp_path, written, targets):
    manifest = load(write(tmp_path, edited(_set("sources.0.targets", yaml.safe_load(written))), "ok.yaml"))
    assert manifest.sources[0].targets == targets


@pytest.mark.parametrize("alpha, beta", [({"en": 0}, {"*": 0}), ({}, {}), ({"en": 0, "es": 0}, {})])
def test_a_holdout_no_source_gives_rows_to_is_a_manifest_error(tmp_path, alpha, beta):
    """The holdout is drawn from the cells that give rows: with none, the build ran every stage and
    wrote an empty validation split, its shortfall a deficit in the log and on the card."""
    data = edited(lambda d: (d["sources"][0].update(targets=alpha), d["sources"][1].update(targets=beta)))
    path = write(tmp_path, data)
    message = load_error(path)
    problem = ("<root>: holdout.size is 10, but no source gives a row to hold out (every target is 0, or {}: an "
               "input of generators only): set holdout.size: 0, or give a source a target above 0 or all")
    assert message == f"{path}: {problem}"
    done = sftmix("plan", str(path))  # said by the plan, before any stage runs
    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"sftmix: error: {message}\n")
    load(write(tmp_path, {**data, "holdout": {"size": 0}}, "no-holdout.yaml"))
    data["sources"][1]["targets"] = "all"  # a cell taking every row it has may give the holdout
    load(write(tmp_path, data, "one-giving.yaml"))


@pytest.mark.parametrize("language, code", [("eng", "en"), ("spa", "es"), ("iw", "he"), ("tl", "fil")])
def test_a_target_in_a_code_no_row_is_labelled_with_is_a_manifest_error(tmp_path, language, code):
    """`targets: {eng: 100}` was accepted, and met by no row: Aya's English rows are labelled `en`."""
    message = load_error(write(tmp_path, edited(_set("sources.0.targets", {language: 100}))))
    assert message.endswith(f"target language {language!r} labels no row: rows in it are labelled {code!r}")


@pytest.mark.parametrize("language", ["jp", "dk", "sp"])
def test_a_target_in_a_code_of_no_language_is_a_manifest_error(tmp_path, language):
    """`targets: {jp: 100}` (Japanese is `ja`) planned cleanly and, after the build, was a deficit of
    100 rows, the Japanese rows dropped as `language_not_targeted`."""
    message = load_error(write(tmp_path, edited(_set("sources.0.targets", {language: 100}))))
    assert message.endswith(f"target language {language!r} is not a language code (ISO 639-1, or 639-3 where there is none)")


def test_an_unknown_source_licence_names_the_known_ones(tmp_path):
    message = load_error(write(tmp_path, edited(_set("sources.0.licence", "cc-by-9.0"))))
    assert message.endswith("unknown licence 'cc-by-9.0'; known: apache-2.0, bsd-3-clause, cc-by-2.0, cc-by-3.0, cc-by-4.0, "
                            "cc-by-nc-4.0, cc-by-nc-nd-4.0, cc-by-nc-sa-4.0, cc-by-sa-2.0, cc-by-sa-3.0, cc-by-sa-4.0, "
                            "cc0-1.0, llama2, llama3, mit, odc-by, other, pddl, unknown")


@pytest.mark.parametrize("field", ["sources.0.licence", "licence_policy.allow"])
def test_another_spelling_of_a_hub_licence_id_is_refused_naming_the_id(tmp_path, field):
    """`odc-by-1.0` was a licence of its own: a policy allowing `odc-by` refused its rows, a filter on
    `odc-by` missed them, and the card's header named it, which is no Hub id."""
    message = load_error(write(tmp_path, edited(_set(field, "odc-by-1.0" if field.startswith("sources") else ["odc-by-1.0"]))))
    assert message.endswith("licence 'odc-by-1.0' is spelt 'odc-by' (the Hugging Face Hub's id of it)")


def test_unknown_filter_name_is_a_manifest_error(tmp_path):
    message = load_error(write(tmp_path, edited(_set("filters", {"lenght": {"max_tokens": 10}}))))
    assert "filters" in message and "lenght" in message


def test_unknown_filter_argument_is_a_manifest_error(tmp_path):
    message = load_error(write(tmp_path, edited(_set("sources.0.filters", {"length": {"max_token": 10}}))))
    assert "sources.0.filters" in message and "max_token" in message


@pytest.mark.parametrize("where, rule, problem", [
    ("filters", {"language": {"min_chars": "x"}},
     "filters: filter 'language': argument 'min_chars': Input should be a valid integer, unable to parse string as an "
     "integer (got 'x')"),
    ("sources.0.filters", {"role_order": {"require_assistant": "maybe"}},
     "sources.0.filters (source 'alpha'): filter 'role_order': argument 'require_assistant': Input should be a valid "
     "boolean, unable to interpret input (got 'maybe')"),
    ("filters", {"boilerplate": {"extra_phrases": "as an ai"}},
     "filters: filter 'boilerplate': argument 'extra_phrases': Input should be a valid list (got 'as an ai')"),
    # a re.error at a position in the rule's whole pattern, naming no phrase
    ("filters", {"boilerplate": {"extra_phrases": ["happy to help", "as an ai (assistant"]}},
     "filters: boilerplate phrase 'as an ai (assistant' is not a regular expression: missing ), unterminated "
     "subpattern at position 9"),
    ("filters", {"boilerplate": {"extra_phrases": ["as an ai|"]}},
     "filters: boilerplate phrase 'as an ai|' matches an empty text, so every row"),
    ("filters", {"boilerplate": {"extra_phrases": ["\\b(?:as an ai)?\\b"]}},  # between any two words (review)
     "filters: boilerplate phrase '\\\\b(?:as an ai)?\\\\b' matches an empty text, so every row"),
    ("filters", {"boilerplate": {"extra_phrases": ["(in conclusion),", "(\\w+ \\w+) \\1"]}},  # \1 was the first's group
     "filters: boilerplate phrase '(\\\\w+ \\\\w+) \\\\1': a backreference cannot work once the phrases are joined into "
     "one pattern"),
    ("filters", {"boilerplate": {"extra_phrases": ["(?i)as an ai"]}},  # valid alone, a re.error joined (review)
     "filters: boilerplate phrase '(?i)as an ai': an inline flag such as (?i) holds only at the start of a whole "
     "pattern (leave it out: the text is lowercased)"),
    ("filters", {"llm_judge": {"threshold": True}},  # it loaded as threshold 1: every graded row kept, each one paid
     "filters: filter 'llm_judge': argument 'threshold': Input should be a valid integer (got True)"),
    ("filters", {"repetition": {"min_words": False}},
     "filters: filter 'repetition': argument 'min_words': Input should be a valid integer (got False)"),
], ids=["int", "bool", "list", "bad-regex", "empty-match", "empty-between-words", "backreference", "inline-flag",
        "bool-for-int",
        "bool-for-count"])
def test_a_filter_argument_of_the_wrong_type_is_a_manifest_error(tmp_path, where, rule, problem):
    """Before, `min_chars: x` loaded, and the build stopped at the filter stage on `'>=' not supported`."""
    assert load_error(write(tmp_path, edited(_set(where, rule)))).endswith(problem)


@pytest.mark.parametrize("rule, problem", [
    ({"length": {"max_tokens": -5}}, "filter 'length': argument 'max_tokens': Input should be greater than or equal to 1 (got -5)"),
    ({"length": {"chars_per_token": 0}}, "filter 'length': argument 'chars_per_token': Input should be greater than 0 (got 0)"),
    ({"language": {"min_probability": 1.5}},
     "filter 'language': argument 'min_probability': Input should be less than or equal to 1 (got 1.5)"),
    ({"language": {"trials": 0}}, "filter 'language': argument 'trials': Input should be greater than or equal to 1 (got 0)"),
    ({"repetition": {"min_words": -1}},
     "filter 'repetition': argument 'min_words': Input should be greater than or equal to 0 (got -1)"),
    ({"llm_judge": {"attempts": 0}}, "filter 'llm_judge': argument 'attempts': Input should be greater than or equal to 1 (got 0)"),
], ids=["max_tokens", "chars_per_token", "min_probability", "trials", "min_words", "attempts"])
def test_a_filter_argument_out_of_its_bounds_is_a_manifest_error(tmp_path, rule, problem):
    """`max_tokens: -5` would drop every row as too long; `trials: 0` would detect no language."""
    assert load_error(write(tmp_path, edited(_set("filters", rule)))).endswith(f"filters: {problem}")


@pytest.mark.parametrize("mixture_rule, source_rule, problem", [
    ({}, {"language": {"sample_chars": 150}},  # min_chars stays 200: an English answer declared es was kept
     "filter 'language': sample_chars (150) is below min_chars (200): no row would be judged"),
    ({}, {"language": {"confusable": {"ca": ["spanish"]}}},
     "filter 'language': confusable: 'spanish' is no language code langdetect answers (known: af, ar,"),
    ({}, {"length": {"min_chars": 5000, "max_chars": 4000}},
     "filter 'length': min_chars (5000) is above max_chars (4000): every row would be dropped"),
    ({"length": {"max_chars": 4000}}, {"length": {"min_chars": 5000}},  # each layer alone is fine; merged, not
     "filter 'length': min_chars (5000) is above max_chars (4000): every row would be dropped"),
    ({}, {"length": {"batch_size": 64}}, "filter 'length': 'batch_size' is set by the pipeline, not a rule setting"),
    ({}, {"repetition": {"exclusion_writer": "x"}},
     "filter 'repetition': 'exclusion_writer' is set by the pipeline, not a rule setting"),
    # loaded, then every build stopped at its filter stage
    ({"decontamination": True}, {}, "decontamination needs `benchmarks`: {name: path | [paths] | {paths, text_fields}}"),
    ({}, {"decontamination": {"roles": ["user"]}}, "decontamination needs `benchmarks`"),
], ids=["sample-below-min", "confusable-name", "min-above-max", "merged-min-above-max", "batch_size", "exclusion_writer",
        "decontamination-true-without-benchmarks", "decontamination-roles-without-benchmarks"])
def test_filter_arguments_that_cannot_go_together_are_a_manifest_error(tmp_path, mixture_rule, source_rule, problem):
    """Each was accepted, and the rule then judged nothing, dropped every row, or took datatrove's own
    arguments."""
    message = load_error(write(tmp_path, edited(lambda data: (_set("filters", mixture_rule)(data),
                                                               _set("sources.0.filters", source_rule)(data)))))
    # one argument's problem is its layer's; arguments that do not go together, the merged settings'
    where = ("sources.0.filters (source 'alpha')" if "confusable" in problem or "set by the pipeline" in problem
             else "source 'alpha': its filters (the mixture's, then its own)")
    assert f"{where}: {problem}" in message


@pytest.mark.parametrize("mixture_rule, source_rule", [
    ({"language": {"sample_chars": 1000}}, {"language": {"min_chars": 600}}),
    ({"language": {"min_chars": 100}}, {"language": {"sample_chars": 150}}),
    ({"length": {"min_chars": 5000}}, {"length": {"max_chars": 8000}}),
    # the mixture's benchmarks, checked in the source's user turns only: the source's layer was refused
    # alone ("decontamination needs `benchmarks`")
    ({"decontamination": {"benchmarks": {"ifeval": str(ROOT / "tests/fixtures/benchmarks/ifeval/input_data.jsonl")}}},
     {"decontamination": {"roles": ["user"]}}),
], ids=["source-min-under-mixture-sample", "source-sample-over-mixture-min", "mixture-min-under-source-max",
        "source-roles-of-mixture-benchmarks"])
def test_filter_arguments_that_go_together_once_layered_load(tmp_path, mixture_rule, source_rule):
    """Each layer checked alone against the rule's defaults (sample_chars 500, min_chars 200) was refused (review)."""
    manifest = load(write(tmp_path, edited(lambda data: (_set("filters", mixture_rule)(data),
                                                         _set("sources.0.filters", source_rule)(data)))))
    (rule, mixture_arguments), = mixture_rule.items()
    assert manifest.rule_settings(manifest.sources[0])[rule] == {**mixture_arguments, **source_rule[rule]}


@pytest.mark.parametrize("rule, arguments", [
    ("decontamination", {"benchmarks": {"ifeval": str(ROOT / "tests/fixtures/benchmarks/ifeval/input_data.jsonl")}}),
    ("length", {"max_tokens": 32768}),
])
def test_a_source_turning_a_rule_on_keeps_the_mixtures_arguments(tmp_path, rule, arguments):
    """`true` reset them: a source's `decontamination: true` was refused for want of the benchmarks the
    mixture names, and `length: true` dropped the mixture's max_tokens (review)."""
    manifest = load(write(tmp_path, edited(lambda data: (_set("filters", {rule: arguments})(data),
                                                         _set("sources.0.filters", {rule: True})(data)))))
    assert manifest.rule_settings(manifest.sources[0])[rule] == arguments


@pytest.mark.parametrize("reads, cycle", [
    ({"a": ["b"], "b": ["a"]}, "a -> b -> a"),
    ({"a": ["a"]}, "a -> a"),
    ({"a": ["alpha", "b"], "b": ["c"], "c": ["a"]}, "a -> b -> c -> a"),
], ids=["two", "itself", "three"])
def test_generators_reading_each_other_in_a_circle_are_a_manifest_error(tmp_path, reads, cycle):
    """Such a manifest loaded, and the build (and the Dagster definitions) died on a RecursionError (review)."""
    generated = [{"key": key, "generator": {"name": "wildchat_responses", "inputs": inputs}, "licence": "cc-by-4.0",
                  "targets": {"en": "all"}} for key, inputs in reads.items()]
    message = load_error(write(tmp_path, edited(lambda data: data["sources"].extend(generated))))
    assert message.endswith(f"generator sources read each other in a circle: {cycle}")


def test_filter_arguments_reach_the_rules_as_their_types(tmp_path):
    from sftmix.build import filter_config

    manifest = load(write(tmp_path, edited(_set("filters", {"language": {"min_chars": "300", "min_probability": 1}}))))
    assert filter_config(manifest, manifest.sources[0])["language"] == {"min_chars": 300, "min_probability": 1.0}
    [rule] = [r for r in rule_filters.build_filters(filter_config(manifest, manifest.sources[0])) if r.name == "language"]
    assert rule.min_chars == 300


def test_duplicated_yaml_key_is_a_manifest_error(tmp_path):
    text = yaml.safe_dump(BASE, sort_keys=False).replace(
        "  licence: cc-by-4.0\n", "  licence: cc-by-nc-4.0\n  licence: cc-by-4.0\n", 1)
    assert text.count("licence: cc-by-") == 2
    message = load_error(write(tmp_path, text))
    # the line is quoted (libyaml's own errors quote nothing: the pure parser reads it again for them)
    line = text.splitlines().index("  licence: cc-by-4.0") + 1
    assert "duplicated key 'licence'" in message and f"line {line}, column 3:   " in message
    assert message.endswith("licence: cc-by-4.0       ^")


@pytest.mark.parametrize("broken, quoted", [
    ("mixture: 'sample\n", "mixture: 'sample"),
    ("mixture: sample\n\tseed: 3\n", "found character '\\t' that cannot start any token"),
], ids=["unclosed-quote", "tab"])
def test_yaml_syntax_errors_quote_the_line(tmp_path, broken, quoted):
    message = load_error(write(tmp_path, broken))
    assert ": not valid YAML: " in message and quoted in message


def test_both_yaml_parsers_read_the_bundled_manifests_alike():
    from sftmix.manifest import _FastUniqueKeyLoader, _UniqueKeyLoader

    assert issubclass(_FastUniqueKeyLoader, yaml.CSafeLoader)  # PyYAML's wheels bundle libyaml
    for path in sorted((ROOT / "manifests").glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        assert yaml.load(text, Loader=_FastUniqueKeyLoader) == yaml.load(text, Loader=_UniqueKeyLoader), path


@pytest.mark.parametrize("nesting", [
    "extra: " + "[" * 100_000 + "]" * 100_000,
    "extra: " + "{a: " * 100_000 + "1" + "}" * 100_000,
    "extra:\n" + "- " * 100_000 + "1",
], ids=["flow-sequences", "flow-mappings", "block-sequences"])
def test_a_manifest_nested_too_deeply_is_an_error_not_a_crash(tmp_path, nesting):
    """libyaml recurses in C without a guard: such a text killed the process (SIGSEGV), so the
    manifest is loaded in a subprocess of its own."""
    path = write(tmp_path, f"mixture: sample\n{nesting}\n")
    done = sftmix("plan", str(path))
    assert done.returncode == 2, (done.returncode, done.stderr[-300:])  # a usage error, not -11
    assert done.stderr.strip().splitlines() == [f"sftmix: error: {path}: YAML nested too deeply to read"]


# --- CLI ------------------------------------------------------------------------------------------


def sftmix(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    exe = shutil.which("sftmix")
    command = [exe] if exe else [sys.executable, "-m", "sftmix.cli"]
    return subprocess.run([*command, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_cli_plan_instruct():
    done = sftmix("plan", "manifests/alia-40b-instruct.yaml")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["train"] == 712_213
    assert summary["holdout"] == HOLDOUT
    assert summary["by_language"] == INSTRUCT_BY_LANGUAGE
    assert summary["by_source"] == INSTRUCT_TOTALS
    # The card's Basque and Galician constraint rows: eif words constraints in en, es and ca only,
    # so the build would end 5,306 rows short; said before any request is paid for.
    assert done.stderr.strip().splitlines() == [
        "warning: source 'eif-augmentation': no row can be generated for its targets eu (2,615), gl (2,691): "
        "generator 'eif_augmentation' writes only en, es, ca"]


def test_cli_plan_fc():
    done = sftmix("plan", "manifests/alia-40b-fc.yaml")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert (summary["train"], summary["holdout"], summary["by_source"]) == (728_034, HOLDOUT, FC_TOTALS)
    assert summary["taking_all"] == [] and done.stderr == ""


@pytest.mark.parametrize("path", ["manifests/alia-40b-instruct.yaml", "manifests/alia-40b-fc.yaml"])
def test_the_reference_policies_allow_every_open_licence_tower_blocks_tags(path):
    # "only open-licensed instances": Tatoeba's rows (cc-by-2.0) were tagged, then refused at mixing
    from sftmix.manifest import load
    from sftmix.sources.tower_blocks import SOURCES

    tagged = {licence for _keyword, _source, licence, _where in SOURCES if licence}
    assert "cc-by-2.0" in tagged
    assert tagged <= set(load(ROOT / path).licence_policy["allow"])


def test_plan_table_shows_sources_taking_all_rows_as_all_with_their_holdout_by_rows(tmp_path):
    from sftmix import plan

    data = edited(lambda d: d["sources"].append(
        {"key": "gamma", "local": {"files": ["gamma.jsonl"]}, "converter": "glaive", "licence": "apache-2.0",
         "targets": {"en": 20, "es": "all"}}))
    lines = plan.table(load(write(tmp_path, data, "ok.yaml"))).splitlines()
    assert [line.split() for line in lines] == [
        ["source", "en", "es", "*", "total", "holdout", "licence"],
        ["alpha", "100", "100", "6", "apache-2.0"],
        ["beta", "50", "50", "3", "cc-by-4.0"],
        ["gamma", "20", "all", "20", "+", "all", "by", "rows", "apache-2.0"],
        ["TOTAL", "120", "all", "50", "170", "+", "all", "10"],
    ]
    # the JSON totals count the numeric targets only, and name the cells that take every row
    summary = plan.summary(load(write(tmp_path, data, "ok.yaml")))
    assert (summary["train"], summary["by_source"]["gamma"], summary["taking_all"]) == (170, 20, ["gamma/es"])


def test_a_translation_target_outside_its_target_languages_is_named(tmp_path):
    from sftmix import plan
    from sftmix.manifest import load

    data = edited(lambda d: d["sources"].append(
        {"key": "translated", "generator": {"name": "translation", "inputs": ["alpha"],
                                            "params": {"target_languages": ["ca", "es"]}},
         "licence": "apache-2.0", "targets": {"ca": 5, "es": 5, "eu": 7}}))
    manifest = load(write(tmp_path, data, "ok.yaml"))
    assert [plan.unmakeable(source) for source in manifest.sources] == [
        None, None, "source 'translated': no row can be generated for its targets eu (7): "
                    "generator 'translation' writes only ca, es"]
    del manifest.sources[-1].generator.params["target_languages"]  # then every language with a target
    assert plan.unmakeable(manifest.sources[-1]) is None
    manifest.sources[-1].generator.params["target_languages"] = ["ca", "es"]
    manifest.sources[-1].targets["eu"] = 0  # a target of 0 wants no row: nothing to warn of
    assert plan.unmakeable(manifest.sources[-1]) is None


@pytest.mark.parametrize("targets, params, cells", [
    ({"*": 8}, {}, "* (8)"), ("all", {}, "* (all)"), ({"*": 8}, {"target_languages": ["es"]}, None)])
def test_a_translation_star_target_without_target_languages_is_named_by_plan(tmp_path, targets, params, cells):
    # the stage refused it only once its inputs were built; `sftmix plan` printed no warning
    data = edited(lambda d: d["sources"].append(
        {"key": "translated", "generator": {"name": "translation", "inputs": ["alpha"], "params": params},
         "licence": "apache-2.0", "targets": targets}))
    done = sftmix("plan", str(write(tmp_path, data, "ok.yaml")))
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == ([f"warning: source 'translated': no row can be generated for its targets {cells}: "
                         "generator 'translation' names no language to write with these params"] if cells else [])


@pytest.mark.parametrize("converter, language, warning", [
    ("dolly", "en", "source 'fixed': no row can be converted for its targets ca (3), eu (all): "
                    "converter 'dolly' gives rows no language of their own: each is labelled en (the source's `language:`)"),
    ("aya", "en", None),  # its rows name their own language; `language:` is for those that do not
    ("dolly", None, None),  # each row's language is detected
    # alpaca rows name theirs only in an optional column (tatsu-lab/alpaca has none): planned silently (review)
    ("alpaca", "en", "source 'fixed': only rows that carry their own language can meet its targets ca (3), eu (all): "
                     "converter 'alpaca' labels a row without one en (the source's `language:`)"),
], ids=["fixed-language", "row-language", "detected-language", "language-where-given"])
def test_a_target_in_a_language_no_converted_row_is_labelled_is_named_by_plan(tmp_path, converter, language, warning):
    # `sftmix plan` printed the `ca` target of an `en` dolly source silently; the build ended it a deficit
    source = {"key": "fixed", "local": {"files": ["fixed.jsonl"]}, "converter": converter, "licence": "apache-2.0",
              "targets": {"ca": 3, "en": 2, "es": 0, "eu": "all"}}  # a target of 0 wants no row
    if language:
        source["language"] = language
    done = sftmix("plan", str(write(tmp_path, edited(lambda d: d["sources"].append(source)), "ok.yaml")))
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == ([f"warning: {warning}"] if warning else [])


@pytest.mark.parametrize("converter", [name for name in available() if not sets_row_language(name)])
def test_a_converter_not_setting_row_languages_labels_every_row_with_the_sources_language(converter, tmp_path):
    # what `plan.unmakeable` says of its targets in other languages: were it to label rows itself
    # without `ROW_LANGUAGE`, the rows it labels would be named as ones no row can meet
    files = sorted(path for path in (ROOT / "tests" / "fixtures" / converter).rglob("*")
                   if path.suffix in {".json", ".jsonl", ".parquet"})
    info = SourceInfo(key="k", converter=converter, licence="apache-2.0", language="eu")
    counts = normalize(info, files, tmp_path / "out.parquet", tmp_path / "rejected.parquet", apply_filters=False)
    languages = pq.read_table(tmp_path / "out.parquet", columns=["language"]).column("language").to_pylist()
    assert counts.kept and set(languages) == {"eu"}


@pytest.mark.parametrize("edit, expected", [
    pytest.param(_set("sources.0.licence", "cc-by-9.0"), "sources.0.licence", id="bad-licence"),
    # was accepted, changed the manifest's hash and never the holdout drawn
    pytest.param(_set("holdout.seed", 7), "holdout.seed", id="holdout-seed"),
    pytest.param(_set("sources.1.converter", "nope"), "sources.1.converter", id="bad-converter"),
    pytest.param(_set("filters", {"lenght": {}}), "lenght", id="unknown-filter"),
])
def test_cli_plan_bad_manifest_one_line_error(tmp_path, edit, expected):
    path = write(tmp_path, edited(edit))
    done = sftmix("plan", str(path))
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(path) in lines[0] and expected in lines[0]
    assert "Traceback" not in done.stderr


def test_cli_plan_missing_manifest(tmp_path):
    done = sftmix("plan", str(tmp_path / "nope.yaml"))
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [f"sftmix: error: {tmp_path / 'nope.yaml'}: manifest not found"]
    # a relative path is read from the working directory: Dagster's, started elsewhere, missed it
    done = sftmix("plan", "manifests/nope.yaml", cwd=tmp_path)
    assert done.stderr.strip().splitlines() == [
        f"sftmix: error: manifests/nope.yaml: manifest not found (from the working directory {tmp_path})"]


@pytest.mark.parametrize("input_licence, problem", [
    ("cc-by-nc-4.0", "non-commercial"), ("cc-by-sa-3.0", "share-alike"), ("cc-by-nc-nd-4.0", "no derivatives"),
])
def test_generator_inputs_must_allow_the_generated_licence(tmp_path, input_licence, problem):
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({
        "mixture": "m", "holdout": {"size": 0},
        "licence_policy": {"allow": ["apache-2.0", input_licence]},
        "sources": [
            {"key": "human", "local": {"files": ["x.jsonl"]}, "converter": "dolly", "licence": input_licence,
             "language": "en", "targets": {}},
            {"key": "synthetic", "generator": {"name": "eif_augmentation", "inputs": ["human"]},
             "licence": "apache-2.0", "targets": {"en": 10}},
        ],
    }))
    with pytest.raises(ManifestError, match=rf"synthetic.*reads 'human' \({input_licence}\).*{problem}"):
        load(path)


@pytest.mark.parametrize("setting, expected", [
    ({"max_tokens": "4096"}, "llm: max_tokens: Input should be a valid integer (got '4096')"),
    ({"requests_per_minute": 0}, "llm: requests_per_minute: Input should be greater than 0 (got 0)"),
    ({"top_p": 5}, "llm: top_p: Input should be less than or equal to 1 (got 5)"),
    ({"budget_usd": -1}, "llm: budget_usd: Input should be greater than or equal to 0 (got -1)"),
    ({"max_retries": -1}, "llm: max_retries: Input should be greater than or equal to 0 (got -1)"),
    ({"concurrency": "16"}, "llm: concurrency: Input should be a valid integer (got '16')"),
    ({"prices": {"completion": -1.1}}, "llm: prices.completion: Input should be greater than or equal to 0 (got -1.1)"),
    ({"temperature": 0.7}, "llm: temperature 0.7 is outside the model card's range [0, 0.2]"),
    ({"max_token": 100}, "llm: max_token: not a setting (did you mean 'max_tokens'?)"),
    ({"prices": {"complete": 1}}, "llm: prices.complete: not a setting (did you mean 'completion'?)"),
    # a key put in the manifest by mistake is never quoted: this error reaches stderr, the web UI and CI logs
    ({"api_key": "sk-SECRET-0123"}, "llm: api_key: not a setting (API keys are read from SFTMIX_LLM_API_KEY or "
                                    "DEEPSEEK_API_KEY only, never from a file)"),
    # a connection error to aiohttp, retried with backoff for every row
    ({"base_url": "api.deepseek.com/v1"}, "llm: base_url (the manifest's, or SFTMIX_LLM_BASE_URL) is not an http:// "
                                          "or https:// URL with a host"),
    ({"base_url": "htp://127.0.0.1:8000/v1"}, "llm: base_url (the manifest's, or SFTMIX_LLM_BASE_URL) is not an "
                                              "http:// or https:// URL with a host"),
])
def test_llm_settings_of_the_wrong_type_or_range_are_a_manifest_error(tmp_path, setting, expected):
    """They loaded, and then every request failed inside the generate stage: each row a
    `malformed_generation` drop, no request sent, no warning."""
    message = load_error(write(tmp_path, edited(lambda data: data.update(llm=setting))))
    assert message.endswith(expected), message


@pytest.mark.parametrize("where", ["manifest", "environment"])
def test_an_endpoint_with_credentials_in_its_url_is_refused_without_quoting_them(tmp_path, monkeypatch, where):
    """The URL went into each stage's done file (its settings) while aiohttp refused every request
    (credentials beside the key's bearer header): each row a `malformed_generation` drop."""
    url = "https://svc:gw-SECRET-123@gateway.example/v1"
    if where == "environment":  # with no `llm:` in the manifest at all
        monkeypatch.setenv("SFTMIX_LLM_BASE_URL", url)
        path = write(tmp_path, edited(lambda data: data.pop("llm", None)))
    else:
        path = write(tmp_path, edited(lambda data: data.update(llm={"base_url": url})))
    message = load_error(path)
    assert message.endswith("llm: base_url (the manifest's, or SFTMIX_LLM_BASE_URL) holds credentials "
                            "(user:password@host): give the API key in SFTMIX_LLM_API_KEY or DEEPSEEK_API_KEY instead")
    assert "SECRET" not in message
    monkeypatch.setenv("SFTMIX_LLM_BASE_URL", "https://gateway.example/v1")
    assert load(path)


def test_llm_settings_of_the_right_types_load(tmp_path):
    settings = {"budget_usd": 10, "max_tokens": 2048, "requests_per_minute": 600, "prices": {"completion": 2}}
    assert load(write(tmp_path, edited(lambda data: data.update(llm=settings)))).llm == settings


@pytest.mark.parametrize("converter, rows", [("fineweb_edu", "000_00000.parquet"), ("wildchat", "train.parquet")])
@pytest.mark.parametrize("targets", ["all", {"en": 5}, {"*": 0}])
def test_a_source_of_prompts_or_documents_is_generator_input_only(tmp_path, converter, rows, targets):
    """The sample mixed FineWeb-Edu documents and WildChat prompts (`targets: all`), one user turn each:
    12 of its 119 rows trained nothing under an assistant-only loss, and a bare document as a chat on
    the whole text. Their converters turn off `role_order`'s final assistant turn for the generators
    that read them, so no rule dropped them; `targets: {}` is how a manifest feeds generators only."""
    def manifest(targets, role_order=None):
        source = {"key": "docs", "local": {"files": [rows]}, "converter": converter, "licence": "odc-by",
                  "targets": targets}
        return edited(lambda data: (data["licence_policy"]["allow"].append("odc-by"), data["sources"].append(source),
                                    role_order is not None and data.update(filters={"role_order": role_order})))

    message = load_error(write(tmp_path, manifest(targets)))
    assert message.endswith(f": source 'docs': converter {converter!r} gives rows with no assistant turn "
                            "(generator input), which train nothing: set `targets: {}` to read it for generators only")
    assert "targets: {}" in load_error(write(tmp_path, manifest(targets, role_order=False)))  # the rule off for every source
    assert load(write(tmp_path, manifest({}), "ok.yaml")).source("docs").is_input_only


def test_a_converter_that_only_lets_rows_end_without_an_answer_is_mixed(tmp_path, monkeypatch):
    """The refusal reads a module's `ANSWERS`, not its `role_order` defaults: a format whose rows may end
    on a tool turn turns that check off and still gives answers (review4)."""
    import sftmix.sources.glaive as glaive

    monkeypatch.setattr(glaive, "FILTER_DEFAULTS", {"role_order": {"require_assistant": False}}, raising=False)
    source = {"key": "calls", "local": {"files": ["glaive.json"]}, "converter": "glaive", "licence": "apache-2.0",
              "targets": "all"}
    manifest = load(write(tmp_path, edited(lambda data: data["sources"].append(source)), "ok.yaml"))
    assert not manifest.source("calls").is_input_only and not manifest.source("calls").gives_no_answers


def test_the_bundled_manifests_read_prompts_and_documents_for_generators_only():
    answerless = {path.name: {s.key: s.is_input_only for s in load(path).sources if s.gives_no_answers}
                  for path in sorted((ROOT / "manifests").glob("*.yaml"))}
    assert answerless == {"alia-40b-fc.yaml": {}, "alia-40b-instruct.yaml": {"fineweb-edu": True, "wildchat": True},
                          "sample.yaml": {"wildchat": True, "fineweb-edu": True}}


def test_a_generator_feeding_only_other_generators_is_checked_as_one_that_feeds_the_mixture(tmp_path):
    """`targets: {}` put a generator outside every check: a no-derivatives source could reach the
    mixture through it, and an input it does not have stopped the build with a traceback."""
    human = {"key": "human", "local": {"files": ["x.jsonl"]}, "converter": "dolly", "licence": "cc-by-nc-nd-4.0",
             "language": "en", "targets": {}}
    step = {"key": "step", "generator": {"name": "translation", "inputs": ["human"]}, "licence": "apache-2.0",
            "targets": {}}
    final = {"key": "final", "generator": {"name": "multiturn_augmentation", "inputs": ["step"]},
             "licence": "apache-2.0", "targets": {"en": 10}}
    manifest = {"mixture": "m", "holdout": {"size": 0}, "licence_policy": {"allow": ["apache-2.0"]},
                "sources": [human, step, final]}
    message = load_error(write(tmp_path, manifest))
    assert "generator source 'step' reads 'human' (cc-by-nc-nd-4.0): its licence allows no derivatives" in message
    step["generator"]["inputs"] = ["nope"]
    assert "generator source 'step' reads unknown source 'nope'" in load_error(write(tmp_path, manifest))



def test_the_identity_rephrase_reads_oasst2_s_self_introductions(tmp_path, instruct):
    """The identity rule dropped the Open Assistant / LAION answers from oasst2's filtered records,
    which is all the generator reads: 4 of its own test's 10 conversations reached it."""
    claim = make_record(source="oasst2", licence="apache-2.0", language="en", tools=[], origin={"row": 0}, messages=[
        message("user", "Who are you?"),
        message("assistant", "I am Open Assistant, a chatbot created by LAION to help you with any question.")])
    identity_input = instruct.source("oasst2-identity")
    assert instruct.source("oasst2_self-identity-rephrase").generator.inputs == ["oasst2-identity"]
    assert len(_filtered_docs(instruct.filter_config(identity_input, filter_defaults("oasst2")), claim)) == 1
    # what the rule does with it for the generators that keep earlier turns as they are
    assert _filtered_docs(instruct.filter_config(instruct.source("oasst2"), filter_defaults("oasst2")), claim) == []
    oasst2_entry = {"key": "oasst2", "local": {"files": ["x.parquet"]}, "converter": "oasst2",
                    "licence": "apache-2.0", "targets": {}}
    rephrase = {"key": "rephrase", "generator": {"name": "oasst2_identity_rephrase", "inputs": ["oasst2"]},
                "licence": "apache-2.0", "targets": {"en": 10}}
    manifest = {"mixture": "m", "identity": {"name": "ALIA", "developer": "BSC"}, "holdout": {"size": 0},
                "licence_policy": {"allow": ["apache-2.0"]}, "sources": [oasst2_entry, rephrase]}
    assert load_error(write(tmp_path, manifest)).endswith(
        "generator source 'rephrase' reads 'oasst2', whose rule 'identity' drops the rows oasst2_identity_rephrase "
        "exists to rewrite: set `filters: {identity: false}` on 'oasst2' (the generated rows pass that rule themselves)")
    manifest["filters"] = {"identity": False}  # off for every source, this one included
    assert load(write(tmp_path, manifest)).source("rephrase")
    manifest["filters"] = {}
    oasst2_entry["filters"] = {"identity": {"check_cutoff": False}}  # settings are not "off"
    assert "whose rule 'identity' drops" in load_error(write(tmp_path, manifest))
    oasst2_entry["filters"] = {"identity": False}
    assert load(write(tmp_path, manifest)).source("rephrase")


def _filtered_docs(config: dict, record: dict) -> list[Document]:
    docs = [Document(text=learned_text(record), id=record["id"], metadata={"record": record})]
    # the manifest's benchmark files are not shipped
    for step in rule_filters.build_filters({**config, "decontamination": False}):
        docs = list(step.run(iter(docs)))
    return docs

def test_a_source_sampling_its_own_manifests_mixture_is_a_manifest_error(tmp_path):
    """It loaded, then asked to build that mixture first, which it could never be."""
    data = edited(lambda d: d["sources"].append({"key": "itself", "mixture": {"manifest": "bad.yaml"}, "targets": {"*": 5}}))
    assert load_error(write(tmp_path, data)).endswith("source 'itself' samples the mixture of this manifest itself")
    data["sources"][-1]["mixture"]["manifest"] = "other.yaml"
    assert load(write(tmp_path, data)).sources[-1].mixture.manifest == "other.yaml"
    # two manifests sampling each other: their settings recursed without end ("YAML nested too deeply")
    other = edited(lambda d: d["sources"].append({"key": "back", "mixture": {"manifest": "bad.yaml"}, "targets": {"*": 5}}))
    write(tmp_path, other, "other.yaml")
    assert load_error(tmp_path / "bad.yaml").endswith(
        f"source 'itself' samples the mixture of this manifest itself, through {tmp_path / 'other.yaml'}")


def test_source_keys_that_name_the_same_dagster_assets_are_a_manifest_error(tmp_path):
    """`When2Call.x` and `When2Call-x` are both `When2Call_x`: Dagster refused the definitions with a
    long traceback that named neither source."""
    data = edited(lambda d: (d["sources"][0].update(key="al-pha"), d["sources"][1].update(key="al.pha")))
    assert "source keys ['al-pha', 'al.pha'] would name the same Dagster assets (al_pha/...): rename one" in \
        load_error(write(tmp_path, data))


def test_a_generator_parameter_it_does_not_read_is_a_manifest_error(tmp_path):
    """`min_int_scor: 0` was ignored: the generator ran with its default, 4."""
    manifest = {"mixture": "m", "holdout": {"size": 0}, "licence_policy": {"allow": ["apache-2.0", "odc-by"]},
                "sources": [{"key": "web", "local": {"files": ["x.parquet"]}, "converter": "fineweb_edu",
                             "licence": "odc-by", "language": "en", "targets": {}},
                            {"key": "qa", "generator": {"name": "fineweb_edu_qa", "inputs": ["web"],
                                                        "params": {"min_int_scor": 0}},
                             "licence": "apache-2.0", "targets": {"en": 10}}]}
    assert load_error(write(tmp_path, manifest)).endswith(
        "generator 'fineweb_edu_qa' has no parameter 'min_int_scor' (did you mean 'min_int_score'? it reads: "
        "min_int_score, min_chars, keep_fraction, pairs_per_document, expected_rows_per_document, max_document_chars, layout)")
    manifest["sources"][1]["generator"]["params"] = {"min_int_score": 0}
    assert load(write(tmp_path, manifest)).sources[1].generator.params == {"min_int_score": 0}
    manifest["sources"][1]["generator"]["params"] = {"min_int_score": None}  # no check: its type says so
    assert load(write(tmp_path, manifest)).sources[1].generator.params == {"min_int_score": None}


@pytest.mark.parametrize("generator, params, error", [
    ("wildchat_responses", {"max_response_tokens": "2048"},
     "generator 'wildchat_responses' parameter max_response_tokens: Input should be a valid integer (got '2048')"),
    ("eif_augmentation", {"min_constraints": 0},
     "generator 'eif_augmentation' parameter min_constraints: Input should be greater than or equal to 1 (got 0)"),
    ("eif_augmentation", {"min_constraints": 4, "max_constraints": 2},
     "generator 'eif_augmentation': min_constraints 4 is above max_constraints 2"),
    ("wildchat_responses", {"keep_fraction": 1.5},
     "generator 'wildchat_responses' parameter keep_fraction: Input should be less than or equal to 1 (got 1.5)"),
    ("fc_synthesis", {"include": ["paralel"]},
     "generator 'fc_synthesis' parameter include.0: Input should be 'single', 'parallel', 'multi_turn' or 'no_tool_fits' "
     "(got 'paralel')"),
    # a null (the project's "off" elsewhere) stopped the stage with int(None); where a generator read
    # it as its default, leaving the parameter out says so
    ("long_context_qa", {"max_tokens": None},
     "generator 'long_context_qa' parameter max_tokens: Input should be a valid integer (got None)"),
    ("translation", {"max_tokens": None},
     "generator 'translation' parameter max_tokens: Input should be a valid integer (got None)"),
])
def test_a_generator_parameter_of_the_wrong_type_or_range_is_a_manifest_error(tmp_path, generator, params, error):
    """`max_response_tokens: "2048"` dropped every row as malformed_generation, with no request sent;
    `min_constraints: 0` let eif rows with no constraint in."""
    manifest = {"mixture": "m", "holdout": {"size": 0}, "licence_policy": {"allow": ["apache-2.0"]},
                "sources": [{"key": "chat", "local": {"files": ["x.jsonl"]}, "converter": "dolly",
                             "licence": "apache-2.0", "language": "en", "targets": {}},
                            {"key": "gen", "generator": {"name": generator, "inputs": ["chat"], "params": params},
                             "licence": "apache-2.0", "targets": {"en": 10}}]}
    assert load_error(write(tmp_path, manifest)).endswith(error)
    valid = {"wildchat_responses": {"max_response_tokens": 2048, "keep_fraction": 1},
             "eif_augmentation": {"min_constraints": 2, "max_constraints": 2}, "fc_synthesis": {"include": ["parallel"]},
             "translation": {"max_tokens": 4096}, "long_context_qa": {"max_tokens": 32000}}
    manifest["sources"][1]["generator"]["params"] = valid[generator]
    assert load(write(tmp_path, manifest)).sources[1].generator.params == valid[generator]


@pytest.mark.parametrize("name", implemented())
def test_a_generators_params_are_the_ones_its_code_reads(name):
    """`PARAMS` is what the manifest check accepts: a parameter read but not listed would be refused,
    one listed but not read would be ignored again."""
    module = get_generator(name)
    tree = ast.parse(Path(module.__file__).read_text())
    read = {call.args[0].value for call in ast.walk(tree)
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "get"
            and ast.unparse(call.func.value).endswith("params") and call.args and isinstance(call.args[0], ast.Constant)}
    read |= {node.slice.value for node in ast.walk(tree) if isinstance(node, ast.Subscript)
             and ast.unparse(node.value).endswith("params") and isinstance(node.slice, ast.Constant)}
    assert read == set(module.PARAMS) and len(module.PARAMS) == len(set(module.PARAMS))


def test_attribution_only_inputs_may_feed_apache_generators():
    from sftmix.record import derivative_problem

    assert derivative_problem("cc-by-4.0", "apache-2.0") is None
    assert derivative_problem("odc-by", "apache-2.0") is None
    assert derivative_problem("cc-by-sa-4.0", "cc-by-sa-4.0") is None
    # the Llama licences bind derivatives as share-alike ones do (they were let through as attribution-only)
    assert derivative_problem("llama3", "apache-2.0") == "llama3 data must keep its licence, not become apache-2.0"
    assert derivative_problem("llama2", "llama3") == "llama2 data must keep its licence, not become llama3"
    assert derivative_problem("llama3", "llama3") is None
    # known ids that name no terms: nothing may be derived from them
    assert derivative_problem("unknown", "apache-2.0") == derivative_problem("other", "apache-2.0") == (
        "its licence is not known, so nothing says it may be")


def test_a_setting_for_every_source_does_not_undo_what_a_format_needs(tmp_path):
    """A manifest's `filters:` for every source were merged over the formats' own defaults: extra
    boilerplate phrases turned the rule back on for When2Call (whose refusals are what it teaches),
    and `role_order: true` required an answer of WildChat's prompts (every row a drop). A source's
    own setting still decides."""
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({
        "mixture": "m", "holdout": {"size": 0}, "licence_policy": {"allow": ["cc-by-4.0", "odc-by"]},
        "filters": {"boilerplate": {"extra_phrases": ["i'm sorry, i can't help"]}, "role_order": True,
                    "length": {"max_chars": 5000}},
        "sources": [
            {"key": "w2c", "local": {"files": ["x.jsonl"]}, "converter": "when2call", "licence": "cc-by-4.0",
             "language": "en", "targets": "all"},
            {"key": "prompts", "local": {"files": ["y.jsonl"]}, "converter": "wildchat", "licence": "odc-by",
             "language": "en", "targets": {}, "filters": {"length": {"max_chars": 9000}}},
            {"key": "w2c-strict", "local": {"files": ["x.jsonl"]}, "converter": "when2call", "licence": "cc-by-4.0",
             "language": "en", "targets": "all", "filters": {"boilerplate": {"extra_phrases": ["no puedo"]}}},
        ],
    }))
    manifest = load(path)
    w2c, prompts, strict = (filter_config(manifest, manifest.source(key)) for key in ("w2c", "prompts", "w2c-strict"))
    assert w2c["boilerplate"] is False and w2c["length"] == {"max_chars": 5000}
    assert prompts["role_order"] == {"require_assistant": False} and prompts["length"] == {"max_chars": 9000}
    assert strict["boilerplate"] == {"extra_phrases": ["no puedo"]}


def test_a_format_s_adjustment_does_not_turn_on_a_rule_the_manifest_turned_off(tmp_path):
    """WildChat's `role_order: {require_assistant: false}` switched a manifest-wide `role_order: false`
    back on; a source's own setting still may."""
    import filters as rule_filters

    def enabled(source_filters: dict) -> set[str]:
        manifest = load(write(tmp_path, edited(lambda d: (d.update(filters={"role_order": False}), d["sources"].append(
            {"key": "chats", "local": {"files": ["w.parquet"]}, "converter": "wildchat", "licence": "apache-2.0",
             "targets": {}, "filters": source_filters}))), "ok.yaml"))
        source = manifest.source("chats")
        return {rule.name for rule, _ in rule_filters.enabled_filters(manifest.rule_settings(source, filter_defaults("wildchat")))}

    assert "role_order" in {rule.name for rule, _ in rule_filters.enabled_filters(filter_defaults("wildchat"))}
    assert "role_order" not in enabled({})
    assert "role_order" in enabled({"role_order": {"require_assistant": False}})
