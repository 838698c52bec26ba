"""`sftmix normalize` end to end, as a subprocess: the summary line, the files it leaves, its errors."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from damaged_parquet import DAMAGES, damage

ROOT = Path(__file__).resolve().parents[1]
GLAIVE = ROOT / "tests" / "fixtures" / "glaive" / "glaive-function-calling-v2.json"
TOUCAN = ROOT / "tests" / "fixtures" / "toucan" / "train-00000-of-00003.parquet"
DOLLY = ROOT / "tests" / "fixtures" / "dolly" / "databricks-dolly-15k.jsonl"


def sftmix(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("sftmix")
    command = [exe] if exe else [sys.executable, "-m", "sftmix.cli"]
    return subprocess.run([*command, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120)


def summary_of(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(summary) == {"read", "kept", "dropped"}
    assert summary["read"] == summary["kept"] + sum(summary["dropped"].values())
    return summary


def leftovers(directory: Path) -> list[str]:
    """Every file a failed run may have left: finished Parquet and temporary parts alike."""
    return sorted(p.name for p in directory.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def filtered(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("filtered")
    done = sftmix("normalize", "glaive", GLAIVE, "-o", out_dir / "OUT.parquet", cwd=out_dir)
    return out_dir, summary_of(done), done.stderr


def test_summary_line_and_files(filtered):
    out_dir, summary, _ = filtered
    assert summary["read"] > 0 and summary["kept"] > 0
    assert pq.read_metadata(out_dir / "OUT.parquet").num_rows == summary["kept"]
    rejected = pq.read_table(out_dir / "OUT.rejected.parquet")
    assert rejected.num_rows == sum(summary["dropped"].values())
    reasons: dict[str, int] = {}
    for reason in rejected.column("reason").to_pylist():
        reasons[reason] = reasons.get(reason, 0) + 1
    assert reasons == summary["dropped"]
    assert not [name for name in leftovers(out_dir) if name.endswith(".tmp")]


def test_summary_is_the_only_stdout_json(filtered):
    # the human message goes to stderr; stdout's last line is machine-readable
    _, summary, _ = filtered
    assert isinstance(summary["dropped"], dict)
    assert all(isinstance(n, int) and n > 0 for n in summary["dropped"].values())


def seconds_by_step(stderr: str) -> dict[str, float]:
    [line] = [line for line in stderr.splitlines() if line.startswith("seconds by step: ")]
    return {step: float(s) for step, s in (item.rsplit(" ", 1) for item in line.removeprefix("seconds by step: ").split(", "))}


def test_seconds_by_step_go_to_stderr_in_the_stage_order(filtered):
    _, _, stderr = filtered
    seconds = seconds_by_step(stderr)
    steps = list(seconds)
    assert steps[:2] == ["setup", "read_convert"] and steps[-2:] == ["write", "total"]
    assert {"tool_calls", "repetition", "language"} <= set(steps[2:-2])  # the default rules, each its own time
    # the steps add up to the total, up to each figure's rounding to 0.01 s
    assert abs(sum(seconds.values()) - 2 * seconds["total"]) <= 0.005 * len(steps)


def test_no_filters_keeps_more(filtered, tmp_path):
    _, with_filters, _ = filtered
    done = sftmix("normalize", "glaive", GLAIVE, "-o", tmp_path / "raw.parquet", "--no-filters", cwd=tmp_path)
    without = summary_of(done)
    assert list(seconds_by_step(done.stderr)) == ["setup", "read_convert", "write", "total"]
    assert without["read"] == with_filters["read"]
    assert without["kept"] > with_filters["kept"]
    assert pq.read_metadata(tmp_path / "raw.parquet").num_rows == without["kept"]


def test_licence_and_source_options_are_stamped(tmp_path):
    done = sftmix("normalize", "glaive", GLAIVE, "-o", tmp_path / "o.parquet", "--source", "glaive-v2",
                  "--licence", "mit", "--rejected", tmp_path / "drops.parquet", cwd=tmp_path)
    summary = summary_of(done)
    table = pq.read_table(tmp_path / "o.parquet")
    assert set(table.column("source").to_pylist()) == {"glaive-v2"}
    assert set(table.column("licence").to_pylist()) == {"mit"}
    assert pq.read_metadata(tmp_path / "drops.parquet").num_rows == sum(summary["dropped"].values())
    assert not (tmp_path / "o.rejected.parquet").exists()


def _assert_clean_failure(done: subprocess.CompletedProcess, directory: Path, *named: str) -> None:
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for thing in named:
        assert thing in lines[0], (thing, lines[0])
    assert not done.stdout.strip()
    assert leftovers(directory) == [name for name in leftovers(directory) if not name.endswith((".parquet", ".tmp"))]


def test_unknown_converter(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    done = sftmix("normalize", "no_such_converter", GLAIVE, "-o", out / "OUT.parquet", cwd=tmp_path)
    _assert_clean_failure(done, tmp_path, "no_such_converter")
    assert not (out / "OUT.parquet").exists()
    assert leftovers(tmp_path) == []


def test_missing_input(tmp_path):
    missing = tmp_path / "not-there.json"
    done = sftmix("normalize", "glaive", missing, "-o", tmp_path / "OUT.parquet", cwd=tmp_path)
    _assert_clean_failure(done, tmp_path, "not-there.json")
    assert leftovers(tmp_path) == []


def test_missing_second_input_writes_nothing(tmp_path):
    """A good file then a missing one: nothing is half-written, not even the first file's rows."""
    missing = tmp_path / "also-not-there.json"
    done = sftmix("normalize", "glaive", GLAIVE, missing, "-o", tmp_path / "OUT.parquet", cwd=tmp_path)
    _assert_clean_failure(done, tmp_path, "also-not-there.json")
    assert leftovers(tmp_path) == []


