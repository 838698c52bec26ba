from collections import Counter
from pathlib import Path

import pytest

from sftmix.raw import iter_raw_rows
from sftmix.sources import Converted, Drop, get_converter

NAME = "train-00000-of-00001-88ba0162028a73fc.parquet"
FIXTURE = Path(__file__).parents[1] / "fixtures" / "oasst2" / NAME
convert = get_converter("oasst2")


def uid(tree, n):
    return f"{tree}0000000-0000-4000-8000-00000000000{n}"


@pytest.fixture(scope="module")
def rows():
    return list(iter_raw_rows([FIXTURE]))


@pytest.fixture(scope="module")
def out(rows):
    return list(convert(rows))


def kept(out):
    return {v.key: v for _, v in out if isinstance(v, Converted)}


def reasons(out):
    return {int(k.split("#")[1]): v.reason for k, v in out if isinstance(v, Drop)}


def test_every_message_row_is_counted_once(rows, out):
    assert len(rows) == 21
    assert sorted(k for k, _ in out) == sorted(k for k, _ in rows)
    counts = Counter(v.reason if isinstance(v, Drop) else "kept" for _, v in out)
    assert counts == {
        "kept": 3, "merged_into_conversation": 5, "no_assistant_reply": 3, "malformed_row": 2,
        "not_on_selected_path": 2, "deleted": 2, "orphan": 2, "review_rejected": 1, "removed_ancestor": 1,
    }


def test_best_ranked_thread_across_interleaved_rows(out):
    conv = kept(out)[uid("a", 4)]
    assert [(m["role"], m["content"]) for m in conv.messages] == [
        ("user", "¿Cuál es la capital de Cataluña?"),
        ("assistant", "La capital de Cataluña es Barcelona."),
        ("user", "¿Y la de Euskadi?"),
        ("assistant", "Vitoria-Gasteiz es la capital de Euskadi."),
    ]
    assert conv.language == "es" and conv.licence is None and conv.tools == []
    assert conv.meta == {
        "message_tree_id": uid("a", 0),
        "message_ids": [uid("a", 0), uid("a", 1), uid("a", 3), uid("a", 4)],
        "lang": "es", "synthetic": False, "max_toxicity": 0.001,
    }
    # the conversation is reported under its last message's row
    assert [k for k, v in out if v is conv] == [f"{NAME}#0"]


def test_tree_a_other_messages(out):
    r = reasons(out)
    assert [r[i] for i in (2, 3, 6)] == ["merged_into_conversation"] * 3  # A0, A1, A3 live on in the record
    assert r[5] == "not_on_selected_path"  # A2, rank 1 sibling
    assert r[8] == "deleted"  # A5
    assert r[9] == "no_assistant_reply"  # A6, unanswered prompt under A2


def test_rejected_reply_is_skipped_and_its_subtree_removed(out):
    conv = kept(out)[uid("b", 2)]
    assert [(m["role"], m["content"]) for m in conv.messages] == [
        ("user", "What is a haiku?"),
        ("assistant", "A haiku is a three-line poem of 5, 7 and 5 syllables."),
    ]
    assert conv.language == "en" and conv.meta["max_toxicity"] == 0.02
    r = reasons(out)
    assert (r[10], r[11], r[12]) == ("review_rejected", "removed_ancestor", "no_assistant_reply")
    removed = dict(out)[f"{NAME}#11"]
    assert removed.detail == uid("b", 1)


def test_unranked_siblings_fall_back_to_quality_label(out):
    conv = kept(out)[uid("e", 1)]
    assert conv.messages[1]["content"].startswith("Você pode usar")
    assert conv.language == "pt" and conv.meta["lang"] == "pt-BR"
    assert reasons(out)[18] == "not_on_selected_path"


def test_tree_without_reply_orphans_and_malformed(out):
    r = reasons(out)
    assert (r[4], r[13]) == ("no_assistant_reply", "deleted")  # tree C: its only reply was deleted
    assert (r[14], r[15]) == ("orphan", "orphan")  # tree D has no root in the table
    assert (r[16], r[17]) == ("malformed_row", "malformed_row")
    d = dict(out)
    assert d[f"{NAME}#16"].detail == "role='moderator'"
    assert d[f"{NAME}#17"].detail == "message_id=None"


def test_row_order_does_not_matter(rows, out):
    again = list(convert(reversed(rows)))
    assert sorted((k, type(v).__name__, getattr(v, "reason", None)) for k, v in again) == sorted(
        (k, type(v).__name__, getattr(v, "reason", None)) for k, v in out
    )
    assert {k: v.messages for k, v in kept(again).items()} == {k: v.messages for k, v in kept(out).items()}


def test_duplicates_and_raw_drops_are_counted(rows):
    extra = [("x.jsonl#0", Drop("malformed_json", "bad line")), ("dup#0", dict(rows[2][1]))]
    result = dict(convert(list(rows) + extra))
    assert result["x.jsonl#0"].reason == "malformed_json"
    assert (result["dup#0"].reason, result["dup#0"].detail) == ("duplicate_message_id", uid("a", 0))


@pytest.mark.parametrize("field, value, detail", [
    ("rank", "0", "TypeError: rank is str"),
    ("lang", ["es"], "TypeError: lang is list"),
    ("detoxify", {"toxicity": "low"}, "TypeError: detoxify.toxicity is str"),
    ("detoxify", {"toxicity": float("nan")}, "ValueError: detoxify.toxicity is nan"),
    ("labels", {"name": ["quality"], "value": [float("inf")], "count": [3]}, "ValueError: quality label is inf"),
    ("detoxify", "low", "AttributeError: 'str' object has no attribute 'get'"),
    ("labels", {"name": ["quality"], "value": ["high"], "count": [3]}, "TypeError: quality label is str"),
    ("labels", {"name": ["quality"], "value": [], "count": []}, "IndexError: list index out of range"),
    ("role", ["assistant"], "role=['assistant']"),
])
def test_a_value_of_the_wrong_type_is_its_rows_drop_before_the_trees_compare_rows(rows, field, value, detail):
    # The reduction compares ranks, qualities and toxicities across rows, and reads the root's
    # language: a bad value there would stop the whole source, so it is the row's own drop.
    changed = [(key, {**row, field: value} if row["message_id"] in (uid("a", 0), uid("a", 1)) else row)
               for key, row in rows]
    result = dict(convert(changed))
    for key, row in rows:
        if row["message_id"] in (uid("a", 0), uid("a", 1)):
            assert (result[key].reason, result[key].detail) == ("malformed_row", detail)
    assert uid("a", 4) not in kept(list(result.items()))  # its thread lost the changed rows


def test_every_drop_keeps_what_was_dropped_for_inspection(rows, out):
    raw = dict(rows)
    for key, value in out:
        if isinstance(value, Drop) and value.reason in ("malformed_row", "duplicate_message_id"):
            assert value.raw == raw[key]  # the raw row as the source stores it
        elif isinstance(value, Drop):  # decided on the tree: the message's fields the reduction read
            assert (value.raw["id"], value.raw["text"], value.raw["role"]) == (
                raw[key]["message_id"], raw[key]["text"], raw[key]["role"])
    duplicate = dict(convert(list(rows) + [("dup#0", dict(rows[2][1]))]))["dup#0"]
    assert duplicate.raw == rows[2][1]
