"""Verifiable instruction constraints (IFEval ids and keyword arguments), checked in pure Python.

A constraint is ``{"id": "<IFEval instruction id>", "kwargs": {...}}`` with IFEval's own instruction
ids and keyword-argument names, so a row built here can be re-scored by IFEval (google-research
``instruction_following_eval`` or lm-evaluation-harness ``ifeval``) unchanged. ``to_ifeval`` gives
the ``instruction_id_list`` / ``kwargs`` columns IFEval reads.

- ``verify(response, constraints)`` -> one bool per constraint. It reproduces IFEval's *strict*
  evaluation: a blank response follows nothing, otherwise each checker is IFEval's
  ``check_following`` semantics (``loose=True`` gives IFEval's loose variant).
- ``describe(constraint, language)`` -> the instruction text to append to a user turn: IFEval's own
  English wording; Spanish and Catalan wordings for every id.
- ``sample_constraints(rng, n, language)`` -> n compatible constraints with sensible kwargs,
  following IFEval's conflict table (plus a few extra conflicts listed in ``EXTRA_CONFLICTS``).
- ``CONSTRAINTS`` maps id -> (checker, kwargs spec); a spec maps each keyword argument to its kind
  (see ``KINDS``). Every argument of a spec is required; ``None`` values are ignored (the Hugging
  Face copy of IFEval stores every argument name, with nulls), as lm-evaluation-harness does.

Where results can differ from IFEval (everything else is the same rule, on the same text):

- ``length_constraints:number_sentences`` -- IFEval counts with NLTK's Punkt English model.
  ``count_sentences`` re-implements Punkt's boundary machinery exactly as NLTK 3.10 runs it
  (candidate ``. ? !`` contexts, word tokenizer, the two annotation passes, boundary realignment)
  with the English model's abbreviation list, frequent sentence starters and collocations. Only
  the model's orthographic table (about 20k words, how each word was capitalised in training) is
  not carried: words of ``_COMMON_LOWER`` and the sentence starters count as ordinary lower-case
  words, any other word as unseen. That table decides one case only: whether a capitalised word
  after an abbreviation (``U.S.``, ``Mr.``, ``Inc.``), a one-letter initial or an ellipsis starts a
  new sentence (and, rarely, whether a lower-case word after a number or an initial does). There
  the count can be off by one per occurrence: "I moved to the U.S. Cities there are big." is 1
  sentence here ("cities" unseen), 2 for NLTK if its table has "cities" in lower case and never
  capitalised mid-sentence. Breaks after ordinary words, ``?`` and ``!``, after numbers before a
  capitalised word, and non-breaks at newlines are NLTK's exactly. Versions: this follows NLTK
  3.10; NLTK 3.9 did not treat curly quotes or guillemets after a period as punctuation, so
  ``said “no.” Then`` is 2 sentences here and with NLTK 3.10, 1 with NLTK 3.9.
- ``change_case:capital_word_frequency`` -- IFEval tokenizes with ``nltk.word_tokenize`` (Punkt
  sentences, then NLTK's word tokenizer). ``count_capital_words`` splits sentences as above and
  applies every step of NLTK 3.10's word tokenizer that can change whether a token is all
  capitals (quotes, final period, punctuation, brackets, dashes, clitics such as ``'S`` and
  ``N'T``, CANNOT/GONNA/...), so it differs only where the sentence split does (and from NLTK
  3.9, which did not split at en/em dashes: ``A—B`` is 2 capital words here, 1 there).
  Both tokenizers were checked against NLTK 3.10 itself, run with the same Punkt parameters: the
  same sentences and the same capital-word counts on 120,000 random texts built from tricky
  pieces (abbreviations, initials, numbers, ellipses, ?!, quotes, brackets, clitics).
- ``length_constraints:number_words`` counts ``\\w+`` runs exactly as IFEval's ``RegexpTokenizer``.
- ``language:response_language``, ``change_case:english_capital``/``english_lowercase`` call
  langdetect as IFEval does, but seeded (``DetectorFactory.seed = 0``, as ``filters.language``
  does); IFEval leaves it unseeded, so on borderline texts its own verdict varies between runs.
- Keyword, spliter and postscript strings are regular expressions, as in IFEval (``keywords:
  existence`` and ``keywords:frequency`` match substrings, case-insensitively; ``forbidden_words``
  uses ``\\b`` boundaries). ``verify(..., whole_words=True)``, which generated rows are held to,
  matches all three as the whole word or its plural: "rivers" is "river" (found, counted, and
  banned), "riverside" is not. The plurals of the sampler's words that are not word + s/es
  ("cities", «tradiciones», «cultures», «aigües») are the word too; IFEval's substring never finds
  "city" in them, so they count against "less than" and a ban here, and meet no "at least" alone.
  The sampler only draws plain words. A postscript marker with an inline flag (``(?i)ps``) works
  here; IFEval's pattern puts it after ``\\s*``, which Python 3.11 refuses.
- Placeholders, postscripts, bullets and titles are found in one pass over the response, not with
  IFEval's regexes, which retry a run of whitespace or of unclosed brackets from each of its
  characters (at 32,000 characters of ``[``, 6.5 s to count placeholders); each checker's docstring
  gives IFEval's regex, and the tests compare the two on random texts. ``json_format`` reads JSON
  nested past Python's recursion limit as not JSON; IFEval's ``json.loads`` raises RecursionError.
"""

from __future__ import annotations

import collections
import random
import re
import string
from typing import Any, Callable

from sftmix.jsontext import loads

__all__ = [
    "CONSTRAINTS", "CONFLICTS", "EXTRA_CONFLICTS", "KINDS", "LANGUAGES", "RELATIONS",
    "count_capital_words", "count_sentences", "count_words", "describe", "sample_constraints", "split_sentences",
    "to_ifeval", "verify",
]

RELATIONS = ("less than", "at least")
LANGUAGES = ("en", "es", "ca")  # describe() wordings; ALIA's languages

# IFEval's response_language codes, with the language's name in each describe() language.
_LANGUAGE_NAMES = {
    "en": ("English", "inglés", "anglès"), "es": ("Spanish", "español", "castellà"),
    "pt": ("Portuguese", "portugués", "portuguès"), "ar": ("Arabic", "árabe", "àrab"),
    "hi": ("Hindi", "hindi", "hindi"), "fr": ("French", "francés", "francès"),
    "ru": ("Russian", "ruso", "rus"), "de": ("German", "alemán", "alemany"),
    "ja": ("Japanese", "japonés", "japonès"), "it": ("Italian", "italiano", "italià"),
    "bn": ("Bengali", "bengalí", "bengalí"), "uk": ("Ukrainian", "ucraniano", "ucraïnès"),
    "th": ("Thai", "tailandés", "tai"), "ur": ("Urdu", "urdu", "urdú"),
    "ta": ("Tamil", "tamil", "tàmil"), "te": ("Telugu", "telugu", "telugu"),
    "bg": ("Bulgarian", "búlgaro", "búlgar"), "ko": ("Korean", "coreano", "coreà"),
    "pl": ("Polish", "polaco", "polonès"), "he": ("Hebrew", "hebreo", "hebreu"),
    "fa": ("Persian", "persa", "persa"), "vi": ("Vietnamese", "vietnamita", "vietnamita"),
    "ne": ("Nepali", "nepalí", "nepalès"), "sw": ("Swahili", "suajili", "suahili"),
    "kn": ("Kannada", "canarés", "kannada"), "mr": ("Marathi", "maratí", "marathi"),
    "gu": ("Gujarati", "guyaratí", "gujarati"), "pa": ("Punjabi", "panyabí", "panjabi"),
    "ml": ("Malayalam", "malayalam", "malaiàlam"), "fi": ("Finnish", "finés", "finès"),
}

_CONSTRAINED_OPTIONS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


# --- word and sentence counting -----------------------------------------------------------------

_WORD = re.compile(r"\w+")


