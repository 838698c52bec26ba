"""Targets of a manifest: per source x language cell, with the holdout allocated across cells."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sftmix.manifest import ANY_LANGUAGE, Manifest, Source
from sftmix.sources import sets_row_language


@dataclass(frozen=True)
class Cell:
    source: str
    language: str  # ISO 639-1, or "*" for every language of the source
    target: int | None  # None: take all rows ("all")
    holdout: int
    licence: str | None


def allocate(weights: dict, total: int) -> dict:
    """Split `total` in proportion to `weights` by largest remainder: exact sum, deterministic ties."""
    weight_sum = sum(weights.values())
    if total == 0 or weight_sum == 0:
        return {k: 0 for k in weights}
    shares = {k: total * w / weight_sum for k, w in weights.items()}
    out = {k: int(s) for k, s in shares.items()}
    leftover = total - sum(out.values())
    for key in sorted(weights, key=lambda k: (-(shares[k] - out[k]), str(k)))[:leftover]:
        out[key] += 1
    return out


def cells(manifest: Manifest) -> list[Cell]:
    """Every source x language cell. The holdout is spread over cells in proportion to their train
    targets (cells taking `all` rows get none here: their size is unknown until built; the mixing
    spreads it again with their rows, `mixing._shares`)."""
    raw = [(s, lang, None if n == "all" else n) for s in manifest.sources for lang, n in s.target_cells().items()]
    holdout = allocate({(s.key, lang): n or 0 for s, lang, n in raw}, manifest.holdout.size)
    return [Cell(s.key, lang, n, holdout[(s.key, lang)], s.licence) for s, lang, n in raw]


def unmakeable(source: Source) -> str | None:
    """What of a source's targets none of its rows can meet, or None: each such cell would end the
    build as a deficit, after the rest was paid for. A generator writes only the languages of its
    `languages(params, targets)` (none for a `"*"` target where that names none); a converter that
    gives rows no language of their own labels each with the source's `language:`."""
    if source.generator is not None:
        return _ungenerable(source)
    own_language = source.converter and sets_row_language(source.converter)
    if source.converter is None or source.language is None or own_language is True:
        return None  # rows carry their language, or have it detected
    cells = _unmet(source.target_cells(), [source.language])
    if not cells:
        return None
    if own_language == "where_given":  # the plan cannot know whether the raw rows carry one
        return (f"source {source.key!r}: only rows that carry their own language can meet its targets {cells}: "
                f"converter {source.converter!r} labels a row without one {source.language} (the source's `language:`)")
    return (f"source {source.key!r}: no row can be converted for its targets {cells}: converter "
            f"{source.converter!r} gives rows no language of their own: each is labelled "
            f"{source.language} (the source's `language:`)")


def _ungenerable(source: Source) -> str | None:
    from generators import GeneratorNotAvailable, get_generator

    try:
        declared = getattr(get_generator(source.generator.name), "languages", None)
    except GeneratorNotAvailable:  # building it stops, naming it
        return None
    targets = source.target_cells()
    writable = declared(source.generator.params, targets) if declared else None
    if writable is None:
        return None
    cells = _unmet(targets, writable)
    if not cells:
        return None
    writes = f"writes only {', '.join(writable)}" if writable else "names no language to write with these params"
    return f"source {source.key!r}: no row can be generated for its targets {cells}: generator {source.generator.name!r} {writes}"


def _unmet(targets: dict[str, int | str], writable: list[str]) -> str | None:
    """The cells of `targets` in none of the `writable` languages, as the warnings name them, or None."""
    missing = [(lang, n) for lang, n in targets.items()
               if n != 0 and lang not in writable and (lang != ANY_LANGUAGE or not writable)]  # a target of 0 wants none
    return ", ".join(f"{lang} ({n:,})" if isinstance(n, int) else f"{lang} (all)" for lang, n in missing) or None


def summary(manifest: Manifest) -> dict:
    """The numeric targets' totals; `taking_all` names the cells (`source/language`) that take every
    row they have, which those totals leave out (their size is known only once mixed)."""
    by_language, by_source, by_licence = Counter(), Counter(), Counter()
    taking_all = []
    for cell in cells(manifest):
        n = cell.target or 0
        by_language[cell.language] += n
        by_source[cell.source] += n
        by_licence[cell.licence or "per-row"] += n
        if cell.target is None:
            taking_all.append(f"{cell.source}/{cell.language}")
    return {
        "mixture": manifest.mixture,
        "train": sum(by_source.values()),
        "holdout": manifest.holdout.size,
        "by_language": dict(sorted(by_language.items())),
        "by_source": dict(by_source),
        "by_licence": dict(sorted(by_licence.items())),
        "taking_all": taking_all,
    }


def _amount(targets: list[int | None]) -> str:
    """A sum of cell targets as the table shows it: `all` cells (None) take every row they have."""
    total = f"{sum(t or 0 for t in targets):,}"
    if None not in targets:
        return total
    return "all" if all(t is None for t in targets) else f"{total} + all"


def table(manifest: Manifest) -> str:
    """Source x language target table, as text. A source with cells taking `all` rows gets its
    holdout share once mixed, by those rows (`mixing._shares`): its holdout column says so."""
    all_cells = cells(manifest)
    languages = sorted({c.language for c in all_cells}, key=lambda l: (l == "*", l))
    grid = {(c.source, c.language): c for c in all_cells}
    header = ["source", *languages, "total", "holdout", "licence"]
    rows = []
    for source in manifest.sources:
        row_cells = [grid.get((source.key, lang)) for lang in languages]
        values = ["" if c is None else _amount([c.target]) for c in row_cells]
        targets = [c.target for c in row_cells if c]
        holdout = "by rows" if None in targets else str(sum(c.holdout for c in row_cells if c))
        rows.append([source.key, *values, _amount(targets), holdout, source.licence or "per-row"])
    totals = [[grid[(s.key, lang)].target for s in manifest.sources if (s.key, lang) in grid] for lang in languages]
    rows.append(["TOTAL", *map(_amount, totals), _amount([t for column in totals for t in column]),
                 str(manifest.holdout.size), ""])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: "  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w) for i, (v, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(header), *(fmt(r) for r in rows)])
