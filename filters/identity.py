"""Drop assistant turns that claim another model's identity or state the speaker's knowledge cutoff.

The synthetic data comes from DeepSeek and many sources from ChatGPT/Claude/Llama outputs; the
trained model must only ever present itself with the manifest's identity card. Only
self-references are matched ("I am ChatGPT", "developed by OpenAI", "created by the OpenAI team",
"As an AI developed by OpenAI, I...", "a language model from OpenAI", "an OpenAI model", "soy un
modelo creado por Anthropic", "ChatGPT naiz", "my knowledge cutoff", "my training cutoff"), so an
answer that merely discusses ChatGPT or what a knowledge cutoff is is kept, and so is what the
speaker's sentence says of something else ("I'm an AI, but Android was developed by Google"), what
"as a"/"como" says of someone else ("As a user of Google's assistant, I...", "asistentes como el
asistente de Google, mi hermana...") and a product ("I am a Google Assistant user"). A
name that is also an everyday word or a person's first name (Bard, Gemini, Copilot, Claude,
Kimi...) is a model's only as a proper noun on its own: "I am a bard", "I'm your copilot", "Soy un
gran admirador de Claude Monet" and "I'm Kimi, a 17-year-old exchange student" are kept. The
manifest's own name and developer are never flagged, nor a version glued to the name ("Llama3"), nor
a listed name inside what a listed name makes of one ("Google DeepMind" when the developer is Google):
`other_names`.

Patterns are lowercased and searched in the lowercased text: case-sensitive patterns let `re`
skip ahead to the characters that can start a match, several times faster than `re.IGNORECASE`.
Texts that name no other model or developer are ruled out before either regex (`filters.literals`).
"""

import re

from filters.base import RecordFilter, folded, turn_texts
from filters.literals import LiteralScreen, required_literals

# Spanish "llama" is also "calls" and "flame": "mi perro se llama Toby", "Soy la llama que arde", "Soy
# yo quien te llama" were identity_leak drops. Only the model's name has a version or no pronoun or
# article before it.
_LLAMA = r"(?:llama(?: ?\d)|(?<!\bse )(?<!\bte )(?<!\bme )(?<!\ble )(?<!\blo )(?<!\bla )(?<!\bnos )(?<!\bos )(?<!\bles )llama)"
OTHER_MODELS = ("ChatGPT", "GPT-3(?:\\.5)?", "GPT-4o?", "GPT", "OpenAI Assistant", "DeepSeek(?:-V3|-R1|-Chat)?", "Claude",
                "Gemini", "Bard", _LLAMA, "Qwen(?:2(?:\\.5)?)?", "Mistral", "Mixtral",
                "Open Assistant", "OpenAssistant", "Vicuna", "Alpaca", "Grok", "Copilot", "Ernie", "Tongyi Qianwen", "Kimi")
OTHER_DEVELOPERS = ("OpenAI", "DeepSeek", "Anthropic", "Google(?: DeepMind)?", "DeepMind", "Meta(?: AI)?", "Alibaba(?: Cloud)?",
                    "Mistral AI", "Microsoft", "LAION", "Moonshot AI", "xAI", "Baidu", "Cohere", "Salesforce", "NVIDIA")
# Names in `OTHER_MODELS` that are also everyday words ("I am a bard of the northern kingdoms", "I'm a
# Gemini", "I am an alpaca farmer", "I'm your copilot for this road trip", "el mistral", "I'm able to
# grok it") or people's first names ("Soy un gran admirador de Claude Monet", "Hi! I'm Kimi, a
# 17-year-old exchange student"), as the claim patterns match them (lowercased): `_names_a_model`.
COMMON_WORDS = frozenset({"bard", "gemini", "llama", "mistral", "alpaca", "vicuna", "grok", "copilot"})
FIRST_NAMES = frozenset({"claude", "ernie", "kimi"})
# Before such a name, the words that make it a common noun ("I'm a Gemini", "I'm your copilot"):
# indefinite articles, possessives, English "the", Spanish and Catalan "el"/"la" (Portuguese and
# Galician "o"/"a" stand before a model's name too: "Sou o ChatGPT"). After it, ", a ..." says what the
# speaker is ("I'm Kimi, a 17-year-old exchange student"), and a capitalised word after a first name
# is a surname.
_DETERMINERS = ("a", "an", "the", "your", "my", "our", "un", "una", "el", "la", "tu", "su", "mi", "um", "uma", "unha",
                "teu", "teva", "tua", "seu", "seva", "sua", "meu", "meva", "minha", "miña")
