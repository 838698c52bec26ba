"""MinHash near-duplicate detection across sources (`sftmix.near_dedup`) on planted near copies."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from datatrove.data import Document
from datatrove.pipeline.dedup.minhash import MinhashDedupSignature
from datatrove.utils.text import TextNormConfig, simplify_text
from datatrove.utils.typeshelper import StatHints

from sftmix.near_dedup import (ANSWER_HASHES, RecordMinhashSignature, WhitespaceTokenizer, batch_texts,
                               minhash_config, near_duplicates)
from sftmix.record import make_record, message, to_table, tool_call

WORDS = ("river mountain signal quiet lantern harbor copper meadow engine violet thunder pocket window garden "
         "silver marble orchard canyon ribbon pepper saddle falcon velvet compass tunnel glacier ember prairie "
         "puzzle anchor beacon candle dolphin feather hammer island jungle kettle ladder mirror needle oyster "
         "pillow quartz rocket shadow ticket umbrella valley wagon yonder zephyr basket cobalt desert forest").split()


def text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)) + "."


def record(source: str, user: str, assistant: str) -> dict:
    return make_record(messages=[message("user", user), message("assistant", assistant)], tools=[], source=source,
                       licence="apache-2.0", language="en", origin={"row": "t#0"})


def edit(rng: random.Random, original: str, words: int = 1) -> str:
    """A near copy: `words` words changed and the final punctuation swapped."""
    tokens = original.rstrip(".").split()
    for index in rng.sample(range(len(tokens)), words):
        tokens[index] = "changed"
    return " ".join(tokens) + "!"


def write(path: Path, records: list[dict]) -> Path:
    pq.write_table(to_table(records), path, row_group_size=4)
    return path


@pytest.fixture
def planted(tmp_path):
    rng = random.Random(7)
    first = [record("first", text(rng, 30), text(rng, 120)) for _ in range(12)]
    second = [record("second", text(rng, 30), text(rng, 120)) for _ in range(12)]
    # near copies in the later source of rows of the earlier one: one word changed, punctuation changed
    pairs = []
    for original in first[:4]:
        copy = record("second", edit(rng, original["messages"][0]["content"]),
                      edit(rng, original["messages"][1]["content"]))
        second.append(copy)
        pairs.append((original["id"], copy["id"]))
    # a near copy inside the later source: the smaller id is kept
    within = record("second", second[0]["messages"][0]["content"], edit(rng, second[0]["messages"][1]["content"], 2))
    second.append(within)
    files = [("first", [write(tmp_path / "first.parquet", first)]),
             ("second", [write(tmp_path / "second-a.parquet", second[:10]), write(tmp_path / "second-b.parquet", second[10:])])]
    return files, pairs, (second[0]["id"], within["id"]), first + second


def test_planted_near_duplicates_keep_the_earlier_source(planted, tmp_path):
    files, pairs, (a, b), records = planted
    removed = near_duplicates(files, tmp_path / "work")
    for original, copy in pairs:
        assert removed[copy] == (original, "first")
        assert original not in removed
    kept, dropped = sorted([a, b])
    assert removed[dropped] == (kept, "second")
    # nothing else is touched
    assert set(removed) == {copy for _, copy in pairs} | {dropped}
    assert len(records) == 12 + 12 + 4 + 1


def test_same_result_with_two_workers(planted, tmp_path):
    files, *_ = planted
    assert near_duplicates(files, tmp_path / "w1", workers=1) == near_duplicates(files, tmp_path / "w2", workers=2)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_task_signs_at_most_signature_task_rows_and_the_result_is_the_same(planted, tmp_path, monkeypatch, workers):
    """datatrove sorts a task's signatures in memory and the clusters are resolved against a task's
    ids: with the rows cut into more tasks than workers, memory stays flat and nothing else changes."""
    import sftmix.near_dedup as near_dedup

    files, *_ = planted
    expected = near_duplicates(files, tmp_path / "one", workers=workers)
    tasks = []
    run_steps = near_dedup._run_steps
    monkeypatch.setattr(near_dedup, "_run_steps", lambda pipeline, n, *args: tasks.append(n) or run_steps(pipeline, n, *args))
    monkeypatch.setattr(near_dedup, "SIGNATURE_TASK_ROWS", 8)
    assert near_duplicates(files, tmp_path / "many", workers=workers) == expected
    assert tasks[0] == 4  # 29 rows in 8 row groups (of 4 rows at most): 4 tasks of 2 row groups, 6 to 8 rows


def test_source_order_decides_the_keeper(planted, tmp_path):
    files, pairs, *_ = planted
    removed = near_duplicates(list(reversed(files)), tmp_path / "work")
    for original, copy in pairs:
        assert removed[original] == (copy, "second")


def test_short_texts_and_empty_sources(tmp_path):
    short = [record("a", "hi", "hello there"), record("a", "hi", "hello there!")]
    files = [("a", [write(tmp_path / "a.parquet", short)]), ("b", [write(tmp_path / "b.parquet", [])])]
    assert near_duplicates(files, tmp_path / "work") == {}


CHINESE_QUESTION = "请帮我写一篇关于上海城市交通发展的短文，重点介绍地铁网络的扩张以及对市民日常出行方式的影响，字数大约五百字。"
CHINESE_ANSWER = ("上海的城市交通在过去三十年里经历了翻天覆地的变化。地铁网络从一条线路发展到二十多条线路，总里程超过八百公里，"
                  "覆盖了几乎所有的中心城区和主要的郊区新城。市民的出行方式也随之改变，越来越多的人选择乘坐地铁上下班，"
                  "私家车的使用频率在中心城区明显下降。与此同时，公交线路也进行了优化调整，与地铁站点形成了更好的接驳。")


def test_a_one_character_edit_of_chinese_text_is_a_near_duplicate(tmp_path):
    """Chinese puts no space between words: split on spaces, each clause was one word (13 in these
    208 characters), one changed character changed half the shingles, and no copy was found."""
    original = record("a", CHINESE_QUESTION, CHINESE_ANSWER)
    copy = record("b", CHINESE_QUESTION, CHINESE_ANSWER.replace("八百", "九百"))
    files = [("a", [write(tmp_path / "a.parquet", [original])]), ("b", [write(tmp_path / "b.parquet", [copy])])]
    assert near_duplicates(files, tmp_path / "work") == {copy["id"]: (original["id"], "a")}
    signature = RecordMinhashSignature("unused", "unused", config=minhash_config(), language=WhitespaceTokenizer())
    assert signature.words("上海的城市，Shanghai 交通") == ["上", "海", "的", "城", "市", "shanghai", "交", "通"]


def test_text_is_user_and_assistant_turns_with_tool_calls():
    rec = make_record(messages=[message("system", "be brief"), message("user", "weather in Oslo?"),
                                message("assistant", "", tool_calls=[tool_call("get_weather", {"city": "Oslo"}, "c0")]),
                                message("tool", '{"t": 3}', tool_call_id="c0", name="get_weather"),
                                message("assistant", "It is 3 degrees.")],
                      tools=[], source="s", licence="mit", language="en", origin={})
    [value] = batch_texts(to_table([rec]).column("messages").chunk(0))
    assert value == ('weather in Oslo?\nget_weather {"city": "Oslo"}\nIt is 3 degrees.',
                     'get_weather {"city": "Oslo"}\nIt is 3 degrees.', 2)


def test_a_call_s_arguments_are_compared_whatever_the_order_of_their_keys():
    """`{"unit", "city"}` and `{"city", "unit"}` (one call, two converters) shared few shingles of a
    short conversation: both copies stayed. Arguments that are no object are taken as written."""
    def text(arguments):
        rec = make_record(messages=[message("user", "weather in Oslo?"), message("assistant", "", tool_calls=[
            tool_call("get_weather", arguments, "c0")])], tools=[], source="s", licence="mit", language="en", origin={})
        [(value, *_)] = batch_texts(to_table([rec]).column("messages").chunk(0))
        return value

    assert text({"unit": "celsius", "city": "Oslo", "at": {"z": 1, "a": 2}}) == text(
        {"city": "Oslo", "at": {"a": 2, "z": 1}, "unit": "celsius"}) == \
        'weather in Oslo?\nget_weather {"at": {"a": 2, "z": 1}, "city": "Oslo", "unit": "celsius"}'
    assert text('{"city": "Oslo", ') == 'weather in Oslo?\nget_weather {"city": "Oslo", '
    assert text("[1, 2]") == "weather in Oslo?\nget_weather [1, 2]"


# Letters, accents and combining marks, digits, punctuation, and whitespace that `str.split` splits at
# (no-break, em and ideographic spaces, information separators) in runs of any length.
TEXT_PIECES = ["river", "Mañana", "CAFÉ", "e\u0301", "\u0301", "naïve", "Øre", "2024", "3.5", "—", ",", "«", "!", "'s",
               " ", "  ", "\t", "\n\n", "\u00a0", "\u2003", "\u3000", "\x1c", " \u0301 ", "monday", "july", "ｗｉｄｅ"]


@pytest.mark.parametrize("norm", [minhash_config().norm_config, TextNormConfig()], ids=["manifest", "datatrove-default"])
def test_shingle_words_are_those_of_datatrove_simplify_text(norm):
    config = dataclasses.replace(minhash_config(), norm_config=norm)
    signature = RecordMinhashSignature("unused", "unused", config=config, language=WhitespaceTokenizer())
    rng = random.Random(3)
    texts = ["".join(rng.choice(TEXT_PIECES) for _ in range(rng.randint(0, 40))) for _ in range(2000)]
    texts += ["plain ascii text, with punctuation!\tand  tabs\n", " \u0301 ", ""]
    assert sum(not text.isascii() for text in texts) > 1000
    for text in texts:
        assert signature.words(text) == simplify_text(text, norm).split(), repr(text)


def test_signature_is_datatrove_signature():
    signature = RecordMinhashSignature("unused", "unused", config=minhash_config(), language=WhitespaceTokenizer())
    a, b = (p.ravel().tolist() for p in signature.parameters)
    rng = np.random.default_rng(5)
    for size in (1, 7, 300):
        shingles = rng.integers(0, 2**64, size=(size, 1), dtype=np.uint64)
        assert signature.get_signature(shingles) == MinhashDedupSignature.get_signature(signature, shingles)
    # Shingles whose a * s + b (mod 2^64) lands where the shift-and-mask sum reaches 2^61 - 1: the
    # exact remainder (here 7, 0 and 1) is then the column's minimum.
    column = next(j for j, value in enumerate(a) if value % 2)
    targets = [2**64 - 1, 2**61 - 1, 2**62 - 1]
    crafted = [(target - b[column]) * pow(a[column], -1, 2**64) % 2**64 for target in targets]
    shingles = np.array([*crafted, *rng.integers(0, 2**64, size=50, dtype=np.uint64).tolist()], np.uint64).reshape(-1, 1)
    expected = MinhashDedupSignature.get_signature(signature, shingles)
    assert signature.get_signature(shingles) == expected
    assert expected[column // signature.config.hashes_per_bucket][column % signature.config.hashes_per_bucket] == 0


@pytest.mark.parametrize("precision", [64, 32])
def test_signature_files_are_datatrove_files(precision, tmp_path):
    """`run` writes a batch of rows at a time what datatrove writes row by row, then has it sort them."""
    config = minhash_config()
    if precision == 32:
        config = dataclasses.replace(config, hash_config=dataclasses.replace(config.hash_config, precision=32))
    rng = random.Random(11)
    # more rows than one write batch; rows of fewer than 5 words have no signature but take an index
    texts = [text(rng, rng.choice([0, 3, 4, 5, 40, 200])) for _ in range(2500)]
    runs = {}
    for kind in ("sftmix", "datatrove"):
        step = RecordMinhashSignature(str(tmp_path / kind), str(tmp_path / "answers"), config=config,
                                      language=WhitespaceTokenizer())
        documents = (Document(text=t, id=str(i), metadata={"assistant": t, "turns": 1}) for i, t in enumerate(texts))
        run = step.run if kind == "sftmix" else lambda data, rank: MinhashDedupSignature.run(step, data, rank)
        run(documents, rank=3)
        run(iter(()), rank=4)  # a task with no rows
        files = sorted(tmp_path.joinpath(kind).rglob("*.sig"))
        runs[kind] = ([f.relative_to(tmp_path / kind) for f in files], [f.read_bytes() for f in files],
                      step.stats[StatHints.total].total)
    assert runs["sftmix"] == runs["datatrove"]
    names, contents, total = runs["sftmix"]
    assert len(names) == 28 and total == 2500
    signed = sum(len(t.split()) >= 5 for t in texts)
    assert len(contents[0]) == signed * (config.hashes_per_bucket * precision // 8 + 4) and not contents[-1]
    # every row's answers, in row order: its turns then its answer signature, zeros when it has no signature
    answers = np.fromfile(tmp_path / "answers" / "00003.answers", "<u4").reshape(-1, 1 + ANSWER_HASHES)
    assert len(answers) == 2500 and answers[:, 0].tolist() == [int(len(t.split()) >= 5) for t in texts]
    assert not answers[answers[:, 0] == 0].any() and answers[answers[:, 0] == 1, 1:].all(axis=1).mean() > 0.99


RAG_FIXTURE = Path(__file__).parent / "fixtures" / "rag_multilingual" / "train.jsonl"
NORMANS = ("The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, a region in "
           "France. They were descended from Norse raiders and pirates from Denmark, Iceland and Norway who, under "
           "their leader Rollo, agreed to swear fealty to King Charles III of West Francia. Through generations of "
           "assimilation and mixing with the native Frankish and Roman-Gaulish populations, their descendants would "
           "gradually merge with the Carolingian-based cultures of West Francia. The distinct cultural and ethnic "
           "identity of the Normans emerged initially in the first half of the 10th century, and it continued to "
           "evolve over the succeeding centuries. The Norman dynasty had a major political, cultural and military "
           "impact on medieval Europe and even the Near East, and the Normans were famed for their martial spirit "
           "and eventually for their Catholic piety.")
NORMANS_QUESTIONS = [
    ("In what country is Normandy located?", "France",
     "Normandy is a region located in France, named after the Normans who settled there."),
    ("When were the Normans in Normandy?", "10th and 11th centuries",
     "The Normans gave their name to Normandy during the 10th and 11th centuries."),
    ("From which countries did the Norse originate?", "Denmark, Iceland and Norway",
     "The Norse raiders and pirates who became the Normans came from Denmark, Iceland and Norway."),
    ("Who was the Norse leader?", "Rollo",
     "Their leader was Rollo, who agreed to swear fealty to King Charles III of West Francia."),
    ("What were the Normans famed for?", "martial spirit",
     "They were famous for their fighting spirit and, later on, for being devout Catholics."),
]


def test_different_questions_about_one_passage_are_not_near_duplicates(tmp_path):
    """RAG_Multilingual (SQuAD, SQAC, CatalanQA: ~5 questions a paragraph) puts question + passage in
    the user turn: the passage made the whole texts near duplicates and rows with different answers
    were dropped. A near copy of a row still is one."""
    from sftmix.raw import iter_raw_rows
    from sftmix.sources import Converted, get_converter

    template = json.loads(RAG_FIXTURE.read_text().splitlines()[2])  # the English row: the format's keys
    rows = [{**template, "id": i, "instruction": question, "context": NORMANS, "response": answer, "extractive": span}
            for i, (question, span, answer) in enumerate(NORMANS_QUESTIONS)]
    # the same question and answer, a word of the passage edited
    near_copy = {**rows[2], "id": 5, "context": NORMANS.replace("pirates", "seafarers")}
    raw = tmp_path / "train.jsonl"
    raw.write_text("".join(json.dumps(row) + "\n" for row in [*rows, near_copy]))
    converted = [c for _, c in get_converter("rag_multilingual")(iter_raw_rows([raw]))]
    assert all(isinstance(c, Converted) for c in converted)
    records = [make_record(messages=c.messages, tools=[], source="rag", licence="cc-by-sa-4.0", language=c.language,
                           origin={"row": f"train.jsonl#{i}"}) for i, c in enumerate(converted)]
    files = [("rag", [write(tmp_path / "rag.parquet", records)])]
    kept, copy = sorted([records[2]["id"], records[5]["id"]])
    assert near_duplicates(files, tmp_path / "work") == {copy: (kept, "rag")}


EXPLAIN_QUESTION = ("My grandmother keeps telling me that bread dough needs to rest before baking, but she never explains "
                    "why. What actually happens to the dough while it sits on the counter for an hour?")
EXPLAIN_ANSWER = "While it rests, yeast ferments the sugars and releases gas that makes the dough rise."


def test_a_short_answer_with_a_typo_fixed_is_a_near_duplicate(tmp_path):
    """One typo in a 15-word answer changes 5 of its 11 word 5-grams: with hashes of the answer's
    5-grams in every band this copy was not found (the whole text alone finds it)."""
    original = record("a", EXPLAIN_QUESTION, EXPLAIN_ANSWER.replace("releases", "relases"))
    copy = record("b", EXPLAIN_QUESTION, EXPLAIN_ANSWER)
    files = [("a", [write(tmp_path / "a.parquet", [original])]), ("b", [write(tmp_path / "b.parquet", [copy])])]
    assert near_duplicates(files, tmp_path / "work") == {copy["id"]: (original["id"], "a")}


def test_a_conversation_extended_by_a_turn_is_not_a_near_duplicate_of_its_original(tmp_path):
    """Multi-turn augmentation keeps the original turns unchanged and adds one: the extended
    conversation, paid for, was dropped as a near duplicate of its original."""
    rng = random.Random(5)
    answer = text(rng, 150)
    original = record("oasst2", text(rng, 20), answer)
    extended = make_record(messages=[*original["messages"], message("user", "And in short?"),
                                     message("assistant", text(rng, 12))],
                           tools=[], source="multiturn-augmentation", licence="apache-2.0", language="en", origin={})
    near_copy = record("oasst2", original["messages"][0]["content"], answer.replace(".", "!"))
    files = [("oasst2", [write(tmp_path / "a.parquet", [original, near_copy])]),
             ("multiturn-augmentation", [write(tmp_path / "b.parquet", [extended])])]
    kept, copy = sorted([original["id"], near_copy["id"]])
    assert near_duplicates(files, tmp_path / "work") == {copy: (kept, "oasst2")}
