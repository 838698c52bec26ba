"""wildchat_responses against the local OpenAI-compatible server: prompt selection, drops, identity, Parquet."""

import json
from pathlib import Path

import pyarrow.parquet as pq


from generators import base, wildchat_responses
from generators.base import Context
from openai_server import Fault, Reply, serve_openai
from sftmix.llm import LLMClient, LLMSettings
from sftmix.manifest import Identity
from sftmix.normalize import SourceInfo, normalize, read_records
from sftmix.record import make_record, message
from sftmix.sources.base import Converted, Drop

FIXTURE = Path(__file__).parents[1] / "fixtures" / "wildchat" / "train-00000-of-00014.parquet"

HAIKU = "Autumn rain whispers\non the red maple's last leaves —\npuddles hold the sky."
SER_ESTAR = (
    "«Ser» y «estar» se traducen ambos como *to be*, pero no se usan igual:\n\n"
    "- **Ser** expresa características esenciales o permanentes: identidad, origen, profesión, material o la hora. "
    "Por ejemplo: *Soy de Valencia*, *La mesa es de madera*, *Son las tres*.\n"
    "- **Estar** expresa estados, situaciones temporales y ubicación. Por ejemplo: *Estoy cansado*, "
    "*La sopa está fría*, *Madrid está en el centro de España*.\n\n"
    "Algunos adjetivos cambian de significado: *ser listo* (inteligente) frente a *estar listo* (preparado).")
ALIA = ("I'm ALIA, an AI assistant developed by the Barcelona Supercomputing Center. I can help you write, "
        "translate, summarise and answer questions in Catalan, Spanish, English, Basque, Galician and Portuguese.")
JOKE = "Why do programmers prefer dark mode? Because light attracts bugs."
DEEPSEEK = ("I'm DeepSeek-V3, an AI assistant created by DeepSeek. I'm here to help you with questions, writing, "
            "analysis and much more. How can I help you today?")
ENGLISH_FOR_SPANISH = (
    "Paella is a rice dish from Valencia. To make it, you sauté chicken and rabbit in olive oil in a wide, shallow "
    "pan, add green beans and butter beans, then tomato, paprika and saffron. Pour in water, bring it to the boil, "
    "add the rice and let it cook without stirring until the liquid is absorbed and a crust forms at the bottom.")


def deepseek(messages, body):
    system, prompt = messages[0]["content"], messages[-1]["content"]
    if prompt.startswith("Write a haiku"):
        return HAIKU
    if "«ser» y «estar»" in prompt:
        return SER_ESTAR
    if prompt == "Who are you?":
        return ALIA if "You are ALIA, an AI assistant developed by Barcelona Supercomputing Center" in system else DEEPSEEK
    if "paella" in prompt:
        return ENGLISH_FOR_SPANISH  # the model slipped into English
    if "5000-word essay" in prompt:
        return Reply("The history of Rome begins with the legendary founding of the city in 753 BC by Romulus",
                     finish_reason="length")
    if "blank" in prompt:
        return "   "
    if "joke" in prompt:
        return JOKE
    raise AssertionError(f"unexpected prompt {prompt!r}")


def record(prompt, language, n):
    origin = {"files": ["train-00000-of-00014.parquet"], "row": f"train-00000-of-00014.parquet#{n}",
              "key": f"hash{n:04d}|2023-07-14T09:21:05+00:00|{n}", "conversation_hash": f"hash{n:04d}",
              "model": "gpt-3.5-turbo-0613", "turn": 1}
    return make_record(messages=[message("user", prompt)], tools=[], source="wildchat", licence="odc-by",
                       language=language, origin=origin)


RECORDS = [
    record("Write a haiku about autumn rain.", "en", 0),
    record("¿Cuál es la diferencia entre «ser» y «estar»?", "es", 1),
    record("请用三句话解释量子纠缠。", "zh", 2),  # not a target language: no item
    record("hola", "es", 3),
    record("  ¿cuál es la diferencia   entre «ser» y «estar»?\n", "es", 4),
    record("Write a 5000-word essay on the history of Rome.", "en", 5),
    record("Who are you?", "en", 6),
    record("Tell me a joke about programmers.", "en", 7),
    record("¿Cómo se prepara una paella valenciana?", "es", 8),
    record("   \n ", "es", 9),
    record("Reply with a blank message, please.", "en", 10),
    record("Summarise this contract for me, please.", "en", 11),
]


def context(server, tmp_path, targets, identity=None, **params):
    client = LLMClient(LLMSettings(base_url=server.base_url, cache_dir=str(tmp_path / "cache"), concurrency=4,
                                   backoff_base_s=0.01, max_retries=2), api_key="sk-test")
    return Context(llm=client, targets=targets, params=params, seed=40, identity=identity, oversample=1.0)


FAULTS = [Fault("server_error", status=400, match="Summarise this contract", count=None)]
CARD = Identity(name="ALIA", developer="Barcelona Supercomputing Center", languages=["ca", "en", "es"])


