from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sftmix.raw import iter_raw_rows
from sftmix.record import message
from sftmix.sources import Converted, Drop, get_converter

FIXTURE = Path(__file__).parents[1] / "fixtures" / "wildchat" / "train-00000-of-00014.parquet"


@pytest.fixture(scope="module")
def results():
    return dict(get_converter("wildchat")(iter_raw_rows([FIXTURE])))


def at(results, row):
    return results[f"train-00000-of-00014.parquet#{row}"]


def test_every_row_is_kept_or_dropped(results):
    assert len(results) == 12
    kept = [k for k, r in results.items() if isinstance(r, Converted)]
    assert len(kept) == 7


def test_english_prompt_is_a_single_user_message(results):
    out = at(results, 0)
    assert out.messages == [message("user", "Write a haiku about autumn rain.")]
    assert out.language == "en"
    assert out.tools == []
    assert out.key == "a1b2c3d4e5f60718293a4b5c6d7e8f90|2023-07-14T09:21:05+00:00|101"
    assert out.meta == {"conversation_hash": "a1b2c3d4e5f60718293a4b5c6d7e8f90", "model": "gpt-3.5-turbo-0613",
                        "turn": 1}


def test_only_the_first_user_turn_of_a_multi_turn_conversation(results):
    out = at(results, 1)
    assert out.messages == [message("user", "¿Cuál es la diferencia entre «ser» y «estar»?")]
    assert out.language == "es"
    assert out.meta["turn"] == 2
    assert out.meta["model"] == "gpt-4-0314"


def test_prompt_text_is_kept_verbatim(results):
    assert at(results, 2).messages[0]["content"] == (
        "\nEscriu un correu formal per demanar una reunió dimarts a les 10 h.")
    assert at(results, 2).language == "ca"


def test_languages_from_english_names(results):
    assert at(results, 3).language == "zh"
    assert at(results, 3).messages[0]["content"] == "请用三句话解释量子纠缠。"
    assert at(results, 8).language == "eu"


def test_unknown_conversation_language_falls_back_to_the_prompt_language(results):
    assert at(results, 11).language == "ca"


def test_the_prompt_is_labelled_with_its_own_language_not_the_conversations():
    """The conversation's `language` is its most frequent turn language: a Spanish first prompt in a
    conversation carried on in English was labelled `en`, and went to the wrong target cell."""
    turn = {"country": None, "hashed_ip": None, "header": None, "redacted": False, "state": None, "timestamp": None,
            "toxic": False}
    row = {"conversation_hash": "h", "model": "gpt-4-0314", "timestamp": "2023-05-01T10:00:00+00:00", "turn": 3,
           "language": "English", "toxic": False, "redacted": False, "conversation": [
               {**turn, "role": "user", "language": "Spanish", "turn_identifier": 1,
                "content": "¿Cuál es la capital de Australia?"},
               {**turn, "role": "assistant", "language": "Spanish", "turn_identifier": 1, "content": "Canberra."},
               {**turn, "role": "user", "language": "English", "turn_identifier": 2, "content": "Answer in English now."},
               {**turn, "role": "assistant", "language": "English", "turn_identifier": 2, "content": "Canberra."},
               {**turn, "role": "user", "language": "English", "turn_identifier": 3, "content": "And of Canada?"},
               {**turn, "role": "assistant", "language": "English", "turn_identifier": 3, "content": "Ottawa."}]}
    [(_, out)] = list(get_converter("wildchat")([("x#0", row)]))
    assert (out.messages[0]["content"], out.language) == ("¿Cuál es la capital de Australia?", "es")


def test_personal_data_never_reaches_meta(results):
    for result in results.values():
        if isinstance(result, Converted):
            assert set(result.meta) == {"conversation_hash", "model", "turn"}
            assert "f00dfeed" not in result.key


def test_same_hash_different_conversation_gets_a_distinct_key(results):
    assert at(results, 7).meta["conversation_hash"] == at(results, 0).meta["conversation_hash"]
    assert at(results, 7).key == "a1b2c3d4e5f60718293a4b5c6d7e8f90|2023-10-03T16:40:12+00:00|808"
    assert at(results, 7).key != at(results, 0).key


@pytest.mark.parametrize("row, reason", [(4, "toxic"), (5, "redacted"), (6, "empty_turn"), (9, "toxic"),
                                         (10, "empty_conversation")])
def test_drops(results, row, reason):
    result = at(results, row)
    assert isinstance(result, Drop)
    assert result.reason == reason


