"""OpenAssistant/oasst2: a flat table of messages that form conversation trees.

Raw layout (card `dataset_info`, OpenAssistant/oasst2 README; Apache-2.0): splits `train`
(128,575 messages) and `validation` (6,599) in `data/train-00000-of-00001-88ba0162028a73fc.parquet`
and `data/validation-00000-of-00001-1deeef95c3248fe0.parquet`. One row per MESSAGE:
`message_id`, `parent_id` (null for a tree's root), `user_id`, `created_date`, `text`, `role`
("prompter" | "assistant"), `lang` (e.g. "en", "pt-BR"), `message_tree_id` (= the root's id),
`tree_state`, `model_name` (string); `review_count`, `rank` (int32, null when unranked);
`review_result` (bool, null when unreviewed), `deleted`, `synthetic` (bool); `detoxify` (struct of 7
float64, or null); `emojis` {name: list[str], count: list[int32]} and `labels` {name: list[str],
value: list[float64], count: list[int32]} (HF `sequence` of structs = struct of lists, or null).
Siblings are alternative replies; `rank` 0 is the one humans ranked best.

Reduction: rows arrive in any order with trees interleaved, so ALL rows are grouped by
`message_tree_id` in memory first (about 135k small dicts; a tree itself is small). Then each tree
gives at most one conversation, its best-ranked thread: from the root, at every branch the
eligible child with the lowest `rank` (nulls last, then the highest `quality` label, then id), down
to the deepest reply. This is OASST's own "top-1" thread and open-instruct's top_k=1 traversal: one
high-quality conversation per prompt instead of many near-duplicate prefixes. At an assistant
turn only prompter replies that got an eligible answer are candidates, so the thread ends on an
assistant turn. Deleted and review-rejected (`review_result` false) messages are not eligible,
nor anything below them. Roles: prompter -> user. Language: iso639_1 of the root's `lang`.

Counting: `read` is raw message rows, and every row yields exactly one item, so read == kept +
dropped holds per message. A kept conversation is yielded under its last message's row; every
other message is a Drop: `merged_into_conversation` (on the kept thread: its text lives on in the
kept record, it is not lost), `not_on_selected_path` (an alternative reply), `deleted`,
`review_rejected`, `removed_ancestor` (below a deleted/rejected message), `no_assistant_reply`
(a prompt nobody answered, e.g. a lone root), `orphan` (not reachable from a root of its tree),
`duplicate_message_id`, `malformed_row`. The last two keep the raw row for inspection; the others,
decided on the tree after all rows were read, keep the message's fields the reduction read (id,
parent, tree, role, text, lang, rank, quality, flags, toxicity): holding every raw row for that
would hold oasst2 twice.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable, Iterator

from sftmix.record import message
from sftmix.sources.base import MALFORMED_ROW_ERRORS, Converted, Drop, RawRow
from sftmix.sources.common import iso639_1

ROW_LANGUAGE = True  # the root message's `lang`

ROLES = {"prompter": "user", "assistant": "assistant"}


def _quality(labels) -> float:
    if isinstance(labels, dict) and "quality" in (labels.get("name") or []):
        value = labels["value"][labels["name"].index("quality")]
        return _number("quality label", value) or 0.0
    return 0.0


def _number(name: str, value) -> float | None:
    if value is None or type(value) is int or (type(value) is float and math.isfinite(value)):
        return value
    if type(value) is float:  # NaN would order no sibling and stop the conversation's origin (not JSON)
        raise ValueError(f"{name} is {value}")
    raise TypeError(f"{name} is {type(value).__name__}")


def _message(index: str, row: dict) -> dict:
    """The fields the reduction needs, validated; Drop("malformed_row") otherwise. The tree
    reduction compares ranks, qualities and toxicities across rows, so one row's bad value must
    stop here, as its own drop, not there, where it would stop the run."""
    try:
        return _fields(index, row)
    except MALFORMED_ROW_ERRORS as error:
        raise Drop.malformed_row(error) from None


def _fields(index: str, row: dict) -> dict:
    def text_field(name, optional=False):
        value = row.get(name)
        if (value is None and optional) or (isinstance(value, str) and value):
            return value
        raise Drop("malformed_row", f"{name}={value!r}")

    role, lang = row.get("role"), row.get("lang")
    if not isinstance(role, str) or role not in ROLES:
        raise Drop("malformed_row", f"role={role!r}")
    if not isinstance(row.get("text"), str):
        raise Drop("malformed_row", "text is not a string")
    if lang is not None and not isinstance(lang, str):
        raise TypeError(f"lang is {type(lang).__name__}")
    rank, detoxify = row.get("rank"), row.get("detoxify") or {}
    if type(rank) not in (int, type(None)):
        raise TypeError(f"rank is {type(rank).__name__}")
    return {
        "index": index, "id": text_field("message_id"), "parent": text_field("parent_id", optional=True),
        "tree": text_field("message_tree_id"), "role": role, "text": row["text"],
        "lang": lang, "rank": rank, "quality": _quality(row.get("labels")),
        "deleted": row.get("deleted") is True, "rejected": row.get("review_result") is False,
        "synthetic": row.get("synthetic") is True, "toxicity": _number("detoxify.toxicity", detoxify.get("toxicity")),
    }


def _rank_key(m: dict):
    return (m["rank"] is None, m["rank"] or 0, -m["quality"], m["id"])


def _reduce_tree(messages: list[dict]) -> Iterator[tuple[str, Converted | Drop]]:
    by_id = {m["id"]: m for m in messages}
    children = defaultdict(list)
    for m in messages:
        if m["parent"] in by_id:
            children[m["parent"]].append(m)
    verdict: dict[str, Drop] = {}
    eligible: set[str] = set()
    stack = [(m, None) for m in messages if m["parent"] is None]
    while stack:  # walk down from the roots; whatever is never reached is an orphan
        m, blocked = stack.pop()
        if blocked:
            verdict[m["id"]] = Drop("removed_ancestor", blocked)
        elif m["deleted"]:
            verdict[m["id"]] = Drop("deleted")
        elif m["rejected"]:
            verdict[m["id"]] = Drop("review_rejected")
        else:
            eligible.add(m["id"])
        stack.extend((c, None if m["id"] in eligible else (blocked or m["id"])) for c in children[m["id"]])

    def candidates(m: dict) -> list[dict]:
        kids = [c for c in children[m["id"]] if c["id"] in eligible]
        if m["role"] == "assistant":  # only prompts that were answered keep the thread going
            kids = [c for c in kids if any(g["id"] in eligible and g["role"] == "assistant" for g in children[c["id"]])]
        return kids

    for root in (m for m in messages if m["parent"] is None and m["id"] in eligible):
        path = [root]
        while kids := candidates(path[-1]):
            path.append(min(kids, key=_rank_key))
        if path[-1]["role"] != "assistant":
            continue  # an unanswered root: counted below as no_assistant_reply
        leaf = path[-1]
        yield leaf["index"], Converted(
            messages=[message(ROLES[m["role"]], m["text"]) for m in path],
            language=iso639_1(root["lang"]),
            key=leaf["id"],
            meta={
                "message_tree_id": root["tree"],
                "message_ids": [m["id"] for m in path],
                "lang": root["lang"],
                "synthetic": any(m["synthetic"] for m in path),
                "max_toxicity": max((m["toxicity"] for m in path if m["toxicity"] is not None), default=None),
            },
        )
        verdict[leaf["id"]] = None  # yielded above
        for m in path[:-1]:
            verdict[m["id"]] = Drop("merged_into_conversation", leaf["id"])
    for m in messages:
        if m["id"] not in verdict:
            if m["id"] not in eligible:
                drop = Drop("orphan", f"parent {m['parent']} not reachable")
            elif m["role"] == "prompter" and not any(
                c["id"] in eligible and c["role"] == "assistant" for c in children[m["id"]]
            ):
                drop = Drop("no_assistant_reply")
            else:
                drop = Drop("not_on_selected_path")
            verdict[m["id"]] = drop
        if (drop := verdict[m["id"]]) is not None:
            drop.raw = {key: value for key, value in m.items() if key != "index"}
            yield m["index"], drop


def convert_stream(rows: Iterable[RawRow]) -> Iterator[tuple[str, Converted | Drop]]:
    trees: dict[str, list[dict]] = {}  # every row held until the end: any row may complete any tree
    seen: set[str] = set()
    for index, row in rows:
        if isinstance(row, Drop):
            yield index, row
            continue
        try:
            m = _message(index, row)
            if m["id"] in seen:
                raise Drop("duplicate_message_id", m["id"])
        except Drop as drop:
            drop.raw = row
            yield index, drop
            continue
        seen.add(m["id"])
        trees.setdefault(m["tree"], []).append(m)
    for messages in trees.values():
        yield from _reduce_tree(messages)