_APPOSITION = re.compile(rf",\s+(?:{'|'.join(_DETERMINERS)})\s+([^.!?:;\n]*)")
_SURNAME = re.compile(r" [A-ZÀ-ÖØ-Þ][a-zß-öø-ÿ]")
# ... unless a model word follows the capitalised name ("a Gemini model", "a Llama-based assistant",
# "Claude 3 models"), or, with no determiner before it, a capitalised product word ("Claude Instant",
# "ERNIE Bot", "Kimi Chat"); a version number may stand between. Read in the lowercased text.
_MODEL_AFTER = re.compile(r"(?: v?\d[\w.]*)?(?: models?\b|-based\b| (?P<product>instant|code|sonnet|opus|haiku|bot|chat"
                          r"|pro|advanced|ultra)\b)")
# Not after a negation: "No, no soy ChatGPT" (es, ca "no", gl "non", pt "não"); English puts it after.
# Catalan's "sou" is also "you are" (plural): "si sou usuaris de ChatGPT Plus".
_NOT_NEGATED = r"(?<!\bno )(?<!\bnon )(?<!\bnão )(?<!\bsi )(?<!vosaltres )"
# "I am X" / "my name is X" / "soy X" / "mi nombre es X" / "sóc X" / "el meu nom és X" / "sou X" / "o meu nome é X" / "eu son X"
_SELF = (rf"{_NOT_NEGATED}(?:\bI(?:'m| am)|\bmy name is|\bsoy|\bme llamo|\bmi nombre es|\bsóc|\bem dic|\bel meu nom és"
         r"|\bsou|\bme chamo|\bo meu nome é|\bmeu nome é|\beu son|\bchámome)\s+")
# What may stand between "I am" and a name in a self-claim ("I am a helpful assistant called
# ChatGPT", "soy un asistente conocido como Claude", "I am powered by GPT-4"): up to six words, none a
# negation, a verb in -ing, or a word that makes the name the object of something else ("I'm
# going to compare GPT-4 and Claude", "I'm familiar with Llama", "I'm not ChatGPT", "sóc diferent
# de ChatGPT" were identity_leak drops).
_NOT_A_CLAIM = (r"not|non|não|never|nunca|mai|\w+ing|about|familiar|similar|like|unlike|different|diferente|diferent"
                r"|distinto|distint|compar\w*|than|que|with|fan|happy|glad|sorry|afraid|aware|sure|consciente|conscient"
                r"|semblant|semelhante|parecid[oa]|similar")
# Past "and" or "but" the name is in another clause or beside another noun ("Soy profesora y uso Claude",
# "Sóc estudiant i ChatGPT m'ajuda", "Eu son de Lugo e Claude entende...": of a helper's 50 sentences a
# language naming models innocently, 12 ca, 16 es and 16 gl were identity_leak drops), unless a word
# that names the speaker follows ("I am a helpful and friendly assistant called ChatGPT").
_AND = r"and|but|y|pero|i|però|e"
_NAMED = (r"called|named|known as|llamad[oa]|conocid[oa] como|anomenat|anomenada|conegu(?:t|da) com(?: a)?|chamad[oa]"
          r"|conhecid[oa] como|coñecid[oa] como")
