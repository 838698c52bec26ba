"""Benchmark decontamination (`filters.decontamination`) against small fixtures in the benchmarks'
released formats: IFEval `input_data.jsonl`, BFCL v3 `BFCL_v3_*.json` (JSON Lines), When2Call
`when2call_test_mcq.jsonl`, and generic JSONL / Parquet files read through `text_fields`."""

from __future__ import annotations

import codecs
import gzip
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
from datatrove.data import Document

from damaged_parquet import DAMAGES, damage
from filters.base import learned_text
from filters.decontamination import DecontaminationFilter, prompts, words
from sftmix.record import make_record, message

BENCH = Path(__file__).parent / "fixtures" / "benchmarks"
IFEVAL = str(BENCH / "ifeval" / "input_data.jsonl")
BFCL = str(BENCH / "bfcl" / "BFCL_v3_*.json")
WHEN2CALL = str(BENCH / "when2call" / "when2call_test_mcq.jsonl")
ALL = {"ifeval": IFEVAL, "bfcl": BFCL, "when2call": WHEN2CALL}


def rec(*turns: tuple[str, str]) -> dict:
    return make_record(messages=[message(role, text) for role, text in turns], tools=[], source="test",
                       licence="apache-2.0", language="en", origin={"row": "test#0"})


def verdict(step: DecontaminationFilter, record: dict) -> str | None:
    result = step.filter(Document(text=learned_text(record), id=record["id"], metadata={"record": record}))
    return None if result is True else result[1]


@pytest.fixture(scope="module")
def step():
    return DecontaminationFilter(benchmarks=ALL)


def test_row_quoting_an_ifeval_prompt_is_dropped_naming_ifeval(step):
    # quoted inside a longer request, with different case and punctuation
    row = rec(("user", "Hi! I found this task online: 'WRITE a short travel guide about the canals of Ghent, for a "
                       "family visiting in late autumn -- and mention at least two bakeries.' Can you do it?"),
              ("assistant", "Here is a guide to Ghent."))
    assert verdict(step, row) == "contaminated:ifeval"



def test_a_prompt_with_an_invisible_character_inside_a_word_is_still_the_prompt(step):
    """A soft hyphen (a web page's break point) split "canals" into two words: no 13-gram matched."""
    quoted = ("WRITE a short travel guide about the ca\u00adnals of Ghent, for a family visit\u200bing in late "
              "autumn -- and mention at least two bak\ufeffer\u200dies.")
    assert words("ca\u00adnals visit\u200bing") == ["canals", "visiting"]
    assert words("ca\u2066nals fa\u202emily au\u034ftumn bak\ufe0feries") == ["canals", "family", "autumn", "bakeries"]
    assert verdict(step, rec(("user", quoted), ("assistant", "Here is a guide to Ghent."))) == "contaminated:ifeval"

def test_a_copy_that_drops_or_changes_the_apostrophes_is_still_the_prompt(tmp_path):
    """Apostrophes were word breaks: "Mike's" was `mike s` and "Mikes" `mikes`, so a copy without them
    shared no 13-gram with the prompt (283 of the 4,050 BFCL v3 and When2Call prompts of 8 or more
    words were missed so). The turn is multi_turn_miss_param_76's third, as BFCL writes it."""
    bfcl = tmp_path / "BFCL_v3_multi_turn_miss_param.json"
    prompt = "Let's use the hashtags #CarCare and #TireHealth. Btw, I think Mike's user handle is 'mike53'."
    bfcl.write_text(json.dumps({"id": "multi_turn_miss_param_76", "question": [
        [{"role": "user", "content": "I've completed the maintenance on my car and ensured the doors are unlocked. "
                                     "Everything, especially the tires, seems in good condition. Would you kindly "
                                     "assist in securing the remaining doors and initiate the engine in START mode? "
                                     "I want everything primed before I set off."}],
        [{"role": "user", "content": "Also, let's not forget to boast a little online. Could you post an update "
                                     "regarding my impeccable tire condition on Twitter like 'Tire pressure is "
                                     "perfect!'? Don't forget to use the hashtags and be sure to give my friend Mike "
                                     "a mention as well."}],
        [{"role": "user", "content": prompt}]], "initial_config": {}, "path": [],
        "involved_classes": ["TwitterAPI", "VehicleControlAPI"]}) + "\n")
    step = DecontaminationFilter(benchmarks={"bfcl": str(bfcl)})
    for copy in ("Lets use the hashtags #CarCare and #TireHealth. Btw, I think Mikes user handle is mike53.",
                 "Let\u00b4s use the hashtags #CarCare and #TireHealth. Btw, I think Mike\u00b4s user handle is \u2018mike53\u2019.",
                 "Let\u2019s use the hashtags #CarCare and #TireHealth. Btw, I think Mike\u02bcs user handle is mike53.",
                 prompt):
        assert verdict(step, rec(("user", copy), ("assistant", "Posted."))) == "contaminated:bfcl", copy
    assert words("Mike's MIKE\u2019S mikes Mike\u02bcs Mike\u00b4s Mike\uff07s") == ["mikes"] * 6
    assert verdict(step, rec(("user", "Let us use the hashtags #CarCare and #TireHealth. By the way, Mike is "
                                      "on the user handle mike53."))) is None


