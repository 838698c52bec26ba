"""generators/eif_augmentation.py against the local OpenAI-compatible server, on real human-source records."""

import json

import pyarrow.parquet as pq
import pytest


from generators import eif, eif_augmentation
from generators.base import Context, generate, stream
from human_records import normalized_records
from openai_server import Fault, Reply, serve_openai
from sftmix.llm import LLMClient, LLMSettings
from sftmix.normalize import SourceInfo
from sftmix.sources.base import Drop

SOURCES = [("aya", "aya/train-00000-of-00001.parquet"), ("dolly", "dolly/databricks-dolly-15k.jsonl"),
           ("no_robots", "no_robots/train-00000-of-00001.parquet"), ("rag_multilingual", "rag_multilingual/train.jsonl")]


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return normalized_records(tmp_path_factory.mktemp("human"), SOURCES)


def pick(records, *starts):
    """The records whose last user turn starts with one of `starts`, in input order."""
    def last_user(r):
        return [m["content"] for m in r["messages"] if m["role"] == "user"][-1]
    return [r for r in records if any(last_user(r).startswith(s) for s in starts)]


NO_COMMA = {"id": "punctuation:no_comma", "kwargs": {}}
SHORT = {"id": "length_constraints:number_words", "kwargs": {"num_words": 40, "relation": "less than"}}
TITLE = {"id": "detectable_format:title", "kwargs": {}}
END = {"id": "startend:end_checker", "kwargs": {"end_phrase": "Is there anything else I can help with?"}}
KEYWORDS = {"id": "keywords:existence", "kwargs": {"keywords": ["història", "ciutat"]}}
BULLETS = {"id": "detectable_format:number_bullet_lists", "kwargs": {"num_bullets": 2}}

# request start -> (constraints, first answer, answer to the repair turn)
SCRIPT = {
    "What is the capital of Kenya?": (
        [NO_COMMA, SHORT], "The capital of Kenya is Nairobi. It is also the largest city in the country.", None),
    "¿Cuál es el río más largo de España?": (
        [TITLE], "El río más largo de la península es el Tajo, con unos 1007 km, aunque desemboca en Lisboa.",
        "<<El río más largo de España>>\n\nEl Tajo es el río más largo de la península ibérica (unos 1007 km), "
        "pero desemboca en Portugal. El más largo que discurre íntegramente por España es el Ebro."),
    "Which is a species of fish?": (
        [END], "Tope is a species of fish (a small shark); rope is not.",
        "Tope is a species of fish: it is a small shark. Rope is just a cord."),
    "Quan es va fundar el Futbol Club Barcelona?": (
        [KEYWORDS], Reply("El Futbol Club Barcelona es va fundar el 29 de novembre de 1899. La història del club "
                          "comença quan Joan Gamper", finish_reason="length"), None),
    "Who is the founder of Coca-Cola?": (
        [BULLETS], "* J-John Pemberton, I th-think, a pharmacist from Atlanta.\n"
                   "* B-but Asa Candler is the one who m-made it a company... I'm sorry if that's wrong.", None),
}


def scripted_constraints(ctx, item, request):
    return next(c for start, (c, _, _) in SCRIPT.items() if request.startswith(start))


def responder(messages, body):
    users = [m["content"] for m in messages if m["role"] == "user"]
    repair = users[-1].startswith("Your answer does not meet")
    request = users[-2] if repair else users[-1]
    _, first, second = next(v for start, v in SCRIPT.items() if request.startswith(start))
    return second if repair else first


def client(server, tmp_path):
    return LLMClient(LLMSettings(base_url=server.base_url, cache_dir=str(tmp_path / "cache"), concurrency=4,
                                 backoff_base_s=0.01), api_key="sk-test")


def test_items_hash_selection_per_language(records):
    llm = LLMClient(LLMSettings(cache_dir="/nonexistent"), api_key="sk-test")

    def keys(targets, seed=0):
        return [(i.key, i.language) for i in eif_augmentation.items(iter(records), Context(llm=llm, targets=targets, seed=seed))]

    by_language = {}
    for r in records:
        by_language.setdefault(r["language"], []).append(r["id"])
    # en: 12 usable records, wanted(2) = 3 with oversampling; eu has no constraint wording; pt is not targeted
    got = keys({"en": 2, "es": "all", "eu": 5})
    assert sum(l == "en" for _, l in got) == 3 and {l for _, l in got} == {"en", "es"}
    assert [k for k, l in got if l == "es"] == by_language["es"]
    order = [r["id"] for r in records]
    for group in ([k for k, l in got if l == "es"], [k for k, l in got if l == "en"]):  # "all" first, as read
        assert [order.index(k) for k in group] == sorted(order.index(k) for k in group)
    assert [l for _, l in got] == ["es"] * len(by_language["es"]) + ["en"] * 3
    assert got == keys({"en": 2, "es": "all", "eu": 5})
    assert {k for k, l in got if l == "en"} != {k for k, l in keys({"en": 2}, seed=7)}
    assert keys({"*": "all"}) == [(r["id"], r["language"]) for r in records if r["language"] in eif.LANGUAGES]
    # a number over every language, as the mixing keeps it (it was that number in each language)
    star = keys({"*": 4})
    assert len(star) == 5 and len({l for _, l in star}) > 1


