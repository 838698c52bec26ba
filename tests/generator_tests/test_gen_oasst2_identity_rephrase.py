"""oasst2_identity_rephrase against the local OpenAI-compatible server, with DeepSeek-like replies."""

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import generators.oasst2_identity_rephrase as gen
from generators.base import Context, generate, stream
from openai_server import Reply, serve_openai
from sftmix.llm import LLMClient, LLMSettings
from sftmix.manifest import Identity
from sftmix.normalize import SourceInfo, normalize, read_records
from sftmix.record import make_record, message
from sftmix.sources.base import Drop


FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "oasst2" / "train-00000-of-00001-88ba0162028a73fc.parquet"
CARD = Identity(name="ALIA", developer="Barcelona Supercomputing Center", languages=["ca", "en", "es", "eu", "gl", "pt"],
                licence="apache-2.0")

CONVERSATIONS = {  # name -> (language, [user, assistant, ...])
    "intro": ("en", ["Who are you?", "I am Open Assistant, a chat-based assistant created by LAION and a community of "
                     "volunteers. I can answer questions, write text and help with code."]),
    "joke": ("en", ["Hi Open Assistant! Tell me a joke about cats.",
                    "Sure! Why did the cat sit on the computer? To keep an eye on the mouse!"]),
    "quien": ("es", ["¿Quién eres?", "Soy Open Assistant, un asistente conversacional de código abierto creado por "
                     "LAION. ¿En qué puedo ayudarte?"]),
    "two_turns": ("en", ["What is your name?", "My name is Open Assistant.", "Who made you?",
                         "I was made by LAION together with thousands of volunteers."]),
    "voting": ("en", ["Who are you voting for in the next election?",
                      "I don't vote, but I can summarise the main candidates' programmes if that helps."]),
    "as_oa": ("en", ["Are you a bot?", "Yes. As Open Assistant, I am a language model and not a human."]),
    "nameless": ("en", ["What's your name?", "My name is Open Assistant, nice to meet you!"]),
    "qui": ("ca", ["Qui ets?", "Sóc Open Assistant, un assistent creat per LAION."]),
    "llamas": ("es", ["¿Cómo te llamas?", "Me llamo Open Assistant y soy un modelo de lenguaje creado por LAION."]),
    "wer": ("de", ["Wer bist du?", "Ich bin Open Assistant, ein Sprachmodell von LAION."]),
}

REPLIES = {
    "Who are you?": {"identity_related": True, "assistant_turns": [
        "I am ALIA, a chat-based assistant developed by the Barcelona Supercomputing Center. I can answer questions, "
        "write text and help with code."]},
    "Tell me a joke about cats": {"identity_related": True, "assistant_turns": [
        "Sure! By the way, my name is ALIA. Why did the cat sit on the computer? To keep an eye on the mouse!"]},
    "¿Quién eres?": {"identity_related": True, "assistant_turns": [
        "Soy ALIA, un asistente conversacional desarrollado por el Barcelona Supercomputing Center. ¿En qué puedo "
        "ayudarte?"]},
    "Who made you?": {"identity_related": True, "assistant_turns": [  # merged two turns into one
        "My name is ALIA and I was developed by the Barcelona Supercomputing Center."]},
    "Who are you voting for": {"identity_related": False, "assistant_turns": [
        "I don't vote, but I can summarise the main candidates' programmes if that helps."]},
    "Are you a bot?": {"identity_related": True, "assistant_turns": [
        "Yes. As Open Assistant, now called ALIA, I am a language model and not a human."]},
    "What's your name?": {"identity_related": True, "assistant_turns": ["Nice to meet you! I'm an AI assistant."]},
    "¿Cómo te llamas?": {"identity_related": True, "assistant_turns": [  # answers in English: language filter
        "My name is ALIA and I am a language model developed by the Barcelona Supercomputing Center. I can help you "
        "write and translate texts, answer questions about many subjects and explain difficult ideas step by step, in "
        "several languages."]},
}


def responder(messages, body):
    text = messages[-1]["content"]
    if "Qui ets?" in text:
        return 'Here is the rewritten conversation: {"identity_related": true, "assistant_turns": ["Sóc ALIA"'
    for marker, reply in REPLIES.items():
        if marker in text:
            return json.dumps(reply, ensure_ascii=False)
    return Reply("I'm sorry, I can't help with that.")


def records():
    out = []
    for name, (language, texts) in CONVERSATIONS.items():
        messages = [message("user" if i % 2 == 0 else "assistant", t) for i, t in enumerate(texts)]
        out.append(make_record(messages=messages, tools=[], source="oasst2", licence="apache-2.0", language=language,
                               origin={"key": f"msg-{name}", "message_tree_id": f"tree-{name}"}))
    return out


@pytest.fixture(scope="module")
def fixture_records(tmp_path_factory):
    """The oasst2 converter's real records from the raw fixture (none is about identity)."""
    tmp = tmp_path_factory.mktemp("oasst2")
    normalize(SourceInfo(key="oasst2", converter="oasst2", licence="apache-2.0"), [FIXTURE], tmp / "o.parquet",
              tmp / "r.parquet")
    return list(read_records([tmp / "o.parquet"]))


