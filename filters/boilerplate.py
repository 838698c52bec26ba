"""Drop assistant turns that are canned AI boilerplate or blanket refusals.

Phrases are matched case-insensitively in the assistant turns only, in the mixture's languages.
Sources whose refusals are the point turn this rule off (When2Call's "cannot answer" rows), or only
its blanket-apology check with `refusals: false` (fc_synthesis, whose no-tool-fits replies say "I'm
sorry, but I can't help with that: my tools only...", still checked for "as an AI language model").
Extra phrases can be added per source with `extra_phrases`.

Phrases are lowercase regexes searched in the lowercased text (its typographic apostrophes made
ASCII, `filters.base.folded`): a case-sensitive pattern lets `re`
skip ahead to the characters that can start a match, eight times faster than `re.IGNORECASE`.
Texts that hold none of the literals some phrase's match must contain are ruled out before the
regex (`filters.literals`); an extra phrase without such a literal turns that screen off.
"""

import re

from filters.base import RecordFilter, folded, turn_texts
from filters.literals import LiteralScreen, required_literals

PHRASES = (
    # en
    r"as an ai(?: language)? model", r"as a large language model", r"i(?:'m| am) (?:just )?an ai(?: language model)?,? (?:and|so) (?:i )?(?:can(?:not|'t)|don't|do not)",
    # es, ca, pt, gl: "as a language model" is the canned aside when a "no puedo"/"no tengo" follows
    # in its sentence ("como un modelo de lenguaje entrenado por OpenAI, no puedo"), or with a comma
    # where an aside opens (`ASIDES`). (Bounded gaps: an unbounded one was quadratic on runs of newlines.)
    r"como (?:un )?modelo de lenguaje[^.!?\n]{0,60}?\bno (?:tengo|puedo|soy|estoy|dispongo|poseo)\b",
    r"como (?:una )?inteligencia artificial,? no (?:puedo|tengo)",
    r"com a model de llenguatge[^.!?\n]{0,60}?\bno (?:tinc|puc|sóc|estic|disposo)\b",
    r"com a intel·ligència artificial,? no (?:puc|tinc)",
    r"como (?:um )?modelo de linguagem[^.!?\n]{0,60}?\bnão (?:tenho|posso|sou|estou|disponho)\b",
    r"como (?:uma )?inteligência artificial,? não (?:posso|tenho)",
    r"como (?:un )?modelo de linguaxe[^.!?\n]{0,60}?\bnon (?:teño|podo|son|estou|dispoño)\b",
    r"como (?:unha )?intelixencia artificial,? non (?:podo|teño)",
    # eu: "naizen aldetik" (as I am) is first person; "gisa" (as) only as the aside, with its comma
    # ("GPT-2 hizkuntza-eredu gisa erabiltzen da" is about NLP)
    r"(?:hizkuntza[- ]eredu|adimen artifizial)(?: bat)? naizen", r"hizkuntza[- ]eredu (?:bat )?gisa,",
)


# "As a language model," in es, ca, pt and gl, where an aside opens (`_opens_aside`): "Como modelo de
# lenguaje, no tengo...", "Sin embargo, como...", "Ten en cuenta que como..."; "usaremos BERT como
# modelo de lenguaje, y después..." is about NLP. The opening is judged from the text before a match:
# a pattern that began with the lookbehinds was tried at every position of a text (14 ms on 16 KB).
ASIDES = (
    r"como (?:un )?modelo de lenguaje(?: de (?:ia|inteligencia artificial))?,",
    r"com a model de llenguatge(?: d'ia| d'intel·ligència artificial)?,",
    r"como (?:um )?modelo de linguagem(?: de ia)?,",
    r"como (?:un )?modelo de linguaxe(?: de ia)?,",
)
# Blanket apologies that refuse ("I'm sorry, I can't help with that"), unless spoken in a story
# (`_spoken`: "—Lo siento, no puedo ayudarte —dijo el guardia"); not "I can't help it" or "I can't
# help but notice".
REFUSALS = (
    r"i can(?:not|'t) (?:fulfill|comply with) (?:this|that|your) request",
    r"i(?:'m| am) unable to (?:assist|help) with (?:this|that) request",
    r"i(?:'m| am) sorry,? (?:but )?i can(?:not|'t) (?:assist|help(?! (?:but|it|myself|yourself)\b)|fulfill|comply)",
    r"sorry,? (?:but )?i can(?:not|'t) (?:assist|help(?! (?:but|it|myself|yourself)\b)|fulfill|comply)",
    r"lo siento,? (?:pero )?no puedo (?:ayudar|cumplir|atender)", r"(?:ho sento|em sap greu),? (?:però )?no puc (?:ajudar|complir)",
    r"(?:desculpe|sinto muito|lamento),? (?:mas )?não posso (?:ajudar|cumprir)",
    r"(?:síntoo|desculpa),? (?:pero )?non podo (?:axudar|cumprir)",
    r"(?:sentitzen dut|barkatu),? (?:baina )?ezin (?:dut|dizut) (?:horretan )?lagundu",
)
_SPEECH_MARKS = frozenset("—–\"“«")
_OPENING_MARKS = frozenset(".!?:;,(*\"«¡¿“—–-")
_OPENING_WORDS = frozenset({"pero", "però", "mas", "mais", "y", "i", "e", "que", "porque", "perquè", "pues", "pois"})
_LAST_WORD = re.compile(r"(\w+)\s*$")


