"""fineweb_edu_qa against the local OpenAI-compatible server: selection, two passes, drops, cache, Parquet."""

import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest


from generators import base, fineweb_edu_qa
from generators.base import Context
from openai_server import Fault, serve_openai
from sftmix.llm import LLMClient, LLMSettings
from sftmix.normalize import SourceInfo, normalize, read_records
from sftmix.sources.base import Converted, Drop

FILLER = (" Teachers often use this topic to introduce students to the scientific method, because it links"
          " everyday observations to measurable quantities and simple experiments that can be done in class.")

DOCS = {  # name -> (text, int_score)
    "photosynthesis": ("Photosynthesis\n\nPhotosynthesis is the process by which green plants use sunlight to make food. "
                       "Plants take in carbon dioxide from the air and water from the soil. Chlorophyll captures the "
                       "energy of sunlight, which turns these into glucose and oxygen: 6CO2 + 6H2O -> C6H12O6 + 6O2." + FILLER, 5),
    "printing": ("A Brief History of the Printing Press\n\nJohannes Gutenberg developed a movable-type printing press "
                 "around 1440 in Mainz. Before that, books were copied by hand, which made them rare and expensive. "
                 "By 1500, printing shops operated in more than 200 European cities." + FILLER, 4),
    "seasons": ("Why do we have seasons?\nEarth's axis is tilted about 23.5 degrees. As Earth orbits the Sun, each "
                "hemisphere leans toward the Sun for part of the year and receives more direct sunlight." + FILLER, 4),
    "cookies": ("Home | About us | Contact | Cookie policy\nWe use cookies to improve your experience. Accept all. "
                "Reject all. Manage preferences. Subscribe to our newsletter. Follow us on social media." + FILLER, 4),
    "volcanoes": ("How volcanoes form\n\nVolcanoes form where magma from the mantle reaches the surface, mostly at "
                  "plate boundaries. At subduction zones, water released by the sinking plate lowers the melting point "
                  "of the mantle rock above it. Hotspots such as Hawaii form far from plate boundaries." + FILLER, 4),
    "glaciers": ("Glaciers\n\nA glacier is a persistent body of dense ice that moves under its own weight. Glaciers form "
                 "where snow accumulates faster than it melts over many years, compacting into firn and then ice." + FILLER, 4),
    "fractions": ("Adding fractions with different denominators\n\nTo add 1/3 and 1/4, first find a common denominator. "
                  "The least common multiple of 3 and 4 is 12, so 1/3 = 4/12 and 1/4 = 3/12. Then add the numerators: "
                  "4/12 + 3/12 = 7/12. Always simplify the result." + FILLER, 4),
    "water": ("The water cycle\n\nWater evaporates from oceans and lakes, condenses into clouds and falls as "
              "precipitation. Plants also release water vapour through transpiration." + FILLER, 4),
    "lowscore": ("Top ten gadgets of the year, ranked by our editors. Number one will surprise you, and number two is "
                 "even better than last year's model." + FILLER, 3),
    "short": ("Ohm's law: V = I R.", 5),
}

