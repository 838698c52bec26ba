"""generators.code_math: the code and math spans a language check leaves out, found in one pass."""

import random
import re

import pytest

from own_process import stdout_of
from generators.code_math import blank_code_and_math

# The patterns the generators used before, kept as the definition of what a span is.
SPANS = re.compile(r"```.*?```|\$\$.*?\$\$|\$[^$]*\$|\\\[.*?\\\]|\\\(.*?\\\)", re.DOTALL)
SPANS_AND_COMMANDS = re.compile(SPANS.pattern + r"|\\[a-zA-Z]+", re.DOTALL)


@pytest.mark.parametrize("text, latex_commands, blanked", [
    ("Mira:\n```py\nx = 1\n```\nfin", False, "Mira:\n \nfin"),
    ("Si $x$ y $$y\n= 2$$ entonces", False, "Si   y   entonces"),
    (r"sea \[a\] y \(b\) pero \frac no", False, r"sea   y   pero \frac no"),
    (r"sea \[a\] y \(b\) pero \frac no", True, "sea   y   pero   no"),
    (r"cuesta $5 y \[ nunca cierra \( ni esto", False, r"cuesta $5 y \[ nunca cierra \( ni esto"),
    ("$$ $ x", False, "  $ x"),  # `$$` has no closer, so the first two dollars are an inline span
    ("````", False, "````"),
])
def test_spans_are_blanked_and_unclosed_openers_kept(text, latex_commands, blanked):
    assert blank_code_and_math(text, latex_commands) == blanked


def test_spans_are_those_the_pattern_finds():
    rng = random.Random(5)
    pieces = ["`", "```", "$", "$$", "\\", "\\[", "\\]", "\\(", "\\)", "[", "(", "a", "Z", " ", "\n", "é", "1"]
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        assert blank_code_and_math(text) == SPANS.sub(" ", text), text
        assert blank_code_and_math(text, latex_commands=True) == SPANS_AND_COMMANDS.sub(" ", text), text


def test_openers_that_never_close_are_read_in_one_pass():
    # The pattern retried each unclosed opener to the end of the text: 11 s for 100 KB of the first
    # text, quadratic, so 20 to 40 minutes for these. A process of its own, so that a regression fails here.
    code = """if True:
        from generators.code_math import blank_code_and_math
        for openers in ("\\\\[ x ", "\\\\( x ", "\\\\[ \\\\( "):
            text = openers * 200_000
            print(blank_code_and_math(text) == text)
    """
    assert stdout_of(code) == "True\n" * 3