def test_prompts_get_fresh_responses_and_bad_prompts_are_dropped(tmp_path):
    with serve_openai(deepseek, faults=FAULTS) as server:
        ctx = context(server, tmp_path, {"en": 10, "es": 10}, identity=CARD)
        results = list(base.stream(wildchat_responses, RECORDS, ctx))
        bodies, stats = server.bodies, ctx.llm.stats
    by_key = {json.loads(r["origin"])["conversation_hash"]: r["id"] for r in RECORDS}
    got = {h: dict(results).get(i) for h, i in by_key.items()}
    assert got["hash0002"] is None  # Chinese: not asked for
    haiku = got["hash0000"]
    assert isinstance(haiku, Converted) and haiku.language == "en"
    assert haiku.messages == [message("user", "Write a haiku about autumn rain."), message("assistant", HAIKU)]
    assert haiku.key == "hash0000|2023-07-14T09:21:05+00:00|0"
    assert haiku.meta["original_model"] == "gpt-3.5-turbo-0613" and haiku.meta["generator"] == "wildchat_responses"
    assert got["hash0001"].messages[1]["content"] == SER_ESTAR and got["hash0001"].language == "es"
    assert got["hash0006"].messages[1]["content"] == ALIA
    assert got["hash0007"].messages[1]["content"] == JOKE
    assert {h: r.reason for h, r in got.items() if isinstance(r, Drop)} == {
        "hash0003": "prompt_too_short", "hash0004": "duplicate_prompt", "hash0005": "truncated",
        "hash0009": "empty_prompt", "hash0010": "empty_response", "hash0011": "http_400"}
    prompts = {json.loads(r["origin"])["conversation_hash"]: r["messages"][0]["content"] for r in RECORDS}
    assert all(r.raw["prompt"] == prompts[h] for h, r in got.items() if isinstance(r, Drop))
    # only real prompts reach the model; the system prompt names the identity and the reply language
    assert stats.requests == server.count() == 8 and stats.failures == 1
    spanish = next(b for b in bodies if "«ser»" in b["messages"][1]["content"])
    assert spanish["messages"][0]["role"] == "system" and "Reply in Spanish" in spanish["messages"][0]["content"]
    assert "You are ALIA, an AI assistant developed by Barcelona Supercomputing Center" in spanish["messages"][0]["content"]
    assert all("response_format" not in b for b in bodies)


def test_quotas_stop_reading_and_drop_items_do_not_count(tmp_path):
    pulled = []

    def feed():
        for r in RECORDS:
            pulled.append(r["id"])
            yield r

    ctx = Context(llm=None, targets={"en": 2, "es": 1}, seed=40, oversample=1.0)
    chosen = list(wildchat_responses.items(feed(), ctx))
    assert [(i.language, "drop" in i.payload) for i in chosen] == [("en", False), ("es", False), ("en", False)]
    assert len(pulled) == 6  # nothing read after the last prompt needed
    anything = list(wildchat_responses.items(RECORDS, Context(llm=None, targets={"*": "all"})))
    assert {i.language for i in anything} == {"en", "es", "zh"} and len(anything) == 12
    # a "*" target counts over every language, as the mixing keeps it: it asked N prompts of each
    pulled.clear()
    star = [i for i in wildchat_responses.items(feed(), Context(llm=None, targets={"*": 4}, oversample=1.0))
            if "drop" not in i.payload]
    assert len(star) == 4 and len({i.language for i in star}) > 1 and len(pulled) < len(RECORDS)
    sampled = list(wildchat_responses.items(RECORDS, Context(llm=None, targets={"*": "all"}, params={"keep_fraction": 0.5})))
    assert 0 < len(sampled) < 12


def test_generate_on_converter_output_through_the_rule_filters(tmp_path):
    """The real input path: the wildchat fixture through its converter, then this generator, then the filters."""
    info = SourceInfo(key="wildchat", converter="wildchat", licence="odc-by")
    normalize(info, [FIXTURE], tmp_path / "prompts.parquet", tmp_path / "prompts.rejected.parquet", apply_filters=False)
    records = list(read_records([tmp_path / "prompts.parquet"])) + [RECORDS[6], RECORDS[8]]
    replies = {"Write a haiku about autumn rain.": HAIKU, "¿Cuál es la diferencia entre «ser» y «estar»?": SER_ESTAR}

    def responder(messages, body):
        return replies.get(messages[-1]["content"]) or deepseek(messages, body)

    with serve_openai(responder) as server:
        ctx = context(server, tmp_path, {"en": 5, "es": 5})  # no identity card: DeepSeek says who it is
        out_info = SourceInfo(key="wildchat-curated-deepseekv3", converter="openai_messages", licence="apache-2.0", filters={})
        counts = base.generate(wildchat_responses, records, ctx, out_info, tmp_path / "out.parquet", tmp_path / "rejected.parquet")
    rows = pq.read_table(tmp_path / "out.parquet").to_pylist()
    # a drop keeps what the generator was given (the rules' drops keep the record)
    dropped = {r["reason"]: json.loads(r["row"]) for r in pq.read_table(tmp_path / "rejected.parquet").to_pylist()}
    assert dropped["duplicate_prompt"]["prompt"] == "Write a haiku about autumn rain."
    # the fixture repeats the haiku prompt under another conversation hash: asked once
    assert counts.summary() == {"read": 5, "kept": 2,
                                "dropped": {"duplicate_prompt": 1, "identity_leak": 1, "language_mismatch": 1}}
    assert [(r["language"], r["messages"][1]["content"]) for r in rows] == [("en", HAIKU), ("es", SER_ESTAR)]
    origin = json.loads(rows[0]["origin"])
    assert origin["generator"] == "wildchat_responses" and origin["conversation_hash"] == "a1b2c3d4e5f60718293a4b5c6d7e8f90"
    assert origin["key"] == "a1b2c3d4e5f60718293a4b5c6d7e8f90|2023-07-14T09:21:05+00:00|101"
    assert {r["licence"] for r in rows} == {"apache-2.0"}