def count_words(text: str) -> int:
    """IFEval's word count: runs of word characters (nltk RegexpTokenizer(r"\\w+"))."""
    return len(_WORD.findall(text))


# Punkt English model parameters (NLTK's english punkt model, as exported to
# neurosnap/sentences data/english.json): abbreviation types, frequent sentence starters and
# collocations. The orthographic-context table is approximated (see _ortho_flags).
_ABBREVIATIONS = frozenset("""
prof r.i g.k r.t tenn j.r chg s.c ph.d n.m messrs pa c.v inc r.a t r ct reps s.g t.j w.va a.c
a.m s.a.y va ms d.c ltd a.s ft a.a jan w.r cos r.k mich u.n c d.h ill d.w h.c kan jr col corp
p.m l.f rep dr fla sept u.s.a h.m r.h feb nov w ok sep g j.j i.m.s a.d j.c ave bros oct minn
a.m.e n.y ky l u.k ariz n.d b.f sw l.a m.b.a yr calif h.f e.f j.p e.m p.a.m v st e.l a.g u.s
l.p g.d wed ga adm ala colo tues okla f n cie b.v co f.j k e h n.h e.h s.s u.s.s.r c.i.t conn
f.g p fri s.p.a a.h s.a dec s d n.j sr m.j g.f maj n.v lt ore wis m mr wash aug c.o.m.b nev
mg vt sen j.k a.t mrs n.c j.b vs r.j w.c m.d.c w.w gen
""".split()) | {". . "}
_SENT_STARTERS = frozenset("""
although but separately yet so indeed many both even nor meanwhile the most in these among
nonetheless nevertheless sales under he some this they there while i since despite according
thus instead if though moreover similarly however when it
""".split())
_COLLOCATIONS = frozenset(tuple(pair.split(",")) for pair in """
##number##,international i,toussie b,smith ##number##,genentech b,stewart ##number##,pay-fone
##number##,henley ##number##,insider ##number##,wedgestone j,aron ##number##,financing
##number##,review ##number##,cbot ##number##,zimmer b,levine ##number##,aes ##number##,cooper
##number##,colgate ##number##,pegasus ##number##,pepper j,walter ##number##,corrections
##number##,rj ##number##,dividend ##number##,notable ##number##,who b,wigton
##number##,commodities i,magnin ##number##,leisure o,ludcke ##number##,abreast ##number##,credit
##number##,letters b,edelman ##number##,business j,fialka
""".split())

# Words taken as "seen in lower case, never capitalised mid-sentence" (stand-in for the model's
# orthographic table): function words and common sentence openers.
_COMMON_LOWER = frozenset("""
a about above after again against all almost also always an and another any anyone anything
are as at back be because been before being below best better between by can could do does
doing done down during each either else enough every everyone everything few finally first for
from further good great had has have having her here hers herself him himself his how
important just keep last later less let like little look make may maybe me might mine more
much must my myself never new next no none not note nothing now of off often on once one only
or other others our ours out over perhaps please rather really remember same second see she
should still such take than that their theirs them themselves then therefore think third those
through to today together too try two understand unless until up use very was we well were
what whatever where whether which who whom whose why will with within without would you your
yours yourself here's there's it's that's let's don't do not always sometimes usually
overall additionally furthermore consequently hence otherwise regardless still next lastly
first second third fourth fifth step start begin consider imagine notice ensure avoid choose
make add mix place put remove check write read give tell ask open close set find follow
""".split())

_ORTHO_BEG_UC, _ORTHO_MID_UC, _ORTHO_UNK_UC = 1 << 1, 1 << 2, 1 << 3
_ORTHO_BEG_LC, _ORTHO_MID_LC, _ORTHO_UNK_LC = 1 << 4, 1 << 5, 1 << 6
_ORTHO_UC = _ORTHO_BEG_UC | _ORTHO_MID_UC | _ORTHO_UNK_UC
_ORTHO_LC = _ORTHO_BEG_LC | _ORTHO_MID_LC | _ORTHO_UNK_LC


def _ortho_flags(word_type: str) -> int:
    if word_type == "i":
        return _ORTHO_BEG_UC | _ORTHO_MID_UC
    if word_type in _SENT_STARTERS or word_type in _COMMON_LOWER:
        return _ORTHO_BEG_UC | _ORTHO_MID_LC
    return 0


_CLOSING_QUOTES = "\u2018\u2019\u201c\u201d\xab\xbb"
_NON_WORD = "(?:[)\";}\\]*:@'({\\[" + _CLOSING_QUOTES + "!?])"
_MULTI_CHAR = r"(?:-{2,}|\.{2,}|(?:\.\s){2,}\.)"
_WORD_START = "[^(\"`{\\[:;&#*@)}\\]\\-,]"
_END_CONTEXT = re.compile(r"[.?!](?=(?P<after_tok>" + _NON_WORD + r"|\s+(?P<next_tok>\S+)))")
_PUNKT_TOKEN = re.compile(
    _MULTI_CHAR + "|(?=" + _WORD_START + r")\S+?(?=\s|$|" + _NON_WORD + "|" + _MULTI_CHAR
    + r"|,(?=$|\s|" + _NON_WORD + "|" + _MULTI_CHAR + r"))|\S"
)
_REALIGN = re.compile("[\"')\\]}" + _CLOSING_QUOTES + r"]+?(?:\s+|(?=--)|$)", re.MULTILINE)
_NUMERIC = re.compile(r"^-?[.,]?\d[\d,.-]*\.?$")
_INITIAL = re.compile(r"[^\W\d]\.$")
_ELLIPSIS = re.compile(r"\.\.+$")


class _Token:
    __slots__ = ("text", "type", "sentbreak", "abbr", "ellipsis")

    def __init__(self, text: str):
        self.text = text
        self.type = _NUMERIC.sub("##number##", text.lower())
        self.sentbreak = self.abbr = self.ellipsis = False

    @property
    def type_no_period(self) -> str:
        return self.type[:-1] if len(self.type) > 1 and self.type.endswith(".") else self.type

    @property
    def type_no_sentperiod(self) -> str:
        return self.type_no_period if self.sentbreak else self.type


def _starts_sentence(tok: _Token) -> bool | None:
    """Punkt's orthographic heuristic: True / False / None (unknown)."""
    if tok.text in (";", ":", ",", ".", "!", "?"):
        return False
    flags = _ortho_flags(tok.type_no_sentperiod)
    if tok.text[0].isupper() and flags & _ORTHO_LC and not flags & _ORTHO_MID_UC:
        return True
    if tok.text[0].islower() and (flags & _ORTHO_UC or not flags & _ORTHO_BEG_LC):
        return False
    return None


def _annotate(tokens: list[_Token]) -> None:
    for tok in tokens:  # first pass: by type
        if tok.text in (".", "?", "!"):
            tok.sentbreak = True
        elif _ELLIPSIS.match(tok.text):
            tok.ellipsis = True
        elif tok.text.endswith(".") and not tok.text.endswith(".."):
            stem = tok.text[:-1].lower()
            if stem in _ABBREVIATIONS or stem.split("-")[-1] in _ABBREVIATIONS:
                tok.abbr = True
            else:
                tok.sentbreak = True
    for tok, nxt in zip(tokens, tokens[1:]):  # second pass: by the following token
        if not tok.text.endswith("."):
            continue
        typ, next_typ = tok.type_no_period, nxt.type_no_sentperiod
        initial = bool(_INITIAL.match(tok.text))
        if (typ, next_typ) in _COLLOCATIONS:
            tok.sentbreak, tok.abbr = False, True
            continue
        if (tok.abbr or tok.ellipsis) and not initial:
            if _starts_sentence(nxt) is True or (nxt.text[0].isupper() and next_typ in _SENT_STARTERS):
                tok.sentbreak = True
                continue
        if initial or typ == "##number##":
            starts = _starts_sentence(nxt)
            if starts is False or (starts is None and initial and nxt.text[0].isupper()
                                   and not _ortho_flags(next_typ) & _ORTHO_LC):
                tok.sentbreak, tok.abbr = False, True


