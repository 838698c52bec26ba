"""generators/multiturn_augmentation.py against the local OpenAI-compatible server, on real human-source records."""

import json

import pyarrow.parquet as pq
import pytest


from generators import multiturn_augmentation as mt
from generators.base import Context, generate, stream
from human_records import normalized_records
from openai_server import Reply, serve_openai
from own_process import stdout_of
from sftmix.llm import LLMClient, LLMSettings, Prices, Spending
from sftmix.normalize import SourceInfo
from sftmix.sources.base import Converted

SOURCES = [("aya", "aya/train-00000-of-00001.parquet"), ("dolly", "dolly/databricks-dolly-15k.jsonl"),
           ("no_robots", "no_robots/train-00000-of-00001.parquet")]


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return normalized_records(tmp_path_factory.mktemp("human"), SOURCES)


def pick(records, *words):
    return [r for r in records if any(w in r["messages"][-2]["content"] for w in words)]


# conversation marker -> follow-up question per transcript size (number of user turns so far)
QUESTIONS = {
    "Kenya": {1: "Why did Nairobi become the capital instead of Mombasa, which is much older?",
              2: "And how big is Nairobi today compared with Mombasa?"},
    "fotosíntesis": {1: "Can you explain what chlorophyll actually does in this process?"},  # wrong language
    "mendirik": {1: "Eta zein da Hego Euskal Herriko mendirik altuena?",
                 2: "Zenbat denbora behar da Aneto igotzeko Benasketik?"},
    "Coca-Cola": {2: "And who came up with Pepsi?", 3: "So which one is older, Coca-Cola or Pepsi?"},
}
ANSWERS = {
    QUESTIONS["Kenya"][1]: "Nairobi grew around a depot of the Uganda Railway, built in 1899 halfway between "
                           "Mombasa and Lake Victoria. Its cooler highland climate and central position made it "
                           "the better seat for the colonial administration, which moved there from Mombasa in 1905.",
    QUESTIONS["Kenya"][2]: "Nairobi has about 4.4 million inhabitants (2019 census), roughly three and a half times "
                           "Mombasa's 1.2 million.",
    QUESTIONS["mendirik"][1]: "Hego Euskal Herriko mendirik altuena Hiru Errege Mahaia da (2.444 m), Nafarroako "
                              "Erronkari ibarrean.",
    QUESTIONS["mendirik"][2]: Reply("Benasketik Anetora igotzeko, normalean bi egun erabiltzen dira: lehenengo "
                                    "egunean Renclusako aterpera", finish_reason="length"),
    QUESTIONS["Coca-Cola"][2]: "Umm, th-that was Caleb Bradham, I think? A p-pharmacist in North Carolina, "
                               "in 1893... sorry if I got that wrong.",
    QUESTIONS["Coca-Cola"][3]: "C-Coca-Cola, I'm pretty sure. It was 1886, so... s-seven years before Pepsi?",
}


def responder(messages, body):
    prompt = messages[0]["content"]
    if "Write the user's next message" in prompt:  # the follow-up question, JSON
        assert body["response_format"] == {"type": "json_object"}
        if "camels" in prompt:
            return "Here is a follow-up question the user might ask: How much water can a camel drink at once?"
        users = prompt.count("[User]\n")
        if "Kenya" in prompt and users == 1 and len(messages) == 1:  # first reply not JSON, the re-ask is fine
            return "Sure! Here is the follow-up:\n" + QUESTIONS["Kenya"][1]
        marker = next(m for m in QUESTIONS if m in prompt)
        return json.dumps({"question": QUESTIONS[marker][users]}, ensure_ascii=False)
    assert messages[0]["role"] == "system" and "Answer the user's last message" in prompt
    return ANSWERS[messages[-1]["content"]]


def client(server, tmp_path):
    return LLMClient(LLMSettings(base_url=server.base_url, cache_dir=str(tmp_path / "cache"), concurrency=4,
                                 backoff_base_s=0.01), api_key="sk-test")