def test_a_prompt_of_seven_words_and_a_contraction_is_still_checked(tmp_path):
    """`min_prompt_words` counts words as written: with apostrophes taken out, "What's the current time in
    Sydney, Australia?" was 7 words, under the default 8, and an exact copy of it passed (review6)."""
    bfcl = tmp_path / "BFCL_v3_simple.json"
    bfcl.write_text(json.dumps({"id": "simple_7", "question": [[{"role": "user", "content":
                                "What's the current time in Sydney, Australia?"}]], "function": []}) + "\n")
    step = DecontaminationFilter(benchmarks={"bfcl": str(bfcl)})
    for copy in ("What's the current time in Sydney, Australia?", "Whats the current time in Sydney, Australia"):
        assert verdict(step, rec(("user", copy), ("assistant", "It is 9 pm."))) == "contaminated:bfcl", copy
    assert verdict(step, rec(("user", "What is the time in Sydney?"), ("assistant", "9 pm."))) is None


@pytest.mark.parametrize("first, second", [("Whats", "What's"), ("What's", "Whats")])
def test_a_prompt_given_twice_is_counted_as_its_longest_spelling_whatever_the_order(tmp_path, first, second):
    """The same prompt in two files, with and without its apostrophe: it was checked or not by which file
    came first (review8)."""
    for name, spelling in (("a", first), ("b", second)):
        (tmp_path / f"BFCL_v3_{name}.json").write_text(json.dumps({"id": f"{name}_0", "question": [[{
            "role": "user", "content": f"{spelling} the current time in Sydney, Australia?"}]], "function": []}) + "\n")
    step = DecontaminationFilter(benchmarks={"bfcl": str(tmp_path / "BFCL_v3_*.json")})
    row = rec(("user", "Whats the current time in Sydney, Australia?"), ("assistant", "It is 9 pm."))
    assert verdict(step, row) == "contaminated:bfcl"


def test_paraphrase_without_13_gram_overlap_is_kept(step):
    row = rec(("user", "Could you put together a brief guide to Ghent's waterways for parents and kids travelling "
                       "there in November? Please name a couple of good bakeries too."),
              ("assistant", "Sure, here is a short guide."))
    assert verdict(step, row) is None


def test_bfcl_question_inside_a_multi_turn_conversation_is_dropped_naming_bfcl(step):
    row = rec(("system", "You are a file assistant."),
              ("user", "Hello, can you help me tidy my files?"),
              ("assistant", "Of course, what should I do first?"),
              ("user", "Create a folder called invoices_2023 inside my documents directory and move every file "
                       "whose name starts with receipt into it."),
              ("assistant", "Done."))
    assert verdict(step, row) == "contaminated:bfcl"


def test_when2call_question_is_dropped_naming_when2call(step):
    row = rec(("user", "find me a parking garage close to 221 harbour street that costs under four dollars an hour "
                       "on weekends"), ("assistant", "Let me check."))
    assert verdict(step, row) == "contaminated:when2call"


