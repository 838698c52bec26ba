"""long_context_qa against the local OpenAI-compatible server: long-document selection, grounding, layouts, Parquet."""

import json
import re

import pyarrow.parquet as pq


from generators import base, long_context_qa
from generators.base import Context
from openai_server import Fault, serve_openai
from sftmix.llm import LLMClient, LLMSettings
from sftmix.normalize import SourceInfo
from sftmix.record import make_record, message
from sftmix.sources.base import Converted, Drop


def long_document(title, facts, sections=20):
    """A long educational article: a title, the facts the answers quote, and many distinct sections."""
    parts = [title, ""] + facts
    for n in range(1, sections + 1):
        parts.append(f"Section {n}. Field notes from survey season {1990 + n}")
        parts.append(f"During season {1990 + n}, the team visited {n + 3} sites and recorded water level, sediment load "
                     f"and temperature every {n % 4 + 1} hours. Volunteers from {n + 1} local schools helped to label "
                     f"{120 + 7 * n} samples, and the results were compared with the measurements of season {1989 + n}. "
                     f"The report for this season lists {n * 2} recommendations for the regional water agency, most of "
                     f"them about monitoring stations that needed repair after the floods of year {1980 + n}.")
    return "\n".join(parts)


RIVERS = long_document("How rivers shape their valleys", [
    "Rivers erode their beds mainly through abrasion, when sediment carried by the current scrapes the channel.",
    "In the upper course the valley is narrow and V-shaped, because downward erosion dominates.",
    "In the lower course the river deposits sediment and builds a wide floodplain with meanders."])
BRIDGES = long_document("Roman bridges of Hispania", [
    "The bridge of Alcántara, built between 104 and 106 AD, crosses the Tagus with six arches.",
    "Roman engineers used cofferdams to lay foundations in the riverbed."])
CATALOGUE = long_document("Spring catalogue: garden tools and accessories", [
    "Item 1043 garden hose 25 m. Item 1044 garden hose 50 m. Item 1045 hose reel. Add to basket."])
MEDIEVAL = long_document("Medieval irrigation in Valencia", [
    "The Water Tribunal of Valencia has met every Thursday at the door of the cathedral for centuries."])
DELTAS = long_document("River deltas", [
    "A delta forms where a river enters a body of slower water and drops its sediment."])

ANSWERS_CA = {
    "How rivers shape": {
        "question": "Segons el text, com canvia la forma de la vall des del curs alt fins al curs baix del riu, i per què?",
        "answer": "El text descriu dues situacions oposades. Al curs alt, la vall és estreta i té forma de V, perquè hi "
                  "domina l'erosió cap avall: el riu excava el seu llit sobretot per abrasió, quan els sediments que "
                  "arrossega el corrent freguen el canal. Al curs baix, en canvi, el riu perd força i diposita els "
                  "sediments, de manera que construeix una plana d'inundació àmplia per on dibuixa meandres. Així, la "
                  "forma de la vall reflecteix si predomina l'erosió o la sedimentació.",
        "evidence": ["In the upper course the valley is narrow and V-shaped, because downward erosion dominates.",
                     "Rivers erode their beds mainly through abrasion",
                     "In the lower course the river deposits sediment and builds a wide floodplain with meanders."]},
    "Roman bridges": {
        "question": "Quines tècniques i obres romanes destaca l'article sobre els ponts d'Hispània?",
        "answer": "L'article destaca el pont d'Alcántara, construït entre els anys 104 i 106, que travessa el Tajo amb "
                  "sis arcs, i explica que els enginyers romans feien servir ataguies per posar els fonaments al llit "
                  "del riu, cosa que els permetia treballar en sec enmig del corrent.",
        "evidence": ["The Alcántara bridge was built in the early second century and has six arches over the Tagus.",
                     "Romans built foundations inside the river using cofferdams."]},
    "Medieval irrigation": {
        "question": "Quan i on es reuneix el Tribunal de les Aigües de València?",
        "answer": "El Tribunal de les Aigües de València es reuneix cada dijous a la porta de la catedral, com ho fa des "
                  "de fa segles, per resoldre els conflictes entre els regants de l'horta.",
        "evidence": ["The Water Tribunal of Valencia has met every Thursday at the door of the cathedral"]},
    "River deltas": {
        "question": "Com es forma un delta, segons el document?",
        "answer": "According to the document, a delta forms where a river flows into a body of slower water, such as a "
                  "lake or the sea. The current loses speed, so the river can no longer carry its load and drops the "
                  "sediment, which builds up over time into new land at the river mouth.",
        "evidence": ["A delta forms where a river enters a body of slower water and drops its sediment."]},
}


