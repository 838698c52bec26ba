from pathlib import Path

import pytest

from own_process import stdout_of
from sftmix.raw import iter_raw_rows
from sftmix.sources import Converted, Drop, get_converter

FIXTURE = Path(__file__).parents[1] / "fixtures" / "aya" / "train-00000-of-00001.parquet"


@pytest.fixture(scope="module")
def results():
    return dict(get_converter("aya")(iter_raw_rows([FIXTURE])))


def key(i):
    return f"train-00000-of-00001.parquet#{i}"


def test_counts(results):
    kept = [k for k, v in results.items() if isinstance(v, Converted)]
    assert len(results) == 11
    assert len(kept) == 8


def test_english_row_is_one_user_assistant_pair(results):
    out = results[key(0)]
    assert out.messages == [
        {"role": "user", "content": "What is the capital of Kenya?", "tool_calls": None, "tool_call_id": None, "name": None},
        {"role": "assistant", "content": "The capital of Kenya is Nairobi.", "tool_calls": None, "tool_call_id": None, "name": None},
    ]
    assert out.tools == []
    assert out.language == "en"
    assert out.meta == {"annotation_type": "original-annotations", "language_code": "eng"}
    assert out.key is None


def test_languages_come_from_the_iso_639_3_code(results):
    assert {i: results[key(i)].language for i in (1, 2, 3, 4, 5, 10)} == {
        1: "es", 2: "eu", 3: "pt", 4: "ar", 5: "zh", 10: "fil",
    }


def test_language_name_is_the_fallback_when_the_code_is_missing(results):
    out = results[key(8)]
    assert out.language == "es"
    assert out.meta == {"annotation_type": "original-annotations"}


def test_a_language_name_gets_the_code_its_iso_639_3_code_gets():
    from sftmix.sources.aya import convert

    row = {"inputs": "Kumusta?", "targets": "Mabuti.", "annotation_type": "original-annotations"}
    # the code gave `fil`, the name `tl`: one language under two labels
    assert convert({**row, "language_code": "tgl", "language": "Tagalog"}).language == "fil"
    assert convert({**row, "language_code": None, "language": "Tagalog"}).language == "fil"
    assert convert({**row, "language_code": None, "language": "Moroccan Arabic"}).language == "ary"
    # Bokmål as Norwegian: `nb` was a label no detector answers, so the language rule trusted it (review)
    assert {convert({**row, "language_code": code, "language": name}).language
            for code, name in [("nob", "Norwegian Bokmål"), (None, "Norwegian Bokmål"), (None, "Norwegian")]} == {"no"}


def test_a_value_longer_than_any_language_name_names_no_language():
    from sftmix.sources.aya import convert

    row = {"inputs": "¿Qué hora es?", "targets": "Las tres.", "annotation_type": "original-annotations"}
    # langcodes would find the known name it starts with ("Spanish ... language"); at 208 characters it is no name
    assert convert({**row, "language_code": None, "language": "Spanish " + "x" * 200}).language is None
    assert convert({**row, "language_code": " spa ", "language": "Spanish " + "x" * 200}).language == "es"
    # that lookup grows with the square of the value's length: 0.1 s for 40,000 characters, minutes here
    code = """if True:
        from sftmix.sources.aya import convert
        out = convert({"inputs": "q", "targets": "a", "language_code": "x" * 2_000_000, "language": "Spanish"})
        print(out.language)
    """
    assert stdout_of(code) == "es\n"


def test_text_is_kept_verbatim(results):
    out = results[key(1)]
    assert out.messages[0]["content"] == "¿Cuál es el río más largo de España?"
    assert out.messages[1]["content"].endswith("\nEl Tajo es más largo, pero desemboca en Portugal.")
    assert out.meta["annotation_type"] == "re-annotations"
    assert results[key(5)].messages[1]["content"] == "长城是中国古代修建的军事防御工程，全长两万多公里。"


def test_user_id_is_not_kept(results):
    assert all("user_id" not in v.meta for v in results.values() if isinstance(v, Converted))


@pytest.mark.parametrize("index, detail", [(6, "targets is empty"), (7, "inputs is empty"), (9, "inputs is empty")])
def test_empty_turns_are_dropped(results, index, detail):
    drop = results[key(index)]
    assert isinstance(drop, Drop)
    assert (drop.reason, drop.detail) == ("empty_turn", detail)