def _context_breaks(context: str) -> bool:
    tokens = [_Token(t) for t in _PUNKT_TOKEN.findall(context)]
    _annotate(tokens)
    return any(tok.sentbreak for tok in tokens[:-1])


def _last_whitespace(text: str) -> int:
    return max(text.rfind(ch) for ch in string.whitespace)


def _end_contexts(text: str):
    """Candidate boundaries with their context (word before + end mark + what follows)."""
    prev_start = prev_stop = 0
    prev = None
    for match in _END_CONTEXT.finditer(text):
        ws = _last_whitespace(text[prev_stop:match.start()])
        start = ws + prev_stop + 1 if ws > 0 else prev_start
        if prev is not None and prev_stop <= start:
            yield prev, text[prev_start:prev_stop] + prev.group() + prev.group("after_tok")
        prev, prev_start, prev_stop = match, start, match.start()
    if prev is not None:
        yield prev, text[prev_start:prev_stop] + prev.group() + prev.group("after_tok")


def split_sentences(text: str) -> list[str]:
    """Sentences as NLTK's Punkt English tokenizer cuts them (see the module docstring)."""
    spans, last = [], 0
    for match, context in _end_contexts(text):
        if _context_breaks(context):
            spans.append((last, match.end()))
            last = match.start("next_tok") if match.group("next_tok") else match.end()
    spans.append((last, len(text.rstrip())))
    sentences, shift = [], 0
    for i, (start, stop) in enumerate(spans):
        start += shift
        if i + 1 < len(spans):
            nstart, nstop = spans[i + 1]
            moved = _REALIGN.match(text[nstart:nstop])
            if moved:
                sentences.append(text[start:nstart + len(moved.group(0).rstrip())])
                shift = moved.end()
                continue
            shift = 0
        if text[start:stop]:
            sentences.append(text[start:stop])
    return sentences


def count_sentences(text: str) -> int:
    return len(split_sentences(text))


_CONTRACTIONS = [re.compile(p, re.IGNORECASE) for p in (
    r"\b(can)(not)\b", r"\b(d)('ye)\b", r"\b(gim)(me)\b", r"\b(gon)(na)\b", r"\b(got)(ta)\b",
    r"\b(lem)(me)\b", r"\b(more)('n)\b", r"\b(wan)(na)(?=\s)", r" ('t)(is)\b", r" ('t)(was)\b")]


def _word_tokens(sentence: str) -> list[str]:
    """Tokens of one sentence as NLTK's word tokenizer cuts them, as far as letter case goes."""
    # opening quotes (a straight double quote that opens becomes ``, which is not a closer below)
    text = re.sub("([\u00ab\u201c\u2018\u201e]|`+)", r" \1 ", sentence)
    text = re.sub(r'^"', " `` ", text)
    text = re.sub(r"([ (\[{<])(\"|'')", r"\1 `` ", text)
    text = re.sub(r"(?<!\w)'(?!(?:re|ve|ll|m|t|s|d|n)\b)(?=\w)", "' ", text, flags=re.IGNORECASE)
    # punctuation: the sentence-final period, then separators
    text = re.sub("([^.])(\\.)([\\])}>\"'\u00bb\u201d\u2019 ]*)\\s*$", r"\1 \2 \3 ", text)
    text = re.sub(r"[:,](?!\d)", r" \g<0> ", text)
    text = re.sub("\\.{2,}|--|[;@#$%&?!*\\[\\](){}<>\u2012-\u2015]", r" \g<0> ", text)
    text = re.sub(r"([^'])' ", r"\1 ' ", text)
    # closing quotes, then clitics ('S, N'T, ...) and fused forms (CANNOT, GONNA, ...)
    text = re.sub("([\u00bb\u201d\u2019]|''|\")", r" \1 ", " " + text + " ")
    text = " " + " ".join(text.split()) + " "
    text = re.sub(r"([^' ])('[sS]|'[mM]|'[dD]|') ", r"\1 \2 ", text)
    text = re.sub(r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) ", r"\1 \2 ", text)
    for pattern in _CONTRACTIONS:
        text = pattern.sub(r" \1 \2 ", text)
    return text.split()


def count_capital_words(text: str) -> int:
    """IFEval's count of all-capital words (tokens of nltk.word_tokenize that are isupper())."""
    return sum(1 for sentence in split_sentences(text) for token in _word_tokens(sentence) if token.isupper())


# --- checkers (IFEval check_following semantics) -------------------------------------------------

def _compare(actual: int, relation: str, threshold: int) -> bool:
    return actual < threshold if relation == "less than" else actual >= threshold


def _detect_language(text: str) -> str | None:
    from langdetect import DetectorFactory, detect
    from langdetect.lang_detect_exception import LangDetectException

    DetectorFactory.seed = 0
    try:
        return detect(text)
    except LangDetectException:
        return None  # IFEval counts an undetectable text as following the instruction


def _keywords_existence(r, *, keywords):
    return all(re.search(k, r, flags=re.IGNORECASE) for k in keywords)


def _keywords_frequency(r, *, keyword, frequency, relation):
    return _compare(len(re.findall(keyword, r, flags=re.IGNORECASE)), relation, frequency)


def _forbidden_words(r, *, forbidden_words):
    return not any(re.search(r"\b" + w + r"\b", r, flags=re.IGNORECASE) for w in forbidden_words)


def _letter_frequency(r, *, letter, let_frequency, let_relation):
    return _compare(collections.Counter(r.lower())[letter], let_relation, let_frequency)


def _response_language(r, *, language):
    found = _detect_language(r)
    return found is None or found == language


def _number_sentences(r, *, num_sentences, relation):
    return _compare(count_sentences(r), relation, num_sentences)


def _number_paragraphs(r, *, num_paragraphs):
    parts = re.split(r"\s?\*\*\*\s?", r)
    count = len(parts)
    for i, part in enumerate(parts):
        if not part.strip():
            if 0 < i < len(parts) - 1:
                return False  # an empty paragraph between two dividers
            count -= 1
    return count == num_paragraphs


def _number_words(r, *, num_words, relation):
    return _compare(count_words(r), relation, num_words)


def _nth_paragraph_first_word(r, *, num_paragraphs, nth_paragraph, first_word):
    parts = r.split("\n\n")
    count = sum(1 for p in parts if p.strip())
    if nth_paragraph > count:
        return False
    paragraph = parts[nth_paragraph - 1].strip()
    if not paragraph:
        return False
    word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
    head = re.match(r"[^.,?!'\"]*", word).group(0).lower()
    return count == num_paragraphs and head == first_word


def _number_placeholders(r, *, num_placeholders):
    """IFEval: ``len(re.findall(r"\\[.*?\\]", r))``. Each match ends at the first ``]`` after a ``[``
    on its line, so a line's matches are the pieces between its ``]``s that hold a ``[``."""
    placeholders = sum("[" in piece for line in r.split("\n") for piece in line.split("]")[:-1])
    return placeholders >= num_placeholders


def _postscript(r, *, postscript_marker):
    """IFEval: ``re.findall(r"\\s*" + marker + r".*$", r.lower(), flags=re.MULTILINE)`` is not empty,
    with ``p\\.\\s?p\\.\\s?s`` for "P.P.S" and ``p\\.\\s?s\\.`` for "P.S.". ``\\s*`` may match
    nothing and ``.*$`` always matches, so the marker matches somewhere exactly when that does."""
    if postscript_marker == "P.P.S":
        marker = r"p\.\s?p\.\s?s"
    elif postscript_marker == "P.S.":
        marker = r"p\.\s?s\."
    else:
        marker = postscript_marker.lower()
    return re.search(marker, r.lower(), flags=re.MULTILINE) is not None


_NON_SPACE = re.compile(r"\S")


