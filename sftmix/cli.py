"""`sftmix` command line: thin wrappers over the library functions the Dagster assets call."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from sftmix.counts import Counts


class UserError(Exception):
    """A problem with what the user asked for: printed as one line, exit code 2."""


def _normalize(args) -> int:
    from sftmix.normalize import SourceInfo, normalize, nothing_converted
    from sftmix.sources import DEFAULT_LANGUAGES, DEFAULT_LICENCES, ROW_LICENSED, available, filter_defaults

    if args.converter not in available():
        raise UserError(f"unknown converter {args.converter!r}; known: {', '.join(available())}")
    licence = args.licence or DEFAULT_LICENCES.get(args.converter)
    if licence is None and args.converter not in ROW_LICENSED:
        raise UserError(f"converter {args.converter!r} has no default licence; pass --licence")
    _labels_valid(args.licence, args.language)
    out = Path(args.output)
    rejected = Path(args.rejected) if args.rejected else out.with_name(out.stem + ".rejected.parquet")
    _outputs_valid(args.inputs, out, rejected)
    info = SourceInfo(
        key=args.source or args.converter,
        converter=args.converter,
        licence=licence,
        language=args.language or DEFAULT_LANGUAGES.get(args.converter),
        origin={"files": [Path(p).name for p in args.inputs]},
        filters=filter_defaults(args.converter),
    )
    counts = normalize(info, args.inputs, out, rejected, apply_filters=not args.no_filters)
    print(f"wrote {counts.kept} records to {out}; {sum(counts.dropped.values())} drops to {rejected}", file=sys.stderr)
    # where the time went (as the Dagster asset shows it); stdout's last line keeps its contract shape
    print("seconds by step: " + ", ".join(f"{step} {s:.2f}" for step, s in counts.seconds.items()), file=sys.stderr)
    problem = (nothing_converted(counts, args.converter, [rejected])
               or (not counts.read and f"{', '.join(map(str, args.inputs))}: no rows to read (empty files)"))
    if problem:
        print(f"warning: {problem}", file=sys.stderr)
    _print_summary(counts)
    return 0


def _labels_valid(licence: str | None, language: str | None) -> None:
    """The licence and language given on the command line, checked as a manifest's are."""
    from sftmix.manifest import language_problem
    from sftmix.record import licence_problem

    problem = (licence and licence_problem(licence)) or (language and language_problem(language))
    if problem:
        raise UserError(problem)


def _outputs_valid(inputs: list[str], *outputs: Path) -> None:
    """Checked before any work (a judge run pays for every row first): an output written over an
    input would destroy the input once the run renames it into place, and one that is a directory,
    or under a file, fails only when the run writes it."""
    given = {Path(path).resolve() for path in inputs}
    for output in outputs:
        if output.resolve() in given:
            raise UserError(f"{output} is one of the inputs: it would be overwritten")
        if output.is_dir():
            raise UserError(f"{output} is a directory: give the file to write in it, e.g. {output / 'records.parquet'}")
        if blocking := next((parent for parent in output.parents if parent.exists() and not parent.is_dir()), None):
            raise UserError(f"cannot write {output}: {blocking} is a file, not a directory")
    if len({output.resolve() for output in outputs}) < len(outputs):
        raise UserError(f"the records and the rejected rows would be written to the same file: {', '.join(map(str, outputs))}")


def _plan(args) -> int:
    from sftmix import plan
    from sftmix.manifest import load

    manifest = load(args.manifest)
    print(plan.table(manifest))
    print(json.dumps(plan.summary(manifest), ensure_ascii=False))
    for problem in filter(None, map(plan.unmakeable, manifest.sources)):
        print(f"warning: {problem}", file=sys.stderr)
    return 0