QA_ES = {
    "photosynthesis": [
        {"question": "¿Qué es la fotosíntesis y qué necesitan las plantas para llevarla a cabo?",
         "answer": "La fotosíntesis es el proceso mediante el cual las plantas verdes fabrican su propio alimento a partir de "
                   "la luz solar. Para realizarla necesitan dióxido de carbono, que toman del aire, y agua, que absorben "
                   "del suelo. La clorofila capta la energía de la luz y la utiliza para transformar estas sustancias en "
                   "glucosa, que la planta usa como fuente de energía, y en oxígeno, que se libera a la atmósfera."},
        {"question": "¿Cuál es la ecuación química global de la fotosíntesis?",
         "answer": "La ecuación global de la fotosíntesis es 6CO2 + 6H2O -> C6H12O6 + 6O2. Significa que seis moléculas de "
                   "dióxido de carbono y seis de agua, con la energía de la luz solar captada por la clorofila, producen "
                   "una molécula de glucosa y seis moléculas de oxígeno. La glucosa almacena la energía química."},
        {"question": "Según el texto, ¿por qué los profesores usan este tema en clase?",
         "answer": "Según el texto, los profesores lo usan para introducir el método científico, porque relaciona "
                   "observaciones cotidianas con magnitudes medibles y experimentos sencillos."},
    ],
    "printing": [
        {"question": "¿Quién desarrolló la imprenta de tipos móviles en Europa y en qué época?",
         "answer": "Johannes Gutenberg desarrolló la imprenta de tipos móviles hacia 1440 en Maguncia (Mainz), en "
                   "Alemania. Su invento permitió componer páginas con letras metálicas reutilizables y reproducir "
                   "textos con mucha más rapidez que la copia manual, lo que abarató los libros."},
        {"question": "¿Cómo se producían los libros en Europa antes de la imprenta y qué consecuencias tenía?",
         "answer": "Antes de la imprenta, los libros se copiaban a mano, un trabajo lento que podía llevar meses por "
                   "ejemplar. Por eso los libros eran escasos y caros, y solo estaban al alcance de instituciones como "
                   "monasterios y universidades o de personas adineradas."},
        {"question": "¿Con qué rapidez se difundió la imprenta por Europa tras su invención?",
         "answer": "La imprenta se difundió muy deprisa: hacia el año 1500, apenas unas décadas después del invento de "
                   "Gutenberg, ya funcionaban talleres de impresión en más de 200 ciudades europeas."},
    ],
    "seasons": [
        {"question": "¿Qué explica el documento sobre las estaciones?",
         "answer": "El documento explica que las estaciones se deben a la inclinación del eje de la Tierra."},
        {"question": "¿Cuántos grados menciona el autor?",
         "answer": "El autor menciona que el eje está inclinado unos 23,5 grados."},
    ],
    "volcanoes": [
        {"question": "¿Dónde se forman la mayoría de los volcanes?",
         "answer": "La mayoría de los volcanes se forman en los límites entre placas tectónicas, donde el magma "
                   "procedente del manto encuentra un camino hacia la superficie. Allí la corteza está fracturada y el "
                   "movimiento de las placas favorece la fusión de las rocas y el ascenso del magma."},
        {"question": "¿Por qué se produce magma en las zonas de subducción?",
         "answer": "En una zona de subducción, una placa se hunde bajo otra y libera el agua que contenía. Esa agua sube "
                   "hacia la roca del manto situada encima y reduce su punto de fusión, de modo que la roca se funde "
                   "parcialmente a una temperatura menor y se forma magma, que luego asciende y alimenta volcanes."},
        {"question": "¿Qué es un punto caliente volcánico y qué ejemplo hay?",
         "answer": "Un punto caliente es una zona de actividad volcánica situada lejos de los límites de placa, donde el "
                   "magma asciende desde el interior del manto. El ejemplo más conocido es Hawái, en medio de la placa "
                   "del Pacífico."},
    ],
    "water": [
        {"question": "¿Cuáles son las etapas principales del ciclo del agua?",
         "answer": "El ciclo del agua tiene tres etapas principales. Primero, el agua de océanos y lagos se evapora con "
                   "el calor del sol. Después, el vapor se enfría en la atmósfera y se condensa formando nubes. Por "
                   "último, el agua vuelve a la superficie como precipitación: lluvia, nieve o granizo."},
        {"question": "¿Qué es la transpiración de las plantas?",
         "answer": "The transpiration of plants is the process by which plants release water vapour into the "
                   "atmosphere, mainly through small pores in their leaves called stomata. It is an important part of "
                   "the water cycle, because it moves water from the soil back into the air."},
    ],
    "glaciers": [{"question": "¿Qué es un glaciar?", "answer": "Un glaciar es una masa de hielo que se desplaza."}],
    "fractions": [{"question": "¿Cómo se suman 1/3 y 1/4?",
                   "answer": "Se busca un denominador común, 12: 1/3 = 4/12 y 1/4 = 3/12, así que la suma es 7/12."}],
}
DOCUMENT_REFERENCE = re.compile(r"\b(texto|documento|autor)\b", re.IGNORECASE)


def topic(prompt_text):
    return next(name for name, (text, _) in DOCS.items() if text.split("\n")[0][:30] in prompt_text)


def deepseek(messages, body):
    """What DeepSeek-V3 answers to the two prompts (the first user message is the prompt; later ones re-ask)."""
    prompt_text = messages[0]["content"]
    reasked = len(messages) > 1
    if prompt_text.startswith("You check question-answer pairs"):
        pairs = json.loads(prompt_text.split("Pairs (written in Spanish):\n", 1)[1].split("\n\nReply with", 1)[0])
        verdicts = []
        for pair in pairs:
            if "imprenta" in pair["question"] and pair["index"] == 3:
                continue  # the model sometimes skips a pair: not kept
            bad = DOCUMENT_REFERENCE.search(pair["question"] + " " + pair["answer"])
            verdicts.append({"index": pair["index"], "reason": "Se refiere a un texto que no se muestra." if bad
                             else "La pregunta y la respuesta se entienden por sí solas.", "self_contained": not bad})
        return json.dumps({"verdicts": verdicts}, ensure_ascii=False)
    name = topic(prompt_text)
    if name == "cookies":
        return '{"pairs": []}'
    if name == "glaciers" or (name == "volcanoes" and not reasked):
        return ("Aquí tienes tres pares de preguntas y respuestas:\n\n1. **¿Qué es un glaciar?** Un glaciar es una masa "
                "de hielo que se mueve lentamente por su propio peso.")
    return json.dumps({"pairs": QA_ES[name]}, ensure_ascii=False)


