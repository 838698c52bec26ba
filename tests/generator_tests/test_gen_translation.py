"""generators/translation.py against the local OpenAI-compatible server, on real openr1_math records."""

import json
import random
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest


from generators import translation
from generators.base import Context, GeneratorBroken, generate, stream
from openai_server import Fault, Reply, last_user_message, serve_openai
from own_process import stdout_of
from sftmix.llm import LLMClient, LLMSettings
from sftmix.normalize import SourceInfo, normalize, read_records
from sftmix.record import make_record, message
from sftmix.sources.base import Drop

FIXTURE = Path(__file__).parents[1] / "fixtures" / "openr1_math" / "train-00000-of-00010.parquet"


@pytest.fixture(scope="module")
def fixture_records(tmp_path_factory):
    out = tmp_path_factory.mktemp("openr1")
    info = SourceInfo(key="openr1-math", converter="openr1_math", licence="apache-2.0", language="en")
    normalize(info, [FIXTURE], out / "r.parquet", out / "x.parquet", apply_filters=False)
    return list(read_records([out / "r.parquet"]))


def openr1(problem, solution, uuid):
    boxed = translation.last_boxed(solution)
    return make_record(messages=[message("user", problem), message("assistant", solution)], tools=[],
                       source="openr1-math", licence="apache-2.0", language="en",
                       origin={"row": f"train-00001-of-00010.parquet#{uuid}", "key": uuid, "answer": boxed,
                               "boxed": boxed, "source": "olympiads", "problem_type": "Algebra"})


ODD_SUM = openr1("Sum the first 20 odd numbers modulo 7.",
                 "The sum of the first $n$ odd numbers is $n^2$, so the sum is $400$, and $400 = 57 \\cdot 7 + 1$.\n\n"
                 "Answer: $\\boxed{1}$", "u-odd-sum")
PRIME = openr1("Is 97 a prime number? Answer yes or no.",
               "We check divisibility by the primes up to $\\sqrt{97} < 10$: none of $2, 3, 5, 7$ divides $97$, "
               "so it is prime.\n\n$\\boxed{\\text{Yes}}$", "u-prime")
ROOTS = openr1("Compute the sum of the roots of $x^2 - 5x + 6 = 0$.",
               "By Vieta's formulas the sum of the roots is\n\\[\n-\\frac{-5}{1} = 5.\n\\]\n"
               "So the answer is $\\boxed{5}$.", "u-roots")
NO_BOX = openr1("Prove that there are infinitely many primes.",
                "Suppose there were finitely many primes $p_1, \\dots, p_n$ ... a contradiction.", "u-proof")
LONG = openr1("Find the value of $S$ described below. " + "A long statement. " * 700, "Thus $\\boxed{2}$.", "u-long")