def test_assistant_first_or_missing_role_is_handled():
    convert = get_converter("wildchat")
    row = {"conversation_hash": "h", "model": "m", "timestamp": "2023-01-01", "turn": 1, "language": "English",
           "toxic": False, "redacted": False,
           "conversation": [{"role": "assistant", "content": "hi", "turn_identifier": 1}]}
    [(_, only_assistant)] = list(convert([("x#0", row)]))
    assert only_assistant.reason == "empty_conversation"
    broken = dict(row, conversation=[{"content": "hi"}])
    [(_, no_role)] = list(convert([("x#1", broken)]))
    assert no_role.reason == "malformed_row"


def _flagged(tmp_path, flags):
    """The fixture's two-round Spanish conversation (row 1) with `flags` {turn index: flag} set on those turns
    and on the row, as WildChat sets them (the row's are any turn's), read back from Parquet in its schema."""
    table = pq.read_table(FIXTURE)
    row = table.to_pylist()[1]
    for at, flag in flags.items():
        row["conversation"][at][flag] = row[flag] = True
        if flag == "redacted":
            row["conversation"][at]["content"] = "Mi correo es <PRESIDIO_ANONYMIZED_EMAIL_ADDRESS>, escríbeme ahí."
        else:
            row["openai_moderation"][at]["flagged"] = row["openai_moderation"][at]["categories"]["harassment"] = True
    path = tmp_path / "train-00000-of-00014.parquet"
    pq.write_table(pa.Table.from_pylist([row], schema=table.schema), path)
    [(_, result)] = list(get_converter("wildchat")(iter_raw_rows([path])))
    return result


@pytest.mark.parametrize("flags", [{2: "redacted"}, {2: "toxic"}, {3: "toxic"}, {2: "toxic", 3: "redacted"}])
def test_a_flag_on_a_turn_the_record_does_not_hold_keeps_the_first_prompt(tmp_path, flags):
    """The row's `toxic` and `redacted` are any turn's: a PII address anonymised in the second prompt, or a
    toxic later turn (WildChat-1M-Full's layout), dropped a clean first prompt, the only text kept."""
    result = _flagged(tmp_path, flags)
    assert isinstance(result, Converted), result
    assert result.messages == [message("user", "¿Cuál es la diferencia entre «ser» y «estar»?")]


@pytest.mark.parametrize("flag", ["toxic", "redacted"])
def test_a_flag_on_the_first_prompt_drops_it(tmp_path, flag):
    result = _flagged(tmp_path, {0: flag, 2: "redacted"})
    assert isinstance(result, Drop) and result.reason == flag and "first user turn" in result.detail


def test_a_toxic_reply_drops_its_prompt(tmp_path):
    """A toxic reply is the sign of a jailbreak in its prompt, where the detectors, judging one text at a
    time, may have seen none (review2: the prompt was kept)."""
    result = _flagged(tmp_path, {1: "toxic"})
    assert isinstance(result, Drop) and result.reason == "toxic" and "in the reply to the first user turn" in result.detail


def test_a_redacted_reply_keeps_its_prompt(tmp_path):
    """`redacted` marks placeholders in that turn's own text; a reply's are mostly the names it made up (a
    letter, a story), and the generator writes a new reply (review5: dropping on it would cost clean prompts)."""
    result = _flagged(tmp_path, {1: "redacted"})
    assert isinstance(result, Converted), result


def test_the_reply_is_the_turn_after_the_prompt_whatever_its_turn_identifier(tmp_path):
    """Null turn identifiers (review5: every turn was the prompt's exchange, a later turn's flag dropped it)."""
    row = pq.read_table(FIXTURE).to_pylist()[1]
    for turn in row["conversation"]:
        turn["turn_identifier"] = None
    row["conversation"][3]["toxic"] = row["toxic"] = True
    [(_, result)] = list(get_converter("wildchat")([("x#0", row)]))
    assert isinstance(result, Converted), result


@pytest.mark.parametrize("flag", ["toxic", "redacted"])
def test_a_row_flag_no_turn_carries_drops_the_row(tmp_path, flag):
    """Per-turn flags are what the card says the row's summarise; where no turn has it, the row's is trusted."""
    row = pq.read_table(FIXTURE).to_pylist()[1] | {flag: True}
    [(_, result)] = list(get_converter("wildchat")([("x#0", row)]))
    assert isinstance(result, Drop) and result.reason == flag and "no turn flagged" in result.detail
