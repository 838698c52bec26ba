"""The benches in `bench/` keep their contract: each runs, prints its figures, and ends with one JSON
object whose figures agree with each other. Tiny sizes, nothing timed: a bench's speed is measured
by running it, never by a test."""

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from sftmix.normalize import SourceInfo, normalize

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))
import rawgen  # noqa: E402


def _last_json(script: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) >= 2, "figures are printed before the JSON line"
    return json.loads(lines[-1])


@pytest.mark.parametrize("layout", sorted(rawgen.LAYOUTS))
def test_rawgen_breaks_about_five_percent_of_rows_whatever_their_calls(layout, tmp_path):
    rows = 2000
    raw = rawgen.write_raw(layout, rows, tmp_path)
    # Without the repetition rule (it drops some well-formed prose; language and dedup drop none here,
    # and are off for time) every drop is one rawgen planted.
    info = SourceInfo(key=layout, converter=layout, licence="apache-2.0", language="en",
                      filters={"repetition": False, "language": False, "dedup": False})
    counts = normalize(info, [raw], tmp_path / "out.parquet", tmp_path / "rejected.parquet")
    reasons = Counter(row["reason"] for row in pq.read_table(tmp_path / "rejected.parquet").to_pylist())
    planted = {"glaive": "tool_arguments_not_json", "xlam": "malformed_json", "toucan": "unparsable_tool_call"}[layout]
    assert set(reasons) == {planted}
    assert 0.04 * rows <= reasons[planted] <= 0.06 * rows  # a row with three calls is not three times as likely
    assert counts.kept == rows - reasons[planted]


def test_normalize_bench_reports_each_layout_and_its_ratios():
    figures = _last_json("normalize.py", "--rows", "300", "--layouts", "toucan,xlam", "--without-rules")
    assert figures["rows"] == 300 and set(figures) >= {"toucan", "xlam"}
    for row in (figures["toucan"], figures["xlam"]):
        assert row["datasets_error"] is None
        assert row["c_over_a"] == pytest.approx(row["sftmix_rows_s"] / row["limit_rows_s"], rel=0.01, abs=0.002)
        assert row["c_over_b"] == pytest.approx(row["sftmix_rows_s"] / row["datasets_rows_s"], rel=0.01, abs=0.002)
        assert row["c0_over_a"] == pytest.approx(row["sftmix_without_rules_rows_s"] / row["limit_rows_s"], rel=0.01, abs=0.002)
        assert 0.9 * 300 <= row["kept"] < 300  # the planted malformed rows (and only a few others) are dropped
        # (d), the build's two stages, keeps the same rows as (c)'s one pass
        assert row["build_kept"] == row["kept"]
        assert row["d_over_a"] == pytest.approx(row["build_rows_s"] / row["limit_rows_s"], rel=0.01, abs=0.002)
        assert row["d_over_b"] == pytest.approx(row["build_rows_s"] / row["datasets_rows_s"], rel=0.01, abs=0.002)


def test_memory_bench_reports_the_ratio_of_its_peaks():
    figures = _last_json("memory.py", "--rows", "200", "400", "--layouts", "toucan")
    small, large = figures["runs"]
    assert (small["rows_per_source"], large["rows_per_source"]) == (200, 400)
    assert 0 < small["train_rows"] < large["train_rows"]
    assert figures["ratio"] == pytest.approx(large["peak_mib"] / small["peak_mib"], abs=0.001)
    for run in (small, large):  # the whole process tree's, or its largest process's if more
        assert run["peak_mib"] == max(run["tree_pss_mib"], run["largest_process_rss_mib"]) and run["tree_pss_mib"] > 0


def test_the_memory_bench_reference_steps_are_the_reference_manifests(tmp_path):
    """--reference-steps builds with the near-dedup settings of the reference manifests and a real
    decontamination index, so its peak covers what those builds run."""
    from sftmix.build import _decontamination
    from sftmix.manifest import load

    manifest = load(rawgen.write_manifest(["xlam"], 50, tmp_path, reference_steps=True))
    reference = load(BENCH.parent / "manifests" / "alia-40b-fc.yaml")
    assert manifest.near_dedup == reference.near_dedup
    index = _decontamination(manifest, manifest.sources[0]).index_stats()
    assert list(index) == ["ifeval"] and index["ifeval"]["prompts"] == rawgen.REFERENCE_PROMPTS
    (tmp_path / "plain").mkdir()
    plain = load(rawgen.write_manifest(["xlam"], 50, tmp_path / "plain"))
    assert plain.near_dedup is None and _decontamination(plain, plain.sources[0]) is None


def test_dedup_bench_finds_planted_duplicates():
    figures = _last_json("dedup.py", "--rows", "2000")
    assert figures["planted_near_pairs"] > 0 and figures["exact_removed"] > 0
    assert 0 <= figures["recall"] <= 1 and 0 <= figures["false_removal_rate"] <= 1
    assert figures["keeper_errors"] == 0
    # near-misses are planted, and each merged pair is a wrong removal
    assert figures["planted_related_pairs"] > 0 and figures["related_pairs_merged"] <= figures["false_removals"]
    assert figures["precision"] == pytest.approx(1 - figures["false_removals"] / figures["near_removed"], abs=1e-4)