def deepseek(messages, body):
    prompt = messages[0]["content"]
    assert "Write the request and the answer in Catalan" in prompt
    if "Spring catalogue" in prompt:
        return '{"items": []}'
    entry = next(v for k, v in ANSWERS_CA.items() if k in prompt)
    return json.dumps({"items": [entry]}, ensure_ascii=False)


def record(text, key, token_count=None, int_score=4):
    origin = {"files": ["000_00000.parquet"], "row": f"000_00000.parquet#{key}", "key": f"<urn:uuid:{key}>",
              "score": int_score + 0.2, "int_score": int_score, "url": f"https://example.org/{key}"}
    if token_count is not None:
        origin["token_count"] = token_count
    return make_record(messages=[message("user", text)], tools=[], source="fineweb-edu", licence="odc-by",
                       language="en", origin=origin)


RECORDS = [
    record(RIVERS, "rivers", 2500),
    record("A short note on rivers. " * 20, "short", 120),  # too short
    record(BRIDGES, "bridges", 2300),
    record(RIVERS + "\n" + BRIDGES * 12, "huge", 30000),  # beyond max_tokens
    record(CATALOGUE, "catalogue", 2200),
    record(MEDIEVAL, "medieval", 2100),
    record(DELTAS, "deltas"),  # no token_count: characters / 4
]


def context(server, tmp_path, targets, **params):
    client = LLMClient(LLMSettings(base_url=server.base_url, cache_dir=str(tmp_path / "cache"), concurrency=4,
                                   backoff_base_s=0.01), api_key="sk-test")
    return Context(llm=client, targets=targets, params=params, seed=40)


FAULTS = [Fault("truncated", match="Medieval irrigation", count=None)]


def test_long_documents_become_grounded_questions(tmp_path):
    assert len(DELTAS) // 4 > 2000
    with serve_openai(deepseek, faults=FAULTS) as server:
        ctx = context(server, tmp_path, {"ca": 10})
        results = list(base.stream(long_context_qa, RECORDS, ctx))
        stats = ctx.llm.stats
    keys = {r["id"]: json.loads(r["origin"])["key"] for r in RECORDS}
    got = {keys[k]: r for k, r in results}
    assert list(got) == ["<urn:uuid:rivers>", "<urn:uuid:bridges>", "<urn:uuid:catalogue>", "<urn:uuid:medieval>",
                         "<urn:uuid:deltas>"]
    rivers = got["<urn:uuid:rivers>"]
    assert isinstance(rivers, Converted) and rivers.language == "ca"
    user, assistant = rivers.messages
    assert RIVERS in user["content"] and ANSWERS_CA["How rivers shape"]["question"] in user["content"]
    assert assistant["content"] == ANSWERS_CA["How rivers shape"]["answer"]
    assert rivers.meta["evidence_found"] == 3 and rivers.meta["layout"] in long_context_qa.LAYOUTS
    assert rivers.meta["document_tokens"] == 2500 and rivers.key == "<urn:uuid:rivers>"
    assert got["<urn:uuid:deltas>"].meta["document_tokens"] == len(DELTAS) // 4
    reasons = {k: r.reason for k, r in got.items() if isinstance(r, Drop)}
    assert reasons == {"<urn:uuid:bridges>": "ungrounded_answer", "<urn:uuid:catalogue>": "no_questions",
                       "<urn:uuid:medieval>": "truncated"}
    assert stats.requests == 5 and stats.cache_hits == 0


def test_layouts_and_tasks_vary_by_document(tmp_path):
    docs = [record(RIVERS.replace("Section 1.", f"Section 1 (copy {i})."), f"r{i}", 2500) for i in range(30)]
    seen = set()
    with serve_openai(deepseek) as server:
        ctx = context(server, tmp_path, {"ca": 100})
        for _, row in base.stream(long_context_qa, docs, ctx):
            assert row.messages[0]["content"].count("How rivers shape their valleys") == 1
            seen.add((row.meta["layout"], row.meta["task"]))
        tasks = [re.search(r"The request should be (.*?)\. Write", b["messages"][0]["content"]).group(1)
                 for b in server.bodies]
    assert {layout for layout, _ in seen} == set(long_context_qa.LAYOUTS)
    assert len({task for _, task in seen}) >= 5 and len(set(tasks)) >= 5