def _opens_aside(text: str, at: int) -> bool:
    """Whether an aside may open at `at`: the text's start, after a sentence's or clause's mark, or
    after a conjunction."""
    before = text[max(0, at - 24):at].rstrip()
    if not before or before[-1] in _OPENING_MARKS:
        return True
    word = _LAST_WORD.search(before)
    return word is not None and word[1] in _OPENING_WORDS


def _spoken(text: str, at: int) -> bool:
    """Whether the phrase at `at` opens a line of dialogue (after a dash or an opening quote)."""
    before = text[max(0, at - 8):at].rstrip()
    if not before or before[-1] not in _SPEECH_MARKS:
        return False
    # A straight quote opens or closes: it opens when it is an odd one of its paragraph (`You wrote:
    # "Hack my ex's email." I can't fulfill that request.` refuses after the one that closes).
    return before[-1] != '"' or text.count('"', text.rfind("\n\n", 0, at) + 1, at) % 2 == 1


class BoilerplateFilter(RecordFilter):
    name = "boilerplate"

    def __init__(self, extra_phrases: list[str] | None = None, refusals: bool = True, **kwargs):
        super().__init__(**kwargs)
        for phrase in extra_phrases or ():
            if phrase != phrase.lower():
                raise ValueError(f"boilerplate phrase {phrase!r}: write it in lowercase (it is matched against "
                                 "lowercased text; use [^\\s] rather than \\S)")
            # each on its own: a broken one was a re.error at a position in the joined pattern
            try:
                re.compile(phrase)
            except re.error as error:
                raise ValueError(f"boilerplate phrase {phrase!r} is not a regular expression: {error}") from None
            try:
                pattern = re.compile("x|" + phrase)  # as one alternative among others
            except re.error:
                raise ValueError(f"boilerplate phrase {phrase!r}: an inline flag such as (?i) holds only at the start of "
                                 "a whole pattern (leave it out: the text is lowercased)") from None
            if re.search(r"(?<!\\)(?:\\\\)*(?:\\[1-9]|\(\?\(\d)", phrase):  # joined, group numbers shift
                raise ValueError(f"boilerplate phrase {phrase!r}: a backreference cannot work once the phrases are "
                                 "joined into one pattern")
            if any(match.start() == match.end() for match in pattern.finditer("an answer")):
                raise ValueError(f"boilerplate phrase {phrase!r} matches an empty text, so every row")
        # typographic apostrophes made ASCII, as in the text they are matched against (`folded`)
        extra = tuple(re.sub("[\u2019\u2018\u02bc]", "'", phrase) for phrase in extra_phrases or ())
        self.pattern = re.compile("|".join(PHRASES + extra))
        self.refusals = re.compile("|".join(REFUSALS)) if refusals else None
        self.asides = re.compile("|".join(ASIDES))
        self.screen = LiteralScreen([required_literals(pattern.pattern)
                                     for pattern in (self.pattern, self.refusals, self.asides) if pattern is not None])

    def check(self, record, doc):
        for text in turn_texts(record, ("assistant",)):
            text = folded(text)
            if self.screen.may_match(text) and (
                    self.pattern.search(text)
                    or (self.refusals is not None
                        and any(not _spoken(text, refusal.start()) for refusal in self.refusals.finditer(text)))
                    or any(_opens_aside(text, aside.start()) for aside in self.asides.finditer(text))):
                return "boilerplate"
        return None