def test_short_prompts_are_matched_whole_or_not_at_all(step):
    # 9 words (< 13, >= min_prompt_words): the whole prompt must occur
    assert verdict(step, rec(("user", "Quick one: convert 42 nautical miles into kilometers for me, please!"),
                             ("assistant", "77.8 km"))) == "contaminated:bfcl"
    assert verdict(step, rec(("user", "Convert 42 nautical miles into meters for me please."),
                             ("assistant", "77,784 m"))) is None
    # "Roll two dice." has 3 words: too short to be used
    assert verdict(step, rec(("user", "Roll two dice for me, would you?"), ("assistant", "4 and 6."))) is None
    assert step.index_stats()["bfcl"]["short_prompts_skipped"] == 1


def test_assistant_turns_are_checked_unless_configured_otherwise(step):
    row = rec(("user", "Give me an example of a writing prompt."),
              ("assistant", "Compose a limerick about a lighthouse keeper who collects broken umbrellas."))
    assert verdict(step, row) is None  # 11 words of a 28-word prompt: no 13-gram in common
    row = rec(("user", "Give me an example of a writing prompt."),
              ("assistant", "Try this: explain to a ten year old why the moon seems to follow the car at night."))
    assert verdict(step, row) == "contaminated:ifeval"
    assert verdict(DecontaminationFilter(benchmarks=ALL, roles=["user"]), row) is None


def test_bfcl_system_prompts_are_not_benchmark_text(step):
    row = rec(("system", "You are a helpful assistant that answers questions about the weather using the tools "
                         "you are given and nothing else."),
              ("user", "You are a helpful assistant that answers questions about the weather using the tools you are "
                       "given and nothing else. What is the weather in Oslo?"), ("assistant", "Sunny."))
    assert verdict(step, row) is None


def test_template_wording_shared_by_many_prompts_is_not_an_item():
    template = ("Write about otters. Your entire response should be in English, and in all lowercase letters. "
                "No capital letters are allowed.")
    row = rec(("user", template), ("assistant", "otters are playful."))
    # the template sentence is in 3 IFEval fixture prompts
    assert verdict(DecontaminationFilter(benchmarks={"ifeval": IFEVAL}, max_prompts_per_ngram=2), row) is None
    assert verdict(DecontaminationFilter(benchmarks={"ifeval": IFEVAL}, max_prompts_per_ngram=None), row) == "contaminated:ifeval"
    stats = DecontaminationFilter(benchmarks={"ifeval": IFEVAL}, max_prompts_per_ngram=2).index_stats()["ifeval"]
    assert stats["prompts"] == 4 and stats["template_ngrams_ignored"] > 0


def test_generic_jsonl_and_parquet_through_text_fields():
    step = DecontaminationFilter(benchmarks={
        "qa": {"paths": str(BENCH / "generic" / "qa_test.jsonl"), "text_fields": ["input"]},
        "chat": {"paths": [str(BENCH / "generic" / "chat_test.parquet")], "text_fields": ["messages"]},
    })
    assert verdict(step, rec(("user", "which planet in our solar system has the longest day relative to its year?"),
                             ("assistant", "Venus."))) == "contaminated:qa"
    assert verdict(step, rec(("user", "Please summarize the argument of the essay about municipal libraries as "
                                      "community living rooms in three sentences."), ("assistant", "ok"))) == "contaminated:chat"
    assert verdict(step, rec(("user", "Which river is longest in France?"), ("assistant", "The Loire."))) is None


