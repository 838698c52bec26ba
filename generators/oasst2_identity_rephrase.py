"""oasst2_self-identity-rephrase: oasst2 conversations about the assistant's identity, rewritten so
the assistant presents itself with the manifest's identity card instead of Open Assistant / LAION.

Input: canonical records of the `oasst2` converter (user/assistant turns, multilingual, one
top-ranked thread per message tree). `items()` selects only identity-related conversations: a user
turn asking who the assistant is, its name, who made it, whether it is a bot or ChatGPT... (patterns
in `USER_PATTERNS`, en/es/ca/eu/gl/pt/fr/de/it), or an assistant turn naming Open Assistant or
LAION. Matches are ranked per language by a hash of (seed, record id), so the sample does not depend
on input order, and the first `ctx.wanted(language)` of each target language are taken (all of them
for `"all"`; for a `"*"` target, that many over all languages). Only matching conversations are buffered.

One `complete_json` call per item (`oasst2_identity_rephrase.txt`): the model gets the whole
conversation and the card, and returns `{"identity_related": bool, "assistant_turns": [...]}`, one
rewritten text per assistant turn, in order. User (and system) turns are kept unchanged.

Drops:
- `no_identity_card`: the manifest has no `identity:`.
- `not_identity_related`: the model judged the keyword match a false positive ("who are you
  voting for?").
- `turn_count_mismatch`: the rewrite has a different number of assistant turns.
- `stale_identity`: a rewritten assistant turn still names Open Assistant or LAION.
- `identity_missing`: the user asked who the assistant is / its name / who made it, and no
  rewritten assistant turn gives the card's name or developer.
- `invalid_json`, `truncated`, `http_4xx`, `llm_retries_exhausted`: from the LLM client.
"""

from __future__ import annotations

import json
import re
from typing import Iterator

from generators.base import Context, Item, prompt, record_licences, seeded_hash
from generators.self_identity import card_text, language_name, mentions_name
from sftmix.llm import Failure
from sftmix.record import message
from sftmix.sources.base import Converted, Drop

NAME = "oasst2_identity_rephrase"
PROMPTS = ("oasst2_identity_rephrase",)
PARAMS: dict = {}  # it reads no `params:`
# The identity rule drops the Open Assistant / LAION self-introductions this generator rewrites: its
# inputs must not pass them through it (the manifest refuses otherwise).
INPUT_RULES_OFF = ("identity",)

# Questions about the assistant itself, per language. "Strong" ones demand the name/developer in the answer.
_STRONG = [
    # en
    r"\bwho are you\b", r"\bwhat(?:'s| is) your (?:real |actual )?name\b", r"\bdo you have a name\b",
    r"\bwho (?:made|created|trained|built|developed|programmed|designed) you\b", r"\bintroduce yourself\b",
    r"\btell me (?:a bit |a little |more )?about yourself\b", r"\bwhat should i call you\b",
    # es
    r"qui[eé]n eres\b", r"c[oó]mo te llamas\b", r"cu[aá]l es tu nombre\b", r"tienes (?:un )?nombre\b",
    r"qui[eé]n te (?:cre[oó]|hizo|entren[oó]|desarroll[oó]|program[oó]|dise[nñ][oó])\b", r"pres[eé]ntate\b",
    # ca
    r"\bqui ets\b", r"\bcom et dius\b", r"\bquin [eé]s el teu nom\b", r"\bqui t'ha (?:creat|fet|entrenat|desenvolupat)\b",
    # eu
    r"\bnor zara\b", r"\bzein da zure izena\b", r"\bnola duzu izena\b", r"\bnork sortu zaitu\b",
    # gl / pt
    r"\bquen es\b", r"\bcomo te chamas\b", r"\bcal [eé] o teu nome\b", r"\bquen te cre[oó]u\b",
    r"\bquem (?:[eé] voc[eê]|[eé]s tu)\b", r"\bqual (?:[eé] )?o (?:seu|teu) nome\b", r"\bcomo (?:voc[eê] se chama|te chamas)\b",
    r"\bquem te (?:criou|fez|treinou|desenvolveu)\b",
    # fr / de / it
    r"\bqui es[- ]tu\b", r"\bcomment tu t'appelles\b", r"\bcomment t'appelles[- ]tu\b", r"\bquel est ton nom\b",
    r"\bwer bist du\b", r"\bwie hei(?:ß|ss)t du\b", r"\bwer hat dich (?:erstellt|entwickelt|trainiert|gemacht)\b",
    r"\bchi sei\b", r"\bcome ti chiami\b",
]
_WEAK = [
    r"\bare you (?:an? )?(?:ai|a\.i\.|bot|robot|human|real person|language model|chatbot|chat ?gpt|sentient|conscious)\b",
    r"\bopen ?assistant\b", r"\blaion\b", r"\bwhat are you\??\s*$", r"\bwhat can you do\b",
    r"\beres (?:un[ao]? )?(?:ia|inteligencia artificial|bot|robot|humano|persona|chat ?gpt)\b",
    r"\bets (?:un[a]? )?(?:ia|intel·ligència artificial|bot|robot|humà|persona)\b",
    r"\b(?:você é|és) (?:um[a]? )?(?:ia|inteligência artificial|bot|robô|humano|pessoa)\b",
    r"\bes[- ]tu (?:une? )?(?:ia|intelligence artificielle|bot|robot|humain)\b",
    r"\bbist du (?:eine? )?(?:ki|bot|roboter|mensch)\b",
]
STRONG = re.compile("|".join(_STRONG), re.IGNORECASE | re.MULTILINE)
USER_PATTERNS = re.compile("|".join(_STRONG + _WEAK), re.IGNORECASE | re.MULTILINE)
ASSISTANT_PATTERNS = re.compile(r"\bopen[- ]?assistant\b|\blaion\b", re.IGNORECASE)
STALE = ASSISTANT_PATTERNS