# What DeepSeek-V3 answers to the translation prompt, per English problem (Spanish target).
SPANISH = {
    "Find $x$ if $2x+3=11$.": (
        "<problem>\nHalla $x$ si $2x+3=11$.\n</problem>\n<solution>\nResta 3 a ambos lados para obtener "
        "$2x = 8$ y luego divide entre 2.\n\nLa solución es $\\boxed{4}$.\n</solution>"),
    "A fair coin is tossed": (  # forgot the blocks
        "Se lanza una moneda equilibrada una vez. ¿Cuál es la probabilidad de obtener cara?\n\n"
        "Una moneda equilibrada tiene dos resultados igualmente probables, así que la probabilidad es "
        "$\\boxed{\\frac{1}{2}}$."),
    "A triangle has sides": Reply(
        "<problem>\nUn triángulo tiene lados 3, 4 y 5. ¿Cuál es su área?\n(A) 5 (B) 5.5 (C) 6 (D) 7.5 (E) 12\n"
        "</problem>\n<solution>\nEl triángulo es rectángulo, así que su área es", finish_reason="length"),
    "Sum the first 20 odd numbers": (  # solution left in English
        "<problem>\nSuma los primeros 20 números impares módulo 7.\n</problem>\n<solution>\nThe sum of the "
        "first $n$ odd numbers is $n^2$, so the sum is $400$, and $400 = 57 \\cdot 7 + 1$.\n\n"
        "Answer: $\\boxed{1}$\n</solution>"),
    "Is 97 a prime number?": (  # translated the word in the box
        "<problem>\n¿Es 97 un número primo? Responde sí o no.\n</problem>\n<solution>\nComprobamos la "
        "divisibilidad por los primos menores que $\\sqrt{97} < 10$: ninguno de $2, 3, 5, 7$ divide a $97$, "
        "así que es primo.\n\n$\\boxed{\\text{Sí}}$\n</solution>"),
    "Compute the sum of the roots": (  # turned \[...\] into $$...$$
        "<problem>\nCalcula la suma de las raíces de $x^2 - 5x + 6 = 0$.\n</problem>\n<solution>\nPor las "
        "fórmulas de Vieta, la suma de las raíces es\n$$\n-\\frac{-5}{1} = 5.\n$$\nAsí que la respuesta es "
        "$\\boxed{5}$.\n</solution>"),
}
CATALAN = {
    "Find $x$ if $2x+3=11$.": (
        "<problem>\nTroba $x$ si $2x+3=11$.\n</problem>\n<solution>\nResta 3 a tots dos costats per obtenir "
        "$2x = 8$ i després divideix entre 2.\n\nLa solució és $\\boxed{4}$.\n</solution>"),
    "A fair coin is tossed": (
        "```\n<problem>\nEs llança una moneda equilibrada una vegada. Quina és la probabilitat que surti cara?\n"
        "</problem>\n<solution>\nUna moneda equilibrada té dos resultats igualment probables, de manera que la "
        "probabilitat és $\\boxed{\\frac{1}{2}}$.\n</solution>\n```"),
}


def translator(table):
    def respond(messages, body):
        text = last_user_message(messages)
        problem = re.search(r"<problem>\n(.*?)\n</problem>", text, re.DOTALL).group(1)
        assert re.match(r"Translate into (Spanish|Catalan):", text)
        assert "LaTeX" in messages[0]["content"] and body["max_tokens"] == 8192
        return next(reply for start, reply in table.items() if problem.startswith(start))
    return respond


def client(server, tmp_path):
    return LLMClient(LLMSettings(base_url=server.base_url, cache_dir=str(tmp_path / "cache"), concurrency=4,
                                 backoff_base_s=0.01), api_key="sk-test")


def context(llm, targets, seed=0, **kw):
    return Context(llm=llm, targets=targets, params={"target_languages": ["ca", "es", "eu", "gl", "pt"]}, seed=seed, **kw)