@pytest.mark.parametrize("chunk_bytes", [None, 1, 200])  # whole batch, a turn at a time, a few turns at a time
def test_a_batch_gives_each_row_the_verdict_and_detail_it_gets_alone(step, chunk_bytes, monkeypatch):
    # Rows are checked a batch at a time, every turn hashed together: a row's first matching turn
    # decides, in it the config's first benchmark, and nothing leaks between rows or turns.
    ifeval = "Explain to a ten year old why the moon seems to follow the car at night."
    bfcl = "Quick one: convert 42 nautical miles into kilometers for me, please!"  # matched whole
    when2call = ("find me a parking garage close to 221 harbour street that costs under four dollars an hour "
                 "on weekends")
    rows = [
        rec(("user", "Tell me a story about a fox."), ("assistant", "Once upon a time...")),
        rec(("user", when2call), ("assistant", ifeval)),  # the first turn decides
        rec(("user", "hello there"), ("assistant", "Sure: " + ifeval)),
        rec(("user", when2call + " " + ifeval + " " + bfcl)),  # one turn, three benchmarks: ifeval comes first in ALL
        rec(("user", ifeval[:40]), ("assistant", ifeval[40:])),  # split across turns: no n-gram spans them
        rec(("system", ifeval), ("user", "Convert 42 nautical miles into kilometers for me"), ("assistant", bfcl)),
    ] * 3

    def docs():
        return [Document(text=learned_text(r), id=r["id"], metadata={"record": r}) for r in rows]

    batch, alone = docs(), docs()
    expected = [step.filter(doc) for doc in alone]
    if chunk_bytes:
        monkeypatch.setattr("filters.decontamination.CHUNK_BYTES", chunk_bytes)
    assert step.filter_batch(batch) == expected
    assert [d.metadata.get("filter_detail") for d in batch] == [d.metadata.get("filter_detail") for d in alone]
    assert expected[:6] == [
        True, (False, "contaminated:when2call"), (False, "contaminated:ifeval"), (False, "contaminated:ifeval"), True,
        (False, "contaminated:bfcl")]
    assert batch[3].metadata["filter_detail"].startswith("ifeval item ")
    assert batch[5].metadata["filter_detail"].endswith(
        "bfcl item simple_1 (assistant turn): convert 42 nautical miles into kilometers for me please")


def test_counts_per_benchmark_come_from_the_reasons(step):
    class Sink:
        def __init__(self):
            self.reasons = Counter()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, doc, rank=0):
            self.reasons[doc.metadata["filter_reason"]] += 1

    rows = [
        rec(("user", "Explain to a ten year old why the moon seems to follow the car at night."), ("assistant", "...")),
        rec(("user", "Now count how many lines the largest of those receipts has and post the number to my team "
                     "channel with the tag accounting."), ("assistant", "...")),
        rec(("user", "Finally, compress the invoices folder and tell me how big the archive is."), ("assistant", "...")),
        rec(("user", "Tell me a story about a fox."), ("assistant", "Once upon a time...")),
    ]
    sink = Sink()
    step.exclusion_writer = sink
    try:
        kept = list(step.run(Document(text=learned_text(r), id=r["id"], metadata={"record": r}) for r in rows))
    finally:
        step.exclusion_writer = None
    assert len(kept) == 1
    assert sink.reasons == {"contaminated:ifeval": 1, "contaminated:bfcl": 2}


def test_readers_follow_the_released_formats():
    ifeval = list(prompts(Path(IFEVAL)))
    assert [k for k, _ in ifeval] == ["1001", "1002", "1003", "1004"]
    bfcl = list(prompts(BENCH / "bfcl" / "BFCL_v3_multi_turn_miss_func.json"))  # an empty turn is allowed
    assert [k for k, _ in bfcl] == ["multi_turn_miss_func_0"] * 2
    live = list(prompts(BENCH / "bfcl" / "BFCL_v3_live_simple.json"))
    assert len(live) == 1 and live[0][1].startswith("Is it going to snow")  # the system turn is not a prompt
    when2call = list(prompts(Path(WHEN2CALL)))
    assert len(when2call) == 4  # question + orig_question of each row
    assert words("Don't STOP—now! café_au_lait") == ["dont", "stop", "now", "café", "au", "lait"]


