"""Drop rows whose text is not in the declared language (langdetect, with CLD2 where it cannot tell).

Below `min_chars` of text the detector is unreliable, so the declared language is trusted. Only
the first `sample_chars` characters are examined: detection cost stays flat for long rows. Code
(``` spans, and blocks fenced with backticks or tildes much as CommonMark reads them: see
`_NOT_PROSE`) and LaTeX math are removed first (code reads as English, formulas as nothing
reliable). The detector is seeded, so verdicts are reproducible. Where langdetect cannot decide,
CLD2 does (`filters.language_id.cld2_languages`):
- rows declared Basque or Galician, which langdetect has no profile for;
- rows langdetect finds in a language listed as `confusable` with the declared one (ca: es; es:
  ca). Only languages langdetect answers with belong there: it has no Galician profile, so
  Galician is told from Portuguese and Spanish in rows declared gl, and not in rows declared pt.
Either way the row is dropped only when CLD2 calls its verdict reliable and finds none of the
declared language in the text; a verdict it does not rely on trusts the declared language.

langdetect is the largest per-row cost of the pipeline (about 0.8 ms on 500 characters with 3
trials, 1.5 ms on 1,000 with its default 7), so a text whose words are mostly the declared
language's own function words (and hardly any of the other listed languages') is accepted without
it: a positive that is cheap and safe, while every doubtful row still goes to the detector. That
count takes the rows a batch at a time: polars splits the batch's words and finds the function words
among them in one join, where a Python lookup per word took 10.8 µs a bench Toucan answer (6.1 now).
So is a text CLD2 reliably finds mostly in the declared language (about 20-30 µs; the tests'
Catalan paragraph, which the function words do not settle, took 0.77 ms a row with langdetect, 0.03
now); a drop still needs langdetect's verdict, as before.
"""

import re

import numpy as np
import polars as pl
from langdetect.lang_detect_exception import LangDetectException

from filters.base import BatchRecordFilter, Count, Positive, Share
from filters.batch_words import CHUNK_BYTES, chunks_of_bytes, word_rows
from filters.language_id import cld2_languages, detect_language
from filters.words import WordFinder

# Code and LaTeX math ($$...$$, \[...\], \(...\), and $...$ as pandoc reads it: no space inside
# either dollar, no digit after the closing one, so "$25 y los pantalones cuestan $40" is prose):
# neither is the row's language. With the math left in, CLD2 had no reliable verdict on Portuguese
# solutions and langdetect called 3 of 8 Catalan or Spanish (a helper's set); without it both said
# pt. Each span is bounded and only the text's first `PROSE_WINDOW` samples are searched: an opener
# without its closer scanned to the end of the text (25 s for 10,000 `\(`).
# Code is a ```span``` within a line, or a fenced block. A fence line is 3 or more backticks or
# tildes after any indentation, and any info string, none with a backtick after backticks ("```
# python", "```js title=app.js", "~~~python": only ``` and a bare language name opened a block, and
# a Spanish answer around any other fence read as English). Its block ends with the next fence line
# of the same character, as many or more, with nothing but whitespace after them. A block opening at
# the end of a line of prose ("Aquí tienes: ```python") has ``` and at most a language name, and
# ends with the next fence line of backticks, whatever follows them. A block whose closing line does
# not come runs to the end of the window if the window cut the text, as that line may lie beyond it
# (a Spanish answer with 17,000 characters of code was dropped as not Spanish); in a text the window
# holds whole it is no block, unless it names a language or, for backticks, nothing ("```python",
# "```": an answer cut in its code or output), and its line is searched as prose, where ``` and a
# language name ending it open a block as above ("~~~" as a scene break, "~~~ Prólogo", or a line
# opening with ``` and going on in prose, hid the rest of a story). A tilde fence naming no
# language is prose even where the window cut the text (`_opens_code`). So a lone ``` in prose ("three backticks (```) on a line")
# opens nothing, nor does a closing fence taken for an opener (both hid the rest). Code and math are
# taken in the order the text has them: a block is not searched for math, and a fence line within
# $$...$$ is math. Not all of CommonMark: a backtick fence in a block quote ("> ```") opens a block
# as one at the end of a line of prose does, and a fence indented 4 spaces or more is one all the
# same (CommonMark reads an indented code block there, or after a paragraph the paragraph's next
# line). The scan stays linear: a span ends its line, a fence and its info string are taken whole (a
# line of 8,000 tildes, split every way between the two, took 1.1 s), and whether a block's closing
# line comes is known from the text's fence lines before it is looked for (1,300 fences without one,
# each looked for to the end, took 96 ms).
_FENCE_LINE = re.compile(r"\n[ \t]*+(?P<fence>`{3,}+(?![^\n]*`)|~{3,}+)(?P<info>[^\n]*+)")
_NOT_PROSE = re.compile(_FENCE_LINE.pattern + r"|```[^\n]*?```|```(?P<opening>[\w+#.-]*+[ \t]*+\r?(?=\n))"
                        r"|\$\$.{0,4000}?\$\$|\\\[.{0,4000}?\\\]"
                        r"|\\\(.{0,400}?\\\)|\$(?=[^\s$])[^$\n]{0,400}?(?<=\S)\$(?!\d)", re.DOTALL)