def test_translations_checks_and_drops(fixture_records, tmp_path):
    records = fixture_records + [ODD_SUM, PRIME, ROOTS, NO_BOX, LONG]
    with serve_openai(translator(SPANISH), faults=[Fault("rate_limit", match="Find $x$", count=1, retry_after=0)]) as server:
        llm = client(server, tmp_path)
        results = list(stream(translation, records, context(llm, {"es": "all"})))
        assert server.count() == 7  # 6 rows (no \boxed and too long are not eligible) + one 429 retried
        first = llm.stats.summary()
        # a rerun (same endpoint, same cache) is answered from the cache: same results, no request sent
        rerun = client(server, tmp_path)
        again = list(stream(translation, records, context(rerun, {"es": "all"})))
        assert server.count() == 7 and rerun.stats.cache_hits == 6 and rerun.stats.requests == 0
    assert first["requests"] == 7 and first["cache_hits"] == 0
    keys = [key for key, _ in results]
    assert keys == [f"{r['id']}:es" for r in fixture_records + [ODD_SUM, PRIME, ROOTS]]  # input order
    outcome = {key.split(":")[0]: (result.reason if hasattr(result, "reason") else "kept") for key, result in results}
    ids = [r["id"] for r in fixture_records]
    assert outcome == {ids[0]: "kept", ids[1]: "malformed_translation", ids[2]: "truncated",
                       ODD_SUM["id"]: "wrong_language", PRIME["id"]: "final_answer_changed", ROOTS["id"]: "latex_changed"}
    drops = {key.split(":")[0]: r.detail for key, r in results if outcome[key.split(":")[0]] != "kept"}
    assert drops[PRIME["id"]] == "'\\\\text{Yes}' -> '\\\\text{Sí}'"
    assert drops[ROOTS["id"]] == "solution: '$' 2 -> 6"
    assert drops[ODD_SUM["id"]] == "reads as en, wanted es"

    kept = results[0][1]
    assert kept.language == "es" and kept.key == "6a1c2f0e-0000-4000-8000-000000000001"
    assert [(m["role"], m["content"]) for m in kept.messages] == [
        ("user", "Halla $x$ si $2x+3=11$."),
        ("assistant", "Resta 3 a ambos lados para obtener $2x = 8$ y luego divide entre 2.\n\nLa solución es $\\boxed{4}$.")]
    assert kept.meta["source_id"] == ids[0] and kept.meta["boxed"] == "4" and kept.meta["answer"] == "4"
    assert kept.meta["generator"] == "translation" and kept.meta["seed_id"] == f"{ids[0]}:es"

    assert [(k, getattr(r, "reason", None), getattr(r, "messages", None)) for k, r in again] == \
           [(k, getattr(r, "reason", None), getattr(r, "messages", None)) for k, r in results]


SUBTRACT = openr1("Find the value of $x$ if $2x+3=11$, explaining every step.",
                  "First we subtract 3 from both sides of the equation, which gives us the simpler equation $2x = 8$. "
                  "Then we divide both sides by 2, and we find the value of the unknown.\n\nSo the answer is "
                  "$\\boxed{4}$.", "u-subtract")
IN_SPANISH = ("<problem>\nHalla el valor de $x$ si $2x+3=11$, explicando cada paso.\n</problem>\n<solution>\n"
              "Primero restamos 3 a ambos lados de la ecuación, lo que nos da una ecuación más sencilla $2x = 8$. "
              "Después dividimos ambos lados entre 2 y encontramos el valor de la incógnita.\n\nAsí que la "
              "respuesta es $\\boxed{4}$.\n</solution>")
IN_GALICIAN = ("<problem>\nAcha o valor de $x$ se $2x+3=11$, explicando cada paso.\n</problem>\n<solution>\n"
               "Primeiro restamos 3 a ambos os lados da ecuación, o que nos dá unha ecuación máis sinxela $2x = 8$. "
               "Despois dividimos ambos os lados entre 2 e atopamos o valor da incógnita.\n\nPolo tanto, a "
               "resposta é $\\boxed{4}$.\n</solution>")

# only the solution translated: the problem, checked together with it, was kept as Spanish
PROBLEM_IN_ENGLISH = ("<problem>\nFind the value of $x$ if $2x+3=11$, explaining every step.\n</problem>"
                      + IN_SPANISH[IN_SPANISH.index("\n</problem>") + len("\n</problem>"):])