def test_configuration_errors():
    with pytest.raises(ValueError):
        DecontaminationFilter()
    with pytest.raises(ValueError):
        DecontaminationFilter(benchmarks={"x": {"path": "a.jsonl"}})
    with pytest.raises(ValueError):
        DecontaminationFilter(benchmarks={"x": IFEVAL}, roles=["narrator"])
    with pytest.raises(FileNotFoundError, match="^benchmark 'x': no such file /nonexistent/input_data.jsonl$"):
        DecontaminationFilter(benchmarks={"x": "/nonexistent/input_data.jsonl"}).index_stats()
    with pytest.raises(FileNotFoundError, match=f"^benchmark 'x': no file matches {re.escape(str(BENCH))}/bfcl/BFCL_v9_\\*.json$"):
        DecontaminationFilter(benchmarks={"x": "bfcl/BFCL_v9_*.json"}, root=str(BENCH)).index_stats()
    with pytest.raises(ValueError, match="text_fields"):
        DecontaminationFilter(benchmarks={"qa": str(BENCH / "generic" / "qa_test.jsonl")}).index_stats()
    # relative paths resolve against `root`
    step = DecontaminationFilter(benchmarks={"ifeval": "ifeval/input_data.jsonl"}, root=str(BENCH))
    assert step.index_stats()["ifeval"]["prompts"] == 4


def test_benchmark_files_are_those_the_paths_name_now():
    """What a source's filtered settings record (`sftmix.build.stage_settings`): a missing file is
    not listed, so that it appears as new once it is there."""
    step = DecontaminationFilter(benchmarks={"ifeval": ["ifeval/input_data.jsonl", "ifeval/missing.jsonl"],
                                             "bfcl": {"paths": "bfcl/BFCL_v3_*.json"}}, root=str(BENCH))
    assert step.benchmark_files() == [BENCH / "ifeval" / "input_data.jsonl"] + sorted((BENCH / "bfcl").glob("BFCL_v3_*.json"))


def test_a_glob_keeps_the_files_and_the_check_names_a_directory_or_a_file_of_no_format(tmp_path):
    """BFCL's `data/` holds `possible_answer/` and `multi_turn_func_doc/` beside the question files:
    `bfcl/*` matched them, passed the check, and the filter stage (after the source's normalize stage)
    stopped on a bare IsADirectoryError; a file of no format read here was found only there too."""
    bfcl = tmp_path / "bfcl"
    (bfcl / "possible_answer").mkdir(parents=True)
    (bfcl / "multi_turn_func_doc").mkdir()
    shutil.copy(BENCH / "bfcl" / "BFCL_v3_simple.json", bfcl)
    (bfcl / "possible_answer" / "BFCL_v3_simple.json").write_text(json.dumps(
        {"id": "simple_0", "ground_truth": [{"physics.boiling_point": {"altitude": [2400], "unit": ["celsius", ""]}}]}) + "\n")
    (bfcl / "multi_turn_func_doc" / "gorilla_file_system.json").write_text(json.dumps(
        {"name": "cat", "description": "Display the contents of a file.", "parameters": {"type": "dict"}}) + "\n")
    step = DecontaminationFilter(benchmarks={"bfcl": "bfcl/*"}, root=str(tmp_path))
    step.check_files()
    assert step.benchmark_files() == [bfcl / "BFCL_v3_simple.json"]
    assert step.index_stats()["bfcl"]["prompts"] == 3
    with pytest.raises(IsADirectoryError, match=re.escape(f"benchmark 'bfcl': {bfcl / 'possible_answer'} is a directory; "
                                                          f"name its files (a glob such as {bfcl / 'possible_answer' / '*'})")):
        DecontaminationFilter(benchmarks={"bfcl": "bfcl/possible_answer"}, root=str(tmp_path)).check_files()
    with pytest.raises(ValueError, match=re.escape(f"benchmark 'bfcl': {bfcl / 'possible_answer' / 'BFCL_v3_simple.json'}: "
                                                   "unknown benchmark format (keys ['ground_truth', 'id'])")):
        DecontaminationFilter(benchmarks={"bfcl": ["bfcl/*", "bfcl/possible_answer/*"]}, root=str(tmp_path)).check_files()
    # a benchmark of no prompt at all (a misspelt text field, an empty file) passed the check, and
    # stopped the filter stage after the source's normalize stage (review)
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "blank.jsonl").write_text("".join(json.dumps({"question": q}) + "\n" for q in ("", "  ", "?")))
    for benchmark in ({"paths": "bfcl/*", "text_fields": ["questoin"]}, "empty.jsonl",
                      {"paths": "blank.jsonl", "text_fields": ["question"]}):
        with pytest.raises(ValueError, match=r"^benchmark 'b': no prompts in "):
            DecontaminationFilter(benchmarks={"b": benchmark}, root=str(tmp_path)).check_files()


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_parquet_benchmark_is_a_configuration_error_naming_it(tmp_path, how):
    broken = tmp_path / "chat_test.parquet"
    shutil.copy(BENCH / "generic" / "chat_test.parquet", broken)
    damage(broken, how)
    step = DecontaminationFilter(benchmarks={"chat": {"paths": [str(broken)], "text_fields": ["messages"]}})
    with pytest.raises(ValueError, match=re.escape(f"cannot read {broken}: ")):
        step.index_stats()