PROSE_WINDOW = 16  # samples
# A fence's info string that opens code, closed or not: a language name ("python", "c++", "r"), in
# ASCII, maybe with attributes ("bash title=out.sh", "{.python}"); not a word of prose ("~~~
# Prólogo", "~~~ I").
_CODE_INFO = re.compile(r"(?:[a-z]|[A-Za-z][A-Za-z0-9_+#.-]+)(?:[ \t]+[\w-]+=\S*)*|\{[^}\n]*\}")


def _opens_code(opener: re.Match, cut: bool) -> bool:
    """Whether a fence whose closing line does not come opens code all the same (to the window's
    end): a backtick fence naming a language or nothing ("```", an answer cut in its output), or
    any when the window cut the text (its closing line may lie beyond); a tilde fence only when it
    names a language, cut or not ("~~~" is a scene break far more often than a cut block)."""
    info = (opener["info"] if opener["fence"] else opener["opening"]).strip()
    if opener["fence"] and opener["fence"][0] == "~":
        return bool(_CODE_INFO.fullmatch(info))
    return cut or not info or bool(_CODE_INFO.fullmatch(info))


def _closes(fence_line: re.Match, opener: re.Match) -> bool:
    """Whether `fence_line` ends the block `opener` (a fence line, or ``` ending a line of prose) opens."""
    fence, opening = fence_line["fence"], opener["fence"] or "```"
    return fence[0] == opening[0] and (opener["opening"] is not None or
                                       len(fence) >= len(opening) and not fence_line["info"].strip())


def _not_prose(text: str, cut: bool) -> list[tuple[int, int]]:
    """Where `text`, opening with a newline, has code or math: each piece's (start, end), in order."""
    fences = list(_FENCE_LINE.finditer(text))
    # whether a line closing a fence's block comes after it: the longest fence of its character
    # with nothing after it, further on
    closed = [False] * len(fences)
    longest = {"`": 0, "~": 0}
    for i in reversed(range(len(fences))):
        fence = fences[i]["fence"]
        closed[i] = longest[fence[0]] >= len(fence)
        if not fences[i]["info"].strip():
            longest[fence[0]] = max(longest[fence[0]], len(fence))
    last_backticks = max((line.start() for line in fences if line["fence"][0] == "`"), default=-1)
    pieces, start, i = [], 0, 0  # fences[i]: the first fence line from `start` on
    while mark := _NOT_PROSE.search(text, start):
        start = mark.end()
        if not mark["fence"] and mark["opening"] is None:
            pieces.append(mark.span())  # a ```span``` or math
            continue
        while i < len(fences) and fences[i].start() < mark.start():
            i += 1
        if mark["fence"] and closed[i] or mark["opening"] is not None and mark.start() < last_backticks:
            i += bool(mark["fence"])
            while not _closes(fences[i], mark):
                i += 1
            start = fences[i].end()
            pieces.append((mark.start(), start))
        elif _opens_code(mark, cut):
            pieces.append((mark.start(), len(text)))
            break
        else:
            start = mark.start() + 1  # prose: what the fence line holds is searched as such
    return pieces


