from pathlib import Path

import pytest

from sftmix.raw import iter_raw_rows
from sftmix.sources import Converted, Drop, get_converter

FIXTURE = Path(__file__).parents[1] / "fixtures" / "openr1_math" / "train-00000-of-00010.parquet"


@pytest.fixture(scope="module")
def results():
    return dict(get_converter("openr1_math")(iter_raw_rows([FIXTURE])))


def key(i):
    return f"train-00000-of-00010.parquet#{i}"


def test_drops_and_reasons(results):
    assert len(results) == 11
    drops = {k: (v.reason, v.detail) for k, v in results.items() if isinstance(v, Drop)}
    assert drops == {
        key(2): ("truncated", "generation 0 stopped at the length cap"),
        key(3): ("missing_messages", "messages is null or empty"),
        key(4): ("incomplete_reasoning", "generation 0 is_reasoning_complete=false"),
        key(5): ("incorrect_answer", "generation 0: Math-Verify False, judge False"),
        key(7): ("unverified_answer", "the assistant text is not among the 2 generations"),
        key(8): ("missing_final_answer", "nothing after </think>"),
        key(9): ("unverified_answer", "the assistant text is not among the 0 generations"),
        key(10): ("malformed_row", "roles ['user']"),
    }


@pytest.mark.parametrize("verified, judged, reason", [
    ([], [False, True], "incorrect_answer"),  # no Math-Verify verdict, the judge's False (once kept)
    ([None], [False], "incorrect_answer"), ([False], [], "incorrect_answer"), ([False], [True], None),
    ([True], [False], None), ([], [], "unverified_answer"), (None, None, "unverified_answer"),
])
def test_a_generation_is_dropped_unless_a_verdict_passes_it_and_none_fails_it_alone(verified, judged, reason):
    content = "<think>3 + 1 = 3.</think>So the answer is $\\boxed{3}$."
    row = {"problem": "What is 3 + 1?", "answer": "4", "uuid": "u", "messages": [
        {"role": "user", "content": "What is 3 + 1?"}, {"role": "assistant", "content": content}],
           "generations": [content, "<think>4</think>$\\boxed{4}$"], "finish_reasons": ["stop", "stop"],
           "is_reasoning_complete": [True, True], "correctness_math_verify": verified, "correctness_llama": judged}
    [(_, out)] = list(get_converter("openr1_math")([("r#0", row)]))
    assert (out.reason if isinstance(out, Drop) else None) == reason


def test_reasoning_is_removed_and_solution_kept(results):
    out = results[key(0)]
    assert [(m["role"], m["content"]) for m in out.messages] == [
        ("user", "Find $x$ if $2x+3=11$."),
        ("assistant", "Subtract 3 from both sides to get $2x = 8$, then divide by 2.\n\nThe solution is $\\boxed{4}$."),
    ]
    assert out.key == "6a1c2f0e-0000-4000-8000-000000000001"
    assert out.language is None and out.tools == []
    reasoning = "Subtract 3: 2x = 8. Divide by 2: x = 4. Check: 2*4+3 = 11. Yes."
    assert out.meta == {
        "answer": "4",
        "boxed": "4",
        "source": "olympiads",
        "problem_type": "Algebra",
        "question_type": "math-word-problem",
        "correctness_count": 1,
        "generation_index": 0,
        "reasoning_chars": len(reasoning),
    }
    assert "<think>" not in out.messages[1]["content"] and "</think>" not in out.messages[1]["content"]


def test_selected_generation_is_found_by_content_and_nested_boxed_is_extracted(results):
    out = results[key(1)]
    assert out.meta["generation_index"] == 1
    assert out.meta["answer"] == "\\frac{1}{2}"
    assert out.meta["boxed"] == "\\frac{1}{2}"
    assert out.messages[1]["content"] == (
        "A fair coin has two equally likely outcomes, so the probability is $\\boxed{\\frac{1}{2}}$."
    )