@pytest.mark.parametrize("damage_to", ["a byte that is not UTF-8", "a JSON array cut short", "a line nested too deeply",
                                       "a JSON array nested too deeply"])
def test_a_damaged_text_benchmark_is_a_configuration_error_naming_it(tmp_path, damage_to):
    broken = tmp_path / "input_data.jsonl"
    if damage_to == "a byte that is not UTF-8":
        broken.write_bytes(Path(IFEVAL).read_bytes().replace(b"Write", b"Wr\xefte", 1))
        expected = f"{broken}: not UTF-8 text ("
    elif damage_to == "a line nested too deeply":  # json raises RecursionError on it, not a decode error
        broken.write_text(Path(IFEVAL).read_text() + '{"prompt": ' + "[" * 5_000 + "]" * 5_000 + "}\n")
        expected = f"{broken}:{len(Path(IFEVAL).read_text().splitlines()) + 1}: not JSON Lines (nested too deeply"
    elif damage_to == "a JSON array nested too deeply":
        broken.write_text('[{"prompt": ' + "[" * 5_000 + "]" * 5_000 + "}]")
        expected = f"{broken}: not a JSON array (nested too deeply"
    else:
        rows = [json.loads(line) for line in Path(IFEVAL).read_text().splitlines() if line.strip()]
        broken.write_text(json.dumps(rows)[:-40])
        expected = f"{broken}: not a JSON array ("
    with pytest.raises(ValueError, match=re.escape(expected)):
        DecontaminationFilter(benchmarks={"ifeval": str(broken)}).index_stats()


@pytest.mark.parametrize("layout", ["jsonl", "json array"])
def test_a_benchmark_file_with_a_byte_order_mark_gives_the_same_prompts(tmp_path, layout):
    text = Path(IFEVAL).read_text(encoding="utf-8")
    if layout == "json array":
        text = json.dumps([json.loads(line) for line in text.splitlines() if line.strip()])
    plain, marked = tmp_path / "plain" / "input_data.jsonl", tmp_path / "marked" / "input_data.jsonl"
    for path, prefix in ((plain, b""), (marked, codecs.BOM_UTF8)):
        path.parent.mkdir()
        path.write_bytes(prefix + text.encode("utf-8"))
    assert list(prompts(marked)) == list(prompts(plain)) and len(list(prompts(plain))) == 4


def test_a_gzipped_benchmark_gives_the_prompts_of_the_plain_file_and_a_cut_one_is_named(tmp_path):
    """HumanEval is released as `HumanEval.jsonl.gz` (openai/human-eval `human_eval/data.py`)."""
    rows = [{"task_id": f"HumanEval/{i}", "prompt": f'def f{i}(numbers: list) -> bool:\n    """ Check if in the given list '
             f'of numbers any two are closer to each other than the threshold {i}.\n    >>> f{i}([1.0, 2.0])\n    """\n',
             "entry_point": f"f{i}", "canonical_solution": "    return False\n", "test": "def check(c):\n    pass\n"}
            for i in range(3)]
    plain, packed = tmp_path / "HumanEval.jsonl", tmp_path / "HumanEval.jsonl.gz"
    plain.write_text("".join(json.dumps(row) + "\n" for row in rows))
    packed.write_bytes(gzip.compress(codecs.BOM_UTF8 + plain.read_bytes()))
    assert [text for _, text in prompts(packed, ["prompt"])] == [text for _, text in prompts(plain, ["prompt"])] == \
        [row["prompt"] for row in rows]
    step = DecontaminationFilter(benchmarks={"humaneval": {"paths": str(packed), "text_fields": ["prompt"]}})
    assert step.index_stats()["humaneval"]["prompts"] == 3
    assert verdict(step, rec(("user", "Complete this: " + rows[1]["prompt"]))) == "contaminated:humaneval"
    packed.write_bytes(packed.read_bytes()[:-30])
    with pytest.raises(ValueError, match=re.escape(f"{packed}: not a whole gzip file (")):
        list(prompts(packed, ["prompt"]))