def test_decontamination_bench_drops_the_quoting_rows():
    figures = _last_json("decontamination.py", "--rows", "500", "--prompts", "100")
    assert 0 < figures["dropped"] < 500  # one row in ten quotes a prompt; the bench checks the verdicts
    assert figures["a_over_b"] == pytest.approx(figures["python_us"] / figures["sftmix_us"], rel=0.02)


def test_repetition_bench_reports_each_length():
    figures = _last_json("repetition.py", "--rows", "50", "--sentences", "5,15")
    for length in ("sentences_5", "sentences_15"):
        row = figures[length]
        assert row["a_over_b"] == pytest.approx(row["datatrove_us"] / row["sftmix_us"], rel=0.02)
        assert row["dropped"] > 0  # one text in eight repeats a passage


def test_llm_bench_sends_every_row_once():
    figures = _last_json("llm.py", "--rows", "8", "--delay", "0.01", "--spread", "0", "--concurrency", "1", "4")
    assert {(run["kind"], run["concurrency"]) for run in figures["runs"]} >= {("client", 1), ("generator", 4), ("judge", 4)}
    for run in figures["runs"]:
        assert run["server_requests"] == run["rows"] and 0 < run["ratio"]


def test_executors_bench_gives_the_same_shards_on_every_executor():
    figures = _last_json("executors.py", "--rows", "200", "--layouts", "toucan")
    assert set(figures["runs"]) == {"local_1", "local_2", "ray_2"}
    assert all(run["identical_to_local_1"] for run in figures["runs"].values())
    assert len({run["digest"] for run in figures["runs"].values()}) == 1


def test_the_executors_bench_digest_does_not_depend_on_its_directory(tmp_path):
    """The bench's manifest names its raw files relative to itself, so the shards (which carry the
    manifest's hash) and their digest are the same in every run of the same code and rows."""
    import executors

    digests = []
    for run in ("one", "two"):
        (tmp_path / run).mkdir()
        manifest = rawgen.write_manifest(["xlam"], 150, tmp_path / run)
        digests.append(executors.timed_build(manifest, tmp_path / run / "out", 1)["digest"])
    assert digests[0] == digests[1]


def test_dagster_steps_bench_builds_the_same_shards_both_ways(tmp_path):
    fixture = BENCH.parent / "tests" / "fixtures" / "glaive" / "glaive-function-calling-v2.json"
    manifest = tmp_path / "mini.yaml"
    manifest.write_text(json.dumps({
        "mixture": "mini", "seed": 1, "holdout": {"size": 2}, "licence_policy": {"allow": ["apache-2.0"]},
        "sources": [{"key": "g", "converter": "glaive", "licence": "apache-2.0", "language": "en",
                     "local": {"files": [str(fixture)]}, "targets": "all"}]}))
    figures = _last_json("dagster_steps.py", "--manifest", str(manifest), "--runs", "1")
    assert set(figures["seconds"]) == {"spawn", "forkserver"} and figures["same_shards"]
    assert figures["speedup"] == pytest.approx(figures["seconds"]["spawn"][0] / figures["seconds"]["forkserver"][0], rel=0.01)


def test_growth_bench_reports_every_converter_it_swept():
    figures = _last_json("growth.py", "--chars", "200", "--converters", "dolly,oasst2", "--confirm", "1")
    assert figures["chars"] == 200 and set(figures["converters"]) == {"dolly", "oasst2"}
    # two rows of each fixture file (dolly: the JSON Lines and the Parquet one); oasst2's rows convert only as a tree
    assert figures["converters"]["dolly"]["rows"] == 4 and figures["converters"]["oasst2"]["rows"] == 2
    for name, summary in figures["converters"].items():
        assert summary["variants"] > 0
        assert summary["flagged"] == sum(f["converter"] == name for f in figures["flagged"])


class QuadraticConverter:
    """A stand-in whose converting takes the square of a field's length and whose rules take it linearly."""

    name, bases = "stand-in", [{"text": "abc", "n": 1}]

    def seconds(self, row, base):
        return len(row["text"]) ** 2 * 1e-7, len(row["text"]) * 1e-5


def test_growth_bench_flags_quadratic_work_and_not_linear_work():
    import growth

    summary, flagged = growth.sweep(QuadraticConverter(), chars=300, confirm=1)
    assert summary["variants"] == len(growth.UNITS) * len(growth.PLACES)
    assert summary["worst_growth"]["rules"] == pytest.approx(2.0, abs=0.02)
    assert summary["worst_growth"]["convert"] == pytest.approx(4.0, abs=0.05)
    assert summary["flagged"] == len(flagged) > 0
    assert {f["stage"] for f in flagged} == {"convert"} and {f["field"] for f in flagged} == {"text"}