def _bullets(r: str, bullet: str) -> int:
    """IFEval's ``len(re.findall(r"^\\s*\\*[^\\*].*$", r, flags=re.MULTILINE))`` for ``*`` and
    ``len(re.findall(r"^\\s*-.*$", ...))`` for ``-``, in one pass. ``\\s*`` runs over line breaks,
    so from a line start a match needs the first non-space character to be the bullet (and, for
    ``*``, a character other than ``*`` after it, which may be a line break); every line start up
    to that character finds the same one, and a match ends at the end of the line after it."""
    count, start, after = 0, 0, 2 if bullet == "*" else 1
    while (found := _NON_SPACE.search(r, start)) is not None:
        first = found.start()
        if r[first] == bullet and (bullet == "-" or r[first + 1:first + 2] not in ("", "*")):
            count += 1
            end = r.find("\n", first + after)
        else:
            end = r.find("\n", first)
        if end < 0:
            break
        start = end + 1
    return count


def _number_bullet_lists(r, *, num_bullets):
    return _bullets(r, "*") + _bullets(r, "-") == num_bullets


def _constrained_response(r):
    r = r.strip()
    return any(option in r for option in _CONSTRAINED_OPTIONS)


def _number_highlighted_sections(r, *, num_highlights):
    single = [h for h in re.findall(r"\*[^\n\*]*\*", r) if h.strip("*").strip()]
    double = [h for h in re.findall(r"\*\*[^\n\*]*\*\*", r) if h[2:-2].strip()]
    return len(single) + len(double) >= num_highlights


def _multiple_sections(r, *, section_spliter, num_sections):
    return len(re.split(r"\s?" + section_spliter + r"\s?\d+\s?", r)) - 1 >= num_sections


def _json_format(r):
    text = r.strip()
    for fence in ("```json", "```Json", "```JSON", "```"):  # one after the other, as IFEval does
        text = text.removeprefix(fence)
    text = text.removesuffix("```").strip()
    try:
        loads(text)  # JSON nested too deeply is not JSON here (json.loads raises RecursionError)
    except ValueError:
        return False
    return True


def _title(r):
    """IFEval: any ``t.lstrip("<").rstrip(">").strip()`` of ``re.findall(r"<<[^\\n]+>>", r)``. A line
    has at most one match: from its first ``<<`` to its last ``>>``, if that one comes later (one
    that does not leaves nothing once the brackets are stripped, as does ``<<>>``)."""
    for line in r.split("\n"):
        start, end = line.find("<<"), line.rfind(">>")
        if start >= 0 and line[start:end + 2].lstrip("<").rstrip(">").strip():
            return True
    return False


def _two_responses(r):
    kept = []
    parts = r.split("******")
    for i, part in enumerate(parts):
        if part.strip():
            kept.append(part)
        elif 0 < i < len(parts) - 1:
            return False
    return len(kept) == 2 and kept[0].strip() != kept[1].strip()


def _repeat_prompt(r, *, prompt_to_repeat):
    return r.strip().lower().startswith(prompt_to_repeat.strip().lower())


def _end_checker(r, *, end_phrase):
    return r.strip().strip('"').lower().endswith(end_phrase.strip().lower())


def _quotation(r):
    r = r.strip()
    return len(r) > 1 and r[0] == '"' and r[-1] == '"'


def _capital_word_frequency(r, *, capital_frequency, capital_relation):
    return _compare(count_capital_words(r), capital_relation, capital_frequency)


def _english_capital(r):
    return r.isupper() and _detect_language(r) in ("en", None)


def _english_lowercase(r):
    return r.islower() and _detect_language(r) in ("en", None)


def _no_comma(r):
    return "," not in r


# Kinds of keyword argument: what each accepts.
KINDS = {
    "count": "an integer >= 0",
    "index": "an integer >= 1",
    "relation": f"one of {RELATIONS}",
    "text": "a non-empty string",
    "pattern": "a non-empty string, used as a regular expression",
    "patterns": "a non-empty list of non-empty strings, used as regular expressions",
    "letter": "a single letter",
    "language": f"an IFEval language code ({', '.join(_LANGUAGE_NAMES)})",
}

CONSTRAINTS: dict[str, tuple[Callable[..., bool], dict[str, str]]] = {
    "keywords:existence": (_keywords_existence, {"keywords": "patterns"}),
    "keywords:frequency": (_keywords_frequency, {"keyword": "pattern", "frequency": "count",
                                                 "relation": "relation"}),
    "keywords:forbidden_words": (_forbidden_words, {"forbidden_words": "patterns"}),
    "keywords:letter_frequency": (_letter_frequency, {"letter": "letter", "let_frequency": "count",
                                                      "let_relation": "relation"}),
    "language:response_language": (_response_language, {"language": "language"}),
    "length_constraints:number_sentences": (_number_sentences, {"num_sentences": "count",
                                                                "relation": "relation"}),
    "length_constraints:number_paragraphs": (_number_paragraphs, {"num_paragraphs": "count"}),
    "length_constraints:number_words": (_number_words, {"num_words": "count", "relation": "relation"}),
    "length_constraints:nth_paragraph_first_word": (
        _nth_paragraph_first_word, {"num_paragraphs": "index", "nth_paragraph": "index",
                                    "first_word": "text"}),
    "detectable_content:number_placeholders": (_number_placeholders, {"num_placeholders": "count"}),
    "detectable_content:postscript": (_postscript, {"postscript_marker": "pattern"}),
    "detectable_format:number_bullet_lists": (_number_bullet_lists, {"num_bullets": "count"}),
    "detectable_format:constrained_response": (_constrained_response, {}),
    "detectable_format:number_highlighted_sections": (_number_highlighted_sections,
                                                      {"num_highlights": "count"}),
    "detectable_format:multiple_sections": (_multiple_sections, {"section_spliter": "pattern",
                                                                 "num_sections": "count"}),
    "detectable_format:json_format": (_json_format, {}),
    "detectable_format:title": (_title, {}),
    "combination:two_responses": (_two_responses, {}),
    "combination:repeat_prompt": (_repeat_prompt, {"prompt_to_repeat": "text"}),
    "startend:end_checker": (_end_checker, {"end_phrase": "text"}),
    "startend:quotation": (_quotation, {}),
    "change_case:capital_word_frequency": (_capital_word_frequency, {"capital_frequency": "count",
                                                                     "capital_relation": "relation"}),
    "change_case:english_capital": (_english_capital, {}),
    "change_case:english_lowercase": (_english_lowercase, {}),
    "punctuation:no_comma": (_no_comma, {}),
}


# --- validation ---------------------------------------------------------------------------------

def _bad(cid: str, message: str) -> ValueError:
    return ValueError(f"constraint {cid!r}: {message}")


def _regex(cid: str, name: str, value: str) -> None:
    try:
        re.compile(value)
    except re.error as exc:
        raise _bad(cid, f"kwarg {name!r}={value!r} is not a valid regular expression ({exc})") from None


def _coerce(cid: str, name: str, kind: str, value: Any) -> Any:
    wrong = _bad(cid, f"kwarg {name!r} must be {KINDS[kind]}, got {value!r}")
    if kind in ("count", "index"):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if kind == "index" else 0):
            raise wrong
        return value
    if kind == "relation":
        if value not in RELATIONS:
            raise wrong
        return value
    if kind == "language":
        if value not in _LANGUAGE_NAMES:
            raise wrong
        return value
    if kind == "patterns":
        if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value \
                or not all(isinstance(v, str) and v for v in value):
            raise wrong
        for v in value:
            _regex(cid, name, v)
        return list(value)
    if not isinstance(value, str) or not value.strip():
        raise wrong
    if kind == "letter":
        if len(value) != 1 or not value.isalpha():
            raise wrong
        return value.lower()
    if kind == "pattern":
        value = value.strip()
        _regex(cid, name, value)
    return value