@pytest.mark.parametrize("target, reply, outcome", [
    ("ca", IN_SPANISH, "reads as es, wanted ca"), ("gl", IN_SPANISH, "reads as es, wanted gl"),
    ("eu", IN_SPANISH, "reads as es, wanted eu"), ("gl", IN_GALICIAN, "kept"), ("eu", IN_GALICIAN, "reads as gl, wanted eu"),
    ("es", IN_SPANISH, "kept"), ("es", PROBLEM_IN_ENGLISH, "reads as en, wanted es"),
], ids=["es-for-ca", "es-for-gl", "es-for-eu", "gl-for-gl", "gl-for-eu", "es-for-es", "problem-left-in-english"])
def test_a_translation_into_the_wrong_iberian_language_is_dropped(tmp_path, target, reply, outcome):
    """langdetect accepted Spanish as Catalan (a confusable pair) and cannot detect Basque or
    Galician at all: Spanish translations were kept as ca, eu and gl rows."""
    with serve_openai(lambda messages, body: reply) as server:
        (key, result), = stream(translation, [SUBTRACT], context(client(server, tmp_path), {target: 1}))
    assert key == f"{SUBTRACT['id']}:{target}"
    assert (result.detail if isinstance(result, Drop) else "kept") == outcome
    assert isinstance(result, Drop) == (outcome != "kept") and (outcome == "kept" or result.reason == "wrong_language")


def synthetic(n):
    return [openr1(f"Problem {i}: find $a_{{{i}}}$ if $a_n = 2n$.", f"Since $a_n = 2n$, $\\boxed{{{2 * i}}}$.", f"s{i}")
            for i in range(n)]


def assignment(records, targets, seed=0, oversample=1.0):
    llm = LLMClient(LLMSettings(cache_dir="/nonexistent"), api_key="sk-test")
    return [(item.key, item.language) for item in translation.items(iter(records), context(llm, targets, seed, oversample=oversample))]


def test_a_reply_with_long_whitespace_runs_is_read_in_one_pass():
    # The blocks' pattern once retried a whitespace run from every one of its characters: about half
    # an hour for this reply (0.5 s for 16,000 newlines, quadratic). A process of its own, so that such a regression fails here instead of hanging.
    code = """if True:
        from generators.translation import _parse
        print(_parse("<problem>p" + "\\n" * 1_000_000 + "q</problem>\\n<solution>s" + " " * 1_000_000 + "t</solution>")
              == ("p" + "\\n" * 1_000_000 + "q", "s" + " " * 1_000_000 + "t"))
    """
    assert stdout_of(code) == "True\n"


# The pattern `_parse` once used, kept as the definition of the blocks it reads.
BLOCKS = re.compile(r"<problem>(?P<problem>.*?)</problem>\s*<solution>(?P<solution>.*)</solution>", re.DOTALL)


def test_the_blocks_are_the_patterns_groups():
    pieces = ["<problem>", "</problem>", "<solution>", "</solution>", " ", "\n", "\xa0", "\x1c", "a", "<", "</"]
    rng = random.Random(3)
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 25)))
        match = BLOCKS.search(text)
        assert translation._blocks(text) == (match and (match["problem"], match["solution"])), text


def test_a_reply_repeating_the_blocks_unclosed_is_read_in_one_pass():
    # The pattern tried every `<problem>` with every `</problem>` after it, each up to the text's end:
    # 0.4 s for 6,000 characters of this, 25 s for 24,000 (cubic).
    code = """if True:
        from generators.translation import _blocks
        print(_blocks("<problem>x</problem> <solution>y" * 30_000), _blocks("<problem>(" * 100_000))
    """
    assert stdout_of(code) == "None None\n"


def test_a_reply_repeating_an_unclosed_math_opener_is_checked_in_one_pass():
    # A reply stuck repeating `\[` once took 11 s per 100 KB in the language check, quadratic.
    code = """if True:
        from generators.translation import _language_problem
        print(_language_problem("Multiplicamos ambos lados por dos y obtenemos \\\\[ " * 20_000, "es"),
              _language_problem("We multiply both sides by two and get \\\\[ " * 20_000, "es"))
    """
    assert stdout_of(code) == "None en\n"