SCHEMA = {
    "type": "object",
    "required": ["identity_related", "assistant_turns"],
    "properties": {
        "identity_related": {"type": "boolean"},
        "assistant_turns": {"type": "array", "items": {"type": "string"}},
    },
}


def match(record: dict) -> str | None:
    """'strong' | 'weak' when the conversation is about the assistant's identity, else None."""
    users = [m["content"] or "" for m in record["messages"] if m["role"] == "user"]
    if any(STRONG.search(t) for t in users):
        return "strong"
    if any(USER_PATTERNS.search(t) for t in users):
        return "weak"
    if any(ASSISTANT_PATTERNS.search(m["content"] or "") for m in record["messages"] if m["role"] == "assistant"):
        return "weak"
    return None


def items(records, ctx: Context) -> Iterator[Item]:
    languages = [lang for lang in ctx.targets if lang != "*"]
    any_language = "*" in ctx.targets
    matches: dict[str, list[tuple[bytes, dict, str]]] = {}
    for record in records:
        language = record.get("language")
        if not language or not (language in languages or any_language):
            continue
        if not any(m["role"] == "assistant" for m in record["messages"]):
            continue
        strength = match(record)
        if strength:  # ranked per target: a language, or "*" over all of them (`ctx.cell`)
            matches.setdefault(ctx.cell(language), []).append((seeded_hash(ctx.seed, NAME, record["id"]), record, strength))
    for cell in sorted(matches):
        wanted = ctx.wanted(cell)
        ranked = sorted(matches[cell], key=lambda entry: entry[0])
        for _, record, strength in ranked if wanted is None else ranked[:wanted]:
            yield Item(key=record["id"], language=record["language"], payload={"record": record, "strength": strength},
                       licences=record_licences(record))


def _conversation(messages: list[dict]) -> str:
    return json.dumps([{"role": m["role"], "content": m["content"]} for m in messages], ensure_ascii=False, indent=1)


async def generate(item: Item, ctx: Context) -> list[Converted] | Drop:
    identity = ctx.identity
    if identity is None:
        return Drop("no_identity_card", "the manifest has no identity card")
    record = item.payload["record"]
    messages = record["messages"]
    n_assistant = sum(m["role"] == "assistant" for m in messages)
    name = identity.get("name") if isinstance(identity, dict) else identity.name
    developer = identity.get("developer") if isinstance(identity, dict) else identity.developer
    text = prompt("oasst2_identity_rephrase").substitute(
        card=card_text(identity), name=name, developer=developer, language=language_name(item.language),
        conversation=_conversation(messages), n=n_assistant,
    )
    got = await ctx.llm.complete_json([{"role": "user", "content": text}], SCHEMA)
    if isinstance(got, Failure):
        return Drop(got.reason, got.detail)
    value = got[0]
    if not value["identity_related"]:
        return Drop("not_identity_related", "the model found no self-reference to rewrite")
    rewritten = [t.strip() for t in value["assistant_turns"]]
    if len(rewritten) != n_assistant or not all(rewritten):
        return Drop("turn_count_mismatch", f"{len(rewritten)} non-empty rewritten turns for {n_assistant} assistant turns")
    stale = next((m for t in rewritten if (m := STALE.search(t))), None)
    if stale:
        return Drop("stale_identity", f"rewritten turn still says {stale.group(0)!r}")
    if item.payload["strength"] == "strong" and not mentions_name(rewritten, name) and not mentions_name(rewritten, developer):
        return Drop("identity_missing", f"no assistant turn says {name!r} or {developer!r}")
    turns = iter(rewritten)
    out = [message("assistant", next(turns)) if m["role"] == "assistant" else message(m["role"], m["content"]) for m in messages]
    origin = json.loads(record.get("origin") or "{}")
    return [Converted(messages=out, language=item.language, key=origin.get("key"),
                      meta={"oasst2_id": record["id"], "message_tree_id": origin.get("message_tree_id"),
                            "match": item.payload["strength"]})]
