"""allenai/WildChat-1M: real user prompts, kept for a generator that writes fresh responses.

Raw layout (verified on a stored copy of the WildChat-1M README `dataset_info`, 837,989 rows,
config `default`, split `train`, files `data/train-000NN-of-00014.parquet` as listed by a public
loader; licence ODC-BY since 2024-06-26, formerly AI2 ImpACT LR):
- `conversation_hash` (string; NOT unique: same content, same hash), `model` (string, e.g.
  "gpt-3.5-turbo-0613", "gpt-4-0314"), `timestamp` (timestamp[us, tz=UTC], the last turn),
- `conversation`: list of struct {content, country, hashed_ip, header{accept-language,
  user-agent}, language (English name), redacted (bool), role ("user"|"assistant"), state,
  timestamp (timestamp[us, tz=UTC], assistant turns only), toxic (bool), turn_identifier (int64,
  shared by a user turn and its reply)}; user-only fields are null on assistant turns,
- `turn` (int64, user/assistant rounds), `language` (English name of the most frequent turn
  language, e.g. "English", "Catalan"), `openai_moderation` (list of struct {categories{...bool},
  category_scores{...double}, flagged}), `detoxify_moderation` (list of struct of 7 doubles),
  `toxic` (bool), `redacted` (bool), `state`, `country`, `hashed_ip` (strings), `header` (struct).
Quirks: some conversations start with an empty user input (card, "Empty User Inputs").

Mapping: the record is the FIRST user turn alone (one user message, no assistant turn): the
generator answers first-turn prompts, later turns depend on the original model's replies, which
are not training data. The prompt is dropped when its own turn is flagged `toxic` (OpenAI Moderation or
Detoxify) or `redacted` (PII anonymised: its text holds placeholders), or its reply `toxic`; the row's
flags are any turn's, and a later exchange's says nothing of the prompt. Country, state, hashed IP and
headers are personal data and never leave this module. Key: `conversation_hash|timestamp|first
turn_identifier`, since the hash alone is not unique.
"""

from __future__ import annotations

from datetime import datetime

from sftmix.record import message
from sftmix.sources.base import Converted, Drop
from sftmix.sources.common import iso639_1

ROW_LANGUAGE = True  # the prompt's `language`, else the conversation's

ANSWERS = False  # prompts only: responses come from a generator
FILTER_DEFAULTS = {"role_order": {"require_assistant": False}}  # so no rule drops its rows for that


def _timestamp(value) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


FLAGS = {"toxic": "flagged by OpenAI Moderation or Detoxify", "redacted": "PII was detected and anonymised"}


def convert(row: dict) -> Converted:
    conversation = row["conversation"]
    if not conversation:
        raise Drop("empty_conversation", "no turns")
    first_user = next((turn for turn in conversation if turn["role"] == "user"), None)
    if first_user is None:
        raise Drop("empty_conversation", "no user turn")
    # `redacted` marks placeholders in that turn's own text: the prompt's says what the record holds,
    # and a reply's mostly the names it made up (letters, stories), which the generator replaces.
    # A toxic reply is the sign of a jailbreak in its prompt, where the detectors, judging one text
    # at a time, may have seen none.
    at = conversation.index(first_user)
    reply = conversation[at + 1] if at + 1 < len(conversation) and conversation[at + 1].get("role") == "assistant" else {}
    for flag, meaning in FLAGS.items():
        if first_user.get(flag):
            raise Drop(flag, f"{meaning} in the first user turn")
        if flag == "toxic" and reply.get(flag):
            raise Drop(flag, f"{meaning} in the reply to the first user turn")
        if row.get(flag) and not any(turn.get(flag) for turn in conversation):  # no turn says where: trust the row
            raise Drop(flag, f"{meaning} in this conversation, no turn flagged")
    prompt = first_user["content"]
    if not isinstance(prompt, str) or not prompt.strip():
        raise Drop("empty_turn", "first user turn is empty")
    # The prompt's own language (each turn's is detected apart), else the conversation's: that is its
    # most frequent turn language, and labelled a Spanish first prompt `en` in an English conversation.
    language = iso639_1(first_user.get("language")) or iso639_1(row.get("language"))
    key = f"{row['conversation_hash']}|{_timestamp(row['timestamp'])}|{conversation[0]['turn_identifier']}"
    return Converted(
        messages=[message("user", prompt)],
        language=language,
        meta={"conversation_hash": row["conversation_hash"], "model": row.get("model"), "turn": row.get("turn")},
        key=key,
    )