# "no" negates in English, Spanish and Catalan; in Portuguese and Galician it is "in the" ("Sou um
# modelo com base no GPT-4", "treinado no Brasil pela OpenAI"), and they negate with "não"/"non".
# Their "com a" is "with the", not Catalan's "as a" (`_AS`), and "em" is "in", not Catalan's "me"
# (`_I_THEN`: "Como modelo da Google, em 2018...").
NO_IS_IN_THE = frozenset({"pt", "gl"})
# Catalan's "i" is "and", not the English "I" after "As an AI ..., " (`_I_THEN`): "Com a model
# desenvolupat per Google, i gràcies a la seva mida, Gemini respon..." was an identity_leak drop (7 of a
# helper's 50 Catalan sentences).
I_IS_AND = frozenset({"ca"})
# First person before "made by": "I was trained by", "soy un modelo creado por", "fui desarrollado por",
# or an apposition the speaker's sentence or clause opens with ("As an AI developed by OpenAI, I...",
# "Como asistente creado por OpenAI, mi objetivo...", "but as an AI": `_AS`, `_OPENS_A_CLAUSE`).
# Galician's "son"/"fun" only with "eu": alone they are also "they are" (es, gl) and the English "son".
# Not negated right after the verb ("I'm not a model made by OpenAI") nor in the clause "made by" ends
# ("I was never trained by", "soy ALIA y no fui entrenado por": `_Claims._negated`); a negation in an
# earlier clause ("a model that can't browse the web, made by OpenAI") negates something else. Lowercase, as they are searched. `_Claims.first_person`
# has no group and no lookbehind: either makes its `finditer`, at every position of a text, about
# three times slower; `made_by` has them, matched only where a first person is.
_I_AM = (r"\bi(?:'m| am| was| have been)|\bsoy|\bfui|\bhe sido|\bsóc|\bvaig ser|\bhe estat|\bsou|\beu son|\beu fun")
_AS = r"\bas an?|\bcomo"
# ... after no word but a conjunction: "como" after a word is "like" ("asistentes como el asistente de
# Google, mi hermana...", "foi lançado como modelo da Google, em 2018"), and so is "such as a". Matched
# at the "as" of a `made_by` match (`_of_the_speaker`): in its pattern they made a text of many "as a" 7%
# slower.
_OPENS_A_CLAUSE = re.compile(r"(?<!\w )|" + "|".join(
    rf"(?<=\b{word} )" for word in ("and", "but", "so", "that", "because", "since", "while", "y", "e", "i", "pero",
                                    "però", "mas", "mais", "que", "porque", "perquè", "pues", "pois")))
_NOT_AFTER = r"\b(?!\s+(?:not|never)\b)"
# "As a ... made by X" describes whatever the sentence goes on about ("As a model trained by OpenAI,
# GPT-3 can...", "As a platform built by Microsoft, Azure..."): the speaker's only when a first person
# opens what follows the comma (I, my, mi, jo, el meu, eu, no puedo...; Spanish and Catalan drop the "I",
# and Catalan's "i" is "and": `I_IS_AND`).
_I_THEN = (r"my|me|yo|mi|mis|jo|el meu|la meva|els meus|eu|meu|minha|miña|o meu|a minha|a miña"
           r"|(?:(?:no|non|não) )?(?:puedo|tengo|estoy|soy|puc|tinc|estic|sóc|posso|tenho|estou|sou|podo|teño)")
# "I'm ... made by X" is the speaker's claim when what stands between says what the speaker is (an
# AI, a model, an assistant...), or next to nothing ("I was originally trained by"): "He sido
# usuario de Kotlin, un lenguaje desarrollado por Google" and "I'm going to use Flutter, a toolkit
# developed by Google" are about something else. So are a gap that opens with a word of attitude
# or a verb in -ing ("I'm glad", "I'm a big fan of", "Sou fã do", "I'm recommending") and one that
# crosses a sentence's end or a colon ("I'm glad you asked! Android was developed by Google").
_SPEAKER = re.compile(r"\b(?:ai|ia|llm|a\.i|model\w*|assist\w*|asist\w*|chat\w*|bot|system\w*|sistema|program\w*"
                      r"|intel[\w·]+ artificial|artificial intel\w+)\b")