def _normalize(constraint: Any) -> tuple[str, dict[str, Any]]:
    """Validated (id, kwargs) with IFEval's own argument clean-up applied."""
    if not isinstance(constraint, dict) or "id" not in constraint:
        raise ValueError(f"a constraint is a dict with 'id' and 'kwargs', got {constraint!r}")
    cid = constraint["id"]
    if cid not in CONSTRAINTS:
        raise ValueError(f"unknown constraint id {cid!r}")
    raw = constraint.get("kwargs") or {}
    if not isinstance(raw, dict):
        raise _bad(cid, f"kwargs must be a dict, got {raw!r}")
    spec = CONSTRAINTS[cid][1]
    raw = {k: v for k, v in raw.items() if v is not None}
    unknown = sorted(set(raw) - set(spec))
    if unknown:
        raise _bad(cid, f"unknown kwargs {unknown}; expected {sorted(spec)}")
    missing = sorted(set(spec) - set(raw))
    if missing:
        raise _bad(cid, f"missing kwargs {missing}")
    kwargs = {name: _coerce(cid, name, kind, raw[name]) for name, kind in spec.items()}
    if cid == "length_constraints:nth_paragraph_first_word":
        if kwargs["nth_paragraph"] > kwargs["num_paragraphs"]:
            raise _bad(cid, "nth_paragraph is larger than num_paragraphs")
        kwargs["first_word"] = kwargs["first_word"].lower()
    if cid == "startend:end_checker":
        kwargs["end_phrase"] = kwargs["end_phrase"].strip()
    return cid, kwargs


def to_ifeval(constraints: list[dict]) -> dict[str, list]:
    """The `instruction_id_list` and `kwargs` columns IFEval's evaluation reads."""
    pairs = [_normalize(c) for c in constraints]
    return {"instruction_id_list": [cid for cid, _ in pairs], "kwargs": [kw for _, kw in pairs]}


