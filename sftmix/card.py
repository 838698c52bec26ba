"""The dataset card written beside the shards: Hugging Face README.md with a YAML header."""

from __future__ import annotations

from collections import Counter

import yaml

from sftmix import __version__
from sftmix.counts import Counts
from sftmix.manifest import ANY_LANGUAGE, Manifest
from sftmix.mixing import SPLITS, MixResult
from sftmix.plan import cells
from sftmix.record import NOT_ON_HUB, hub_licence, licence_id


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(f"{v:,}" if isinstance(v, int) else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _split_table(title: str, breakdown: dict[str, dict[str, int]], also: set[str] = frozenset(),
                 licences: dict[str, dict[str, dict[str, int]]] | None = None) -> str:
    """Rows per split of each key, and of the keys in `also` that gave none; with `licences` (split ->
    key -> licence -> rows), the licences each key's rows carry."""
    keys = sorted({k for split in SPLITS for k in breakdown.get(split, {})} | also)
    rows = [[k, *(breakdown.get(s, {}).get(k, 0) for s in SPLITS)] for k in keys]
    if licences is None:
        return _table([title, *SPLITS], rows)
    carried = [", ".join(sorted({lic for s in SPLITS for lic in licences.get(s, {}).get(k, {})})) for k in keys]
    return _table([title, *SPLITS, "licences"], [[*row, lics] for row, lics in zip(rows, carried)])


def _cell_table(manifest: Manifest, by_cell: dict[str, dict[str, dict[str, int]]]) -> str:
    """Rows per split of each source x language, and of the manifest's cells that gave none, beside
    the cell's target (`all`: every row it has). A source's one target over all its languages (`*`)
    is beside each of its languages, marked `(*)`."""
    targets = {(c.source, c.language): "all" if c.target is None else f"{c.target:,}" for c in cells(manifest)}
    found = {(source, language) for split in SPLITS for source, languages in by_cell.get(split, {}).items()
             for language in languages}
    with_rows = {source for source, _ in found}
    keys = found | {(source, language) for source, language in targets
                    if language != ANY_LANGUAGE or source not in with_rows}

    def target(source: str, language: str) -> str:
        # the manifest is the one mixed (`build.write_card`): a language with rows has a target, or its source one over all
        return targets.get((source, language)) or f"{targets[(source, ANY_LANGUAGE)]} (*)"

    rows = [[source, language, *(by_cell.get(s, {}).get(source, {}).get(language, 0) for s in SPLITS),
             target(source, language)]
            for source, language in sorted(keys, key=lambda k: (k[0], k[1] == ANY_LANGUAGE, k[1]))]
    return _table(["source", "language", *SPLITS, "target"], rows)


# The Hub's size categories (`datasets`' utils/resources/size_categories.json), by their upper bounds
_SIZE_CATEGORIES = (("n<1K", 10**3), ("1K<n<10K", 10**4), ("10K<n<100K", 10**5), ("100K<n<1M", 10**6),
                    ("1M<n<10M", 10**7), ("10M<n<100M", 10**8), ("100M<n<1B", 10**9), ("1B<n<10B", 10**10),
                    ("10B<n<100B", 10**11), ("100B<n<1T", 10**12))


def size_category(rows: int) -> str:
    """The Hub's size category of a dataset of `rows` rows (search and filters use it)."""
    return next((name for name, bound in _SIZE_CATEGORIES if rows < bound), "n>1T")


def _other_named(licences: list[str]) -> str | None:
    """The one licence the Hub has no id for among `licences`, when there is one and sftmix knows its
    text: the header names it in `license_name` and `license_link` (a header takes one)."""
    other = [licence for licence in licences if hub_licence(licence) == "other"]
    return other[0] if len(other) == 1 and other[0] in NOT_ON_HUB else None


def _licence_header(licences: list[str]) -> dict:
    """The header's `license:` of data under `licences`: their Hub ids, and for `other`, where it can,
    the `license_name` and `license_link` the Hub's dataset card spec asks for (hub-docs datasetcard.md)."""
    ids = sorted({hub_licence(licence) for licence in licences})
    named = _other_named(licences)
    return {"license": ids if len(ids) != 1 else ids[0],
            **({"license_name": named, "license_link": NOT_ON_HUB[named]} if named else {})}


def _by_licence_id(by_key: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Counts by licence under each key (a split, a source), each licence as sftmix spells it
    (`licence_id`): a stats.json or shards an older sftmix wrote may spell one licence two ways
    (odc-by-1.0, ODC-By-1.0), which a filter on either selects."""
    folded: dict[str, Counter] = {}
    for key, counts in by_key.items():
        for licence, rows in counts.items():
            folded.setdefault(key, Counter())[licence_id(licence)] += rows
    return {key: dict(counts) for key, counts in folded.items()}


def _licence_section(licences: list[str], as_own: dict[str, dict[str, int]], as_input: dict[str, dict[str, int]]) -> str:
    """Rows by licence, as the rows carry it and as generated rows name it among their inputs'."""
    inputs_named = any(as_input.get(split) for split in SPLITS)
    columns = ["licence", *SPLITS, *(f"{split} (input licence)" for split in SPLITS if inputs_named), "Hub id"]
    rows = [[lic, *(as_own.get(s, {}).get(lic, 0) for s in SPLITS),
             *(as_input.get(s, {}).get(lic, 0) for s in SPLITS if inputs_named), hub_licence(lic)] for lic in licences]
    # `other` is a Hub id itself: rows labelled so are under licences sftmix does not know
    no_id = [f"`{lic}`" for lic in licences if hub_licence(lic) == "other" and lic != "other"]
    stands_for = ([f"{', '.join(no_id)}, which the Hub has no id for"] if no_id else []) + (
        ["the licences rows call `other`"] if "other" in licences else [])
    unnamed = (f" The header's `other` stands for {', and for '.join(stands_for)}: it names no `license_name` or "
               "`license_link`, which take one licence of known text."
               if stands_for and not _other_named(licences) else "")
    inputs = ("`(input licence)`: rows that name it in `origin.input_licences`, generated from data under it, whose "
              "text they hold; a licence of only these rows is an *input licence*. " if inputs_named else "")
    return ("## Rows by licence\n\n`licence`: as the rows carry it (filter on it). " + inputs + "The header's "
            "`license:` lists them all, by the Hugging Face Hub's ids (`Hub id`; `other`: a licence the Hub has no id "
            "for)." + unnamed + "\n\n" + _table(columns, rows))


def render(manifest: Manifest, result: MixResult) -> str:
    stage_counts = {key: {stage: saved and Counts.from_saved(saved) for stage, saved in stages.items()}
                    for key, stages in result.intake.items()}
    # the rows' own licences and their inputs' (`origin.input_licences`): a generated row holds its inputs' text
    as_own, as_input = _by_licence_id(result.by_licence), _by_licence_id(result.by_input_licence)
    licences = sorted({lic for counts in (as_own, as_input) for split in SPLITS for lic in counts.get(split, {})})
    header = {
        **_licence_header(licences),
        "language": sorted({lang for split in SPLITS for lang in result.by_language.get(split, {}) if lang != "*"}),
        "tags": ["sft", "chat", "function-calling", "sftmix"],
        "size_categories": [size_category(sum(result.split_rows.get(split, 0) for split in SPLITS))],
        # a split of no rows is left out: `load_dataset` refuses one ("corresponds to no data")
        "configs": [{"config_name": "default", "data_files": [{"split": s, "path": f"{s}/*.parquet"} for s in SPLITS
                                                              if result.split_rows.get(s)]}],
    }
    # A generated source's one stage writes `<source>.generated-*` rejected files: named so here, and
    # its rows read are those its generator made (there is nothing to convert).
    generated = {source.key for source in manifest.sources if source.generator is not None}
    drops = []
    for key, stages in stage_counts.items():
        for stage, counts in stages.items():
            for reason, n in sorted((counts.dropped if counts else {}).items()):
                drops.append([key, "generated" if key in generated else stage, reason, n])
    # a source with `targets: {}` feeds generators only: its rows are read, filtered and never mixed
    input_only = {source.key for source in manifest.sources if source.is_input_only}
    intake = [[key + (" (generator input only)" if key in input_only else ""),
               *((c.read, c.kept) if (c := stages.get("normalized")) else
                 (stages["filtered"].read if key in generated and stages.get("filtered") else "", "")),
               (stages["filtered"].kept if stages.get("filtered") else "")] for key, stages in stage_counts.items()]
    mixed = {source.key for source in manifest.sources if not source.is_input_only}
    # Not in the licences column, which is what filtering on `licence` gives: a generated row is
    # under its source's licence, and names its inputs' in its origin
    inputs_named = (f"Rows of generated sources ({', '.join(f'`{key}`' for key in sorted(generated & mixed))}) are "
                    "under the licence the manifest gives their source; each names in `origin.input_licences` the "
                    "licences of the records it was built from (a document it quotes, a prompt it answers). "
                    if generated & mixed else "")
    sections = [
        "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---",
        f"# {manifest.mixture}\n\n{manifest.description}\n\nBuilt by sftmix {__version__} from manifest "
        f"`{manifest.path.name if manifest.path else ''}` (settings hash `{manifest.hash}`), seed {manifest.seed}. "
        f"Train: {result.split_rows['train']:,} rows; validation (holdout): {result.split_rows['validation']:,} rows.",
        "Each row: `id` (content hash), `source`, `licence`, `language`, `messages` (OpenAI chat format with "
        "`tool_calls`), `tools` (JSON string of OpenAI tool definitions), `origin` (provenance JSON). "
        "Rows keep the licence of the dataset they come from; filter on `licence` to use a subset. "
        + inputs_named +
        "Both splits hold every source's rows in one order, by sha256 of the seed, the mixture's name and "
        "the row's id, so "
        "they read as a mix of the sources rather than one source after another.",
        "## Rows by source\n\n" + _split_table("source", result.by_source, mixed, result.by_source_licence and {
            split: _by_licence_id(by_source) for split, by_source in result.by_source_licence.items()}),
        "## Rows by source × language\n\n`target`: the manifest's target for the cell's train rows (`all`: every "
        "row it has; `(*)`: the source's one target over all its languages).\n\n"
        + _cell_table(manifest, result.by_cell),
        "## Rows by language\n\n" + _split_table("language", result.by_language),
        _licence_section(licences, as_own, as_input),
        "## Intake per source\n\n" + ("A source marked as generator input only is read for the generators that "
                                       "take it; none of its rows is in either split.\n\n" if input_only & stage_counts.keys()
                                       else "") + _table(["source", "read", "converted", "after filters"], intake),
        "## Drops by reason\n\nEvery dropped row is kept with its reason in `rejected/`.\n\n"
        + (_table(["source", "stage", "reason", "rows"], drops) if drops else "No drops."),
    ]
    if result.deficits:
        sections.append("## Deficits\n\nCells that had fewer rows than their target (`rows`: a cell's train rows; "
                        "for `*holdout*`, the validation split's):\n\n" + _table(
            ["source", "language", "target", "rows", "deficit"],
            [[d["source"], d["language"], d["target"], d.get("train", d.get("validation")), d["deficit"]]
             for d in result.deficits]))
    excluded = [[k, r, n] for k, reasons in result.excluded.items() for r, n in reasons.items()]
    if excluded:
        sections.append("## Rows not selected\n\nDuplicates and licences the policy refuses are kept with their reason "
                        "in `rejected/<source>.mixing-00000.parquet`; rows of languages untargeted or of target 0 "
                        "(`language_not_targeted`) and rows beyond a cell's target (`beyond_target`) are only counted.\n\n"
                        + _table(["source", "reason", "rows"], excluded))
    return "\n\n".join(sections) + "\n"