_ASIDE = re.compile(r"^\s*(?:(?!(?:no|some|every|any)thing\b)\w+ing\b|(?:[\w'-]+\s+){0,2}?(?:about|familiar|fan|fã|happy"
                    r"|glad|sorry|afraid|aware|sure|conscientes?|conscients?|like|unlike|similar|different"
                    r"|diferente?s?|distint[oa]?s?|compar\w*)\b)")
# A gap that ends in a preposition or a verb in -ing makes the relation its object, not what the
# speaker is: "As a user of Google's assistant, I", "a developer using OpenAI's model", "Soy experto en
# IA de Google", "Como usuaria del asistente de Google, mi...".
_OBJECT_OF = re.compile(r"\b(?:of|in|into|on|at|to|by|for|with|\w+ing|de|del|en|al|con|amb|per|pel|da|do|das|dos|na|no|em"
                        r"|com|sobre|para|por)\s*$")
_CLAUSE_START = re.compile(r".*(?:[,;:]|\b(?:and|but|y|i|e|pero|però|mas|mais)\b)", re.DOTALL)
# A clause's own subject and verb ("TensorFlow was", "Android fue", "l'Android va ser"): what it made is
# that subject, not the speaker, unless it is a relative pronoun ("a model that was trained by").
_OWN_SUBJECT = re.compile(r"\b(?!(?:that|which|who|que|qui|quien|cual)\b)[\w'-]+\s+(?:was|were|is|are"
                          r"|(?:has|have|had) been|fue|fueron|es|son|era|eran|ha sido|han sido|va ser|van ser|ha estat"
                          r"|han estat|és|són|foi|foram|é)\b")
_NEGATIONS = r"not|never|non|não|nunca|mai|ni|nor"
_MADE_BY = (r"(?:developed|created|trained|built|made|designed|programmed)\s+by|desarrollad[oa] por|cread[oa] por|entrenad[oa] por"
            r"|desenvolupa(?:t|da) per|crea(?:t|da) per|entrena(?:t|da) per|desenvolvid[oa] pel[oa]?|criad[oa] pel[oa]?"
            r"|treinad[oa] pel[oa]?|desenvolvid[oa] por|creado por|adestrado por|(?:desenvolvid|cread|adestrad)[oa] pol[oa]")
# ... by the developer or a team of its: "created by the OpenAI team", "by a team of researchers at
# Anthropic", "por el equipo de OpenAI", "per l'equip d'OpenAI".
_BY_TEAM = (r"(?:(?:the|a|el|la|un|l'|o|um|uma)\s*)?(?:(?:[\w-]+\s+){0,2}?(?:team|engineers|researchers|developers"
            r"|equipo|equip|equipa|equipe|ingenieros|investigadores|enginyers|investigadors|engenheiros|pesquisadores)\s+"
            r"(?:[\w-]+\s+){0,2}?(?:at|of|from|de|del|d'|da|do)\s*)?")
# Or what the speaker is, said with the developer: "a language model from OpenAI", "un modelo de lenguaje
# de OpenAI", "un model d'IA d'OpenAI", "an OpenAI model", "Google's AI assistant" (but not "a Google AI
# specialist": "Google AI" and "Meta AI" are developers' names; nor "a Google Assistant user": a bare
# assistant after the developer's name is its product, `_OWNED_KIND`).
_KIND_NOUN = r"(?:model|assistant|chatbot|llm|modelo|asistente|assistent|assistente)"
_KIND = (rf"\b(?:(?:(?:ai|ia|language) )?{_KIND_NOUN}|ai|ia)"
         r"(?: (?:de |d')(?:lenguaje|llenguatge|linguagem|linguaxe|ia|ai))?\s+(?:from|by|de|del|d'|da|do)\s*")