def _prose(text: str, window: int) -> str:
    """The first `window` characters of `text` without their code and math."""
    # The pattern has no literal prefix for `re` to skip ahead to: searched only where the text has
    # what it looks for (on a bench Toucan answer, 1.1 µs a row otherwise), a backtick before three
    # (`in` finds one character several times faster). Math alone is searched with the code's
    # pattern all the same: with only its 2 first characters `re` tries each in turn at every
    # position, with 4 it looks them up in a table (an 8 KB text with prices took 1.4 times as long).
    # A fence line is found from the newline before it, as `^` has no first character (the search
    # took twice as long), so a text that may have code gets a newline in front.
    sample = text[:window]
    if "`" in sample and "```" in sample or "~" in sample and "~~~" in sample:
        sample, end, kept = "\n" + sample, 0, []
        for start, stop in _not_prose(sample, len(text) > window):
            kept.append(sample[end:start])
            end = stop
        return " ".join([*kept, sample[end:]])[1:]
    return _NOT_PROSE.sub(" ", sample) if "$" in sample or "\\" in sample else sample


_WORDS = WordFinder(r"[^\W\d_]", str.isalpha)
# Frequent function words of each language that are rare in the other three (shared ones such as
# "que", "el" or "para" would blur the comparison), so the shares tell these languages apart.
_FUNCTION_WORDS = {
    "en": {"the", "and", "of", "to", "is", "that", "with", "for", "this", "are", "it", "be", "you", "have", "not",
           "but", "they", "from", "or", "by", "we", "at", "which", "their", "there", "would", "can", "has", "were",
           "been", "what", "about", "when", "your", "if", "its", "these", "should", "could", "them", "than", "our",
           "also", "how", "more", "my"},
    "es": {"los", "las", "con", "pero", "está", "muy", "y", "lo", "su", "sus", "este", "cuando", "hay", "puede",
           "sin", "pues", "donde", "ya", "mismo", "están", "hacer", "tiene", "esto", "eso", "cómo", "qué", "fue",
           "también"},
    "ca": {"els", "és", "amb", "però", "molt", "més", "dels", "aquest", "aquesta", "també", "hi", "són", "seu",
           "seva", "quan", "fer", "pot", "sense", "tot", "ja", "li", "mateix", "això", "perquè"},
    "pt": {"os", "da", "é", "uma", "mas", "não", "muito", "dos", "das", "na", "em", "ao", "um", "sua", "também",
           "são", "pode", "isso", "esse", "essa", "ele", "ela", "você", "foi", "há", "tem", "pelo", "pela", "mais",
           "já", "onde"},
}
_LISTED = tuple(_FUNCTION_WORDS)
_LANGUAGE_OF_WORD = pl.DataFrame(  # the lists are disjoint: one language per word
    [(word, _LISTED.index(lang)) for lang, words in _FUNCTION_WORDS.items() for word in words],
    schema={"word": pl.String, "language": pl.Int64}, orient="row")

# langdetect has no Basque or Galician profile, so it never answers eu or gl: CLD2 judges those.
# Rows declared in a language neither judges are trusted.
_CLD2_ONLY = {"eu", "gl"}
_DETECTABLE = {
    "af", "ar", "bg", "bn", "ca", "cs", "cy", "da", "de", "el", "en", "es", "et", "fa", "fi", "fr",
    "gu", "he", "hi", "hr", "hu", "id", "it", "ja", "kn", "ko", "lt", "lv", "mk", "ml", "mr", "ne",
    "nl", "no", "pa", "pl", "pt", "ro", "ru", "sk", "sl", "so", "sq", "sv", "sw", "ta", "te", "th",
    "fil", "tr", "uk", "ur", "vi", "zh",  # Tagalog rows are `fil` (langdetect's `tl`)
}


