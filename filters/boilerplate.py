"""Drop assistant turns that are canned AI boilerplate or blanket refusals.

Phrases are matched case-insensitively in the assistant turns only, in the mixture's languages.
Sources whose refusals are the point (When2Call's "cannot answer" rows) turn this rule off in the
manifest. Extra phrases can be added per source with `extra_phrases`.

Phrases are lowercase regexes searched in the lowercased text (its typographic apostrophes made
ASCII, `filters.base.folded`): a case-sensitive pattern lets `re`
skip ahead to the characters that can start a match, eight times faster than `re.IGNORECASE`.
Texts that hold none of the literals some phrase's match must contain are ruled out before the
regex (`filters.literals`); an extra phrase without such a literal turns that screen off.
"""

import re

from filters.base import RecordFilter, folded, turn_texts
from filters.literals import LiteralScreen, required_literals

# Where an aside opens: the text's start, after a sentence's or clause's mark, or a conjunction.
_OPENS = (r"(?:^|(?<=[.!?:;,(\n*\"«¡¿] )|(?<=[\n(*\"«¡¿])|(?<=\bpero )|(?<=\bperò )|(?<=\bmas )|(?<=\bmais )"
          r"|(?<=\by )|(?<=\bi )|(?<=\be ))")
PHRASES = (
    # en
    r"as an ai(?: language)? model", r"as a large language model", r"i(?:'m| am) (?:just )?an ai(?: language model)?,? (?:and|so) (?:i )?(?:can(?:not|'t)|don't|do not)",
    r"(?:i(?:'m| am) )?sorry,? (?:but )?i can(?:not|'t) (?:assist|help|fulfill|comply)", r"i can(?:not|'t) (?:fulfill|comply with) (?:this|that|your) request",
    r"i(?:'m| am) unable to (?:assist|help) with (?:this|that) request",
    # es, ca, pt, gl: "as a language model" is the canned aside when a "no puedo"/"no tengo" follows
    # in its sentence ("como un modelo de lenguaje entrenado por OpenAI, no puedo"), or a comma does
    # and it opens a sentence or a clause ("Como modelo de lenguaje, no tengo...", "Sin embargo,
    # como..."): "BERT se preentrena como un modelo de lenguaje enmascarado" and "usaremos BERT como
    # modelo de lenguaje, y después..." are about NLP. (Bounded gaps: an unbounded one was quadratic
    # on runs of newlines; the lookbehinds are fixed.)
    rf"{_OPENS}como (?:un )?modelo de lenguaje(?: de (?:ia|inteligencia artificial))?,",
    r"como (?:un )?modelo de lenguaje[^.!?\n]{0,60}?\bno (?:tengo|puedo|soy|estoy|dispongo|poseo)\b",
    r"como (?:una )?inteligencia artificial,? no (?:puedo|tengo)", r"lo siento,? (?:pero )?no puedo (?:ayudar|cumplir|atender)",
    rf"{_OPENS}com a model de llenguatge(?: d'ia| d'intel·ligència artificial)?,",
    r"com a model de llenguatge[^.!?\n]{0,60}?\bno (?:tinc|puc|sóc|estic|disposo)\b",
    r"com a intel·ligència artificial,? no (?:puc|tinc)", r"(?:ho sento|em sap greu),? (?:però )?no puc (?:ajudar|complir)",
    rf"{_OPENS}como (?:um )?modelo de linguagem(?: de ia)?,",
    r"como (?:um )?modelo de linguagem[^.!?\n]{0,60}?\bnão (?:tenho|posso|sou|estou|disponho)\b",
    r"como (?:uma )?inteligência artificial,? não (?:posso|tenho)",
    r"(?:desculpe|sinto muito|lamento),? (?:mas )?não posso (?:ajudar|cumprir)",
    rf"{_OPENS}como (?:un )?modelo de linguaxe(?: de ia)?,",
    r"como (?:un )?modelo de linguaxe[^.!?\n]{0,60}?\bnon (?:teño|podo|son|estou|dispoño)\b",
    r"como (?:unha )?intelixencia artificial,? non (?:podo|teño)",
    r"(?:síntoo|desculpa),? (?:pero )?non podo (?:axudar|cumprir)",
    # eu: "naizen aldetik" (as I am) is first person; "gisa" (as) only as the aside, with its comma
    # ("GPT-2 hizkuntza-eredu gisa erabiltzen da" is about NLP)
    r"(?:hizkuntza[- ]eredu|adimen artifizial)(?: bat)? naizen", r"hizkuntza[- ]eredu (?:bat )?gisa,",
    r"(?:sentitzen dut|barkatu),? (?:baina )?ezin (?:dut|dizut) (?:horretan )?lagundu",
)


class BoilerplateFilter(RecordFilter):
    name = "boilerplate"

    def __init__(self, extra_phrases: list[str] | None = None, **kwargs):
        super().__init__(**kwargs)
        for phrase in extra_phrases or ():
            if phrase != phrase.lower():
                raise ValueError(f"boilerplate phrase {phrase!r}: write it in lowercase (it is matched against "
                                 "lowercased text; use [^\\s] rather than \\S)")
        # typographic apostrophes made ASCII, as in the text they are matched against (`folded`)
        extra = tuple(re.sub("[\u2019\u2018\u02bc]", "'", phrase) for phrase in extra_phrases or ())
        self.pattern = re.compile("|".join(PHRASES + extra))
        self.screen = LiteralScreen([required_literals(self.pattern.pattern)])

    def check(self, record, doc):
        for text in turn_texts(record, ("assistant",)):
            text = folded(text)
            if self.screen.may_match(text) and self.pattern.search(text):
                return "boilerplate"
        return None