_OWNED_KIND = rf"(?:'s\s+(?:(?:ai|language) )?{_KIND_NOUN}|\s+(?:(?:ai|language) {_KIND_NOUN}|model|chatbot|llm))\b"
# The speaker's own cutoff ("my", also "my training cutoff", "I have", "as an AI with a", an echoed
# "Knowledge cutoff: 2023-10. Current date"): "Every large language model has a knowledge cutoff",
# "GPT-4 Turbo (knowledge cutoff: April 2023)" and "La fecha de corte de conocimiento de un modelo
# es..." explain the idea or another model's (they were knowledge_cutoff drops). Each pattern opens
# with a letter, no "\b" or group, so `re` skips ahead to the letters that can start one; a match
# inside a word ("taxono-my") is no match (`IdentityFilter._states_a_cutoff`). "training cutoff" only
# after "my": as a literal of the screen (`filters.literals`) "training" alone is common.
_CUT = r"knowledge[- ]cut-?off"
CUTOFF = (rf"my (?:[\w-]+ )?(?:\d{{4}} )?(?:{_CUT}|training cut-?off)", rf"my training (?:data )?(?:has|have) an? {_CUT}",
          rf"i have an? (?:[\w-]+ ){{0,2}}?{_CUT}",
          rf"as an ai (?:language )?(?:model )?with an? {_CUT}", rf"{_CUT}: [\w -]{{0,20}}\. current date",
          r"tengo una fecha de corte de conocimiento", r"ia con una fecha de corte de conocimiento",
          r"tinc una data de tall de coneixement", r"tenho uma data de corte de conhecimento",
          r"ia com uma data de corte de conhecimento", r"teño unha data de corte de coñecemento",
          r"ezagutza[- ]muga bat dut",
          r"as of my (?:last|latest) (?:knowledge )?update", r"my training data (?:only )?(?:goes|extends) up to",
          r"mi fecha de corte de conocimiento", r"fecha de corte de mi conocimiento", r"hasta mi (?:última )?actualización",
          r"data de tall del meu coneixement", r"data de corte do meu conhecimento", r"nire ezagutza[- ]muga",
          r"mis datos de entrenamiento,? (?:que )?llegan hasta",
          r"fins a la meva (?:última|darrera) actualització", r"data de corte do meu coñecemento",
          r"ata a miña última actualización", r"até (?:a )?minha última atualização",
          r"nire azken eguneraketa(?:ren arabera| arte)")


def other_names(names, own) -> str:
    """An alternation of the name patterns `names` that matches nowhere inside one of the `own` names
    (the identity card's) as it stands in the text, a version glued to it ("Llama3", "Qwen2.5") or
    what a listed name makes of it: with the developer Google, neither "Google" nor "DeepMind" of
    "Google DeepMind" ("Google(?: DeepMind)?"); with the developer Google DeepMind, not its
    "DeepMind"; with the name GPT-4, not "GPT" of "GPT-4", but "GPT-4o". The lists hold patterns,
    which the card's names are matched against, not compared with."""
    alternation = "(?:" + "|".join(names) + ")"
    own = [n for n in own if n]
    if not own:
        return alternation
    # what a listed name makes of a card's name followed by another listed one: "Google DeepMind"
    listed = frozenset().union(*filter(None, map(required_literals, names)))
    spans = own + [f"{n} {word}" for n in own for word in listed
                   if any(re.fullmatch(name, f"{n} {word}", re.IGNORECASE) for name in names)]
    # a name starting at any word of a span, the words before it standing behind ("google " before
    # "deepmind"); the lookbehinds are fixed strings, as `re` needs
    inside = [(rf"(?<={re.escape(span[:start])})" if start else "") + re.escape(span[start:])
              for span in spans for start in [0] + [m.end() for m in re.finditer(r"\W+(?=\w)", span)]]
    return rf"(?!(?:{'|'.join(inside)})(?:\d[\d.]*)?(?!\w)){alternation}"