def test_extensions_partial_turns_and_drops(records, tmp_path):
    seeds = pick(records, "Kenya", "fotosíntesis", "mendirik", "Coca-Cola", "camels")
    assert len(seeds) == 5
    targets, params = {"en": "all", "es": "all", "eu": "all"}, {"min_new_turns": 2, "max_new_turns": 2}
    with serve_openai(responder) as server:
        llm = client(server, tmp_path)
        results = list(stream(mt, seeds, Context(llm=llm, targets=targets, params=params)))
        # Kenya 2+1+2, fotosíntesis 1, mendirik 4, Coca-Cola 4, camels 3 (invalid JSON asked three times)
        assert server.count() == 17 and llm.stats.requests == 17
        rerun = client(server, tmp_path)
        again = list(stream(mt, seeds, Context(llm=rerun, targets=targets, params=params)))
        assert server.count() == 17 and rerun.stats.cache_hits == 17
        bodies = server.bodies
    assert [(k, getattr(r, "messages", None)) for k, r in again] == [(k, getattr(r, "messages", None)) for k, r in results]

    out = {next(w for w in ("Kenya", "fotosíntesis", "mendirik", "Coca-Cola", "camels") if w in json.dumps(
        next(s for s in seeds if s["id"] == k)["messages"], ensure_ascii=False)): r for k, r in results}
    assert (out["fotosíntesis"].reason, out["fotosíntesis"].detail) == ("wrong_language", "follow-up reads as en, wanted es")
    assert out["camels"].reason == "invalid_json" and out["camels"].detail.startswith("follow-up: ")

    kenya = out["Kenya"]
    original = pick(seeds, "Kenya")[0]["messages"]
    assert kenya.messages[:2] == original and len(kenya.messages) == 6 and kenya.language == "en"
    assert [m["content"] for m in kenya.messages[2:]] == [QUESTIONS["Kenya"][1], ANSWERS[QUESTIONS["Kenya"][1]],
                                                          QUESTIONS["Kenya"][2], ANSWERS[QUESTIONS["Kenya"][2]]]
    assert kenya.meta["added_turns"] == kenya.meta["planned_turns"] == 2 and "stopped" not in kenya.meta
    assert kenya.meta["original_turns"] == 2 and len(kenya.meta["follow_up_kinds"]) == 2
    assert kenya.meta["generator"] == "multiturn_augmentation" and kenya.meta["seed_source"] == "aya"

    basque = out["mendirik"]  # the second answer was cut: the row keeps the first new turn
    assert basque.language == "eu" and len(basque.messages) == 4
    assert basque.meta["added_turns"] == 1 and basque.meta["stopped"] == "truncated: answer: finish_reason=length"

    bunny = out["Coca-Cola"]
    original = pick(seeds, "Coca-Cola")[0]["messages"]
    assert bunny.messages[:5] == original and [m["role"] for m in bunny.messages[5:]] == ["user", "assistant"] * 2
    answer_bodies = [b["messages"] for b in bodies if "Pepsi" in b["messages"][-1]["content"]
                     and b["messages"][0]["content"].startswith("Bunny")]
    assert answer_bodies and all(sum(m["role"] == "system" for m in b) == 1 for b in answer_bodies)
    assert all("Answer the user's last message in English" in b[0]["content"] for b in answer_bodies)



def test_the_budget_reached_in_a_later_turn_keeps_the_turns_made(records, tmp_path):
    """`BudgetExhausted` was no `Drop`: a row whose first new turn was made and paid for was
    dropped whole as `budget_exhausted` (up to a window of rows in flight at the cap)."""
    kenya = pick(records, "Kenya")
    spending, spent_before_turn_2 = Spending(), []

    def responder_noting_spending(messages, body):
        if "Write the user's next message" in messages[0]["content"] and messages[0]["content"].count("[User]\n") == 2:
            spent_before_turn_2.append(spending.cost_usd)
        return responder(messages, body)

    def run(budget, cache):
        settings = LLMSettings(base_url=server.base_url, cache_dir=str(tmp_path / cache), concurrency=1,
                               budget_usd=budget, prices=Prices(1e4, 1e4, 1e4))
        llm = LLMClient(settings, api_key="sk-test", spending=spending if budget is None else None)
        (_, row), = stream(mt, kenya, Context(llm=llm, targets={"en": "all"}, params={"min_new_turns": 2}))
        return row

    with serve_openai(responder_noting_spending) as server:
        assert run(None, "whole").meta["added_turns"] == 2
        row = run(spent_before_turn_2[0], "capped")
    assert isinstance(row, Converted) and len(row.messages) == 4 and row.messages[:2] == kenya[0]["messages"]
    assert row.meta["added_turns"] == 1 and row.meta["stopped"].startswith("budget_exhausted: budget of $")

def test_a_reply_repeating_an_unclosed_math_opener_is_checked_in_one_pass():
    # A reply stuck repeating `\(` once took 11 s per 100 KB in the language check, quadratic.
    code = """if True:
        from generators.multiturn_augmentation import _language_problem
        print(_language_problem("Multiplicamos ambos lados por dos y obtenemos \\\\( " * 20_000, "es"),
              _language_problem("We multiply both sides by two and get \\\\( " * 20_000, "es"))
    """
    assert stdout_of(code) == "None en\n"


FOLLOW_UP = {  # one follow-up question, in each language a conversation may be extended in
    "es": "¿Y cómo podríamos comprobar que la solución es correcta sin volver a resolver toda la ecuación desde el principio?",
    "ca": "I com podríem comprovar que la solució és correcta sense tornar a resoldre tota l'equació des del principi?",
    "gl": "E como poderiamos comprobar que a solución é correcta sen volver resolver toda a ecuación desde o principio?",
    "eu": "Eta nola egiaztatu genezake soluzioa zuzena dela ekuazio osoa hasieratik berriro ebatzi gabe?",
}