def _loose_variants(response: str) -> list[str]:
    lines = response.split("\n")
    cut = ["\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    return [response, response.replace("*", ""), *cut, *(c.replace("*", "") for c in cut)]


# Plurals that are not the word + s/es, by the ending they replace (the longest that fits: "aigua"
# ends in "gua", not "a"), as the sampler's words take them (_KEYWORDS is closed; a test holds each
# word's plural): city -> cities; Catalan cultura -> cultures, música -> músiques, aigua -> aigües,
# camí -> camins, tradició -> tradicions; Spanish jardín -> jardines, tradición -> tradiciones. A
# keyword comes without its language: a Spanish word in -a also takes the Catalan form, a non-word.
_PLURAL_ENDINGS = {"y": "ies", "gua": "gües", "ca": "ques", "a": "es", "ón": "ones", "ín": "ines",
                   "ó": "ons", "í": "ins"}
_PLURAL_ENDING = re.compile(r"(?<![aeiou])y$|gua$|ca$|a$|ón$|ín$|ó$|í$", flags=re.IGNORECASE)


def _as_word(keyword: str) -> str:
    # its plural too ("rivers", "ciudades", "cities"): the inflected word is still the word asked for
    ending = _PLURAL_ENDING.search(keyword)
    plural = f"|{keyword[:ending.start()]}{_PLURAL_ENDINGS[ending.group().lower()]}" if ending else ""
    return rf"\b(?:(?:{keyword})(?:e?s)?{plural})\b"


def _keywords_existence_as_words(r, *, keywords):
    return all(re.search(_as_word(k), r, flags=re.IGNORECASE) for k in keywords)


def _keywords_frequency_as_words(r, *, keyword, frequency, relation):
    return _compare(len(re.findall(_as_word(keyword), r, flags=re.IGNORECASE)), relation, frequency)


def _forbidden_words_as_words(r, *, forbidden_words):
    return not any(re.search(_as_word(w), r, flags=re.IGNORECASE) for w in forbidden_words)


# IFEval finds keywords inside other words ("city" in "electricity", «agua» in "Nicaragua"): what a
# reader asked for the word would not accept. A response is held to IFEval's rule and to the whole
# word or its plural, so it holds for IFEval too; a plural without the word in it ("cities") counts
# here only: against "less than" (and a ban), never towards "at least" alone, which IFEval refuses.
# A forbidden word is banned in the same forms ("ciudades" breaks a ban on «ciudad», as it meets
# keywords:existence for «ciudad»); those are more than IFEval's \b word\b, so a response free
# of them is free for IFEval too.
_AS_WORDS = {"keywords:existence": _keywords_existence_as_words,
             "keywords:frequency": _keywords_frequency_as_words,
             "keywords:forbidden_words": _forbidden_words_as_words}


def verify(response: str, constraints: list[dict], *, loose: bool = False, whole_words: bool = False) -> list[bool]:
    """One verdict per constraint, as IFEval's strict (or loose) evaluation gives it; with
    `whole_words`, keywords must also be found as whole words (a generated response is held to that)."""
    if not isinstance(response, str):
        raise ValueError(f"response must be a string, got {type(response).__name__}")
    checks = [_normalize(c) for c in constraints]  # validate everything before checking anything
    variants = _loose_variants(response) if loose else [response]
    return [any(v.strip() and CONSTRAINTS[cid][0](v, **kwargs)
                and (not whole_words or cid not in _AS_WORDS or _AS_WORDS[cid](v, **kwargs)) for v in variants)
            for cid, kwargs in checks]


# --- descriptions -------------------------------------------------------------------------------

_REL = {"es": {"less than": "menos de", "at least": "al menos"},
        "ca": {"less than": "menys de", "at least": "almenys"}}
_TIMES = {"es": ("vez", "veces"), "ca": ("vegada", "vegades")}


def _quoted(words: list[str]) -> str:
    return ", ".join(f"«{w}»" for w in words)


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _describe_en(cid: str, k: dict) -> str:
    if cid == "keywords:existence":
        return f"Include keywords {sorted(k['keywords'])} in the response."
    if cid == "keywords:frequency":
        return (f"In your response, the word {k['keyword']} should appear {k['relation']} "
                f"{k['frequency']} times.")
    if cid == "keywords:forbidden_words":
        return f"Do not include keywords {sorted(set(k['forbidden_words']))} in the response."
    if cid == "keywords:letter_frequency":
        return (f"In your response, the letter {k['letter']} should appear {k['let_relation']} "
                f"{k['let_frequency']} times.")
    if cid == "language:response_language":
        return (f"Your ENTIRE response should be in {_LANGUAGE_NAMES[k['language']][0]} language, "
                "no other language is allowed.")
    if cid == "length_constraints:number_sentences":
        return f"Your response should contain {k['relation']} {k['num_sentences']} sentences."
    if cid == "length_constraints:number_paragraphs":
        return (f"There should be {k['num_paragraphs']} paragraphs. "
                "Paragraphs are separated with the markdown divider: ***")
    if cid == "length_constraints:number_words":
        return f"Answer with {k['relation']} {k['num_words']} words."
    if cid == "length_constraints:nth_paragraph_first_word":
        return (f"There should be {k['num_paragraphs']} paragraphs. Paragraphs and only paragraphs "
                "are separated with each other by two new lines as if it was '\\n\\n' in python. "
                f"Paragraph {k['nth_paragraph']} must start with word {k['first_word']}.")
    if cid == "detectable_content:number_placeholders":
        return (f"The response must contain at least {k['num_placeholders']} placeholders "
                "represented by square brackets, such as [address].")
    if cid == "detectable_content:postscript":
        return ("At the end of your response, please explicitly add a postscript starting with "
                f"{k['postscript_marker']}")
    if cid == "detectable_format:number_bullet_lists":
        return (f"Your answer must contain exactly {k['num_bullets']} bullet points. Use the markdown "
                "bullet points such as:\n* This is point 1. \n* This is point 2")
    if cid == "detectable_format:constrained_response":
        return f"Answer with one of the following options: {_CONSTRAINED_OPTIONS}"
    if cid == "detectable_format:number_highlighted_sections":
        return (f"Highlight at least {k['num_highlights']} sections in your answer with markdown, "
                "i.e. *highlighted section*.")
    if cid == "detectable_format:multiple_sections":
        s = k["section_spliter"]
        return (f"Your response must have {k['num_sections']} sections. Mark the beginning of each "
                f"section with {s} X, such as:\n{s} 1\n[content of section 1]\n{s} 2\n"
                "[content of section 2]")
    if cid == "detectable_format:json_format":
        return "Entire output should be wrapped in JSON format. You can use markdown ticks such as ```."
    if cid == "detectable_format:title":
        return "Your answer must contain a title, wrapped in double angular brackets, such as <<poem of joy>>."
    if cid == "combination:two_responses":
        return ("Give two different responses. Responses and only responses should be separated "
                "by 6 asterisk symbols: ******.")
    if cid == "combination:repeat_prompt":
        return ("First repeat the request word for word without change, then give your answer "
                "(1. do not say any words or characters before repeating the request; 2. the "
                "request you need to repeat does not include this sentence)")
    if cid == "startend:end_checker":
        return (f"Finish your response with this exact phrase {k['end_phrase']}. "
                "No other words should follow this phrase.")
    if cid == "startend:quotation":
        return "Wrap your entire response with double quotation marks."
    if cid == "change_case:capital_word_frequency":
        return (f"In your response, words with all capital letters should appear "
                f"{k['capital_relation']} {k['capital_frequency']} times.")
    if cid == "change_case:english_capital":
        return "Your entire response should be in English, and in all capital letters."
    if cid == "change_case:english_lowercase":
        return ("Your entire response should be in English, and in all lowercase letters. "
                "No capital letters are allowed.")
    return "In your entire response, refrain from the use of any commas."  # punctuation:no_comma


def _describe_es(cid: str, k: dict) -> str:
    rel, times = _REL["es"], _TIMES["es"]
    if cid == "keywords:existence":
        return f"Incluye las palabras clave {_quoted(sorted(k['keywords']))} en la respuesta."
    if cid == "keywords:frequency":
        return (f"En tu respuesta, la palabra «{k['keyword']}» debe aparecer {rel[k['relation']]} "
                f"{_plural(k['frequency'], *times)}.")
    if cid == "keywords:forbidden_words":
        return f"No incluyas las palabras clave {_quoted(sorted(set(k['forbidden_words'])))} en la respuesta."
    if cid == "keywords:letter_frequency":
        return (f"En tu respuesta, la letra «{k['letter']}» debe aparecer {rel[k['let_relation']]} "
                f"{_plural(k['let_frequency'], *times)}.")
    if cid == "language:response_language":
        return (f"Toda tu respuesta debe estar en {_LANGUAGE_NAMES[k['language']][1]}; no se permite "
                "ningún otro idioma.")
    if cid == "length_constraints:number_sentences":
        return (f"Tu respuesta debe contener {rel[k['relation']]} "
                f"{_plural(k['num_sentences'], 'oración', 'oraciones')}.")
    if cid == "length_constraints:number_paragraphs":
        return (f"Debe haber {_plural(k['num_paragraphs'], 'párrafo', 'párrafos')}. Separa los "
                "párrafos con el divisor de markdown: ***")
    if cid == "length_constraints:number_words":
        return f"Responde con {rel[k['relation']]} {_plural(k['num_words'], 'palabra', 'palabras')}."
    if cid == "length_constraints:nth_paragraph_first_word":
        return (f"Debe haber {_plural(k['num_paragraphs'], 'párrafo', 'párrafos')}. Los párrafos, y solo "
                "los párrafos, se separan entre sí con dos saltos de línea, como si fuera '\\n\\n' "
                f"en Python. El párrafo {k['nth_paragraph']} debe empezar con la palabra "
                f"{k['first_word']}.")
    if cid == "detectable_content:number_placeholders":
        return (f"La respuesta debe contener al menos {k['num_placeholders']} marcadores de posición "
                "entre corchetes, como [dirección].")
    if cid == "detectable_content:postscript":
        return ("Al final de tu respuesta, añade explícitamente una posdata que empiece por "
                f"{k['postscript_marker']}")
    if cid == "detectable_format:number_bullet_lists":
        return (f"Tu respuesta debe contener exactamente {_plural(k['num_bullets'], 'viñeta', 'viñetas')}. "
                "Usa viñetas de markdown como:\n* Este es el punto 1. \n* Este es el punto 2")
    if cid == "detectable_format:constrained_response":
        return f"Responde con una de las siguientes opciones, en inglés y tal cual: {_CONSTRAINED_OPTIONS}"
    if cid == "detectable_format:number_highlighted_sections":
        return (f"Resalta al menos {_plural(k['num_highlights'], 'sección', 'secciones')} de tu "
                "respuesta con markdown, por ejemplo *sección resaltada*.")
    if cid == "detectable_format:multiple_sections":
        s = k["section_spliter"]
        return (f"Tu respuesta debe tener {_plural(k['num_sections'], 'sección', 'secciones')}. Marca "
                f"el inicio de cada sección con {s} X, por ejemplo:\n{s} 1\n[contenido de la "
                f"sección 1]\n{s} 2\n[contenido de la sección 2]")
    if cid == "detectable_format:json_format":
        return "Toda la salida debe estar en formato JSON. Puedes usar marcas de markdown como ```."
    if cid == "detectable_format:title":
        return ("Tu respuesta debe incluir un título entre dobles corchetes angulares, como "
                "<<poema de alegría>>.")
    if cid == "combination:two_responses":
        return ("Da dos respuestas diferentes. Separa las respuestas, y solo las respuestas, con "
                "6 asteriscos: ******.")
    if cid == "combination:repeat_prompt":
        return ("Primero repite la petición palabra por palabra, sin cambios, y después da tu "
                "respuesta (1. no digas ninguna palabra ni carácter antes de repetir la petición; "
                "2. la petición que debes repetir no incluye esta frase)")
    if cid == "startend:end_checker":
        return (f"Termina tu respuesta con esta frase exacta: {k['end_phrase']}. Ninguna otra "
                "palabra debe seguir a esta frase.")
    if cid == "startend:quotation":
        return 'Envuelve toda tu respuesta entre comillas dobles (").'
    if cid == "change_case:capital_word_frequency":
        return (f"En tu respuesta, las palabras escritas enteramente en mayúsculas deben aparecer "
                f"{rel[k['capital_relation']]} {_plural(k['capital_frequency'], *times)}.")
    if cid == "change_case:english_capital":
        return "Toda tu respuesta debe estar en inglés y en mayúsculas."
    if cid == "change_case:english_lowercase":
        return "Toda tu respuesta debe estar en inglés y en minúsculas. No se permiten mayúsculas."
    return "En toda tu respuesta, no uses ninguna coma."


def _describe_ca(cid: str, k: dict) -> str:
    rel, times = _REL["ca"], _TIMES["ca"]
    if cid == "keywords:existence":
        return f"Inclou les paraules clau {_quoted(sorted(k['keywords']))} a la resposta."
    if cid == "keywords:frequency":
        return (f"A la teva resposta, la paraula «{k['keyword']}» ha d'aparèixer {rel[k['relation']]} "
                f"{_plural(k['frequency'], *times)}.")
    if cid == "keywords:forbidden_words":
        return f"No incloguis les paraules clau {_quoted(sorted(set(k['forbidden_words'])))} a la resposta."
    if cid == "keywords:letter_frequency":
        return (f"A la teva resposta, la lletra «{k['letter']}» ha d'aparèixer {rel[k['let_relation']]} "
                f"{_plural(k['let_frequency'], *times)}.")
    if cid == "language:response_language":
        return (f"Tota la teva resposta ha d'estar en {_LANGUAGE_NAMES[k['language']][2]}; no es permet "
                "cap altra llengua.")
    if cid == "length_constraints:number_sentences":
        return (f"La teva resposta ha de contenir {rel[k['relation']]} "
                f"{_plural(k['num_sentences'], 'frase', 'frases')}.")
    if cid == "length_constraints:number_paragraphs":
        return (f"Hi ha d'haver {_plural(k['num_paragraphs'], 'paràgraf', 'paràgrafs')}. Separa els "
                "paràgrafs amb el divisor de markdown: ***")
    if cid == "length_constraints:number_words":
        return f"Respon amb {rel[k['relation']]} {_plural(k['num_words'], 'paraula', 'paraules')}."
    if cid == "length_constraints:nth_paragraph_first_word":
        return (f"Hi ha d'haver {_plural(k['num_paragraphs'], 'paràgraf', 'paràgrafs')}. Els paràgrafs, "
                "i només els paràgrafs, se separen entre ells amb dos salts de línia, com si fos "
                f"'\\n\\n' en Python. El paràgraf {k['nth_paragraph']} ha de començar amb la paraula "
                f"{k['first_word']}.")
    if cid == "detectable_content:number_placeholders":
        return (f"La resposta ha de contenir almenys {k['num_placeholders']} marcadors de posició "
                "entre claudàtors, com ara [adreça].")
    if cid == "detectable_content:postscript":
        return ("Al final de la teva resposta, afegeix explícitament una postdata que comenci amb "
                f"{k['postscript_marker']}")
    if cid == "detectable_format:number_bullet_lists":
        return (f"La teva resposta ha de contenir exactament "
                f"{_plural(k['num_bullets'], 'vinyeta', 'vinyetes')}. Fes servir vinyetes de markdown "
                "com ara:\n* Aquest és el punt 1. \n* Aquest és el punt 2")
    if cid == "detectable_format:constrained_response":
        return f"Respon amb una de les opcions següents, en anglès i tal com són: {_CONSTRAINED_OPTIONS}"
    if cid == "detectable_format:number_highlighted_sections":
        return (f"Destaca almenys {_plural(k['num_highlights'], 'secció', 'seccions')} de la teva "
                "resposta amb markdown, per exemple *secció destacada*.")
    if cid == "detectable_format:multiple_sections":
        s = k["section_spliter"]
        return (f"La teva resposta ha de tenir {_plural(k['num_sections'], 'secció', 'seccions')}. "
                f"Marca l'inici de cada secció amb {s} X, per exemple:\n{s} 1\n[contingut de la "
                f"secció 1]\n{s} 2\n[contingut de la secció 2]")
    if cid == "detectable_format:json_format":
        return "Tota la sortida ha d'estar en format JSON. Pots fer servir marques de markdown com ara ```."
    if cid == "detectable_format:title":
        return ("La teva resposta ha d'incloure un títol entre dobles parèntesis angulars, com ara "
                "<<poema d'alegria>>.")
    if cid == "combination:two_responses":
        return ("Dona dues respostes diferents. Separa les respostes, i només les respostes, amb "
                "6 asteriscs: ******.")
    if cid == "combination:repeat_prompt":
        return ("Primer repeteix la petició paraula per paraula, sense canvis, i després dona la "
                "teva resposta (1. no diguis cap paraula ni caràcter abans de repetir la petició; "
                "2. la petició que has de repetir no inclou aquesta frase)")
    if cid == "startend:end_checker":
        return (f"Acaba la teva resposta amb aquesta frase exacta: {k['end_phrase']}. Cap altra "
                "paraula no ha de seguir aquesta frase.")
    if cid == "startend:quotation":
        return 'Posa tota la teva resposta entre cometes dobles (").'
    if cid == "change_case:capital_word_frequency":
        return (f"A la teva resposta, les paraules escrites completament en majúscules han "
                f"d'aparèixer {rel[k['capital_relation']]} {_plural(k['capital_frequency'], *times)}.")
    if cid == "change_case:english_capital":
        return "Tota la teva resposta ha d'estar en anglès i en majúscules."
    if cid == "change_case:english_lowercase":
        return "Tota la teva resposta ha d'estar en anglès i en minúscules. No s'hi permeten majúscules."
    return "En tota la teva resposta, no facis servir cap coma."


_DESCRIBERS = {"en": _describe_en, "es": _describe_es, "ca": _describe_ca}


def describe(constraint: dict, language: str = "en") -> str:
    """The instruction text for a user turn (IFEval's English wording; es and ca translations)."""
    if language not in _DESCRIBERS:
        raise ValueError(f"no wording for language {language!r}; have {', '.join(LANGUAGES)}")
    cid, kwargs = _normalize(constraint)
    return _DESCRIBERS[language](cid, kwargs)


# --- conflicts and sampling ---------------------------------------------------------------------

def _conflict_table() -> dict[str, frozenset[str]]:
    """IFEval's INSTRUCTION_CONFLICTS, made symmetric and reflexive as its conflict_make does."""
    every = set(CONSTRAINTS)
    table = {
        "keywords:existence": set(), "keywords:frequency": set(), "keywords:forbidden_words": set(),
        "keywords:letter_frequency": set(),
        "language:response_language": {
            "detectable_format:multiple_sections", "keywords:existence", "keywords:frequency",
            "keywords:forbidden_words", "startend:end_checker", "change_case:english_capital",
            "change_case:english_lowercase"},
        "length_constraints:number_sentences": set(),
        "length_constraints:number_paragraphs": {"length_constraints:nth_paragraph_first_word",
                                                 "length_constraints:number_sentences"},
        "length_constraints:number_words": set(),
        "length_constraints:nth_paragraph_first_word": {"length_constraints:number_paragraphs"},
        "detectable_content:number_placeholders": set(), "detectable_content:postscript": set(),
        "detectable_format:number_bullet_lists": set(),
        "detectable_format:constrained_response": set(every),
        "detectable_format:number_highlighted_sections": set(),
        "detectable_format:multiple_sections": {"language:response_language",
                                                "detectable_format:number_highlighted_sections"},
        "detectable_format:json_format": every - {"keywords:forbidden_words", "keywords:existence"},
        "detectable_format:title": set(),
        "combination:two_responses": every - {
            "keywords:forbidden_words", "keywords:existence", "language:response_language",
            "detectable_format:title", "punctuation:no_comma"},
        "combination:repeat_prompt": every - {"keywords:existence", "detectable_format:title",
                                              "punctuation:no_comma"},
        "startend:end_checker": set(),
        "change_case:capital_word_frequency": {"change_case:english_lowercase",
                                               "change_case:english_capital"},
        "change_case:english_capital": set(),
        "change_case:english_lowercase": {"change_case:english_capital"},
        "punctuation:no_comma": set(),
        "startend:quotation": {"detectable_format:title"},
    }
    for key in list(table):
        table[key].add(key)
        for other in table[key]:
            table[other].add(key)
    return {key: frozenset(value) for key, value in table.items()}


CONFLICTS = _conflict_table()

# Pairs IFEval allows but whose joint demands trip over its own checkers (sampling avoids them).
EXTRA_CONFLICTS = frozenset(frozenset(pair) for pair in (
    ("change_case:english_lowercase", "detectable_format:multiple_sections"),  # "Section" is capitalised
    ("change_case:english_capital", "detectable_format:multiple_sections"),
    ("change_case:english_lowercase", "detectable_content:postscript"),        # "P.S." is capitalised
    ("change_case:english_lowercase", "startend:end_checker"),
    ("change_case:english_capital", "startend:end_checker"),
    ("length_constraints:nth_paragraph_first_word", "detectable_format:multiple_sections"),
    ("length_constraints:nth_paragraph_first_word", "detectable_format:title"),
))


def _conflicting(a: str, b: str) -> bool:
    return b in CONFLICTS[a] or frozenset((a, b)) in EXTRA_CONFLICTS


_KEYWORDS = {
    "en": """balance bridge city community culture energy engine family future garden history
             journey landscape language market memory mountain music nature opportunity problem
             project quality river science season strategy system tradition value village water
             window""".split(),
    "es": """agua calidad camino ciencia ciudad comunidad cultura energía equilibrio equipo
             estrategia familia futuro historia jardín lenguaje libro memoria mercado montaña
             música naturaleza oportunidad paisaje problema proyecto puente tradición valor
             ventana viaje""".split(),
    "ca": """aigua camí ciutat ciència comunitat cultura energia equilibri equip estratègia
             família finestra futur història jardí llenguatge llibre memòria mercat muntanya
             música natura oportunitat paisatge pont problema projecte qualitat tradició valor
             viatge""".split(),
}
_END_PHRASES = {
    "en": ["Any other questions?", "Is there anything else I can help with?"],
    "es": ["¿Tienes alguna otra pregunta?", "¿Hay algo más en lo que pueda ayudarte?"],
    "ca": ["Tens cap altra pregunta?", "Hi ha res més en què et pugui ajudar?"],
}
_SPLITERS = {"en": ["Section", "SECTION"], "es": ["Sección", "SECCIÓN"], "ca": ["Secció", "SECCIÓ"]}
_COMMON_LETTERS = {"en": "aeinorst", "es": "aeilnorst", "ca": "aeilnorst"}
_RARE_LETTERS = {"en": "jqxz", "es": "kwx", "ca": "kwy"}
_NOT_SAMPLED = {"language:response_language"}  # asks for a language other than the conversation's
_ENGLISH_ONLY = {"change_case:english_capital", "change_case:english_lowercase",
                 "detectable_format:constrained_response"}


def _sample_kwargs(cid: str, rng: random.Random, language: str, words: list[str],
                   prompt: str | None) -> dict:
    relation = rng.choice(RELATIONS)
    if cid == "keywords:existence":
        return {"keywords": [words.pop(), words.pop()]}
    if cid == "keywords:frequency":
        freq = rng.randint(1, 3) if relation == "at least" else rng.randint(2, 4)
        return {"keyword": words.pop(), "frequency": freq, "relation": relation}
    if cid == "keywords:forbidden_words":
        return {"forbidden_words": [words.pop(), words.pop()]}
    if cid == "keywords:letter_frequency":
        if relation == "at least":
            return {"letter": rng.choice(_COMMON_LETTERS[language]), "let_frequency": rng.randint(5, 20),
                    "let_relation": relation}
        return {"letter": rng.choice(_RARE_LETTERS[language]), "let_frequency": rng.randint(2, 6),
                "let_relation": relation}
    if cid == "length_constraints:number_sentences":
        n = rng.randint(3, 12) if relation == "less than" else rng.randint(2, 10)
        return {"num_sentences": n, "relation": relation}
    if cid == "length_constraints:number_paragraphs":
        return {"num_paragraphs": rng.randint(2, 5)}
    if cid == "length_constraints:number_words":
        n = rng.randrange(50, 401, 25) if relation == "less than" else rng.randrange(50, 301, 25)
        return {"num_words": n, "relation": relation}
    if cid == "length_constraints:nth_paragraph_first_word":
        total = rng.randint(2, 5)
        return {"num_paragraphs": total, "nth_paragraph": rng.randint(1, total), "first_word": words.pop()}
    if cid == "detectable_content:number_placeholders":
        return {"num_placeholders": rng.randint(1, 4)}
    if cid == "detectable_content:postscript":
        return {"postscript_marker": rng.choice(["P.S.", "P.P.S"])}
    if cid == "detectable_format:number_bullet_lists":
        return {"num_bullets": rng.randint(2, 6)}
    if cid == "detectable_format:number_highlighted_sections":
        return {"num_highlights": rng.randint(1, 4)}
    if cid == "detectable_format:multiple_sections":
        return {"section_spliter": rng.choice(_SPLITERS[language]), "num_sections": rng.randint(2, 5)}
    if cid == "combination:repeat_prompt":
        return {"prompt_to_repeat": prompt}
    if cid == "startend:end_checker":
        return {"end_phrase": rng.choice(_END_PHRASES[language])}
    if cid == "change_case:capital_word_frequency":
        n = rng.randint(2, 10) if relation == "at least" else rng.randint(6, 15)
        return {"capital_frequency": n, "capital_relation": relation}
    return {}


def _coherent(picked: list[dict]) -> bool:
    """Numbers that can be met together (IFEval does not check this)."""
    k = {c["id"].split(":")[1]: c["kwargs"] for c in picked}

    def bound(name: str, number: str, relation: str = "relation") -> tuple[int | None, int | None]:
        if name not in k:
            return None, None
        value = k[name][number]
        return (value, None) if k[name][relation] == "at least" else (None, value - 1)

    words_lo, words_hi = bound("number_words", "num_words")
    sents_lo, sents_hi = bound("number_sentences", "num_sentences")
    caps_lo = bound("capital_word_frequency", "capital_frequency", "capital_relation")[0]
    blocks = max(k.get("number_paragraphs", {}).get("num_paragraphs", 1),
                 k.get("nth_paragraph_first_word", {}).get("num_paragraphs", 1),
                 k.get("multiple_sections", {}).get("num_sections", 1))
    bullets = k.get("number_bullet_lists", {}).get("num_bullets", 0)
    if words_hi is not None and (words_hi < 25 * blocks + 8 * bullets or words_hi < 12 * (sents_lo or 0)
                                 or words_hi < 4 * (caps_lo or 0)):
        return False
    if sents_hi is not None and (sents_hi < blocks or (words_lo or 0) > 30 * sents_hi):
        return False
    # Text the response must contain verbatim must not break a "less than" count or a ban.
    fixed = [k.get("end_checker", {}).get("end_phrase", ""), k.get("repeat_prompt", {}).get("prompt_to_repeat", "")]
    if "multiple_sections" in k:
        fixed += [k["multiple_sections"]["section_spliter"]] * k["multiple_sections"]["num_sections"]
    if "postscript" in k:
        fixed.append(k["postscript"]["postscript_marker"])
    fixed = " ".join(fixed)
    required = " ".join([fixed, *k.get("existence", {}).get("keywords", []),
                         k.get("nth_paragraph_first_word", {}).get("first_word", "")])
    if k.get("frequency", {}).get("relation") == "at least":
        required += (" " + k["frequency"]["keyword"]) * k["frequency"]["frequency"]
    letter = k.get("letter_frequency")
    if letter and letter["let_relation"] == "less than" \
            and required.lower().count(letter["letter"]) >= letter["let_frequency"] - 1:
        return False
    caps = k.get("capital_word_frequency")
    if caps and caps["capital_relation"] == "less than" \
            and count_capital_words(required) + 2 >= caps["capital_frequency"]:
        return False
    if "no_comma" in k and "," in fixed:
        return False
    # the ban as a generated row is held to it (verify(..., whole_words=True))
    banned = k.get("forbidden_words", {}).get("forbidden_words", [])
    return _forbidden_words_as_words(fixed, forbidden_words=banned)


def sample_constraints(rng: random.Random, n: int, language: str = "en", *,
                       prompt: str | None = None) -> list[dict]:
    """n mutually compatible constraints with sensible kwargs; deterministic for a seeded rng.

    `combination:repeat_prompt` is drawn only when `prompt` (the request to repeat) is given;
    `language:response_language` is never drawn, and neither are the constraints that demand
    English text or English phrases when `language` is not "en".
    """
    if language not in LANGUAGES:
        raise ValueError(f"no constraints for language {language!r}; have {', '.join(LANGUAGES)}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    pool = sorted(cid for cid in CONSTRAINTS if cid not in _NOT_SAMPLED
                  and (language == "en" or cid not in _ENGLISH_ONLY)
                  and (prompt or cid != "combination:repeat_prompt"))
    for _ in range(200):
        order = list(pool)
        rng.shuffle(order)
        ids: list[str] = []
        for cid in order:
            if len(ids) == n:
                break
            if not any(_conflicting(cid, other) for other in ids):
                ids.append(cid)
        if len(ids) < n:
            continue
        for _ in range(20):
            words = list(_KEYWORDS[language])
            rng.shuffle(words)
            picked = [{"id": cid, "kwargs": _sample_kwargs(cid, rng, language, words, prompt)} for cid in ids]
            if _coherent(picked):
                return picked
    raise ValueError(f"could not pick {n} compatible constraints for language {language!r}")
