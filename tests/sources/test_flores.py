from collections import Counter
from pathlib import Path

import pytest

from sftmix.raw import iter_raw_rows
from sftmix.record import message
from sftmix.sources import Converted, Drop, get_converter

FIXTURES = sorted((Path(__file__).parents[1] / "fixtures" / "flores" / "dev").glob("*.jsonl"))


@pytest.fixture(scope="module")
def results():
    return list(get_converter("flores")(iter_raw_rows(FIXTURES)))


def conversations(results):
    return {r.key: r for _, r in results if isinstance(r, Converted)}


def test_fixture_files():
    assert [p.name for p in FIXTURES] == ["cat_Latn.jsonl", "eng_Latn.jsonl", "eus_Latn.jsonl",
                                          "fra_Latn.jsonl", "glg_Latn.jsonl", "por_Latn.jsonl",
                                          "spa_Latn.jsonl"]


def test_one_conversation_per_target_language_and_sentence(results):
    keys = sorted(conversations(results))
    assert keys == sorted([
        "1:es-ca", "1:ca-en", "1:en-es", "1:gl-eu", "1:pt-gl", "1:gl-pt",
        "2:eu-ca", "2:eu-en", "2:ca-es", "2:es-eu", "2:eu-gl",  # no Portuguese sentence 2
        "3:es-ca", "3:es-en", "3:gl-es", "3:pt-gl", "3:ca-pt",  # the Basque sentence 3 is empty
    ])
    assert Counter(r.language for r in conversations(results).values()) == {
        "ca": 3, "en": 3, "es": 3, "eu": 2, "gl": 3, "pt": 2}


def test_template_with_source_language_name(results):
    out = conversations(results)["1:es-ca"]
    assert out.messages == [
        message("user", "Tradueix al català el text següent, escrit en castellà:\n\n"
                        "El museo abre a las nueve de la mañana y cierra a las seis."),
        message("assistant", "El museu obre a les nou del matí i tanca a les sis."),
    ]
    assert out.language == "ca"
    assert out.meta == {"sentence_id": 1, "pair": "es-ca", "template": 0, "domain": "wikivoyage"}


def test_other_templates(results):
    assert conversations(results)["1:ca-en"].messages[0]["content"] == (
        "How would you say this in English?\n\nEl museu obre a les nou del matí i tanca a les sis.")
    assert conversations(results)["2:eu-en"].messages[0]["content"] == (
        "Basque text:\nAsteburu honetan euri handiak espero dira herrialdearen iparraldean.\n\nEnglish translation:")
    assert conversations(results)["2:es-eu"].messages == [
        message("user", "Nola esaten da hau euskaraz?\n\n"
                        "Se esperan lluvias intensas en el norte del país este fin de semana."),
        message("assistant", "Asteburu honetan euri handiak espero dira herrialdearen iparraldean."),
    ]
    assert conversations(results)["3:ca-pt"].messages[0]["content"] == (
        "Texto em catalão:\nEls infants menors de dotze anys viatgen gratis als autobusos locals.\n\n"
        "Tradução para português:")


def test_stream_keys_name_both_raw_rows(results):
    keys = [k for k, r in results if isinstance(r, Converted) and r.key == "1:es-ca"]
    assert keys == ["spa_Latn.jsonl#0+cat_Latn.jsonl#0"]


def test_drops_account_for_every_unused_row(results):
    drops = {k: r.reason for k, r in results if isinstance(r, Drop)}
    assert drops == {
        "eng_Latn.jsonl#3": "malformed_row",  # null text
        "eus_Latn.jsonl#2": "empty_turn",
        "fra_Latn.jsonl#0": "unused_language",
        "spa_Latn.jsonl#3": "duplicate_sentence",
        "cat_Latn.jsonl#3": "unpaired_sentence",
    }


def test_choice_is_deterministic_and_independent_of_file_order():
    forward = list(get_converter("flores")(iter_raw_rows(FIXTURES)))
    backward = list(get_converter("flores")(iter_raw_rows(list(reversed(FIXTURES)))))
    pick = lambda rs: sorted((r.key, r.meta["template"]) for _, r in rs if isinstance(r, Converted))  # noqa: E731
    assert pick(forward) == pick(backward)


def test_wide_layout_rows():
    row = {"id": 7, "URL": "u", "domain": "wikinews", "topic": "t", "has_image": 0, "has_hyperlink": 0,
           "sentence_cat_Latn": "Bon dia.", "sentence_spa_Latn": "Buenos días.", "sentence_fra_Latn": "Bonjour."}
    out = list(get_converter("flores")([("all#0", row), ("all#1", {"id": 8, "sentence_fra_Latn": "Oui."})]))
    assert [(k, getattr(r, "key", None) or r.reason) for k, r in out] == [
        ("all#1", "unused_language"), ("all#0+all#0", "7:es-ca"), ("all#0+all#0", "7:ca-es")]
    assert out[1][1].messages[1] == message("assistant", "Bon dia.")


def test_every_drop_keeps_its_raw_row(results):
    raw = dict(iter_raw_rows(FIXTURES))
    drops = [(key, value) for key, value in results if isinstance(value, Drop)]
    assert drops and all(value.raw == raw[key] for key, value in drops)