@pytest.mark.parametrize("wanted", ["ca", "gl", "eu"])
def test_a_follow_up_in_another_iberian_language_is_the_wrong_language(wanted):
    """A Spanish follow-up was accepted for ca (langdetect's confusable pair) and for eu and gl
    (no langdetect profile): the rows shipped labelled in a language they are not in."""
    assert mt._language_problem(FOLLOW_UP[wanted], wanted) is None
    assert {other: mt._language_problem(FOLLOW_UP[other], wanted) for other in FOLLOW_UP if other != wanted} == {
        other: other for other in FOLLOW_UP if other != wanted}


def test_items_and_planned_turns_are_deterministic(records, tmp_path):
    llm = LLMClient(LLMSettings(cache_dir=str(tmp_path / "none")), api_key="sk-test")

    def keys(targets, seed=0):
        return [(i.key, i.language) for i in mt.items(iter(records), Context(llm=llm, targets=targets, seed=seed))]

    got = keys({"en": 4, "eu": 1, "ca": 10})
    assert sum(l == "en" for _, l in got) == 5 and sum(l == "eu" for _, l in got) == 1  # ctx.wanted oversamples
    assert got == keys({"en": 4, "eu": 1, "ca": 10}) and got != keys({"en": 4, "eu": 1}, seed=5)
    assert not any(l == "ca" for _, l in got)  # no Catalan input here
    planned = {mt.Context(llm=llm, seed=0).rng(k).randint(1, 2) for k, _ in keys({"en": "all"})}
    assert planned == {1, 2}


def test_an_item_of_a_generated_record_names_its_inputs_licences_too(records, tmp_path):
    """alia-40b-instruct extends fineweb-edu_qa's apache-2.0 rows, whose questions hold FineWeb-Edu's
    odc-by text (`origin.input_licences`): their items named apache-2.0 alone."""
    llm = LLMClient(LLMSettings(cache_dir=str(tmp_path / "none")), api_key="sk-test")
    record = {**records[0], "origin": json.dumps({**json.loads(records[0]["origin"]), "input_licences": ["odc-by"]})}
    [item] = [i for i in mt.items(iter([record]), Context(llm=llm, targets={"*": "all"})) if i.key == record["id"]]
    assert item.licences == tuple(sorted({record["licence"], "odc-by"}))
    # an origin nested past json's recursion limit (an openai_messages source keeps a raw row's as given)
    deep = {**records[0], "origin": '{"a":' * 5000 + "1" + "}" * 5000}
    [item] = [i for i in mt.items(iter([deep]), Context(llm=llm, targets={"*": "all"})) if i.key == deep["id"]]
    assert item.licences == (deep["licence"],)


def test_generate_to_parquet(records, tmp_path):
    info = SourceInfo(key="multiturn-augmentation", converter="openai_messages", licence="apache-2.0", filters={})
    with serve_openai(responder) as server:
        llm = client(server, tmp_path)
        ctx = Context(llm=llm, targets={"en": 1}, params={"min_new_turns": 1, "max_new_turns": 1})
        counts = generate(mt, pick(records, "Kenya"), ctx, info, tmp_path / "out.parquet", tmp_path / "rejected.parquet")
    assert counts.summary()["kept"] == 1
    row = pq.read_table(tmp_path / "out.parquet").to_pylist()[0]
    assert row["language"] == "en" and row["licence"] == "apache-2.0" and len(row["messages"]) == 4
    origin = json.loads(row["origin"])
    assert origin["added_turns"] == 1 and origin["seed_id"] == pick(records, "Kenya")[0]["id"]


def test_rows_are_made_only_from_records_their_licence_may_derive_from(records, tmp_path):
    """The manifest checks each input source's licence; rows that carry their own (TowerBlocks', a
    mixture's) were not checked at all: a cc-by-sa row's turns came out word for word in an apache-2.0 row."""
    kenya = pick(records, "Kenya")[0]
    share_alike = {**kenya, "id": "a-cc-by-sa-row", "licence": "cc-by-sa-4.0", "source": "tower-blocks"}
    info = SourceInfo(key="multiturn-augmentation", converter="openai_messages", licence="apache-2.0", filters={})
    with serve_openai(responder) as server:
        ctx = Context(llm=client(server, tmp_path), targets={"en": 2}, params={"min_new_turns": 1, "max_new_turns": 1})
        counts = generate(mt, [share_alike, kenya], ctx, info, tmp_path / "out.parquet", tmp_path / "rejected.parquet")
    rows = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert [json.loads(r["origin"])["seed_id"] for r in rows] == [kenya["id"]]
    rejected = pq.read_table(tmp_path / "rejected.parquet").to_pylist()
    assert [(r["stage"], r["reason"], r["detail"]) for r in rejected] == [
        ("generate", "licence_incompatible",
         "cc-by-sa-4.0 row of 'tower-blocks': share-alike data must keep its licence, not become apache-2.0")]
    assert counts.summary()["kept"] == 1
