"""The Dagster UI serves the manifest's asset graph and runs it (dagster-webserver, which SIGTERM stops)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    # a reload starts the code server again: over 10 s on a loaded 2-core machine (a full suite beside other jobs)
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


@contextmanager
def _webserver(tmp_path: Path, manifest: Path, project: Path = ROOT) -> Iterator[int]:
    """dagster-webserver on a free port, serving `manifest`'s definitions with the code in `project`;
    stopped with SIGTERM."""
    port = _free_port()
    tmp_path.mkdir(exist_ok=True)
    # Runs launch as they are submitted: Dagster's default coordinator queues them for the daemon
    # that `dagster dev` starts beside the webserver.
    (tmp_path / "dagster.yaml").write_text(
        "run_coordinator:\n  module: dagster._core.run_coordinator\n  class: DefaultRunCoordinator\n")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "SFTMIX_MANIFEST": str(manifest),
           "SFTMIX_OUTPUT": str(tmp_path / "out"), "PYTHONPATH": os.pathsep.join(filter(None, [str(project), os.environ.get("PYTHONPATH")]))}
    server = subprocess.Popen(
        [sys.executable, "-m", "dagster_webserver", "-m", "pipelines.definitions", "-h", "127.0.0.1", "-p", str(port)],
        cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "webserver did not come up"
                time.sleep(0.5)
        yield port
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def test_webserver_shows_the_asset_graph(tmp_path):
    with _webserver(tmp_path, ROOT / "manifests" / "sample.yaml") as port:
        data = _graphql(port, "{ assetNodes { assetKey { path } dependencyKeys { path } } }")
    nodes = {"/".join(n["assetKey"]["path"]): ["/".join(d["path"]) for d in n["dependencyKeys"]]
             for n in data["data"]["assetNodes"]}
    assert nodes["glaive_function_calling_v2/normalized"] == ["glaive_function_calling_v2/raw"]
    assert nodes["glaive_function_calling_v2/filtered"] == ["glaive_function_calling_v2/normalized"]
    assert "glaive_function_calling_v2/filtered" in nodes["mixture"]
    assert set(nodes["dataset_card"]) == {"mixture", "holdout"}


def test_a_run_launched_from_the_web_ui_builds_the_mixture(tmp_path):
    """What the UI's Materialize button does: the run worker runs each step with the project's
    executor (forked from a preloaded server), and writes the shards the in-process build writes."""
    from sftmix.build import build
    from sftmix.manifest import load

    fixture = tmp_path / "glaive.json"  # a copy: rewritten in place below
    fixture.write_bytes((ROOT / "tests" / "fixtures" / "glaive" / "glaive-function-calling-v2.json").read_bytes())
    manifest = tmp_path / "mini.yaml"
    manifest.write_text(json.dumps({
        "mixture": "mini", "seed": 1, "holdout": {"size": 2}, "licence_policy": {"allow": ["apache-2.0"]},
        "sources": [{"key": "g", "converter": "glaive", "licence": "apache-2.0", "language": "en",
                     "local": {"files": [str(fixture)]}, "targets": "all"}]}))
    project = tmp_path / "project"  # the code the server runs, a copy: edited below
    for package in ("sftmix", "filters", "generators", "assets", "pipelines"):
        shutil.copytree(ROOT / package, project / package, ignore=shutil.ignore_patterns("__pycache__"))
    with _webserver(tmp_path / "ui", manifest, project) as port:
        assert _run(port)[1] == "SUCCESS"
        build(load(manifest), tmp_path / "in-process")
        for split in ("train", "validation"):
            [ui_shard] = sorted((tmp_path / "ui" / "out" / "mini" / split).glob("part-*.parquet"))
            [shard] = sorted((tmp_path / "in-process" / "mini" / split).glob("part-*.parquet"))
            assert pq.read_table(ui_shard).equals(pq.read_table(shard))
        # The UI marks stale what an edit changes, once reloaded: the converter's code changes the
        # source's normalized and filtered records (a comment changes nothing)...
        converter = project / "sftmix" / "sources" / "glaive.py"
        code = converter.read_text()
        converter.write_text(code + "\n# a comment\n")
        assert {status for status, _ in _stale_status_after_reload(port).values()} == {"FRESH"}
        converter.write_text(code + "\nMAX_TURNS = 64\n")
        new_version = ("STALE", ["has a new code version"])
        # (Dagster marks an asset stale for its own new code version, and for its inputs' new data
        # once they are materialized again: the mixture is not marked yet, and the mixing refuses.)
        assert _stale_status_after_reload(port) == {
            "g/raw": ("FRESH", []), "g/normalized": new_version, "g/filtered": new_version, "mixture": ("FRESH", []),
            "holdout": ("FRESH", []), "dataset_card": ("FRESH", [])}
        converter.write_text(code)
        # ...a rule's setting changes the
        # source's filtered records (not its normalized ones) and the mixture built from them...
        settings = json.loads(manifest.read_text())
        settings["sources"][0]["filters"] = {"length": {"max_tokens": 20000}}
        manifest.write_text(json.dumps(settings))
        assert _stale_status_after_reload(port) == {
            "g/raw": ("FRESH", []), "g/normalized": ("FRESH", []), "g/filtered": new_version, "mixture": new_version,
            "holdout": new_version, "dataset_card": new_version}
        # ...and a raw file rewritten in place, everything made from it
        fixture.write_text(json.dumps(json.loads(fixture.read_text())[2:]))
        assert _stale_status_after_reload(port) == {
            key: new_version for key in ("g/raw", "g/normalized", "g/filtered", "mixture", "holdout", "dataset_card")}


def test_a_run_launched_before_the_definitions_are_reloaded_stops_asking_for_the_reload(tmp_path):
    """The run worker loads the definitions again, from the manifest as it is then: after an edit the
    UI has not reloaded, the run stops there with one line (it built the edited manifest, recorded
    under code versions the UI then showed as stale, and a source taken out failed the run with a
    Dagster framework error), until the Reload button loads the edited manifest."""
    dolly = ROOT / "tests" / "fixtures" / "dolly"
    manifest = tmp_path / "mini.yaml"

    def write(holdout: int, languages: dict[str, str]) -> None:
        manifest.write_text(json.dumps({
            "mixture": "mini", "seed": 1, "holdout": {"size": holdout}, "licence_policy": {"allow": ["cc-by-sa-3.0"]},
            "sources": [{"key": f"dolly-{language}", "converter": "dolly", "licence": "cc-by-sa-3.0",
                         "language": language, "local": {"files": [str(dolly / file)]}, "targets": "all"}
                        for language, file in languages.items()]}))

    both = {"en": "databricks-dolly-15k.jsonl", "ca": "train-00000-of-00001.parquet"}
    write(2, both)
    with _webserver(tmp_path / "ui", manifest) as port:
        for holdout, languages in ((3, both), (3, {"en": both["en"]})):  # a setting changed; a source taken out
            write(holdout, languages)
            run_id, status = _run(port)
            assert status == "FAILURE"
            events = _graphql(port, '{ runOrError(runId: "%s") { ... on Run { eventConnection { events { '
                                    "... on ErrorEvent { error { message } } } } } } }" % run_id)
            [error] = [e["error"]["message"].strip() for e in events["data"]["runOrError"]["eventConnection"]["events"]
                       if e.get("error")]
            assert error.startswith(f"sftmix.build.BuildError: {manifest} changed (hash ")
            assert error.endswith("reload them (the web UI's Reload button, or a restart) and materialize again")
            assert not (tmp_path / "ui" / "out").exists()
        _stale_status_after_reload(port)
        assert _run(port)[1] == "SUCCESS"
    validation = (tmp_path / "ui" / "out" / "mini" / "validation").glob("part-*.parquet")
    assert sum(pq.read_metadata(shard).num_rows for shard in validation) == 3


def _run(port: int) -> tuple[str, str]:
    """The id and final status of a `build_mixture` run launched as the web UI launches it."""
    from dagster_graphql import DagsterGraphQLClient

    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    run_id = client.submit_job_execution("build_mixture")
    deadline = time.monotonic() + 120
    while (status := client.get_run_status(run_id).value) not in ("SUCCESS", "FAILURE", "CANCELED"):
        assert time.monotonic() < deadline, f"run {run_id} still {status}"
        time.sleep(0.5)
    return run_id, status


def _stale_status_after_reload(port: int) -> dict[str, tuple[str, list[str]]]:
    """Each asset's stale status and causes, as the web UI shows them once its Reload button has
    loaded the definitions again (the manifest and its files as they are now)."""
    reloaded = _graphql(port, 'mutation { reloadRepositoryLocation(repositoryLocationName: "pipelines.definitions") '
                              "{ __typename } }")
    assert reloaded["data"]["reloadRepositoryLocation"]["__typename"] == "WorkspaceLocationEntry", reloaded
    nodes = _graphql(port, "{ assetNodes { assetKey { path } staleStatus staleCauses { reason } } }")["data"]["assetNodes"]
    return {"/".join(n["assetKey"]["path"]): (n["staleStatus"], [c["reason"] for c in n["staleCauses"]]) for n in nodes}