def test_llama_judge_rescues_a_math_verify_failure(results):
    out = results[key(6)]
    assert out.meta["generation_index"] == 0
    assert out.meta["source"] == "amc_aime"  # kept in meta for benchmark decontamination
    assert out.meta["question_type"] == "MCQ"
    assert (out.meta["answer"], out.meta["boxed"]) == ("C", "C")
    assert out.messages[0]["content"].endswith("(A) 5 (B) 5.5 (C) 6 (D) 7.5 (E) 12")


# Shaped like the real row 0 of config `default` (datasets-server first-rows): finish_reasons and
# correctness_llama null, Math-Verify verdicts only.
WRONG = "<think>\n2x = 14, so x = 7.\n</think>\n\nSo $x = \\boxed{7}$."
RIGHT = "<think>\n2x = 8, so x = 4.\n</think>\n\nSo $x = \\boxed{4}$."


@pytest.mark.parametrize("assistant, dropped", [
    (RIGHT, None),
    (WRONG, ("incorrect_answer", "generation 0: Math-Verify False, judge None")),
    (WRONG + "\n", ("incorrect_answer", "generation 0: Math-Verify False, judge None")),  # was kept unverified
    ("\n" + RIGHT, None),
    (RIGHT.replace("x = 4", "x = 5").replace("{4}", "{5}"),  # no generation: was kept unverified
     ("unverified_answer", "the assistant text is not among the 2 generations")),
    # a copy unlike its generation but in its solution is judged by that generation's verdicts (review2:
    # these were unverified_answer drops, from rows that may well be in the real data)
    (RIGHT.replace("<think>\n", ""), None),  # the <think> opener lost
    (RIGHT.replace("\n", "\r\n"), None),  # CRLF line endings
    (RIGHT.replace("2x = 8, so x = 4.", "Halving 8 gives 4."), None),  # another trace to the same solution
    (WRONG.replace("\n", "\r\n"), ("incorrect_answer", "generation 0: Math-Verify False, judge None")),
])
def test_the_assistant_text_is_judged_by_its_own_generation_or_dropped_unverified(assistant, dropped):
    row = {"problem": "Find $x$ if $2x+3=11$.", "solution": "$x=4$", "answer": "4", "problem_type": "Algebra",
           "question_type": "math-word-problem", "source": "olympiads", "uuid": "u", "is_reasoning_complete": [True, True],
           "generations": [WRONG, RIGHT], "correctness_math_verify": [False, True], "correctness_llama": None,
           "finish_reasons": None, "correctness_count": 1,
           "messages": [{"content": "Find $x$ if $2x+3=11$.", "role": "user"}, {"content": assistant, "role": "assistant"}]}
    [(_, out)] = list(get_converter("openr1_math")([("r#0", row)]))
    if dropped:
        assert (out.reason, out.detail) == dropped
    else:
        assert out.meta["generation_index"] == 1 and out.messages[1]["content"] == "So $x = \\boxed{4}$."


@pytest.mark.parametrize("copy, complete, verified, outcome", [
    (lambda text: text, [True, True], [True, False], ("incorrect_answer", 1)),  # verbatim: its own generation
    (lambda text: text.replace("\n", "\r\n"), [True, True], [True, False], ("incorrect_answer", 1)),
    (lambda text: text.replace("\n", "\r\n"), [False, True], [True, True], ("kept", 1)),
    (lambda text: text.replace("Halving", "Half of"), [True, True], [True, False], ("unverified_answer", None)),
    (lambda text: text.replace("Halving", "Half of"), [True, True], [True, True], ("kept", 0)),
])
def test_generations_sharing_a_solution_judge_a_copy_by_its_own_trace(copy, complete, verified, outcome):
    """Two traces to one solution: a copy of the second in CRLF was judged by the first's flags (review5),
    which flipped its verdict either way. A third trace to it is judged only where their verdicts agree."""
    first = "<think>\n2x = 8, so x = 4.\n</think>\n\nSo $x = \\boxed{4}$."
    second = "<think>\nHalving 8 gives 4.\n</think>\n\nSo $x = \\boxed{4}$."
    row = {"problem": "Find $x$ if $2x+3=11$.", "answer": "4", "uuid": "u", "is_reasoning_complete": complete,
           "generations": [first, second], "correctness_math_verify": verified, "correctness_llama": None,
           "finish_reasons": None,
           "messages": [{"content": "Find $x$ if $2x+3=11$.", "role": "user"}, {"content": copy(second), "role": "assistant"}]}
    [(_, out)] = list(get_converter("openr1_math")([("r#0", row)]))
    reason, index = outcome
    if reason == "kept":
        assert isinstance(out, Converted) and out.meta["generation_index"] == index
    else:
        assert out.reason == reason and (index is None or f"generation {index}" in out.detail), out


