"""self-identity: conversations about the model's own identity, from the manifest's identity card.

Input: none. Items are synthetic: for every target language, item `i` takes topic `TOPICS[i % n]`
(who are you, name, developer, languages, licence, knowledge cut-off, capabilities, limits,
browsing, human or machine, "are you ChatGPT?", memory and privacy, what kind of model, a greeting,
purpose), and a user voice, a conversation form (one exchange, a follow-up, or an identity question
after an ordinary task) and a variation number drawn from `ctx.rng(key)`; the key is
`self_identity:<lang>:<i>`, so items are deterministic and the same for every rerun. Up to
`ctx.wanted(language)` items per language (`"all"`: one per topic). Topics whose card field is
empty (no licence) are skipped.

One `complete_json` call per item: the model writes the user turns and the assistant turns,
consistent with the card, in the target language (`self_identity.txt`).

Drops:
- `no_identity_card`: the manifest has no `identity:` (every item).
- `bad_structure`: the turns do not alternate user/assistant, starting with the user, their
  number is not the one asked for, or one is blank.
- `identity_missing`: a "who are you / what is your name" topic whose answers never say the
  card's name.
- `other_identity`: an assistant turn names another AI model or AI developer (the rule `identity`
  filter only catches self-claims; here any mention is unwanted), not one inside the card's names
  ("DeepMind" of "Google DeepMind": `filters.identity.other_names`).
- `invalid_json`, `truncated`, `http_4xx`, `llm_retries_exhausted`: from the LLM client.
- `wrong_language`: the conversation, of `MIN_LETTERS` letters or more once the card's names are
  left out, reads (CLD2, reliably) as another language. The rule `language` filter would leave
  these rows alone: it checks only assistant text of 200 characters or more, and these answers are
  one to five sentences.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterator

from filters.language_id import detected_instead
from generators.base import LANGUAGE_NAMES, Context, Item, prompt
from sftmix.llm import Failure
from sftmix.record import message
from sftmix.sources.base import Converted, Drop

PROMPTS = ("self_identity",)
PARAMS: dict = {}  # it reads no `params:`

# (topic id, what the user asks, the answer must contain the card's name)
TOPICS: tuple[tuple[str, str, bool], ...] = (
    ("who_are_you", "The user asks who or what the assistant is.", True),
    ("name", "The user asks the assistant's name (or what they should call it).", True),
    ("developer", "The user asks who created, developed or trained the assistant.", False),
    ("languages", "The user asks which languages the assistant can understand and write, or whether it can answer in "
                  "one particular language.", False),
    ("licence", "The user asks whether the model is open, under which licence it is released, or whether they may "
                "use it in their own projects.", False),
    ("knowledge_cutoff", "The user asks how up to date the assistant's knowledge is, or whether it knows about very "
                         "recent events.", False),
    ("capabilities", "The user asks what the assistant can do or help with.", False),
    ("limitations", "The user asks about the assistant's limitations (it can make mistakes, has no personal "
                    "experiences, cannot act in the physical world).", False),
    ("browsing", "The user asks whether the assistant can browse the internet, open links or access real-time "
                 "information.", False),
    ("human_or_machine", "The user asks whether they are talking to a human or a machine, or whether the assistant "
                         "has feelings or consciousness.", False),
    ("other_models", "The user asks whether the assistant is ChatGPT (or another well-known assistant), or built on "
                     "another company's model.", True),
    ("memory_privacy", "The user asks whether the assistant remembers previous conversations or keeps their "
                       "personal data.", False),
    ("model_type", "The user asks what kind of system the assistant is and, broadly, how it was built.", False),
    ("greeting", "The user greets the assistant and asks it to introduce itself.", True),
    ("purpose", "The user asks why the assistant was created or what it is meant for.", False),
)
_NEEDS = {"licence": "licence"}  # topics that need a card field

VOICES = (
    "formal and polite", "casual and friendly", "very short, almost telegraphic", "curious and a bit playful",
    "sceptical, testing the assistant", "a software developer evaluating the model", "a secondary-school student",
    "an elderly person not used to technology", "hurried, with small typos and little punctuation",
    "a journalist preparing an article", "a teacher thinking of using it in class", "a researcher in linguistics",
)
FORMS = {
    "single": (1, "One exchange: the user asks, the assistant answers."),
    "follow_up": (2, "Two exchanges: the user asks, the assistant answers, the user asks a natural follow-up "
                     "question about the same topic, the assistant answers."),
    "after_task": (2, "Two exchanges: the user first asks an ordinary everyday question unrelated to identity (the "
                      "assistant answers it helpfully), then asks the identity question; the assistant answers."),
}
FORM_WEIGHTS = (("single", 5), ("follow_up", 3), ("after_task", 2))

SCHEMA = {
    "type": "object",
    "required": ["messages"],
    "properties": {
        "messages": {
            "type": "array", "minItems": 2, "maxItems": 8,
            "items": {"type": "object", "required": ["role", "content"],
                      "properties": {"role": {"enum": ["user", "assistant"]}, "content": {"type": "string", "minLength": 1}}},
        },
    },
}


MIN_LETTERS = 40  # letters a conversation needs before its language is judged
_LETTERS = re.compile(r"[^\W\d_]")


def read_as(turns: list[dict], identity, language: str) -> str | None:
    """The language the conversation reads as instead of `language`, or None. Checked here: the rule
    `language` filter leaves rows under 200 characters alone, and these are short. The card's names
    are left out ("Barcelona Supercomputing Center" reads as English). CLD2 calls a dozen characters
    "reliable" ("Com et dius?\nEm dic ALIA." reads as pt): it misread correct conversations only
    below 35 letters, and at 100 it let half of the two-sentence Spanish ones written for gl and eu
    through, so a conversation needs `MIN_LETTERS`."""
    text = "\n".join(t["content"] for t in turns)
    for proper in filter(None, (_field(identity, "name"), _field(identity, "developer"))):
        text = text.replace(proper, " ")
    return detected_instead(text, language) if len(_LETTERS.findall(text)) >= MIN_LETTERS else None


def _field(identity, name: str):
    return identity.get(name) if isinstance(identity, dict) else getattr(identity, name, None)


def language_name(code: str) -> str:
    return LANGUAGE_NAMES.get(code, code)


def card_text(identity) -> str:
    """The identity card as the prompt shows it; empty fields are stated as unknown, not left to invention."""
    lines = [f"- Name: {_field(identity, 'name')}", f"- Developer: {_field(identity, 'developer')}"]
    languages = _field(identity, "languages") or []
    if languages:
        lines.append("- Languages it was trained to handle especially well: " + ", ".join(language_name(c) for c in languages))
    licence = _field(identity, "licence")
    lines.append(f"- Licence of the model: {licence}" if licence else "- Licence: not stated (do not mention one)")
    cutoff = _field(identity, "knowledge_cutoff")
    lines.append(f"- Its training data extends up to: {cutoff}" if cutoff else
                 "- Date its training data ends: not published (never invent a date)")
    if _field(identity, "description"):
        lines.append(f"- Description: {_field(identity, 'description')}")
    return "\n".join(lines)


def other_identity_pattern(identity) -> re.Pattern:
    """Other AI models and AI developers, case-sensitive (so Catalan "meta" or the "mistral" wind pass)."""
    return _other_pattern(str(_field(identity, "name") or ""), str(_field(identity, "developer") or ""))


@lru_cache(maxsize=8)
def _other_pattern(name: str, developer: str) -> re.Pattern:
    from filters.identity import OTHER_DEVELOPERS, OTHER_MODELS, other_names

    return re.compile(rf"\b{other_names(OTHER_MODELS + OTHER_DEVELOPERS, (name, developer))}\b")


def mentions_name(texts: list[str], name: str) -> bool:
    pattern = re.compile(rf"(?<!\w){re.escape(name)}(?!\w)", re.IGNORECASE)
    return any(pattern.search(t) for t in texts)


def _topics(identity) -> list[tuple[str, str, bool]]:
    return [t for t in TOPICS if t[0] not in _NEEDS or _field(identity, _NEEDS[t[0]])]


def items(records, ctx: Context) -> Iterator[Item]:
    topics = _topics(ctx.identity) if ctx.identity is not None else list(TOPICS)
    for language in ctx.languages():
        wanted = ctx.wanted(language)
        count = len(topics) if wanted is None else wanted
        for i in range(count):
            key = f"self_identity:{language}:{i:05d}"
            rng = ctx.rng(key)
            topic = topics[i % len(topics)]
            form = rng.choices([f for f, _ in FORM_WEIGHTS], weights=[w for _, w in FORM_WEIGHTS])[0]
            yield Item(key=key, language=language, payload={
                "topic": topic[0], "ask": topic[1], "needs_name": topic[2], "form": form,
                "voice": rng.choice(VOICES), "variation": i // len(topics) + 1,
            })


async def generate(item: Item, ctx: Context) -> list[Converted] | Drop:
    identity = ctx.identity
    if identity is None:
        return Drop("no_identity_card", "the manifest has no identity card")
    p = item.payload
    exchanges, form_text = FORMS[p["form"]]
    language = language_name(item.language)
    text = prompt("self_identity").substitute(
        card=card_text(identity), name=_field(identity, "name"), language=language, topic=p["topic"], ask=p["ask"],
        voice=p["voice"], form=form_text, turns=2 * exchanges, variation=p["variation"],
    )
    got = await ctx.llm.complete_json([{"role": "user", "content": text}], SCHEMA)
    if isinstance(got, Failure):
        return Drop(got.reason, got.detail)
    turns = got[0]["messages"]
    roles = [t["role"] for t in turns]
    if len(turns) != 2 * exchanges or roles != ["user", "assistant"] * exchanges:
        return Drop("bad_structure", f"roles {roles}, expected {2 * exchanges} alternating turns")
    if blank := [i for i, t in enumerate(turns) if not t["content"].strip()]:
        # the schema's minLength lets " " through: it was paid for, then an `empty_turns` drop naming no generator
        return Drop("bad_structure", f"turn {blank[0]} ({turns[blank[0]]['role']}) is blank")
    answers = [t["content"].strip() for t in turns if t["role"] == "assistant"]
    if p["needs_name"] and not mentions_name(answers, _field(identity, "name")):
        return Drop("identity_missing", f"topic {p['topic']}: no assistant turn says {_field(identity, 'name')!r}")
    wrong = read_as(turns, identity, item.language)
    if wrong:
        return Drop("wrong_language", f"reads as {wrong}, wanted {item.language}")
    leak = other_identity_pattern(identity).search("\n".join(answers))
    if leak:
        return Drop("other_identity", f"assistant mentions {leak.group(0)!r}")
    messages = [message(t["role"], t["content"].strip()) for t in turns]
    return [Converted(messages=messages, language=item.language,
                      meta={"topic": p["topic"], "form": p["form"], "voice": p["voice"]})]