class _Claims:
    """The claim patterns, for languages where "no" negates (`no_negates`) or not, and where "i" is
    "and" (`i_is_and`) or "I"; `models` and `developers` are alternations (`other_names`)."""

    def __init__(self, models: str, developers: str, no_negates: bool, i_is_and: bool):
        no = "|no" if no_negates else ""
        word = rf"(?!(?:{_NOT_A_CLAIM}{no})\b|(?:{_AND})\s)[\w'-]+[\s,]+"
        filler = rf"(?:{word}){{0,6}}?(?:(?:{_AND})\s+(?:{word}){{0,4}}?(?:{_NAMED})\s+)?"
        # Every escape used here (\b \s \w \d \n) is lowercase already, so lowercasing keeps its meaning;
        # a group's "?P" is not, so the names are lowercased apart.
        self.self_claim = re.compile(rf"{_SELF}{filler}".lower() + rf"(?P<name>{models.lower()})\b")
        as_ = _AS + (r"|\bcom a" if no_negates else "")
        developer = developers.lower()
        relation = rf"(?:(?P<made>{_MADE_BY})\s+{_BY_TEAM}|{_KIND}|(?={developer}{_OWNED_KIND})){developer}\b"
        i_then = _I_THEN + ("|em" if no_negates else "") + ("" if i_is_and else "|i")
        self.first_person = re.compile(rf"(?:{_I_AM}|{as_}){_NOT_AFTER}")
        # matched where `first_person` is, which its lookbehinds may rule out ("no soy")
        self.made_by = re.compile(rf"{_NOT_NEGATED}(?:{_I_AM}|(?P<as>{as_})"
                                  rf"(?=[^.!?:\n,]{{0,60}},\s*(?:{i_then})\b)){_NOT_AFTER}"
                                  rf"(?P<gap>[^.!?:\n]{{0,60}}?){relation}(?(as)[^.!?:\n,]{{0,40}},)")
        self.negation = re.compile(rf"\b(?:{_NEGATIONS}{no})\b|n't\b")
        # Basque puts the verb last: "ChatGPT naiz", "Nire izena ChatGPT da", "OpenAI-k entrenatutako
        # adimen artifiziala naiz" (the noun right before "naiz": "Google-k garatutako Android
        # erabiltzen ari naiz" is "I am using..."), "OpenAI-k sortu ninduen". "Ez" ("eredua ez naiz",
        # "OpenAI-k ez nau sortu") breaks each pattern.
        self.basque_claim = re.compile(
            rf"\b{models}\s+naiz\b|\bnire izena\s+{models}\b".lower())
        verb = r"(?:garatu|sortu|entrenatu|eraiki|diseinatu)"
        self.basque_made_by = re.compile(
            rf"\b{developer}(?:-?e?k)?\s+(?:\w+k\s+)?(?:{verb}\s+(?:nau|ninduen|naute|ninduten)\b"
            rf"|{verb}\w*\s+(?:[\w-]+\s+){{0,2}}?(?:adimen artifiziala|(?:hizkuntza[- ])?eredua|laguntzailea|asistentea"
            r"|txatbota)(?:\s+bat)?\s+naiz\b)")

    def search(self, text: str, written: str, basque: bool = False) -> bool:
        """Whether `text` (`written` lowercased by `folded`) makes a claim."""
        for claim in self.self_claim.finditer(text):
            if _names_a_model(claim, written):
                return True
        if basque and (self.basque_claim.search(text) or self.basque_made_by.search(text)):
            return True
        # from each first person in turn: "I'm sorry, but I'm an AI developed by OpenAI" is the second's claim
        for start in self.first_person.finditer(text):
            claim = self.made_by.match(text, start.start())
            if claim and _of_the_speaker(claim) and not self._negated(claim["gap"]):
                return True
        return False

    def _negated(self, gap: str) -> bool:
        """Whether the clause that ends in "made by" holds a negation (`gap`: the words before it)."""
        return self.negation.search(_last_clause(gap)) is not None