class LanguageFilter(BatchRecordFilter):
    name = "language"

    def __init__(self, min_chars: Count = 200, sample_chars: Positive = 500, min_probability: Share = 0.0,
                 confusable: dict[str, list[str]] | None = None, quick_accept: Share = 0.1, trials: Positive = 3, **kwargs):
        super().__init__(**kwargs)
        confusable = confusable if confusable is not None else {"ca": ["es"], "es": ["ca"]}
        unknown = sorted({code for declared, found in confusable.items() for code in (declared, *found)} - _DETECTABLE)
        if unknown:
            raise ValueError(f"filter {self.name!r}: confusable: {', '.join(map(repr, unknown))} is no language code langdetect answers "
                             f"(known: {', '.join(sorted(_DETECTABLE))})")
        self.min_chars, self.sample_chars, self.quick_accept, self.trials = min_chars, sample_chars, quick_accept, trials
        self.min_probability = min_probability
        self.confusable = confusable

    @classmethod
    def conflicts(cls, arguments: dict) -> str | None:
        min_chars, sample_chars = cls.argument(arguments, "min_chars"), cls.argument(arguments, "sample_chars")
        if sample_chars < min_chars:
            return f"sample_chars ({sample_chars}) is below min_chars ({min_chars}): no row would be judged"
        return None

    def reasons(self, docs):
        judged = []  # (index, declared language, sample) of the rows the rule judges
        for i, doc in enumerate(docs):
            declared = doc.metadata["record"]["language"]
            if declared not in _DETECTABLE and declared not in _CLD2_ONLY:
                continue
            sample = _prose(doc.text, PROSE_WINDOW * self.sample_chars)[: self.sample_chars]
            if len(sample.strip()) >= self.min_chars:
                judged.append((i, declared, sample))
        reasons = [None] * len(docs)
        clear = self.clearly_written([declared for _, declared, _ in judged], [sample for _, _, sample in judged])
        for (i, declared, sample), accepted in zip(judged, clear):
            if not accepted:
                reasons[i] = self._detected(declared, sample)
        return reasons

    def _detected(self, declared: str, text: str) -> str | None:
        found = cld2_languages(text)
        cld2_mismatch = "language_mismatch" if found is not None and declared not in found else None
        if declared in _CLD2_ONLY:
            return cld2_mismatch
        if found is not None and max(found, key=found.__getitem__) == declared:
            return None  # CLD2 is sure the text is mostly the declared language: langdetect (50 times its cost) is not asked
        try:
            detected, probability = detect_language(text, self.trials)
        except LangDetectException:
            return None  # no letters to judge (numbers, symbols): nothing says it is wrong
        detected = "zh" if detected.startswith("zh") else detected
        if detected == declared or probability < self.min_probability:
            return None
        if detected in self.confusable.get(declared, ()):
            return cld2_mismatch
        return "language_mismatch"

    def clearly_written(self, declared: list[str], texts: list[str]) -> list[bool]:
        """Per text, whether its declared language's function words make up `quick_accept` of its
        words (at least 20), and those of every other listed language less than a third of that."""
        clear = [False] * len(texts)
        if self.quick_accept:
            listed = [(i, _WORDS.word_bytes(text.lower())) for i, text in enumerate(texts) if declared[i] in _FUNCTION_WORDS]
            for chunk in chunks_of_bytes(listed, CHUNK_BYTES):
                languages = np.array([_LISTED.index(declared[i]) for i, _ in chunk])
                for (i, _), accepted in zip(chunk, self._accepted(languages, [words for _, words in chunk])):
                    clear[i] = bool(accepted)
        return clear

    def _accepted(self, own_language: np.ndarray, word_bytes: list[bytes]) -> np.ndarray:
        words = word_rows(word_bytes)
        texts = len(word_bytes)
        n_words = np.bincount(words["text"].to_numpy(), minlength=texts)
        hits = words.join(_LANGUAGE_OF_WORD, on="word")
        counts = np.bincount(hits["text"].to_numpy() * len(_LISTED) + hits["language"].to_numpy(),
                             minlength=texts * len(_LISTED)).reshape(texts, len(_LISTED))
        own = counts[np.arange(texts), own_language]
        # compared as `own >= share * words` and `other < own / 3`, in floats, as for one text
        others_below = (counts < (own / 3)[:, None]) | (np.arange(len(_LISTED)) == own_language[:, None])
        return (n_words >= 20) & (own >= self.quick_accept * n_words) & others_below.all(axis=1)