def test_empty_input_is_no_rows_with_a_warning(tmp_path):
    """A file of no rows is read as none (a build's other files go on); alone, it is worth a warning."""
    empty = tmp_path / "empty.json"
    empty.write_text("")
    done = sftmix("normalize", "glaive", empty, "-o", tmp_path / "OUT.parquet", cwd=tmp_path)
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert f"warning: {empty}: no rows to read (empty files)" in done.stderr.splitlines()
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"read": 0, "kept": 0, "dropped": {}}
    assert pq.read_metadata(tmp_path / "OUT.parquet").num_rows == 0


def _broken_array(tmp_path: Path) -> Path:
    text = GLAIVE.read_text(encoding="utf-8")
    broken = tmp_path / "broken.json"
    broken.write_text(text[: len(text) * 2 // 3], encoding="utf-8")
    return broken


def test_broken_json_array_leaves_nothing(tmp_path):
    """A JSON array cut off mid-file fails after rows were read: one-line error, the partial output vanishes."""
    broken = _broken_array(tmp_path)
    done = sftmix("normalize", "glaive", broken, "-o", tmp_path / "OUT.parquet", cwd=tmp_path)
    _assert_clean_failure(done, tmp_path, "broken.json")
    assert leftovers(tmp_path) == ["broken.json"]


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_raw_parquet_file_is_named_and_leaves_nothing(tmp_path, how):
    """A truncated download fails on opening, a damaged page mid-read: both are one line naming the file."""
    raw, out = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    out.mkdir()
    broken = raw / TOUCAN.name
    shutil.copy(TOUCAN, broken)
    damage(broken, how)
    done = sftmix("normalize", "toucan", broken, "-o", out / "OUT.parquet", cwd=out)
    _assert_clean_failure(done, out, f"cannot read {broken}: ")
    assert leftovers(out) == []


@pytest.mark.parametrize("how", DAMAGES)
def test_rendering_a_damaged_shard_is_one_line_naming_it(filtered, tmp_path, how):
    out_dir, _, _ = filtered
    broken = tmp_path / "part-00000.parquet"
    shutil.copy(out_dir / "OUT.parquet", broken)
    damage(broken, how)
    done = sftmix("render", broken, cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert f"sftmix: error: cannot read {broken}: " in done.stderr


def _one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    return done.stderr.strip()


@pytest.mark.parametrize("arguments, problem", [
    ('{"x": NaN}', "arguments are not JSON: NaN is not JSON"),
    ('{"x": "half an emoji \\ud83d"}', "arguments hold half a surrogate pair"),  # text no encoder takes
], ids=["nan", "lone-surrogate"])
@pytest.mark.parametrize("given", ["shard", "mixture"])
def test_rendering_a_row_whose_arguments_are_not_json_names_the_row_and_its_shard(filtered, tmp_path, given,
                                                                                   arguments, problem):
    """A shard the tool-call filter did not clean (an older build, one made by hand): rows before
    the bad one are printed, then one line names it and the shard it is in."""
    out_dir, _, _ = filtered
    records = pq.read_table(out_dir / "OUT.parquet")
    rows = records.to_pylist()
    bad = max(i for i, row in enumerate(rows) if any(m["tool_calls"] for m in row["messages"]))
    assert bad > 0
    call = next(m for m in rows[bad]["messages"] if m["tool_calls"])["tool_calls"][0]
    call["function"]["arguments"] = arguments
    (tmp_path / "mix" / "train").mkdir(parents=True)
    pq.write_table(records.slice(0, 1), tmp_path / "mix" / "train" / "part-00000.parquet")
    shard = tmp_path / "mix" / "train" / "part-00001.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=records.schema), shard)
    done = sftmix("render", shard if given == "shard" else tmp_path / "mix", cwd=tmp_path)
    assert _one_line_error(done) == (f"sftmix: error: cannot render row {rows[bad]['id']} of {shard}: tool call "
                                     f"{call['function']['name']!r}: {problem}")
    shown = rows[:bad] if given == "shard" else rows[:1] + rows[:bad]
    assert _headers(done.stdout) == [f"### {row['id']} ({row['source']}, {row['language']}, {row['licence']})" for row in shown]


def _headers(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("### ")]


def test_rendering_a_mixture_directory_renders_its_train_shards_in_order(filtered, tmp_path):
    out_dir, _, _ = filtered
    rows = pq.read_table(out_dir / "OUT.parquet")
    (tmp_path / "mix" / "train").mkdir(parents=True)
    (tmp_path / "mix" / "validation").mkdir()
    half = rows.num_rows // 2
    pq.write_table(rows.slice(half), tmp_path / "mix" / "train" / "part-00001.parquet")
    pq.write_table(rows.slice(0, half), tmp_path / "mix" / "train" / "part-00000.parquet")
    pq.write_table(rows.slice(0, 1), tmp_path / "mix" / "validation" / "part-00000.parquet")
    expected = [f"### {row['id']} ({row['source']}, {row['language']}, {row['licence']})" for row in rows.to_pylist()]
    done = sftmix("render", tmp_path / "mix", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert _headers(done.stdout) == expected
    assert done.stdout == sftmix("render", tmp_path / "mix" / "train", cwd=tmp_path).stdout
    assert _headers(sftmix("render", tmp_path / "mix", "--limit", str(half + 2), cwd=tmp_path).stdout) == expected[:half + 2]
    assert _headers(sftmix("render", tmp_path / "mix" / "validation", cwd=tmp_path).stdout) == expected[:1]
    # one shard of the validation split (it was read as a train shard, refused with a traceback)
    assert _headers(sftmix("render", tmp_path / "mix" / "validation" / "part-00000.parquet", cwd=tmp_path).stdout) \
        == expected[:1]
    (tmp_path / "mix" / ".mixing-stopped").write_text("hash")
    assert _one_line_error(sftmix("render", tmp_path / "mix", cwd=tmp_path)) == (
        f"sftmix: error: {tmp_path / 'mix'}: its last mixing was stopped part way, so its splits may be of two "
        "mixings (its holdout overlapping train): mix it again first")
    (tmp_path / "mix" / ".mixing-stopped").unlink()
    assert _one_line_error(sftmix("render", tmp_path, cwd=tmp_path)) == f"sftmix: error: no shards (part-*.parquet) under {tmp_path}"
    shutil.copy(TOUCAN, tmp_path / "mix" / "train" / "part-00002.parquet")  # every shard is checked before any is shown
    done = sftmix("render", tmp_path / "mix", cwd=tmp_path)
    assert _one_line_error(done).startswith(f"sftmix: error: {tmp_path / 'mix' / 'train' / 'part-00002.parquet'} is not a file of records")
    assert done.stdout == ""


def test_rendering_a_file_that_is_not_a_shard_names_what_it_lacks(tmp_path):
    done = sftmix("render", TOUCAN, cwd=tmp_path)
    assert _one_line_error(done) == (f"sftmix: error: {TOUCAN} is not a file of records: it has no column id, source, "
                                     "licence, language, origin (its columns: uuid, subset_name, question, target_tools, tools, messages)")
    flat = tmp_path / "flat.parquet"  # the right names, messages as JSON text
    for messages, shown in [(["[]"], "string"), ([["hi"]], "list<element: string>")]:
        pq.write_table(pa.table({"messages": messages, **{name: ["x"] for name in ("id", "source", "language", "licence", "tools", "origin")}}), flat)
        assert _one_line_error(sftmix("render", flat, cwd=tmp_path)) == (
            f"sftmix: error: {flat} is not a file of records: its messages column is {shown}, "
            "not a list of messages with a role and content")


@pytest.mark.parametrize("command", [["judge", TOUCAN, "-o", "out.parquet"],
                                     ["generate", "wildchat_responses", "--input", TOUCAN, "-o", "out.parquet"]],
                         ids=["judge", "generate"])
def test_llm_commands_given_a_raw_file_name_it_and_call_no_endpoint(tmp_path, monkeypatch, command):
    """Their input is records (a stage's output); before, judge crashed on its first row and generate
    wrote nothing and counted nothing."""
    monkeypatch.setenv("SFTMIX_LLM_API_KEY", "sk-test")
    monkeypatch.setenv("SFTMIX_LLM_BASE_URL", "http://127.0.0.1:9")  # nothing listens: a request would be a drop
    monkeypatch.setenv("SFTMIX_LLM_CACHE", str(tmp_path / "cache"))
    done = sftmix(*command, cwd=tmp_path)
    assert _one_line_error(done) == (f"sftmix: error: {TOUCAN} is not a file of records: it has no column id, source, "
                                     "licence, language, origin (its columns: uuid, subset_name, question, target_tools, "
                                     "tools, messages)")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("flags, error", [
    (["--language", "english"], "language 'english' is not an ISO 639-1 code (did you mean 'en'?)"),
    (["--language", "pt-BR"], "language 'pt-BR' is not an ISO 639-1 code (did you mean 'pt'?)"),
    (["--licence", "CC BY 4.0"], "unknown licence 'CC BY 4.0'; known: apache-2.0, bsd-3-clause, cc-by-2.0, "),
], ids=["language_name", "language_tag", "licence"])
def test_labels_are_checked_as_a_manifest_checks_them(tmp_path, flags, error):
    """Rows labelled `english` would meet no `en` target; a licence no policy names would be refused at mixing."""
    raw = tmp_path / DOLLY.name
    shutil.copy(DOLLY, raw)
    done = sftmix("normalize", "dolly", raw, "-o", tmp_path / "d.parquet", *flags, cwd=tmp_path)
    _assert_clean_failure(done, tmp_path, f"sftmix: error: {error}")
    assert leftovers(tmp_path) == [DOLLY.name]


def test_generate_checks_its_labels_before_anything_else(tmp_path):
    for flags, error in ((["--licence", "CC BY"], "unknown licence 'CC BY'; known: "),
                         (["--language", "Catalan"], "language 'Catalan' is not an ISO 639-1 code (did you mean 'ca'?)")):
        done = sftmix("generate", "self_identity", "-o", tmp_path / "g.parquet", *flags, cwd=tmp_path)
        assert _one_line_error(done).startswith(f"sftmix: error: {error}")


def test_an_output_that_is_an_input_is_refused_and_the_input_kept(tmp_path):
    raw = tmp_path / DOLLY.name
    shutil.copy(DOLLY, raw)
    for flags in (["-o", raw], ["-o", tmp_path / "d.parquet", "--rejected", raw]):
        done = sftmix("normalize", "dolly", raw, *flags, cwd=tmp_path)
        _assert_clean_failure(done, tmp_path, f"sftmix: error: {raw} is one of the inputs: it would be overwritten")
    done = sftmix("normalize", "dolly", raw, "-o", "d.parquet", "--rejected", "./d.parquet", cwd=tmp_path)
    _assert_clean_failure(done, tmp_path, "sftmix: error: the records and the rejected rows would be written to the same file")
    assert raw.read_bytes() == DOLLY.read_bytes() and leftovers(tmp_path) == [DOLLY.name]


def test_an_output_that_cannot_be_a_file_is_refused_before_any_work(tmp_path, filtered, monkeypatch):
    """A directory, or a path under a file, failed with a traceback once every row was done (for the
    judge: once every request was paid), leaving temporary files beside it."""
    monkeypatch.setenv("SFTMIX_LLM_API_KEY", "sk-test")
    monkeypatch.setenv("SFTMIX_LLM_BASE_URL", "http://127.0.0.1:9")
    raw, records, folder = tmp_path / DOLLY.name, tmp_path / "records.parquet", tmp_path / "folder"
    shutil.copy(DOLLY, raw)
    shutil.copy(filtered[0] / "OUT.parquet", records)
    folder.mkdir()
    commands = (["normalize", "dolly", raw, "-o"], ["judge", records, "-o"],
                ["generate", "wildchat_responses", "--input", records, "-o"])
    for command in commands:
        done = sftmix(*command, folder, cwd=tmp_path)
        assert _one_line_error(done) == (f"sftmix: error: {folder} is a directory: give the file to write in it, "
                                         f"e.g. {folder / 'records.parquet'}")
        done = sftmix(*command, raw / "out.parquet", cwd=tmp_path)
        assert _one_line_error(done) == f"sftmix: error: cannot write {raw / 'out.parquet'}: {raw} is a file, not a directory"
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([DOLLY.name, "records.parquet", "folder"])
    assert list(folder.iterdir()) == []


def test_judge_and_generate_refuse_to_write_over_their_input(tmp_path, filtered, monkeypatch):
    monkeypatch.setenv("SFTMIX_LLM_API_KEY", "sk-test")
    monkeypatch.setenv("SFTMIX_LLM_BASE_URL", "http://127.0.0.1:9")  # nothing listens: a request would be a drop
    records = tmp_path / "records.parquet"
    shutil.copy(filtered[0] / "OUT.parquet", records)
    for command in (["judge", records, "-o", records], ["generate", "wildchat_responses", "--input", records, "-o", records]):
        done = sftmix(*command, cwd=tmp_path)
        assert _one_line_error(done) == f"sftmix: error: {records} is one of the inputs: it would be overwritten"
    assert records.read_bytes() == (filtered[0] / "OUT.parquet").read_bytes()


@pytest.mark.parametrize("command, error", [
    (["render", "x.parquet", "--limit", "-1"], "sftmix render: error: argument --limit: -1 is negative"),
    (["render", "x.parquet", "--limit", "two"], "sftmix render: error: argument --limit: 'two' is not a whole number"),
    (["generate", "self_identity", "-o", "x.parquet", "--limit", "-5"], "sftmix generate: error: argument --limit: -5 is negative"),
    (["judge", "x.parquet", "-o", "y.parquet", "--threshold", "9"],
     "sftmix judge: error: argument --threshold: invalid choice: 9 (choose from 1, 2, 3, 4, 5)"),
], ids=["render_negative", "render_word", "generate_negative", "judge_threshold"])
def test_counts_and_thresholds_out_of_range_are_usage_errors(tmp_path, command, error):
    done = sftmix(*command, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1] == error


def test_generic_converter_without_licence_is_refused(tmp_path):
    fixture = ROOT / "tests" / "fixtures" / "sharegpt" / "data.jsonl"
    done = sftmix("normalize", "sharegpt", fixture, "-o", tmp_path / "OUT.parquet", cwd=tmp_path)
    _assert_clean_failure(done, tmp_path, "--licence")
    assert leftovers(tmp_path) == []


def test_files_of_another_layout_are_counted_drops_and_a_warning_names_their_columns(tmp_path):
    raw = tmp_path / DOLLY.name  # a line cut short first: the warning shows a row that has columns
    raw.write_bytes(b'{"instruction": "Name a\n' + DOLLY.read_bytes())
    done = sftmix("normalize", "toucan", raw, "-o", tmp_path / "o.parquet", cwd=tmp_path)
    assert summary_of(done) == {"read": 11, "kept": 0, "dropped": {"malformed_json": 2, "malformed_row": 9}}
    assert ("warning: no row converted with converter 'toucan': all 11 rows read were dropped (malformed_json 2, "
            "malformed_row 9); the first malformed_row: KeyError: 'messages'; its columns: category, context, "
            "instruction, response. Is 'toucan' the converter for these files?") in done.stderr.splitlines()
    done = sftmix("normalize", "dolly", TOUCAN, "-o", tmp_path / "o.parquet", cwd=tmp_path)
    assert summary_of(done) == {"read": 13, "kept": 0, "dropped": {"malformed_row": 13}}
    assert ("the first malformed_row: KeyError: 'instruction'; its columns: messages, question, subset_name, "
            "target_tools, tools, uuid. Is 'dolly' the converter") in done.stderr


def test_no_warning_when_rows_convert_or_the_rules_drop_them_all(filtered, tmp_path):
    assert "\nwarning: " not in "\n" + filtered[2]  # some rows kept
    raw = tmp_path / "boilerplate.jsonl"
    raw.write_text("".join(json.dumps({"instruction": question, "context": "", "response": answer, "category": "open_qa"}) + "\n"
                           for question, answer in [("Tell me a joke.", "As an AI language model, I cannot tell jokes."),
                                                    ("Who are you?", "As an AI language model, I have no name.")]))
    done = sftmix("normalize", "dolly", raw, "-o", tmp_path / "o.parquet", cwd=tmp_path)
    assert summary_of(done) == {"read": 2, "kept": 0, "dropped": {"boilerplate": 2}}
    assert "\nwarning: " not in "\n" + done.stderr  # both converted: the rules dropped them


def test_nan_in_tools_or_arguments_is_a_counted_drop_not_stored(tmp_path):
    # json.loads reads NaN and Infinity; stored, they would be JSON no other reader takes.
    rows = json.loads((ROOT / "tests" / "fixtures" / "xlam" / "xlam_function_calling_60k.json").read_text())[:3]
    rows[0]["tools"] = rows[0]["tools"].replace('"default": "game"', '"default": NaN', 1)
    rows[1]["answers"] = rows[1]["answers"].replace("}}", ', "limit": Infinity}}', 1)
    assert "NaN" in rows[0]["tools"] and "Infinity" in rows[1]["answers"]
    raw = tmp_path / "xlam_function_calling_60k.json"
    raw.write_text(json.dumps(rows))
    summary = summary_of(sftmix("normalize", "xlam", raw, "-o", tmp_path / "o.parquet", "--no-filters", cwd=tmp_path))
    assert summary == {"read": 3, "kept": 1, "dropped": {"malformed_row": 2}}
    drops = pq.read_table(tmp_path / "o.rejected.parquet").to_pylist()
    assert [(d["key"], d["detail"]) for d in drops] == [
        (f"{raw.name}#0", "ValueError: Out of range float values are not JSON compliant"),
        (f"{raw.name}#1", "ValueError: Out of range float values are not JSON compliant")]
    # tools kept as the row gives them (OpenAI layout): refused when the record is made
    line = (ROOT / "tests" / "fixtures" / "openai_messages" / "data.jsonl").read_text().splitlines()[1]
    raw = tmp_path / "data.jsonl"
    raw.write_text(line.replace('"required": ["city"]', '"required": ["city"], "maxProperties": NaN', 1) + "\n")
    assert "NaN" in raw.read_text()
    summary = summary_of(sftmix("normalize", "openai_messages", raw, "-o", tmp_path / "o.parquet", "--licence", "mit",
                                cwd=tmp_path))
    assert summary == {"read": 1, "kept": 0, "dropped": {"malformed_row": 1}}
    drop, = pq.read_table(tmp_path / "o.rejected.parquet").to_pylist()
    assert (drop["stage"], drop["detail"]) == ("convert", "ValueError: Out of range float values are not JSON compliant")
    assert math.isnan(json.loads(drop["row"])["tools"][0]["function"]["parameters"]["maxProperties"])  # shown as converted


@pytest.mark.parametrize("where, old, new", [
    ("response", '", "category"', ' \\ud83d", "category"'),
    ("category", '"category": "', '"category": "\\ud83d'),  # kept in the record's origin
])
def test_unpaired_surrogate_is_a_counted_drop_not_a_crash(tmp_path, where, old, new):
    # JSON Lines may hold a lone `\ud83d` escape (half an emoji); json.loads gives a str that is no
    # valid text: it can be neither hashed as UTF-8 nor written to Parquet.
    lines = (ROOT / "tests" / "fixtures" / "dolly" / "databricks-dolly-15k.jsonl").read_text().splitlines()[:3]
    lines[1] = lines[1].replace(old, new, 1)
    assert "\\ud83d" in lines[1]
    raw = tmp_path / "databricks-dolly-15k.jsonl"
    raw.write_text("\n".join(lines) + "\n")
    summary = summary_of(sftmix("normalize", "dolly", raw, "-o", tmp_path / "o.parquet", cwd=tmp_path))
    assert summary == {"read": 3, "kept": 2, "dropped": {"invalid_unicode": 1}}
    drop, = pq.read_table(tmp_path / "o.rejected.parquet").to_pylist()
    assert drop["reason"] == "invalid_unicode" and drop["key"] == f"{raw.name}#1"
    assert "\\ud83d" in drop["detail"]
    converted = json.loads(drop["row"])  # the row's conversation as converted: the lone half is where it was
    assert "\\ud83d" in json.dumps(converted["messages"] if where == "response" else converted["meta"]["category"])


def test_jsonl_lines_not_utf8_or_not_json_are_counted_drops_that_keep_the_line(tmp_path):
    # One bad line of a JSON Lines file is that line's problem: the lines after it are still read.
    lines = (ROOT / "tests" / "fixtures" / "dolly" / "databricks-dolly-15k.jsonl").read_bytes().splitlines()[:4]
    lines[1] = lines[1].replace(b'", "category"', b' \xff", "category"', 1)  # a Latin-1 byte
    lines[2] = lines[2][:-5]  # cut short
    raw = tmp_path / "databricks-dolly-15k.jsonl"
    raw.write_bytes(b"\n".join(lines) + b"\n")
    summary = summary_of(sftmix("normalize", "dolly", raw, "-o", tmp_path / "o.parquet", cwd=tmp_path))
    assert summary == {"read": 4, "kept": 2, "dropped": {"invalid_unicode": 1, "malformed_json": 1}}
    drops = {drop["reason"]: drop for drop in pq.read_table(tmp_path / "o.rejected.parquet").to_pylist()}
    assert drops["invalid_unicode"]["key"] == f"{raw.name}#1" and "line is not UTF-8" in drops["invalid_unicode"]["detail"]
    assert json.loads(drops["invalid_unicode"]["row"]) == lines[1].decode("utf-8", "backslashreplace")  # the byte as \xff
    assert drops["malformed_json"]["key"] == f"{raw.name}#2"
    assert json.loads(drops["malformed_json"]["row"]) == lines[2].decode()
    assert pq.read_table(tmp_path / "o.parquet").column("id").to_pylist()  # rows 0 and 3 went through


def test_a_jsonl_line_nested_too_deeply_is_a_counted_drop_that_keeps_the_line(tmp_path):
    # json raises RecursionError past Python's recursion limit, which would stop the whole run
    lines = (ROOT / "tests" / "fixtures" / "dolly" / "databricks-dolly-15k.jsonl").read_bytes().splitlines()[:2]
    lines.insert(1, b'{"instruction": ' + b"[" * 5_000 + b"]" * 5_000 + b"}")
    raw = tmp_path / "databricks-dolly-15k.jsonl"
    raw.write_bytes(b"\n".join(lines) + b"\n")
    summary = summary_of(sftmix("normalize", "dolly", raw, "-o", tmp_path / "o.parquet", cwd=tmp_path))
    assert summary == {"read": 3, "kept": 2, "dropped": {"malformed_json": 1}}
    drop, = pq.read_table(tmp_path / "o.rejected.parquet").to_pylist()
    assert drop["key"] == f"{raw.name}#1" and drop["detail"].startswith("nested too deeply to decode")
    assert json.loads(drop["row"]) == lines[1].decode()


@pytest.mark.parametrize("escape", ["\\ud83d", "\\ude00"], ids=["lone-high", "lone-low"])
def test_unpaired_surrogate_in_a_json_array_is_the_same_counted_drop(tmp_path, escape):
    # ijson's C parser would turn a lone high half into "?" (a silent change) and stop the run on a
    # lone low half; such a file is read by its Python parser, so the row is dropped as in JSON Lines.
    rows = json.loads((ROOT / "tests" / "fixtures" / "xlam" / "xlam_function_calling_60k.json").read_text())[:3]
    text = json.dumps(rows)
    first_query = json.dumps(rows[0]["query"])[1:-1]
    raw = tmp_path / "xlam_function_calling_60k.json"
    raw.write_text(text.replace(first_query, first_query + escape + " and \\ud83d\\ude00", 1))
    summary = summary_of(sftmix("normalize", "xlam", raw, "-o", tmp_path / "o.parquet", cwd=tmp_path))
    assert summary == {"read": 3, "kept": 2, "dropped": {"invalid_unicode": 1}}
    drop, = pq.read_table(tmp_path / "o.rejected.parquet").to_pylist()
    assert drop["key"] == f"{raw.name}#0" and escape in drop["row"]


def test_paired_surrogate_escapes_are_text(tmp_path):
    rows = json.loads((ROOT / "tests" / "fixtures" / "xlam" / "xlam_function_calling_60k.json").read_text())[:2]
    rows[0]["query"] += " \U0001f600"
    raw = tmp_path / "xlam_function_calling_60k.json"
    raw.write_text(json.dumps(rows))  # ensure_ascii: the emoji is written as the pair \ud83d\ude00
    assert "\\ud83d\\ude00" in raw.read_text()
    summary = summary_of(sftmix("normalize", "xlam", raw, "-o", tmp_path / "o.parquet", cwd=tmp_path))
    assert summary["kept"] == 2
    users = [m["content"] for r in pq.read_table(tmp_path / "o.parquet").to_pylist() for m in r["messages"]
             if m["role"] == "user"]
    assert any(u.endswith(" \U0001f600") for u in users)