def _names_a_model(claim: re.Match, written: str) -> bool:
    """Whether the name a self-claim ends in is a model's. One that is also an everyday word or a
    person's first name is when it is written with its capital and followed by a model word ("a
    Gemini model") or, with no determiner before it, a product word ("Claude Instant"); otherwise
    when it stands after no determiner ("I'm a Gemini", "I'm your copilot"), before no surname
    ("Claude Monet"), and is not followed by what the speaker is unless that is an AI ("I'm Kimi, a
    17-year-old exchange student"; "Soy Llama, un modelo de Meta" is a claim)."""
    name, text = claim["name"], claim.string
    if name not in COMMON_WORDS and name not in FIRST_NAMES:
        return True
    if len(written) != len(text):  # "İ" lowercases to two characters: no offset to read the capital at
        return True
    start, end = claim.span("name")
    if not written[start].isupper():
        return False
    determined = text[claim.start():start].split()[-1] in _DETERMINERS
    if (after := _MODEL_AFTER.match(text, end)) and (
            after["product"] is None or (not determined and written[after.start("product")].isupper())):
        return True
    if determined or (name in FIRST_NAMES and _SURNAME.match(written, end)):
        return False
    described = _APPOSITION.match(text, end)
    return described is None or _SPEAKER.search(described[1]) is not None


def _of_the_speaker(claim: re.Match) -> bool:
    """Whether a `made_by` match ends in the speaker's developer: what stands between the first person
    and the relation (`gap`) says what the speaker is, or next to nothing ("I was originally trained
    by", "I am a large language model from"; after "As a", only where the relation says what it is:
    not "As a toolkit developed by Google"); "As a" opens a clause (`_OPENS_A_CLAUSE`); the gap opens
    with no aside, ends in no preposition ("As a user of Google's assistant", `_OBJECT_OF`), and its
    last clause has no subject of its own ("..., but I can tell you Android was developed by Google")."""
    gap = claim["gap"]
    said = ((claim["made"] is not None and _SPEAKER.search(gap) is not None)
            or (len(gap.split()) <= 2 and (claim["as"] is None or claim["made"] is None)))
    return (said and (claim["as"] is None or _OPENS_A_CLAUSE.match(claim.string, claim.start("as")) is not None)
            and _ASIDE.search(gap) is None and _OBJECT_OF.search(gap) is None
            and _OWN_SUBJECT.search(_last_clause(gap)) is None)


def _last_clause(gap: str) -> str:
    """The last clause of `gap`, the one the relation to the developer ends."""
    return _CLAUSE_START.sub("", gap, count=1)


class IdentityFilter(RecordFilter):
    name = "identity"

    def __init__(self, name: str | None = None, developer: str | None = None, check_cutoff: bool = True, **kwargs):
        super().__init__(**kwargs)
        own = [folded(n) for n in (name, developer) if n]
        models, developers = other_names(OTHER_MODELS, own), other_names(OTHER_DEVELOPERS, own)
        self.claims = {(no_negates, i_is_and): _Claims(models, developers, no_negates, i_is_and)
                       for no_negates, i_is_and in ((True, False), (True, True), (False, False))}
        self.cutoff = re.compile("|".join(CUTOFF).lower()) if check_cutoff else None
        # Both patterns end in a name: a text holding no name (and no literal of a cutoff phrase)
        # needs neither.
        self.screen = LiteralScreen([required_literals(n.lower()) for n in OTHER_MODELS + OTHER_DEVELOPERS]
                                    + ([required_literals(self.cutoff.pattern)] if self.cutoff else []))

    def claims_another_identity(self, written: str, language: str | None = None, text: str | None = None) -> bool:
        """Whether `written`, in `language`, claims to be another model or to be made by another
        developer (`text`: `folded(written)`, when the caller has it)."""
        text = folded(written) if text is None else text
        claims = self.claims[language not in NO_IS_IN_THE, language in I_IS_AND]
        return claims.search(text, written, basque=language == "eu")

    def _states_a_cutoff(self, text: str) -> bool:
        """A cutoff phrase starting a word ("Gemini have a knowledge cutoff" holds "i have a")."""
        return any(not match.start() or not text[match.start() - 1].isalnum() for match in self.cutoff.finditer(text))

    def check(self, record, doc):
        for written in turn_texts(record, ("assistant",)):
            text = folded(written)
            if not self.screen.may_match(text):
                continue
            if self.claims_another_identity(written, record["language"], text):
                return "identity_leak"
            if self.cutoff is not None and self._states_a_cutoff(text):
                return "knowledge_cutoff"
        return None
