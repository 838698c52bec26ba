"""self_identity against the local OpenAI-compatible server, with DeepSeek-like replies (good and bad)."""

import json
import re
from collections import Counter

import pyarrow.parquet as pq
import pytest

import generators.self_identity as gen
from generators.base import Context, generate, stream
from openai_server import Reply, serve_openai
from sftmix.llm import LLMClient, LLMSettings
from sftmix.manifest import Identity
from sftmix.normalize import SourceInfo
from sftmix.sources.base import Drop


CARD = Identity(name="ALIA", developer="Barcelona Supercomputing Center", languages=["ca", "en", "es", "eu", "gl", "pt"],
                licence="apache-2.0", description="ALIA-40b-instruct, an instruction-tuned model of the Language "
                "Technologies Unit at the Barcelona Supercomputing Center (BSC-LT).")

EN = {
    "who_are_you": ("Hey, who am I actually talking to right now?",
                    "I'm ALIA, an AI assistant developed by the Barcelona Supercomputing Center. I can help you write, "
                    "translate, answer questions and explain things."),
    "developer": ("Who built you?", "I was developed by OpenAI."),  # leaks another developer -> other_identity
    "name": ("what do i call u", "You can simply call me your assistant! How can I help you today?"),  # no name
    "languages": ("Which languages can you handle?",
                  "I work especially well in Catalan, English, Spanish, Basque, Galician and Portuguese."),
    "licence": ("Is the model open? Could I use it in my company?",
                "Yes. I am released under the Apache 2.0 licence, which allows commercial use as long as you keep the "
                "licence and copyright notices."),
    "capabilities": ("So what can you actually do for me?",
                     "I can answer questions, summarise and translate texts, help you draft emails or essays, and "
                     "explain concepts step by step."),
    "human_or_machine": ("Be honest: is there a person typing these answers?",
                         "No, I'm an AI language model, not a person. I don't have feelings or consciousness, but I'm "
                         "happy to help."),
}
CA = {
    "who_are_you": ("Hola! Qui ets?", "Sóc l'ALIA, un assistent d'intel·ligència artificial desenvolupat pel "
                    "Barcelona Supercomputing Center. En què et puc ajudar?"),
    "name": ("Com et dius?", "Em dic ALIA. Estic aquí per ajudar-te amb el que necessitis."),
    "developer": ("Qui t'ha creat?", "M'ha desenvolupat el Barcelona Supercomputing Center."),
    "licence": ("Ets un model obert?", "Sí, estic publicat amb la llicència Apache 2.0."),
}
CA_FOLLOW = "I en quines llengües em pots respondre?"


