"""Drop rows whose text is not in the declared language (langdetect).

Below `min_chars` of text the detector is unreliable, so the declared language is trusted. Only
the first `sample_chars` characters are examined: detection cost stays flat for long rows. Code
blocks are removed first (code reads as English). The detector is seeded, so verdicts are
reproducible. Language pairs the detector cannot tell apart (gl/pt, ca/es) are accepted when
listed in `confusable`.

langdetect is the largest per-row cost of the pipeline (about 0.8 ms on 500 characters with 3
trials, 1.5 ms on 1,000 with its default 7), so a text whose words are mostly the declared
language's own function words (and hardly any of the other listed languages') is accepted without
it: a positive that is cheap and safe, while every doubtful row still goes to the detector.
"""

import re
from collections import Counter
from functools import cache

from langdetect import DetectorFactory
from langdetect.detector_factory import PROFILES_DIRECTORY
from langdetect.lang_detect_exception import LangDetectException

from filters.base import RecordFilter
from filters.words import WordFinder

_CODE_BLOCK = re.compile(r"```.*?```", re.DOTALL)
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
_LANGUAGE_OF_WORD = {word: lang for lang, words in _FUNCTION_WORDS.items() for word in words}

# langdetect has no Basque or Galician profile, so it never answers eu or gl: rows declared in a
# language it cannot detect are trusted.
_DETECTABLE = {
    "af", "ar", "bg", "bn", "ca", "cs", "cy", "da", "de", "el", "en", "es", "et", "fa", "fi", "fr",
    "gu", "he", "hi", "hr", "hu", "id", "it", "ja", "kn", "ko", "lt", "lv", "mk", "ml", "mr", "ne",
    "nl", "no", "pa", "pl", "pt", "ro", "ru", "sk", "sl", "so", "sq", "sv", "sw", "ta", "te", "th",
    "tl", "tr", "uk", "ur", "vi", "zh",
}


@cache
def _factory() -> DetectorFactory:
    """langdetect's profiles, loaded once per process; seeded, so verdicts are reproducible."""
    factory = DetectorFactory()
    factory.load_profile(PROFILES_DIRECTORY)
    factory.set_seed(0)
    return factory


def detect_language(text: str, trials: int) -> tuple[str, float]:
    """langdetect's best (language, probability), averaged over `trials` random walks (its default
    is 7; on texts of a few hundred characters 3 give the same verdicts at less than half the cost)."""
    detector = _factory().create()
    detector.n_trial = trials
    detector.append(text)
    best = detector.get_probabilities()[0]
    return best.lang, best.prob


class LanguageFilter(RecordFilter):
    name = "language"

    def __init__(self, min_chars: int = 200, sample_chars: int = 500, min_probability: float = 0.0,
                 confusable: dict[str, list[str]] | None = None, quick_accept: float = 0.1, trials: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.min_chars, self.sample_chars, self.quick_accept, self.trials = min_chars, sample_chars, quick_accept, trials
        self.min_probability = min_probability
        self.confusable = confusable if confusable is not None else {"ca": ["es"], "gl": ["pt", "es"], "pt": ["gl"]}

    def check(self, record, doc):
        declared = record["language"]
        if declared not in _DETECTABLE:
            return None
        text = _CODE_BLOCK.sub(" ", doc.text)[: self.sample_chars]
        if len(text.strip()) < self.min_chars:
            return None
        if self._clearly(declared, text):
            return None
        try:
            detected, probability = detect_language(text, self.trials)
        except LangDetectException:
            return None  # no letters to judge (numbers, symbols): nothing says it is wrong
        detected = "zh" if detected.startswith("zh") else detected
        if detected == declared or detected in self.confusable.get(declared, ()):
            return None
        if probability < self.min_probability:
            return None
        return "language_mismatch"

    def _clearly(self, declared: str, text: str) -> bool:
        """Whether the declared language's function words make up `quick_accept` of the words, and
        those of every other listed language less than a third of that."""
        if declared not in _FUNCTION_WORDS or not self.quick_accept:
            return False
        words = _WORDS.findall(text.lower())
        if len(words) < 20:
            return False
        # One dict lookup per word (the lists are disjoint); only the hits are counted.
        hits = Counter(filter(None, map(_LANGUAGE_OF_WORD.get, words)))
        own = hits[declared]
        return own >= self.quick_accept * len(words) and all(
            hits[other] < own / 3 for other in _FUNCTION_WORDS if other != declared)