def _render(args) -> int:
    from sftmix.normalize import check_records, read_records
    from sftmix.reader import SPLITS, training_shards
    from sftmix.render import to_chatml

    path = Path(args.shard)
    if not path.exists():
        raise UserError(f"shard not found: {path}")
    # a shard, or a split's shards in order (a mixture directory: its train split)
    named = path.parent if path.is_file() else path  # a shard is named by its split's directory
    split = named.name if named.name in SPLITS else "train"
    try:
        shards = training_shards(path, split)
    except ValueError as error:  # a mixing stopped part way, shards of two builds
        raise UserError(str(error)) from None
    check_records(shards)  # every shard, before any row is shown
    rows = ((shard, record) for shard in shards for record in read_records([shard]))
    for shown, (shard, record) in enumerate(rows):
        if args.limit is not None and shown >= args.limit:
            break
        try:
            text = to_chatml(record)
        except ValueError as error:  # a row the tool-call filter would have dropped (arguments not JSON)
            raise UserError(f"cannot render row {record['id']} of {shard}: {error}") from None
        print(f"### {record['id']} ({record['source']}, {record['language']}, {record['licence']})")
        print(text)
    return 0


SUMMARY_LLM_KEYS = ("requests", "cache_hits", "prompt_tokens", "completion_tokens", "cost_usd")


def _print_llm_summary(kept_key: str, counts: Counts, clients: dict) -> int:
    """Every LLM figure of the step's clients (name -> Stats) together on one line, then the
    contract's last line with exactly its keys; a warning for each client whose endpoint answered
    nothing or refused the account (a judge's answers cannot hide behind its generator's, as in a
    build's check). The exit code: 1 when one refused the account (the rows it left unasked are
    drops a rerun would make: the output is not the source's), or answered nothing and no row was
    kept (a script going on to train read an empty file after exit 0), else 0."""
    from sftmix.llm import Stats

    figures = Stats.total(list(clients.values())).summary()
    print("llm " + json.dumps(figures))
    print(json.dumps({kept_key: counts.kept, "dropped": dict(sorted(counts.dropped.items())),
                      **{k: figures[k] for k in SUMMARY_LLM_KEYS}}))
    failed = False
    for name, stats in clients.items():
        if problem := stats.unanswered():
            print(f"warning: {problem}" + (f" (the {name}'s requests)" if len(clients) > 1 else ""), file=sys.stderr)
            failed = failed or bool(stats.refused) or not counts.kept
    return int(failed)


def _llm_settings(manifest, cache_dir: str | None, own: dict | None = None):
    """The manifest's `llm:` (then a judge's `own`), the environment's endpoint, and the cache."""
    from pydantic import ValidationError

    from sftmix.llm import LLMSettings, settings_problem

    config = {**(manifest.llm if manifest is not None else {}), **(own or {})}
    if cache_dir:  # named on the command line: over the manifest's too
        config["cache_dir"] = cache_dir
    config.setdefault("cache_dir", os.environ.get("SFTMIX_LLM_CACHE", ".sftmix-llm-cache"))
    try:
        return LLMSettings.from_config(config)
    except ValidationError as error:  # the environment's SFTMIX_LLM_* without a manifest to check them
        raise UserError(f"LLM settings: {settings_problem(error)}") from None