def test_assignment_meets_targets_and_spreads_rows():
    rows = synthetic(10)
    order = {r["id"]: i for i, r in enumerate(rows)}
    # wanted rows fit in the input: every row is translated at most once
    got = assignment(rows, {"ca": 3, "es": 4, "eu": 2})
    per_language = {lang: [k for k, l in got if l == lang] for lang in ("ca", "es", "eu")}
    assert {lang: len(keys) for lang, keys in per_language.items()} == {"ca": 3, "es": 4, "eu": 2}
    assert len({k.split(":")[0] for k, _ in got}) == 9
    assert [order[k.split(":")[0]] for k, _ in got] == sorted(order[k.split(":")[0]] for k, _ in got)
    assert got == assignment(rows, {"ca": 3, "es": 4, "eu": 2}) != assignment(rows, {"ca": 3, "es": 4, "eu": 2}, seed=1)
    # more wanted than rows: arcs wrap, a row at most once per language, at most ceil(16/10) = 2 languages
    got = assignment(rows, {"ca": 8, "es": 8})
    assert len(got) == len(set(got)) == 16
    languages_per_row = {}
    for key, lang in got:
        languages_per_row.setdefault(key.split(":")[0], []).append(lang)
    assert max(len(v) for v in languages_per_row.values()) == 2 and len(languages_per_row) == 10
    # "all", oversampling (ctx.wanted) and languages outside the targets / target_languages
    got = assignment(rows, {"es": "all", "eu": 2, "fr": 5}, oversample=1.25)
    assert sum(l == "es" for _, l in got) == 10 and sum(l == "eu" for _, l in got) == 3
    assert {l for _, l in got} == {"es", "eu"}
    assert assignment(rows, {"en": 5}) == []


def test_generate_to_parquet(fixture_records, tmp_path):
    info = SourceInfo(key="openr1-math-translated", converter="openai_messages", licence="apache-2.0", filters={})
    with serve_openai(translator(CATALAN)) as server:
        llm = client(server, tmp_path)
        counts = generate(translation, fixture_records[:2], context(llm, {"ca": "all"}), info,
                          tmp_path / "out.parquet", tmp_path / "rejected.parquet")
        assert server.count() == 2
    assert counts.summary()["kept"] == 2
    rows = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert [r["language"] for r in rows] == ["ca", "ca"] and {r["licence"] for r in rows} == {"apache-2.0"}
    assert rows[1]["messages"][1]["content"].endswith("$\\boxed{\\frac{1}{2}}$.")
    origin = json.loads(rows[0]["origin"])
    assert origin["boxed"] == "4" and origin["source_id"] == fixture_records[0]["id"]
    assert origin["key"] == "6a1c2f0e-0000-4000-8000-000000000001" and origin["generator"] == "translation"
    assert origin["prompt_template_hash"] and origin["model"] == "deepseek-chat"


def test_a_star_target_is_shared_by_the_target_languages():
    """Each target language took the whole `"*"` target, which the mixing keeps over every language
    together: {"*": 8} into five languages asked 50 translations for 8 rows kept."""
    got = assignment(synthetic(40), {"*": 8}, oversample=1.25)
    by_language = {lang: sum(l == lang for _, l in got) for lang in ("ca", "es", "eu", "gl", "pt")}
    assert by_language == {"ca": 2, "es": 2, "eu": 2, "gl": 2, "pt": 2}
    # shared by the languages a row can go to: not English, the rows' own
    english_too = context(None, {"*": 8}, oversample=1.25)
    english_too.params = {"target_languages": ["en", "es"]}
    assert [l for _, l in ((i.key, i.language) for i in translation.items(iter(synthetic(40)), english_too))] == ["es"] * 10
    llm = LLMClient(LLMSettings(cache_dir="/nonexistent"), api_key="sk-test")
    # with no language named, it translated into English alone and skipped every English row
    with pytest.raises(GeneratorBroken, match="a '\\*' target names no language to translate into"):
        list(translation.items(iter(synthetic(4)), Context(llm=llm, targets={"*": 8})))
    # unless it wants no row (a source switched off with a target of 0: its build stopped; review)
    assert list(translation.items(iter(synthetic(4)), Context(llm=llm, targets={"*": 0}))) == []
