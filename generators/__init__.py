"""Synthetic sources: one module per generator, records in, records out, through `sftmix.llm`.

Manifests declare the synthetic sources of the reference mixtures (`generator:` entries);
`generators.base` says what a generator module is and runs it.
"""

from __future__ import annotations

import pkgutil

# Generator names the reference manifests use; each becomes `generators/<name>.py`.
KNOWN_GENERATORS = (
    "fineweb_edu_qa", "long_context_qa", "wildchat_responses", "eif_augmentation", "multiturn_augmentation",
    "translation", "self_identity", "oasst2_identity_rephrase", "fc_synthesis",
)


class GeneratorNotAvailable(Exception):
    pass


_LIBRARIES = {"base", "code_math", "eif"}  # shared code, not generators


def implemented() -> tuple[str, ...]:
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in _LIBRARIES and not m.name.startswith("_")))


def get_generator(name: str):
    if name not in KNOWN_GENERATORS:
        raise KeyError(f"unknown generator {name!r}; known: {', '.join(KNOWN_GENERATORS)}")
    if name not in implemented():
        raise GeneratorNotAvailable(f"generator {name!r} is declared but not implemented yet (the LLM stage)")
    from generators.base import load

    return load(name)


def filter_defaults(name: str) -> dict:
    """Rule-filter settings the generator's rows need whatever the manifest says (its module's
    `FILTER_DEFAULTS`, read as a converter's are: `sftmix.sources.filter_defaults`)."""
    return dict(getattr(get_generator(name), "FILTER_DEFAULTS", {}))
