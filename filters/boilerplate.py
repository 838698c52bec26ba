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

PHRASES = (
    # en
    r"as an ai(?: language)? model", r"as a large language model", r"i(?:'m| am) (?:just )?an ai(?: language model)?,? (?:and|so) (?:i )?(?:can(?:not|'t)|don't|do not)",
    r"i(?:'m| am) sorry,? but i can(?:not|'t) (?:assist|help|fulfill|comply)", r"i can(?:not|'t) (?:fulfill|comply with) (?:this|that|your) request",
    r"i(?:'m| am) unable to (?:assist|help) with (?:this|that) request",
    # es, ca, pt, gl: "as a language model" is the canned aside when a comma follows it or a "no
    # puedo"/"no tengo" in its sentence does ("Como modelo de lenguaje, no tengo...", "como un modelo
    # de lenguaje entrenado por OpenAI, no puedo"); "BERT se preentrena como un modelo de lenguaje
    # enmascarado" is about NLP. (Bounded gaps: an unbounded one was quadratic on runs of newlines.)
    r"como (?:un )?modelo de lenguaje(?: de (?:ia|inteligencia artificial))?,",
    r"como (?:un )?modelo de lenguaje[^.!?\n]{0,60}?\bno (?:tengo|puedo|soy|estoy|dispongo|poseo)\b",
    r"como (?:una )?inteligencia artificial,? no (?:puedo|tengo)", r"lo siento,? pero no puedo (?:ayudar|cumplir|atender)",
    r"com a model de llenguatge(?: d'ia| d'intel·ligència artificial)?,",
    r"com a model de llenguatge[^.!?\n]{0,60}?\bno (?:tinc|puc|sóc|estic|disposo)\b",
    r"com a intel·ligència artificial,? no (?:puc|tinc)", r"ho sento,? però no puc (?:ajudar|complir)",
    r"como (?:um )?modelo de linguagem(?: de ia)?,",
    r"como (?:um )?modelo de linguagem[^.!?\n]{0,60}?\bnão (?:tenho|posso|sou|estou|disponho)\b",
    r"como (?:uma )?inteligência artificial,? não (?:posso|tenho)", r"desculpe,? mas não posso (?:ajudar|cumprir)",
    r"como (?:un )?modelo de linguaxe(?: de ia)?,",
    r"como (?:un )?modelo de linguaxe[^.!?\n]{0,60}?\bnon (?:teño|podo|son|estou|dispoño)\b",
    r"como (?:unha )?intelixencia artificial,? non (?:podo|teño)",
    r"síntoo,? pero non podo (?:axudar|cumprir)",
    # eu
    r"hizkuntza[- ]eredu (?:bat )?(?:naizen|gisa)", r"sentitzen dut,? baina ezin (?:dut|dizut) (?:horretan )?lagundu",
)


class BoilerplateFilter(RecordFilter):
    name = "boilerplate"

    def __init__(self, extra_phrases: list[str] | None = None, **kwargs):
        super().__init__(**kwargs)
        for phrase in extra_phrases or ():
            if phrase != phrase.lower():
                raise ValueError(f"boilerplate phrase {phrase!r}: write it in lowercase (it is matched against "
                                 "lowercased text; use [^\\s] rather than \\S)")
        self.pattern = re.compile("|".join(PHRASES + tuple(extra_phrases or ())))
        self.screen = LiteralScreen([required_literals(self.pattern.pattern)])

    def check(self, record, doc):
        for text in turn_texts(record, ("assistant",)):
            text = folded(text)
            if self.screen.may_match(text) and self.pattern.search(text):
                return "boilerplate"
        return None