@pytest.mark.parametrize("flags", [
    {"finish_reasons": ["stop"]}, {"correctness_math_verify": [True, None], "correctness_llama": [None, True]},
    {"correctness_math_verify": [True, True], "correctness_llama": [None, True]},
    {"is_reasoning_complete": [True, None]}, {"correctness_math_verify": [True, True], "correctness_llama": [False, True]},
])
def test_generations_sharing_a_solution_that_would_both_be_kept_keep_it(flags):
    """Flags that differ but lead both generations to the same outcome, kept (review6: unverified_answer,
    as the raw flags were compared)."""
    first = "<think>\n2x = 8, so x = 4.\n</think>\n\nSo $x = \\boxed{4}$."
    second = "<think>\nHalving 8 gives 4.\n</think>\n\nSo $x = \\boxed{4}$."
    row = {"problem": "Find $x$.", "answer": "4", "uuid": "u", "generations": [first, second],
           "is_reasoning_complete": [True, True], "correctness_math_verify": [True, True], "correctness_llama": None,
           "finish_reasons": None, **flags,
           "messages": [{"content": "Find $x$.", "role": "user"},
                        {"content": second.replace("Halving", "Half of"), "role": "assistant"}]}
    [(_, out)] = list(get_converter("openr1_math")([("r#0", row)]))
    assert isinstance(out, Converted) and out.meta["generation_index"] == 0, out


@pytest.mark.parametrize("verified", [[True, False], [False, True]])
def test_one_trace_twice_with_differing_verdicts_leaves_its_copy_unverified(verified):
    """The same trace as two generations (one in CRLF), the copy in NFD: it was judged by the first (review6)."""
    import unicodedata

    trace = "<think>\nLa réponse est 4.\n</think>\n\nDonc $x = \\boxed{4}$."
    row = {"problem": "Trouver $x$.", "answer": "4", "uuid": "u", "generations": [trace, trace.replace("\n", "\r\n")],
           "is_reasoning_complete": [True, True], "correctness_math_verify": verified, "correctness_llama": None,
           "finish_reasons": None,
           "messages": [{"content": "Trouver $x$.", "role": "user"},
                        {"content": unicodedata.normalize("NFD", trace), "role": "assistant"}]}
    [(_, out)] = list(get_converter("openr1_math")([("r#0", row)]))
    assert (out.reason, out.detail) == ("unverified_answer", "it matches generations [0, 1], whose verdicts differ")


def test_a_copy_in_another_unicode_form_is_judged_by_its_generation():
    """NFD accents in `messages` against NFC in `generations` (review2: an unverified_answer drop)."""
    import unicodedata

    right = "<think>\nLa réponse est 4.\n</think>\n\nDonc $x = \\boxed{4}$, évidemment."
    row = {"problem": "Trouver $x$.", "answer": "4", "uuid": "u", "is_reasoning_complete": [True],
           "generations": [unicodedata.normalize("NFC", right)], "correctness_math_verify": [True],
           "correctness_llama": None, "finish_reasons": None,
           "messages": [{"content": "Trouver $x$.", "role": "user"},
                        {"content": unicodedata.normalize("NFD", right), "role": "assistant"}]}
    [(_, out)] = list(get_converter("openr1_math")([("r#0", row)]))
    assert isinstance(out, Converted) and out.meta["generation_index"] == 0
