"""langdetect, seeded: the language rule's detector, and the record path's for rows a source gives
no language (`sftmix.normalize`), so a module of its own: the normalized stage's code digest names
it (`sftmix.build.RECORD_PATH`) without the rule."""

from functools import cache

from langdetect import DetectorFactory
from langdetect.detector_factory import PROFILES_DIRECTORY


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