def raw_row(name, i):
    text, score = DOCS[name]
    return {"text": text, "id": f"<urn:uuid:00000000-0000-4000-8000-{i:012d}>", "dump": "CC-MAIN-2024-10",
            "url": f"https://example.edu/{name}", "file_path": "s3://commoncrawl/x.warc.gz", "language": "en",
            "language_score": 0.95, "token_count": len(text) // 4, "score": score + 0.1, "int_score": score}


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """The documents as the fineweb_edu converter writes them (the generator's real input)."""
    tmp = tmp_path_factory.mktemp("fineweb")
    raw = tmp / "000_00000.parquet"
    pq.write_table(pa.Table.from_pylist([raw_row(name, i) for i, name in enumerate(DOCS)]), raw)
    info = SourceInfo(key="fineweb-edu", converter="fineweb_edu", licence="odc-by")
    normalize(info, [raw], tmp / "docs.parquet", tmp / "docs.rejected.parquet", apply_filters=False)
    return list(read_records([tmp / "docs.parquet"]))


def context(server, tmp_path, targets, **params):
    client = LLMClient(LLMSettings(base_url=server.base_url, cache_dir=str(tmp_path / "cache"), concurrency=4,
                                   backoff_base_s=0.01), api_key="sk-test")
    return Context(llm=client, targets=targets, params=params, seed=40)


def by_topic(results, records):
    url = {r["id"]: json.loads(r["origin"])["url"].rsplit("/", 1)[1] for r in records}
    out = {}
    for key, result in results:
        out.setdefault(url[key], []).append(result)
    return out


FAULTS = [Fault("truncated", match="Adding fractions", count=None)]


def test_two_passes_keep_only_self_contained_pairs(records, tmp_path):
    with serve_openai(deepseek, faults=FAULTS) as server:
        ctx = context(server, tmp_path, {"es": 20})
        results = list(base.stream(fineweb_edu_qa, records, ctx))
        stats = ctx.llm.stats
    got = by_topic(results, records)
    assert "lowscore" not in got and "short" not in got  # int_score 3; under min_chars
    assert len(got) == 8
    photo = got["photosynthesis"]
    assert [r.messages[0]["content"] for r in photo] == [p["question"] for p in QA_ES["photosynthesis"][:2]]
    assert all(isinstance(r, Converted) and r.language == "es" for r in photo)
    assert [m["role"] for m in photo[0].messages] == ["user", "assistant"]
    assert photo[0].messages[1]["content"] == QA_ES["photosynthesis"][0]["answer"]
    assert photo[0].key == "<urn:uuid:00000000-0000-4000-8000-000000000000>"
    assert photo[0].meta["url"] == "https://example.edu/photosynthesis"
    assert photo[0].meta["pairs_generated"] == 3 and photo[0].meta["pairs_kept"] == 2
    assert photo[0].meta["generator"] == "fineweb_edu_qa" and photo[0].meta["seed_id"] == records[0]["id"]
    assert len(got["printing"]) == 2  # no verdict for pair 3: not kept
    assert len(got["volcanoes"]) == 3  # invalid JSON first, valid after the re-ask
    assert len(got["water"]) == 2
    drops = {name: rs[0].reason for name, rs in got.items() if isinstance(rs[0], Drop)}
    assert drops == {"seasons": "no_self_contained_pairs", "cookies": "no_qa_pairs", "glaciers": "invalid_json",
                     "fractions": "truncated"}
    assert server.count(200) == stats.requests
    # generation: 8 + 1 re-ask (volcanoes) + 2 re-asks (glaciers); checks: 5 (photo, printing, seasons, volcanoes, water)
    assert stats.requests == 8 + 3 + 5 and stats.cache_hits == 0


def test_prompts_name_the_language_and_ask_json(records, tmp_path):
    with serve_openai(deepseek, faults=FAULTS) as server:
        list(base.stream(fineweb_edu_qa, records[:1], context(server, tmp_path, {"es": 1})))
        bodies = server.bodies
    generation, check = bodies[0], bodies[1]
    assert generation["response_format"] == {"type": "json_object"} and generation["temperature"] == 0.0
    assert "in Spanish" in generation["messages"][0]["content"]
    assert DOCS["photosynthesis"][0] in generation["messages"][0]["content"]
    assert "Pairs (written in Spanish)" in check["messages"][0]["content"]
    assert DOCS["photosynthesis"][0] not in check["messages"][0]["content"]  # the checker never sees the document


def test_rerun_is_served_from_the_cache(records, tmp_path):
    with serve_openai(deepseek, faults=FAULTS) as server:
        first = list(base.stream(fineweb_edu_qa, records, context(server, tmp_path, {"es": 20})))
        sent = server.count()
        ctx = context(server, tmp_path, {"es": 20})
        second = list(base.stream(fineweb_edu_qa, records, ctx))
        assert server.count() == sent  # everything, truncated replies included, comes from the cache
    assert [(k, getattr(r, "messages", r.reason if isinstance(r, Drop) else None)) for k, r in first] == \
           [(k, getattr(r, "messages", r.reason if isinstance(r, Drop) else None)) for k, r in second]
    assert ctx.llm.stats.cache_hits == 16 and ctx.llm.stats.requests == 0


def test_conversation_layout(records, tmp_path):
    with serve_openai(deepseek, faults=FAULTS) as server:
        results = dict(base.stream(fineweb_edu_qa, records[:2], context(server, tmp_path, {"es": 5}, layout="conversation")))
    photo = results[records[0]["id"]]
    assert [m["role"] for m in photo.messages] == ["user", "assistant", "user", "assistant"]
    assert photo.messages[2]["content"] == QA_ES["photosynthesis"][1]["question"]


def test_languages_are_assigned_by_hash_within_quotas(tmp_path):
    docs = [{"id": f"doc{i}", "licence": "odc-by", "messages": [{"role": "user", "content": f"Document {i}. " + FILLER * 2}],
             "origin": json.dumps({"int_score": 4 + i % 2})} for i in range(500)]
    pulled = []

    def feed(seq):
        for doc in seq:
            pulled.append(doc["id"])
            yield doc

    client = LLMClient(LLMSettings(cache_dir=str(tmp_path / "cache")), api_key="sk-test")
    targets = {"ca": 10, "es": 4, "eu": 0, "gl": 7}
    ctx = Context(llm=client, targets=targets, seed=40, oversample=1.0)
    first = [(i.key, i.language) for i in fineweb_edu_qa.items(feed(docs), ctx)]
    counts = {lang: sum(1 for _, l in first if l == lang) for lang in targets}
    assert counts == {"ca": 5, "es": 2, "eu": 0, "gl": 4}  # ceil(wanted / 2 rows per document)
    assert len(pulled) == len(first) == 11  # reading stopped once every language was served
    assert first == [(i.key, i.language) for i in fineweb_edu_qa.items(docs, ctx)]
    other = [(i.key, i.language) for i in fineweb_edu_qa.items(docs, Context(llm=client, targets=targets, seed=41, oversample=1.0))]
    assert [l for _, l in other] != [l for _, l in first]
    # "all": every eligible document, in English; min_int_score filters, keep_fraction samples by hash
    everything = list(fineweb_edu_qa.items(docs, Context(llm=client, targets={"*": "all"}, params={"min_int_score": 5})))
    assert len(everything) == 250 and {i.language for i in everything} == {"en"}
    half = list(fineweb_edu_qa.items(docs, Context(llm=client, targets={"*": "all"}, params={"keep_fraction": 0.5})))
    assert 200 < len(half) < 300


def test_generate_writes_rows_through_the_rule_filters(records, tmp_path):
    with serve_openai(deepseek, faults=FAULTS) as server:
        ctx = context(server, tmp_path, {"es": 20})
        info = SourceInfo(key="fineweb-edu_qa", converter="openai_messages", licence="apache-2.0", filters={})
        counts = base.generate(fineweb_edu_qa, records, ctx, info, tmp_path / "out.parquet", tmp_path / "rejected.parquet")
    rows = pq.read_table(tmp_path / "out.parquet").to_pylist()
    rejected = pq.read_table(tmp_path / "rejected.parquet").to_pylist()
    assert counts.read == 9 + 4 and counts.kept == 8  # 9 pairs + 4 document drops; the English answer fails langdetect
    assert counts.dropped == {"no_self_contained_pairs": 1, "no_qa_pairs": 1, "invalid_json": 1, "truncated": 1,
                              "language_mismatch": 1}
    assert {r["language"] for r in rows} == {"es"} and {r["licence"] for r in rows} == {"apache-2.0"}
    origin = json.loads(rows[0]["origin"])
    assert origin["generator"] == "fineweb_edu_qa" and origin["model"] == "deepseek-chat"
    assert len(origin["prompt_template_hash"]) == 16 and origin["url"].startswith("https://example.edu/")
    mismatch = next(r for r in rejected if r["reason"] == "language_mismatch")
    assert mismatch["stage"] == "language" and "transpiration" in mismatch["row"]
    assert next(r for r in rejected if r["reason"] == "invalid_json")["detail"].startswith("generation:")
    # the document drops hold FineWeb-Edu text: the footer names its licence (it named the generator's alone: review)
    assert json.loads(pq.read_schema(tmp_path / "rejected.parquet").metadata[b"licences"]) == ["apache-2.0", "odc-by"]
