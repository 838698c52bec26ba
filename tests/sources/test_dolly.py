from pathlib import Path

import pytest

from sftmix.raw import iter_raw_rows
from sftmix.sources import Drop, get_converter

HERE = Path(__file__).parents[1] / "fixtures" / "dolly"
ENGLISH = HERE / "databricks-dolly-15k.jsonl"
CATALAN = HERE / "train-00000-of-00001.parquet"


def run(path):
    return dict(get_converter("dolly")(iter_raw_rows([path])))


@pytest.fixture(scope="module")
def en():
    return run(ENGLISH)


@pytest.fixture(scope="module")
def ca():
    return run(CATALAN)


def contents(out):
    return [(m["role"], m["content"]) for m in out.messages]


def test_english_counts(en):
    drops = {k: v.reason for k, v in en.items() if isinstance(v, Drop)}
    assert len(en) == 10
    assert drops == {
        "databricks-dolly-15k.jsonl#5": "empty_turn",
        "databricks-dolly-15k.jsonl#6": "malformed_json",
        "databricks-dolly-15k.jsonl#7": "empty_turn",
    }


def test_context_follows_the_instruction_and_loses_citation_markers(en):
    out = en["databricks-dolly-15k.jsonl#0"]
    user, assistant = contents(out)
    assert user[0] == "user"
    assert user[1].startswith("When did Virgin Australia start operating?\n\nVirgin Australia, the trading name")
    assert "with two aircraft on a single route. It suddenly found itself" in user[1]
    assert user[1].endswith("from hubs in Brisbane, Melbourne and Sydney.")
    assert assistant == ("assistant", "Virgin Australia commenced services on 31 August 2000 as Virgin Blue, with two aircraft on a single route.")
    assert out.meta == {"category": "closed_qa", "citations_removed": 2}
    assert out.language is None and out.key is None and out.tools == []


def test_empty_context_gives_the_bare_instruction(en):
    out = en["databricks-dolly-15k.jsonl#1"]
    assert contents(out) == [("user", "Which is a species of fish? Tope or Rope"), ("assistant", "Tope")]
    assert out.meta == {"category": "classification"}


def test_spaced_and_named_markers_in_context_and_response(en):
    out = en["databricks-dolly-15k.jsonl#4"]
    user, assistant = contents(out)
    assert user[1].endswith(
        "Barcelona, Catalonia, Spain. Construction began in 1882 under architect Francisco de Paula del Villar. "
        "In 1883, when Villar resigned, Antoni Gaudí took over as chief architect."
    )
    assert assistant[1] == "Construction began in 1882, and Antoni Gaudí took over the project in 1883."
    assert out.meta == {"category": "information_extraction", "citations_removed": 5}


def test_markers_opening_a_line_are_kept(en):
    out = en["databricks-dolly-15k.jsonl#9"]
    assert out.messages[1]["content"] == "[1] Smith, J. (2001). Tides. Oxford.\n[2] García, M. (2010). Mareas. Madrid."
    assert out.meta == {"category": "general_qa"}


def test_multiline_response_is_kept(en):
    assert en["databricks-dolly-15k.jsonl#3"].messages[1]["content"].splitlines()[2] == "- Swimwear for La Concha beach"


def test_drop_details(en):
    assert en["databricks-dolly-15k.jsonl#5"].detail == "response is empty"
    assert en["databricks-dolly-15k.jsonl#7"].detail == "instruction is empty"


def test_a_bare_marker_answer_is_an_answer_not_a_citation(en):
    out = en["databricks-dolly-15k.jsonl#8"]
    assert contents(out) == [("user", "Which footnote supports the claim?"), ("assistant", "[2]")]
    assert out.meta == {"category": "general_qa"}


def test_catalan_rows_have_no_context_and_keep_their_id(ca):
    assert len(ca) == 8
    assert {k: v.reason for k, v in ca.items() if isinstance(v, Drop)} == {
        "train-00000-of-00001.parquet#5": "empty_turn",
        "train-00000-of-00001.parquet#6": "empty_turn",
    }
    out = ca["train-00000-of-00001.parquet#0"]
    assert contents(out) == [
        ("user", "Per què els camells poden sobreviure molt de temps sense aigua?"),
        ("assistant", "Els camells fan servir el greix de les gepes per mantenir-se amb energia i hidratats durant llargs períodes."),
    ]
    assert out.key == "1"
    assert out.meta == {"category": "open_qa"}
    assert out.language is None  # Catalan is set by the manifest, the row does not say it


def test_catalan_instruction_is_never_cleaned_but_response_is(ca):
    folded = ca["train-00000-of-00001.parquet#2"]
    assert folded.messages[0]["content"].endswith("Es va inaugurar el 24 de setembre de 1957.[1]")
    assert folded.meta == {"category": "closed_qa"}
    cited = ca["train-00000-of-00001.parquet#7"]
    assert cited.messages[1]["content"] == "«Tirant lo Blanc» el va escriure Joanot Martorell i es va publicar el 1490 a València."
    assert cited.meta == {"category": "general_qa", "citations_removed": 1}
    assert cited.key == "8"


def test_indexes_in_an_answer_that_copied_no_wikipedia_are_kept():
    from sftmix.sources.dolly import convert
    code = {"instruction": "How do I get the first item of a Python list?", "context": "", "category": "open_qa",
            "response": "Use xs[0]; the last one is xs[-1], and matrix[1][2] is row 1, column 2."}
    assert convert(code).messages[1]["content"] == code["response"] and "citations_removed" not in convert(code).meta
    # a row copied from Wikipedia loses its markers, but not what is in a code span
    cited = dict(code, context="Lists were added in 1991.[4]", response="Since 1991.[4] Write `xs[1]` for the second.")
    out = convert(cited)
    assert out.messages[1]["content"] == "Since 1991. Write `xs[1]` for the second." and out.meta["citations_removed"] == 2