def responder(messages, body):
    text = messages[-1]["content"]
    if text.startswith("Your reply"):  # complete_json's re-ask: the model tries again, still badly
        return "Here is the conversation you asked for:\n{\"messages\": [}"
    topic = re.search(r"TOPIC: (\w+)", text).group(1)
    language = re.search(r"LANGUAGE: (\w+)", text).group(1)
    turns = int(re.search(r"exactly (\d) turns", text).group(1))
    if topic == "knowledge_cutoff":
        return "Sure! Here is the conversation:\n{\"messages\": [{\"role\": \"user\", \"content\": \"How recent"
    if topic == "browsing":
        return Reply('{"messages": [{"role": "user", "content": "Can you look something up online for me?"}, '
                     '{"role": "assistant", "content": "I don\'t have access to', finish_reason="length")
    if language == "Catalan":
        if topic == "languages":  # answers in English: a wrong_language drop
            pairs = [("Quines llengües parles?", "I can understand and write Catalan, English, Spanish, Basque, "
                      "Galician and Portuguese. Those are the languages I was trained to handle especially well, so "
                      "feel free to write to me in any of them and I will answer in the same language you use.")]
        else:
            pairs = [CA[topic]]
        pairs += [(CA_FOLLOW, "Puc respondre en català, castellà, anglès, basc, gallec i portuguès.")]
    elif topic == "limitations":  # one turn too many: bad structure
        return json.dumps({"messages": [{"role": "user", "content": "What are your limits?"},
                                        {"role": "assistant", "content": "I can make mistakes."},
                                        {"role": "user", "content": "Ok."}]})
    else:
        pairs = [EN[topic], ("And what else should I know about that?", "I'm ALIA, so feel free to ask me more.")]
    out = []
    for user, assistant in pairs[: turns // 2]:
        out += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return json.dumps({"messages": out}, ensure_ascii=False)


def view(result):
    return result.reason if isinstance(result, Drop) else result.messages


def context(server, tmp_path, identity=CARD, targets=None):
    client = LLMClient(LLMSettings(base_url=server.base_url, cache_dir=str(tmp_path / "cache"), concurrency=4,
                                   backoff_base_s=0.01, max_retries=1), api_key="sk-test")
    return Context(llm=client, targets=targets or {"en": 8, "ca": 4}, identity=identity, seed=7)


def test_items_are_deterministic_and_cover_topics(tmp_path):
    ctx = Context(llm=None, targets={"en": 8, "ca": 4, "eu": "all"}, identity=CARD, seed=7)
    first = list(gen.items([], ctx))
    assert [i.key for i in first] == [i.key for i in gen.items([], ctx)]
    assert [i.payload for i in first] == [i.payload for i in gen.items([], ctx)]
    by_language = Counter(i.language for i in first)
    assert by_language == {"en": 10, "ca": 5, "eu": len(gen.TOPICS)}  # 8 * 1.25, 4 * 1.25, one per topic
    assert [i.payload["topic"] for i in first if i.language == "eu"] == [t[0] for t in gen.TOPICS]
    no_licence = Identity(name="ALIA", developer="BSC")
    assert "licence" not in {i.payload["topic"] for i in gen.items([], Context(llm=None, targets={"en": 40}, identity=no_licence))}


def test_stream_drops_with_reasons_and_reruns_from_cache(tmp_path):
    with serve_openai(responder) as server:
        ctx = context(server, tmp_path)
        results = list(stream(gen, [], ctx))
        requests = ctx.llm.stats.requests
        reasons = {key: r.reason for key, r in results if isinstance(r, Drop)}
        kept = {key: r for key, r in results if not isinstance(r, Drop)}
        assert reasons == {
            "self_identity:en:00001": "identity_missing", "self_identity:en:00002": "other_identity",
            "self_identity:en:00005": "invalid_json", "self_identity:en:00007": "bad_structure",
            "self_identity:en:00008": "truncated", "self_identity:ca:00003": "wrong_language",
        }
        assert len(kept) == 9
        row = kept["self_identity:en:00000"]
        assert row.language == "en" and row.messages[0]["role"] == "user" and "ALIA" in row.messages[1]["content"]
        assert row.meta["generator"] == "self_identity" and row.meta["seed_id"] == "self_identity:en:00000"
        assert row.meta["topic"] == "who_are_you" and len(row.meta["prompt_template_hash"]) == 16
        assert kept["self_identity:ca:00000"].language == "ca"
        # the prompt names the output language and carries the card
        prompts = [b["messages"][0]["content"] for b in server.bodies if len(b["messages"]) == 1]
        assert any("LANGUAGE: Catalan" in p and "Barcelona Supercomputing Center" in p for p in prompts)

        again = context(server, tmp_path)
        assert [(k, view(r)) for k, r in stream(gen, [], again)] == [(k, view(r)) for k, r in results]
        assert again.llm.stats.requests == 0 and again.llm.stats.cache_hits == requests  # truncated and invalid replies are cached too
        assert server.count() == requests


def test_a_short_answer_in_another_language_is_dropped_the_card_names_aside(tmp_path):
    """The rule `language` filter checks assistant text of 200 characters or more: a Spanish
    conversation written for a Galician or Basque item was kept as gl and eu."""
    spanish = [("Hola, ¿quién eres y quién te ha creado exactamente?",
                "¡Hola! Me llamo ALIA, un asistente de inteligencia artificial creado por el Barcelona "
                "Supercomputing Center. ¿En qué puedo ayudarte hoy?"),
               ("¿Y puedes responder en otros idiomas?", "Sí, puedo responder en catalán, español, inglés y otros.")]

    def reply(messages, body):
        turns = int(re.search(r"exactly (\d) turns", messages[-1]["content"]).group(1))
        return json.dumps({"messages": [{"role": role, "content": text} for pair in spanish[: turns // 2]
                                        for role, text in zip(("user", "assistant"), pair)]}, ensure_ascii=False)

    with serve_openai(reply) as server:
        results = list(stream(gen, [], context(server, tmp_path, targets={"gl": 1, "eu": 1, "es": 1})))
    outcomes = {key.split(":")[1]: getattr(r, "detail", "kept") for key, r in results if key.endswith("00000")}
    # Spanish, whose developer's name reads as English, is kept as Spanish
    assert outcomes == {"gl": "reads as es, wanted gl", "eu": "reads as es, wanted eu", "es": "kept"}


def test_a_conversation_too_short_to_tell_its_language_is_kept(tmp_path):
    """CLD2 calls a dozen characters reliable: "Com et dius? Em dic ALIA." read as Portuguese, and 5
    of 8 natural Catalan answers to "what is your name" were wrong_language drops."""
    short = json.dumps({"messages": [{"role": "user", "content": "Com et dius?"},
                                     {"role": "assistant", "content": "Em dic ALIA."}]}, ensure_ascii=False)
    with serve_openai(lambda messages, body: short) as server:
        ctx = context(server, tmp_path, targets={"ca": 1})
        results = [r for _, r in stream(gen, [], ctx) if not isinstance(r, Drop) or r.reason != "bad_structure"]
    assert results and all(not isinstance(r, Drop) for r in results), [getattr(r, "detail", None) for r in results]


@pytest.mark.parametrize("language, user, assistant, read", [
    # one exchange of two sentences in Spanish, for Galician and Basque items (86 and 93 letters)
    ("gl", "¿Cómo te llamas?", "Me llamo ALIA. Soy un asistente de inteligencia artificial creado por el Barcelona "
                              "Supercomputing Center. ¿En qué puedo ayudarte?", "es"),
    ("eu", "¿Puedes buscar en internet?", "No, no tengo acceso a internet. Solo puedo usar lo que aprendí durante mi "
                                         "entrenamiento.", "es"),
    # right ones, short
    ("ca", "Com et dius?", "Em dic ALIA.", None),
    ("ca", "Com et dius?", "Em dic ALIA. En què et puc ajudar avui?", None),
    ("gl", "Ola! Quen es?", "Ola! Son ALIA, un asistente creado polo Barcelona Supercomputing Center.", None),
    ("eu", "Nor zara?", "ALIA naiz, Barcelona Supercomputing Center-ek garatutako adimen artifizialeko laguntzailea.", None),
])
def test_the_language_of_a_short_conversation(language, user, assistant, read):
    """At 100 letters, the two-sentence Spanish conversations above were kept as gl and eu; below 35,
    CLD2 reads correct ones as another language."""
    turns = [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    assert gen.read_as(turns, CARD, language) == read


@pytest.mark.parametrize("name, developer, text, other", [
    ("Gemma", "Google", "I'm Gemma, an open model developed by Google.", None),  # the lists spell "Google(?: DeepMind)?"
    ("GPT-4", "OpenAI", "I am GPT-4, a model made by OpenAI.", None),
    ("Gemma", "Google", "I'm Gemma, not Gemini.", "Gemini"),
    # a listed name inside the card's developer, or what the lists make of it (it was "DeepMind")
    ("Gemma", "Google", "I'm Gemma, an open model developed by Google DeepMind.", None),
    ("Gemma", "Google DeepMind", "I'm Gemma, an open model developed by Google DeepMind.", None),
    ("Gemma", "Google", "I'm Gemma, not Google Gemini.", "Gemini"),
])
def test_the_cards_own_names_are_not_another_identity(name, developer, text, other):
    leak = gen.other_identity_pattern(Identity(name=name, developer=developer)).search(text)
    assert (leak and leak.group(0)) == other


def test_no_identity_card_drops_everything(tmp_path):
    with serve_openai(responder) as server:
        results = list(stream(gen, [], context(server, tmp_path, identity=None, targets={"es": 2})))
        assert [r.reason for _, r in results] == ["no_identity_card"] * 3 and server.count() == 0



def test_a_blank_turn_is_a_generation_drop(tmp_path):
    """The schema's minLength took " ": each such row was paid for, then an `empty_turns` drop that
    named no generator."""
    def blank_answers(messages, body):
        conversation = json.loads(responder(messages, body))
        for turn in conversation["messages"][1::2]:
            turn["content"] = " "
        return json.dumps(conversation)

    with serve_openai(blank_answers) as server:
        results = list(stream(gen, [], context(server, tmp_path, targets={"en": 2})))
    assert {(r.reason, r.detail) for _, r in results} == {("bad_structure", "turn 1 (assistant) is blank")}

def test_generate_through_rule_filters_to_parquet(tmp_path):
    with serve_openai(responder) as server:
        info = SourceInfo(key="self-identity", converter="openai_messages", licence="apache-2.0", filters={})
        counts = generate(gen, [], context(server, tmp_path), info, tmp_path / "out.parquet", tmp_path / "rejected.parquet")
    rows = pq.read_table(tmp_path / "out.parquet").to_pylist()
    rejected = pq.read_table(tmp_path / "rejected.parquet").to_pylist()
    assert counts.read == 15 and counts.kept == len(rows) == 9
    assert Counter((r["stage"], r["reason"]) for r in rejected) == {
        ("generate", "identity_missing"): 1, ("generate", "other_identity"): 1, ("generate", "invalid_json"): 1,
        ("generate", "bad_structure"): 1, ("generate", "truncated"): 1, ("generate", "wrong_language"): 1,
    }
    assert {r["language"] for r in rows} == {"en", "ca"} and {r["licence"] for r in rows} == {"apache-2.0"}
    origin = json.loads(rows[0]["origin"])
    assert origin["generator"] == "self_identity" and origin["model"] == "deepseek-chat" and "topic" in origin