def test_a_json_document_among_the_question_files_is_named_as_not_rows(tmp_path):
    """BFCL v4's data directory holds `BFCL_v4_format_sensitivity.json`, pretty-printed categories
    to question ids, which the natural glob `BFCL_v4_*.json` matches."""
    question = (BENCH / "bfcl" / "BFCL_v3_live_simple.json").read_text()
    (tmp_path / "BFCL_v4_live_simple.json").write_text(question)
    sensitivity = tmp_path / "BFCL_v4_format_sensitivity.json"
    sensitivity.write_text(json.dumps({"simple_python": ["simple_python_58", "simple_python_94"],
                                       "multiple": ["multiple_1"]}, indent=4))
    step = DecontaminationFilter(benchmarks={"bfcl": str(tmp_path / "BFCL_v4_*.json")})
    with pytest.raises(ValueError, match=re.escape(
            f"{sensitivity}: one JSON object over several lines (keys ['multiple', 'simple_python']), not benchmark rows "
            "one per line; if it is not a question file (BFCL v4's BFCL_v4_format_sensitivity.json lists ids), "
            "name the benchmark's files without it")):
        step.index_stats()
    sensitivity.write_text('{\n  "key": "1001", "prompt": "cut')  # a file cut short is still a line that is not JSON
    with pytest.raises(ValueError, match=re.escape(f"{sensitivity}:1: not JSON Lines (")):
        DecontaminationFilter(benchmarks={"bfcl": str(tmp_path / "BFCL_v4_*.json")}).index_stats()
    sensitivity.unlink()
    assert DecontaminationFilter(benchmarks={"bfcl": str(tmp_path / "BFCL_v4_*.json")}).index_stats()["bfcl"]["prompts"] >= 1


def test_chinese_and_japanese_prompts_are_matched_character_by_character(tmp_path):
    """Written without spaces, a clause was one word, and most such prompts fell under
    `min_prompt_words` unseen: 17 of BFCL v3's distinct Chinese and Japanese prompts were unused.
    The items are as BFCL writes them (JSON with \\u escapes); live_simple_13-3-9 is real."""
    items = {"live_simple_13-3-9": "我想知道上海目前的天气状况，可以帮我查询吗？顺便使用摄氏度来显示温度。",
             "live_simple_ja-0": "東京の明日の天気を調べて、傘が必要かどうか教えてください。",
             "live_simple_ko-0": "서울 내일 날씨를 알려주고 우산이 필요한지 말해줘 그리고 기온도 알려줘"}
    bfcl = tmp_path / "BFCL_v3_live_simple.json"
    bfcl.write_text("".join(json.dumps({"id": key, "question": [[{"role": "user", "content": text}]],
                                        "function": [{"name": "get_current_weather", "parameters": {}}]}) + "\n"
                            for key, text in items.items()))
    assert "\\u6211" in bfcl.read_text()
    assert words("上海の天气，Hello WORLD。안녕하세요 세계") == ["上", "海", "の", "天", "气", "hello", "world", "안녕하세요", "세계"]
    assert words("ひらがなだけ") == list("ひらがなだけ") and words("x𠀋𡈽") == ["x", "𠀋", "𡈽"]  # no ideograph of U+4E00-U+9FFF
    step = DecontaminationFilter(benchmarks={"bfcl": str(bfcl)})
    assert step.index_stats()["bfcl"]["short_prompts_skipped"] == 0
    for key, text in items.items():
        row = rec(("user", f"帮我一下：{text}"), ("assistant", "好的。"))
        assert verdict(step, row) == "contaminated:bfcl", key
    assert verdict(step, rec(("user", "我想知道北京明天的天气，可以帮我查询吗？"))) is None  # no 13 characters in a row in common
