from pathlib import Path

import pytest

from sftmix.raw import iter_raw_rows
from sftmix.sources import Converted, Drop, get_converter
from sftmix.sources.tower_blocks import target_language

FIXTURE = Path(__file__).parents[1] / "fixtures" / "tower_blocks" / "train-00000-of-00004.parquet"


@pytest.fixture(scope="module")
def out():
    return list(get_converter("tower_blocks")(iter_raw_rows([FIXTURE])))


def by_row(out):
    return {int(key.split("#")[1]): value for key, value in out}


def turns(conv):
    return [(m["role"], m["content"]) for m in conv.messages]


def test_every_row_accounted(out):
    assert len(out) == 14
    assert [key for key, _ in out] == [f"train-00000-of-00004.parquet#{i}" for i in range(14)]


def test_ultrachat_multi_turn(out):
    conv = by_row(out)[0]
    assert isinstance(conv, Converted)
    assert turns(conv) == [
        ("user", "What are good habits for learning a language?"),
        ("assistant", "Practise a little every day and read texts you enjoy."),
        ("user", "And for vocabulary?"),
        ("assistant", "Use spaced repetition flashcards."),
    ]
    assert conv.licence == "mit" and conv.language == "en" and conv.key is None
    assert conv.meta == {"dataset": "ultrachat", "task": "general_purpose", "lang": "en", "dataset_split": "train"}
    assert all(m["tool_calls"] is None and m["name"] is None for m in conv.messages)


@pytest.mark.parametrize(
    "row, licence, language",
    [
        (1, "apache-2.0", "en"),
        (2, "cc-by-sa-4.0", "pt"),  # en-pt: the assistant writes Portuguese
        (3, "cc-by-sa-4.0", "es"),
        (4, "cc-by-2.0", "en"),  # es-en
        (7, "cc-by-4.0", "es"),
        (8, "cc-by-sa-3.0", "it"),
        (9, "cc-by-sa-4.0", "zh"),
    ],
)
def test_licence_and_target_language(out, row, licence, language):
    conv = by_row(out)[row]
    assert isinstance(conv, Converted)
    assert (conv.licence, conv.language) == (licence, language)


def test_translation_text_kept_verbatim(out):
    assert turns(by_row(out)[2])[1] == ("assistant", "A ponte foi encerrada para reparações.")
    assert turns(by_row(out)[9])[1] == ("assistant", "正在下雨。")


def test_null_turn_becomes_empty_for_the_filter(out):
    conv = by_row(out)[10]
    assert isinstance(conv, Converted)
    assert turns(conv) == [("user", "Summarise this."), ("assistant", "")]


@pytest.mark.parametrize(
    "row, reason, detail",
    [
        (5, "licence_unknown", "general_mt_clean"),
        (6, "licence_unknown", "wmt20_mqm"),
        (11, "empty_conversation", ""),
        (12, "licence_unknown", "paws_x"),
        (13, "unknown_role", "'bot'"),
    ],
)
def test_drops(out, row, reason, detail):
    drop = by_row(out)[row]
    assert isinstance(drop, Drop)
    assert drop.reason == reason
    assert drop.detail.startswith(detail)


def test_unmapped_source_is_licence_unknown():
    convert = get_converter("tower_blocks")
    row = {"conversations": [{"from": "human", "value": "x"}], "lang": "en", "split": "train",
           "dataset": "something_new", "task": "t"}
    (_, drop), = list(convert([("f#0", row)]))
    assert (drop.reason, drop.detail) == ("licence_unknown", "unmapped dataset 'something_new'")


@pytest.mark.parametrize(
    "lang, expected",
    [("en-pt", "pt"), ("pt-BR", "pt"), ("es-419", "es"), ("en-pt-BR", "pt"), ("ko", "ko"), ("", None), (None, None)],
)
def test_target_language(lang, expected):
    assert target_language(lang) == expected


def test_origin_keeps_the_hub_split_and_the_datasets_own(tmp_path):
    # The raw `split` is the sub-dataset's ("dev" of Flores); it replaced the Hub split in `origin`.
    import json

    import pyarrow.parquet as pq

    from sftmix.normalize import SourceInfo, normalize

    info = SourceInfo(key="tower-blocks", converter="tower_blocks", licence=None, language=None,
                      origin={"hub_id": "Unbabel/TowerBlocks-v0.2", "revision": "0c00a3a", "split": "train"})
    normalize(info, [FIXTURE], tmp_path / "out.parquet", tmp_path / "rejected.parquet", apply_filters=False)
    origins = [json.loads(text) for text in pq.read_table(tmp_path / "out.parquet")["origin"].to_pylist()]
    assert {o["split"] for o in origins} == {"train"}
    assert {o["dataset_split"] for o in origins} == {"train", "dev", "test"}


def test_row_metadata_may_not_replace_the_provenance():
    from sftmix.normalize import SourceInfo, _to_record
    from sftmix.record import message

    info = SourceInfo(key="tower-blocks", converter="tower_blocks", licence="mit", language="en",
                      origin={"hub_id": "Unbabel/TowerBlocks-v0.2", "split": "train"})
    row = Converted(messages=[message("user", "Hi"), message("assistant", "Hello")], meta={"split": "dev"})
    with pytest.raises(RuntimeError, match=r"tower_blocks: row metadata \['split'\] would replace"):
        _to_record(info, "f#0", row)