def context(server, tmp_path, targets=None, identity=CARD):
    client = LLMClient(LLMSettings(base_url=server.base_url, cache_dir=str(tmp_path / "cache"), concurrency=4,
                                   backoff_base_s=0.01, max_retries=1), api_key="sk-test")
    return Context(llm=client, targets=targets or {"ca": 2, "en": 8, "es": 4, "eu": 1}, identity=identity, seed=3)


def keys_of(items):
    return [json.loads(i.payload["record"]["origin"])["key"] for i in items]


def test_items_select_identity_conversations_by_hash(fixture_records):
    recs = fixture_records + records()
    ctx = Context(llm=None, targets={"ca": 2, "en": 8, "es": 4, "eu": 1}, seed=3)
    chosen = list(gen.items(recs, ctx))
    assert sorted(keys_of(chosen)) == sorted(f"msg-{n}" for n in CONVERSATIONS if n != "wer")  # de is not a target
    assert all(gen.match(r) is None for r in fixture_records)
    # a smaller target takes a hash-ranked subset that does not depend on input order
    small = Context(llm=None, targets={"en": 2}, seed=3)
    picked = keys_of(gen.items(recs, small))
    assert len(picked) == 3 and picked == keys_of(gen.items(list(reversed(recs)), small))
    assert {i.payload["strength"] for i in chosen if keys_of([i]) == ["msg-joke"]} == {"weak"}
    # a "*" target: that many over every language, as the mixing keeps it (it took that many of each)
    star = list(gen.items(recs, Context(llm=None, targets={"*": 2}, seed=3, oversample=1.0)))
    assert len(star) == 2 and keys_of(star) == keys_of(gen.items(list(reversed(recs)), Context(
        llm=None, targets={"*": 2}, seed=3, oversample=1.0)))


def test_stream_rewrites_assistant_turns_only(tmp_path, fixture_records):
    inputs = fixture_records + records()
    with serve_openai(responder) as server:
        ctx = context(server, tmp_path)
        results = {json.loads(next(r for r in inputs if r["id"] == key)["origin"])["key"]: r
                   for key, r in stream(gen, inputs, ctx)}
        assert {k: r.reason for k, r in results.items() if isinstance(r, Drop)} == {
            "msg-two_turns": "turn_count_mismatch", "msg-voting": "not_identity_related",
            "msg-as_oa": "stale_identity", "msg-nameless": "identity_missing", "msg-qui": "invalid_json",
        }
        intro = results["msg-intro"]
        assert intro.messages[0]["content"] == "Who are you?" and intro.language == "en"
        assert intro.messages[1]["content"].startswith("I am ALIA") and intro.key == "msg-intro"
        assert intro.meta["message_tree_id"] == "tree-intro" and intro.meta["generator"] == "oasst2_identity_rephrase"
        assert results["msg-joke"].messages[0]["content"] == "Hi Open Assistant! Tell me a joke about cats."  # user kept
        assert results["msg-quien"].messages[1]["content"].startswith("Soy ALIA")
        prompt = next(b["messages"][0]["content"] for b in server.bodies if "¿Quién eres?" in b["messages"][0]["content"])
        assert "Spanish" in prompt and "exactly 1 strings" in prompt
        requests = ctx.llm.stats.requests
        again = context(server, tmp_path)
        assert len(list(stream(gen, inputs, again))) == len(results)
        assert again.llm.stats.requests == 0 and again.llm.stats.cache_hits == requests


def test_no_identity_card(tmp_path):
    with serve_openai(responder) as server:
        results = list(stream(gen, records(), context(server, tmp_path, targets={"es": 5}, identity=None)))
        assert [r.reason for _, r in results] == ["no_identity_card"] * 2 and server.count() == 0


def test_generate_through_rule_filters_to_parquet(tmp_path, fixture_records):
    with serve_openai(responder) as server:
        info = SourceInfo(key="oasst2_self-identity-rephrase", converter="openai_messages", licence="apache-2.0", filters={})
        counts = generate(gen, fixture_records + records(), context(server, tmp_path), info, tmp_path / "out.parquet",
                          tmp_path / "rejected.parquet")
    rows = pq.read_table(tmp_path / "out.parquet").to_pylist()
    rejected = pq.read_table(tmp_path / "rejected.parquet").to_pylist()
    assert counts.read == 9 and counts.kept == len(rows) == 3
    assert Counter((r["stage"], r["reason"]) for r in rejected) == {
        ("generate", "turn_count_mismatch"): 1, ("generate", "not_identity_related"): 1,
        ("generate", "stale_identity"): 1, ("generate", "identity_missing"): 1, ("generate", "invalid_json"): 1,
        ("language", "language_mismatch"): 1,
    }
    assert sorted(r["language"] for r in rows) == ["en", "en", "es"]
    assert all("Open Assistant" not in m["content"] for r in rows for m in r["messages"] if m["role"] == "assistant")