def test_constraints_answers_repairs_and_drops(records, tmp_path, monkeypatch):
    monkeypatch.setattr(eif_augmentation, "_constraints", scripted_constraints)
    seeds = pick(records, *SCRIPT)
    ctx_targets = {"en": "all", "es": "all", "ca": "all"}
    with serve_openai(responder, faults=[Fault("server_error", match="Kenya", count=1)]) as server:
        llm = client(server, tmp_path)
        results = list(stream(eif_augmentation, seeds, Context(llm=llm, targets=ctx_targets)))
        # 5 first answers, 1 retried 500, 2 repairs (title fixed, end phrase still missing)
        assert server.count() == 8 and llm.stats.requests == 8 and llm.stats.cache_hits == 0
        rerun = client(server, tmp_path)
        again = list(stream(eif_augmentation, seeds, Context(llm=rerun, targets=ctx_targets)))
        assert server.count() == 8 and rerun.stats.cache_hits == 7
        hidden = [b["messages"] for b in server.bodies]
    assert [(k, getattr(r, "reason", None)) for k, r in again] == [(k, getattr(r, "reason", None)) for k, r in results]

    outcome = {k: (r.reason, r.detail) if isinstance(r, Drop) else r for k, r in results}
    by_start = {start: outcome[pick(seeds, start)[0]["id"]] for start in SCRIPT}
    assert by_start["Which is a species of fish?"] == ("constraints_not_met", "startend:end_checker")
    assert by_start["Quan es va fundar el Futbol Club Barcelona?"] == ("truncated", "finish_reason=length")

    kenya = by_start["What is the capital of Kenya?"]
    assert kenya.language == "en" and kenya.meta["repaired"] is False
    assert kenya.messages[0]["content"] == ("What is the capital of Kenya?\n\nIn your entire response, refrain from "
                                            "the use of any commas.\nAnswer with less than 40 words.")
    assert kenya.meta["constraints"] == [NO_COMMA, SHORT]
    assert kenya.meta["instruction_id_list"] == ["punctuation:no_comma", "length_constraints:number_words"]
    assert kenya.meta["generator"] == "eif_augmentation" and kenya.meta["seed_source"] == "aya"

    river = by_start["¿Cuál es el río más largo de España?"]
    assert river.meta["repaired"] is True and river.messages[-1]["content"].startswith("<<El río más largo")
    assert river.messages[0]["content"].endswith("dobles corchetes angulares, como <<poema de alegría>>.")

    bunny = by_start["Who is the founder of Coca-Cola?"]
    original = pick(seeds, "Who is the founder of Coca-Cola?")[0]["messages"]
    assert [m["role"] for m in bunny.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert bunny.messages[:3] == original[:3]  # earlier turns unchanged, the persona kept
    for row in (kenya, river, bunny):  # every kept row re-verifies from its own meta
        assert all(eif.verify(row.messages[-1]["content"], row.meta["constraints"]))
    bunny_request = next(m for m in hidden if "Coca-Cola" in m[-1]["content"])
    assert bunny_request[0]["role"] == "system" and bunny_request[0]["content"].startswith("Bunny is a chatbot")
    assert "Follow every one of them exactly" in bunny_request[0]["content"]
    assert sum(m["role"] == "system" for m in bunny_request) == 1
    repairs = sorted(m[-1]["content"] for m in hidden if m[-1]["content"].startswith("Your answer does not meet"))
    assert len(repairs) == 2 and "- Finish your response with this exact phrase" in repairs[0]
    assert "- Tu respuesta debe incluir un título" in repairs[1] and "in Spanish" in repairs[1]


def test_real_sampler_rows_reverify_and_land_in_parquet(records, tmp_path):
    def plain(messages, body):  # a model that answers the request and ignores the constraints
        if "Kenya" in messages[-1]["content"]:
            return "The capital of Kenya is Nairobi, which is also its largest city."
        return "Red and gold they drift and fall\nsoftly answering winter's call."

    info = SourceInfo(key="eif-augmentation", converter="openai_messages", licence="apache-2.0", filters={})
    with serve_openai(plain) as server:
        llm = client(server, tmp_path)
        ctx = Context(llm=llm, targets={"en": "all"}, seed=3, params={"repair_attempts": 0})
        counts = generate(eif_augmentation, pick(records, "What is the capital of Kenya?", "Write a two-line poem"),
                          ctx, info, tmp_path / "out.parquet", tmp_path / "rejected.parquet")
        asked = [b["messages"][-1]["content"] for b in server.bodies]
    rows = pq.read_table(tmp_path / "out.parquet").to_pylist()
    rejected = pq.read_table(tmp_path / "rejected.parquet").to_pylist()
    assert len(asked) == 2 and counts.summary()["kept"] == len(rows) and len(rows) + len(rejected) == 2
    for row in rows:
        origin = json.loads(row["origin"])
        assert row["language"] == "en" and 1 <= len(origin["constraints"]) <= 3
        assert all(eif.verify(row["messages"][-1]["content"], origin["constraints"]))
        assert row["messages"][-2]["content"] in asked
    for drop in rejected:
        assert drop["reason"] == "constraints_not_met" and drop["stage"] == "generate"
    for text in asked:  # the appended instructions are eif.describe's wording, nothing else
        request, _, appended = text.partition("\n\n")
        assert request in ("What is the capital of Kenya?", "Write a two-line poem about autumn leaves.")
        assert appended and all(line.strip() for line in appended.split("\n") if not line.startswith("*"))