def test_grounding_tolerates_quote_marks_case_and_ellipses():
    document = "The “Water Tribunal” of Valencia has met every Thursday,\n at the door of the cathedral, for centuries."
    assert long_context_qa.grounded(['the "water tribunal" of Valencia has met every Thursday'], document) == 1
    assert long_context_qa.grounded(["has met every Thursday ... at the door of the cathedral"], document) == 1
    assert long_context_qa.grounded(["Valencia", "The tribunal meets weekly at the cathedral door"], document) == 0


def test_single_words_joined_by_ellipses_or_parts_of_words_ground_nothing():
    document = "The river Ebro flows through Zaragoza. Its delta is a natural park in Catalonia."
    for invented in ["Zaragoza … is … in … Catalonia", "a ... b ... c ... d", "river Ebro flows through Zara",
                     "he river Ebro flows"]:
        assert long_context_qa.grounded([invented], document) == 0, invented
    assert long_context_qa.grounded(["river Ebro flows through ... in Catalonia"], document) == 1


def test_six_languages_are_served_by_quota():
    docs = [record(f"Document {i}. " + RIVERS, f"d{i}", 2400) for i in range(600)]
    targets = {"ca": 33, "en": 96, "es": 33, "eu": 34, "gl": 34, "pt": 33}
    ctx = Context(llm=None, targets=targets, seed=40)
    chosen = [i.language for i in long_context_qa.items(iter(docs), ctx)]
    assert {lang: chosen.count(lang) for lang in targets} == {lang: ctx.wanted(lang) for lang in targets}
    assert len(chosen) == sum(ctx.wanted(lang) for lang in targets) == 332 and chosen[:40].count("en") < 40  # interleaved, not language after language
    assert list(long_context_qa.items(docs, Context(llm=None, targets=targets, seed=40, params={"min_int_score": 5}))) == []


def test_generate_writes_rows_through_the_rule_filters(tmp_path):
    with serve_openai(deepseek, faults=FAULTS) as server:
        ctx = context(server, tmp_path, {"ca": 10})
        info = SourceInfo(key="long-context-qa", converter="openai_messages", licence="apache-2.0", filters={})
        counts = base.generate(long_context_qa, RECORDS, ctx, info, tmp_path / "out.parquet", tmp_path / "rejected.parquet")
    rows = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert counts.summary() == {"read": 5, "kept": 1, "dropped": {"language_mismatch": 1, "no_questions": 1,
                                                                  "truncated": 1, "ungrounded_answer": 1}}
    [row] = rows
    assert row["language"] == "ca" and row["licence"] == "apache-2.0" and len(row["messages"][0]["content"]) > 8000
    origin = json.loads(row["origin"])
    assert origin["generator"] == "long_context_qa" and origin["url"] == "https://example.org/rivers"
    # the row quotes its FineWeb-Edu document verbatim: it names the document's licence beside its own
    assert origin["input_licences"] == ["odc-by"]


def test_a_generated_row_a_rule_drops_is_filed_under_its_documents_licence_too(tmp_path):
    """The deltas row holds its odc-by document verbatim and the language rule drops it (its question
    is English in a Catalan row): the rejected file's footer named the generator's licence alone (review)."""
    deltas = [r for r in RECORDS if json.loads(r["origin"])["key"] == "<urn:uuid:deltas>"]
    with serve_openai(deepseek) as server:
        ctx = context(server, tmp_path, {"ca": 10})
        info = SourceInfo(key="long-context-qa", converter="openai_messages", licence="apache-2.0", filters={})
        base.generate(long_context_qa, deltas, ctx, info, tmp_path / "out.parquet", tmp_path / "rejected.parquet")
    [drop] = pq.read_table(tmp_path / "rejected.parquet").to_pylist()
    assert (drop["stage"], drop["reason"]) == ("language", "language_mismatch")
    assert DELTAS.strip() in json.loads(drop["row"])["messages"][0]["content"]
    assert json.loads(pq.read_schema(tmp_path / "rejected.parquet").metadata[b"licences"]) == ["apache-2.0", "odc-by"]