def _generate(args) -> int:
    from generators import GeneratorNotAvailable, filter_defaults, get_generator
    from generators.base import Context, GeneratorBroken, generate
    from sftmix.build import BuildError, check_benchmarks, filter_config
    from sftmix.llm import LLMClient, api_key_from_env
    from sftmix.manifest import load
    from sftmix.normalize import SourceInfo, read_records

    try:
        module = get_generator(args.generator)
    except (KeyError, GeneratorNotAvailable) as error:
        raise UserError(str(error).strip('"')) from None
    _inputs_exist(args.input)
    _labels_valid(args.licence, args.language)
    if args.source and not args.manifest:
        raise UserError("--source names a source of the manifest given with --manifest")
    manifest = load(args.manifest) if args.manifest else None
    source = _generated_source(manifest, args.generator, args.source) if manifest else None
    if source:
        try:
            check_benchmarks(manifest, source)  # before any request is paid for
        except BuildError as error:
            raise UserError(str(error)) from None
    targets = dict(source.target_cells()) if source else {args.language or "en": "all"}
    if args.language:
        if source and args.language not in targets and "*" not in targets:
            raise UserError(f"source {source.key!r} has no target in {args.language!r} "
                            f"(its targets: {', '.join(sorted(targets))})")
        targets = {args.language: targets.get(args.language, targets.get("*", "all"))}
    api_key_from_env()
    client = LLMClient(_llm_settings(manifest, args.cache_dir))
    context = Context(llm=client, targets=targets, params=source.generator.params if source else {},
                      identity=manifest.identity if manifest else None, seed=manifest.seed if manifest else 0)
    # the source's judge, if any, asks the manifest's endpoint and spends from the generator's budget, as in a build;
    # without a manifest, the generator's own rule defaults (as `normalize` takes its converter's)
    rules = (filter_config(manifest, source, spending=client.spending,
                           judge_settings=lambda own: _llm_settings(manifest, args.cache_dir, own))
             if source else filter_defaults(args.generator))
    info = SourceInfo(key=source.key if source else args.generator, converter="openai_messages",
                      licence=(source.licence if source else None) or args.licence,
                      filters=rules, manifest_hash=manifest.hash if manifest else None)
    out = Path(args.output)
    rejected = out.with_name(out.stem + ".rejected.parquet")
    _outputs_valid(args.input, out, rejected)
    try:
        counts = generate(module, read_records(args.input), context, info, out, rejected, limit=args.limit)
    except GeneratorBroken as error:
        raise UserError(f"generator {args.generator!r}: {error}") from None
    judge = rules.get("llm_judge") or {}
    return _print_llm_summary("generated", counts, {"generator": client.stats, **({"judge": judge["client"].stats} if judge else {})})


def _inputs_exist(inputs: list[str]) -> None:
    """A UserError naming the inputs that are directories or missing (before any request is paid)."""
    folders = [p for p in inputs if Path(p).is_dir()]
    if folders:
        raise UserError(f"{', '.join(folders)} is a directory: give the files of records in it")
    missing = [p for p in inputs if not Path(p).is_file()]
    if missing:
        raise UserError(f"input file not found: {', '.join(missing)}")


def _generated_source(manifest, generator: str, key: str | None):
    """The manifest's source that `generator` makes: the one named, or the only one; None (with a
    warning) when the manifest has none, which then gives only its identity and LLM settings."""
    sources = [s for s in manifest.sources if s.generator and s.generator.name == generator]
    if key is not None:
        source = next((s for s in sources if s.key == key), None)
        if source is None:
            raise UserError(f"{manifest.path}: no source {key!r} made by generator {generator!r} "
                            f"(its sources made by it: {', '.join(s.key for s in sources) or 'none'})")
        return source
    if len(sources) > 1:
        raise UserError(f"{manifest.path}: generator {generator!r} makes {len(sources)} sources "
                        f"({', '.join(s.key for s in sources)}): name one with --source")
    if not sources:
        print(f"warning: {manifest.path} has no source made by generator {generator!r}: its targets and params "
              "are the generator's defaults", file=sys.stderr)
        return None
    return sources[0]


def _judge(args) -> int:
    import filters as rule_filters
    from filters.llm_judge import LLMJudgeFilter
    from sftmix.llm import LLMClient, api_key_from_env
    from sftmix.manifest import load
    from sftmix.normalize import SourceInfo, filter_records

    _inputs_exist([args.input])
    rubric = _rubric(args.rubric) if args.rubric else None
    manifest = load(args.manifest) if args.manifest else None
    api_key_from_env()
    client = LLMClient(_llm_settings(manifest, args.cache_dir))
    # Only the judge runs: the records passed the rule filters when they were made.
    config = {name: False for name in rule_filters.FILTERS}
    config[LLMJudgeFilter.name] = {"threshold": args.threshold, "rubric": rubric, "client": client}
    out = Path(args.output)
    rejected = out.with_name(out.stem + ".rejected.parquet")
    _outputs_valid([args.input], out, rejected)
    counts = filter_records(SourceInfo(key="judged", converter="openai_messages", filters=config), [args.input], out, rejected)
    return _print_llm_summary("kept", counts, {"judge": client.stats})


