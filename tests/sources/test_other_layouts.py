"""Every converter given every other source's raw fixture, as a user with the wrong `converter`
would: each row is kept or a counted drop, the run never stops mid-way, and when no row converts
the warning says so and shows the raw columns."""

from pathlib import Path

import pytest

from sftmix.normalize import SourceInfo, normalize, nothing_converted
from sftmix.sources import available

FIXTURES = Path(__file__).parents[1] / "fixtures"
RAW_FILES = sorted(
    path for name in available() if (FIXTURES / name).is_dir()
    for path in (FIXTURES / name).rglob("*") if path.suffix in {".json", ".jsonl", ".parquet"}
)


def test_every_converter_has_fixtures_here():
    assert {path.relative_to(FIXTURES).parts[0] for path in RAW_FILES} == set(available())


@pytest.mark.parametrize("converter", available())
def test_other_sources_files_are_counted_drops_never_a_crash(converter, tmp_path):
    others = [path for path in RAW_FILES if path.relative_to(FIXTURES).parts[0] != converter]
    unconverted = 0
    for path in others:
        info = SourceInfo(key="k", converter=converter, licence="apache-2.0", language="en")
        out, rejected = tmp_path / "out.parquet", tmp_path / "rejected.parquet"
        counts = normalize(info, [path], out, rejected, apply_filters=False)  # checks the counts add up
        problem = nothing_converted(counts, converter, [rejected])
        assert (problem is not None) == (counts.read > 0 and counts.kept == 0), (path, counts)
        unconverted += problem is not None
    assert unconverted  # the warning is met: every converter refuses some other layout whole