def _rubric(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"rubric {path} is not UTF-8 text") from None
    except OSError as error:  # missing, a directory, unreadable
        raise UserError(f"rubric {path}: {error.strerror or error}") from None


def _print_summary(counts: Counts) -> None:
    print(json.dumps(counts.summary(), ensure_ascii=False))


def _count(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"{number} is negative")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sftmix", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    normalize = commands.add_parser("normalize", help="convert raw Hub files to canonical records, with the rule filters")
    normalize.add_argument("converter")
    normalize.add_argument("inputs", nargs="+", metavar="INPUT")
    normalize.add_argument("-o", "--output", required=True, metavar="OUT.parquet")
    normalize.add_argument("--source", help="source key stamped on rows (default: the converter name)")
    normalize.add_argument("--licence", help="licence id (default: the source's licence from the reference tables)")
    normalize.add_argument("--language", help="ISO 639-1 code for rows that do not carry their own "
                           "(default: the source's language when it is monolingual, else detected)")
    normalize.add_argument("--rejected", help="where drops go (default: OUT.rejected.parquet)")
    normalize.add_argument("--no-filters", action="store_true", help="skip the rule filters")
    normalize.set_defaults(run=_normalize)

    plan = commands.add_parser("plan", help="print a manifest's source x language targets")
    plan.add_argument("manifest")
    plan.set_defaults(run=_plan)

    generate = commands.add_parser("generate", help="synthesize records with an LLM generator")
    generate.add_argument("generator")
    generate.add_argument("--input", nargs="+", default=[], metavar="IN", help="canonical records (Parquet) to work from")
    generate.add_argument("-o", "--output", required=True, metavar="OUT.parquet")
    generate.add_argument("--manifest", help="take targets, params, identity, licence and LLM settings from this manifest")
    generate.add_argument("--source", help="the manifest's source to make, where its generator makes several")
    generate.add_argument("--language", help="only this target language")
    generate.add_argument("--limit", type=_count, help="at most this many items")
    generate.add_argument("--licence", default="apache-2.0", help="licence of generated rows without a manifest")
    generate.add_argument("--cache-dir", help="LLM response cache (default: the manifest's llm: cache_dir, $SFTMIX_LLM_CACHE or .sftmix-llm-cache)")
    generate.set_defaults(run=_generate)

    judge = commands.add_parser("judge", help="grade records with the LLM judge, keep those at or above the threshold")
    judge.add_argument("input", metavar="IN")
    judge.add_argument("-o", "--output", required=True, metavar="OUT.parquet")
    judge.add_argument("--rubric", help="rubric text file (criterion and score 1-5 descriptions)")
    judge.add_argument("--threshold", type=int, default=4, choices=range(1, 6), help="lowest score kept (1-5)")
    judge.add_argument("--manifest", help="take the LLM settings (endpoint, model, limits, prices, budget) from this "
                       "manifest's llm:")
    judge.add_argument("--cache-dir", help="LLM response cache (default: the manifest's llm: cache_dir, $SFTMIX_LLM_CACHE or .sftmix-llm-cache)")
    judge.set_defaults(run=_judge)

    render = commands.add_parser("render", help="print shard rows as ChatML training text (Hermes tool calls)")
    render.add_argument("shard", help="a shard, or a mixture or split directory (a mixture directory: its train split)")
    render.add_argument("--limit", type=_count, default=None, help="at most this many rows")
    render.set_defaults(run=_render)
    return parser


def main(argv: list[str] | None = None) -> int:
    from sftmix.llm import MissingAPIKey
    from sftmix.manifest import ManifestError
    from sftmix.raw import RawInputError
    from sftmix.shards import UnreadableParquet

    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except BrokenPipeError:  # `sftmix render ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush cannot fail again
        return 0
    except (UserError, ManifestError, RawInputError, UnreadableParquet, FileNotFoundError, MissingAPIKey) as error:
        message = " ".join(str(error).split())  # one line, whatever the library's message looks like
        print(f"sftmix: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
