"""sftmix.hub.download_source against the local fake Hub (tests/hub_server.py).

HF_ENDPOINT: huggingface_hub copies it into `constants.ENDPOINT` once, at import, so setting the env var in a
test would not reach it. download_source instead reads HF_ENDPOINT at call time and passes it as `endpoint=`,
so monkeypatch.setenv is enough and no subprocess is needed. Likewise HF_HUB_DISABLE_XET / HF_HUB_OFFLINE are
import-time constants, so they are patched on `huggingface_hub.constants` (the fake server advertises Xet
only for a repo given `xet`, and its Xet storage only ever fails).
"""

import socket
from functools import partial
from types import SimpleNamespace
from urllib.parse import unquote, urlsplit

import pytest
from huggingface_hub import constants, snapshot_download
from huggingface_hub.utils import _http as hf_http
from huggingface_hub.utils import _xet

import hub_server
from hub_server import serve_hub
from sftmix.hub import HubError, download_source

SHA = "0123456789abcdef0123456789abcdef01234567"
REPO = "acme/tiny-sft"
FILES = {
    "README.md": b"# tiny\n",
    "data/train-00000-of-00002.parquet": b"PAR1 shard zero",
    "data/train-00001-of-00002.parquet": b"PAR1 shard one",
    "data/test-00000-of-00001.parquet": b"PAR1 test",
    "LICENSE": b"CC-BY-4.0\n",
}


@pytest.fixture
def hub(monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    repos = {REPO: {"sha": SHA, "files": FILES, "refs": {"v1.0": SHA}},
             "acme/flaky": {"sha": SHA, "files": FILES, "cut": ["data/test-00000-of-00001.parquet"]},
             "acme/gated": {"sha": SHA, "files": FILES, "token": "hf_secret_test_token"},
             "acme/busy": {"sha": SHA, "files": FILES, "unavailable": {"data/test-00000-of-00001.parquet": 1,
                                                                       "LICENSE": 99}},
             "acme/xet": {"sha": SHA, "files": FILES, "xet": True},
             **{f"acme/xet-{status}": {"sha": SHA, "files": FILES, "xet": True, "xet_status": status}
                for status in (401, 403, 404)},
             "acme/busy-heads": {"sha": SHA, "files": FILES, "unavailable_heads": {"LICENSE": 99}}}
    with serve_hub(repos) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        yield url


def fail_first(monkeypatch, status, times=1, method=None, part=""):
    """The fake Hub answers `status` to its first `times` requests of `method` (any method: None) whose path
    holds `part`, whichever endpoint they are for."""
    answer, left = hub_server._Handler._route, [times]

    def failing(handler, called):
        with handler.lock:
            fails = left[0] > 0 and method in (None, called) and part in handler.path
            left[0] -= fails
        if not fails:
            return answer(handler, called)
        with handler.lock:
            handler.requests[(called, unquote(urlsplit(handler.path).path))] += 1
        return handler._error(status, "", f"HTTP {status}")

    monkeypatch.setattr(hub_server._Handler, "_route", failing)


def test_download_glob_and_file_then_cached(hub, tmp_path):
    paths = download_source(REPO, SHA, ["data/train-*.parquet", "LICENSE"], tmp_path)
    assert [p.name for p in paths] == ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet", "LICENSE"]
    assert [p.read_bytes() for p in paths] == [FILES["data/train-00000-of-00002.parquet"],
                                               FILES["data/train-00001-of-00002.parquet"], FILES["LICENSE"]]
    assert all(str(p).startswith(str(tmp_path)) for p in paths)
    assert hub.count("GET", "/resolve/") == 3  # only the matched files were fetched
    assert hub.count("GET", "/resolve/") == hub.count("GET", f"/resolve/{SHA}/")

    before = sum(hub.requests.values())
    again = download_source(REPO, SHA, ["data/train-*.parquet", "LICENSE"], tmp_path)
    assert again == paths
    assert hub.count("GET", "/resolve/") == 3  # no content GET on the second call
    assert sum(hub.requests.values()) == before  # pinned sha + cached tree: no request at all


def test_tag_revision_resolves_to_sha(hub, tmp_path):
    (p,) = download_source(REPO, "v1.0", ["README.md"], tmp_path)
    assert p.read_bytes() == FILES["README.md"] and SHA in str(p)
    assert hub.count("GET", f"/api/datasets/{REPO}/revision/v1.0") == 1


def test_a_server_error_on_a_tags_lookup_is_tried_again(hub, tmp_path, monkeypatch):
    """huggingface_hub looks a tag up (repo_info) without trying again: the 503 was the build's HubError."""
    waited = []
    monkeypatch.setattr(hf_http, "time", SimpleNamespace(sleep=waited.append))
    monkeypatch.setattr("sftmix.hub.time", SimpleNamespace(sleep=waited.append))
    fail_first(monkeypatch, 503, method="GET", part="/revision/v1.0")
    (p,) = download_source(REPO, "v1.0", ["LICENSE"], tmp_path)
    assert p.read_bytes() == FILES["LICENSE"] and SHA in str(p)
    assert hub.count("GET", f"/api/datasets/{REPO}/revision/v1.0") == 2 and waited == [1]


def test_unknown_revision(hub, tmp_path):
    bad = "f" * 40
    with pytest.raises(HubError, match=bad) as exc:
        download_source(REPO, bad, ["LICENSE"], tmp_path)
    msg = str(exc.value)
    assert "\n" not in msg and REPO in msg and "not found" in msg and "LICENSE" in msg


def test_pattern_matching_nothing(hub, tmp_path):
    with pytest.raises(HubError, match=r"'data/validation-\*\.parquet' matched no file") as exc:
        download_source(REPO, SHA, ["LICENSE", "data/validation-*.parquet"], tmp_path)
    assert REPO in str(exc.value) and SHA in str(exc.value)


@pytest.mark.parametrize("rev", ["main", "", None])
def test_unpinned_revision_refused(hub, tmp_path, rev):
    with pytest.raises(HubError, match="pinned"):
        download_source(REPO, rev, ["LICENSE"], tmp_path)
    assert sum(hub.requests.values()) == 0


def test_unpinned_allowed_explicitly(hub, tmp_path):
    (p,) = download_source(REPO, "main", ["LICENSE"], tmp_path, allow_unpinned=True)
    assert p.read_bytes() == FILES["LICENSE"]


def test_gated_needs_token(hub, tmp_path, monkeypatch):
    with pytest.raises(HubError, match="HF_TOKEN") as exc:
        download_source("acme/gated", SHA, ["LICENSE"], tmp_path)
    assert "hf_secret_test_token" not in str(exc.value) and "acme/gated" in str(exc.value)
    monkeypatch.setenv("HF_TOKEN", "hf_secret_test_token")
    (p,) = download_source("acme/gated", SHA, ["LICENSE"], tmp_path)
    assert p.read_bytes() == FILES["LICENSE"]


def test_a_cached_file_cut_short_is_downloaded_again(hub, tmp_path):
    (path,) = download_source(REPO, SHA, ["LICENSE"], tmp_path)
    with open(path.resolve(), "r+b") as blob:  # e.g. a disk that filled while it was copied
        blob.truncate(3)
    (again,) = download_source(REPO, SHA, ["LICENSE"], tmp_path)
    assert again == path and again.read_bytes() == FILES["LICENSE"]
    assert hub.count("GET", "/resolve/") == 2


def test_a_server_error_while_a_damaged_file_is_downloaded_again_is_tried_again_and_named(hub, tmp_path, monkeypatch):
    (path,) = download_source(REPO, SHA, ["LICENSE"], tmp_path)
    with open(path.resolve(), "r+b") as blob:
        blob.truncate(3)
    monkeypatch.setattr(hf_http, "time", SimpleNamespace(sleep=lambda seconds: None))
    monkeypatch.setattr("sftmix.hub.SERVER_ERROR_WAITS", (0, 0))
    # The same repo from a Hub whose HEADs answer 503 (the cache is by repo, not by endpoint)
    with serve_hub({REPO: {"sha": SHA, "files": FILES, "unavailable_heads": {"LICENSE": 99}}}) as busy:
        monkeypatch.setenv("HF_ENDPOINT", busy)
        with pytest.raises(HubError, match="HTTP 503") as exc:
            download_source(REPO, SHA, ["LICENSE"], tmp_path)
    message = str(exc.value)  # it was "cannot download LICENSE (Force download failed due to the above error.)"
    assert "\n" not in message and "while downloading LICENSE" in message and "run again to resume" in message
    assert busy.count("HEAD", "/LICENSE") == 3  # once a try: tried again here


@pytest.mark.parametrize("host", ["127.0.0.1", "LocalHost"])  # (httpx names the request's host lowercased)
def test_a_hub_that_cannot_be_reached_is_named(hub, tmp_path, monkeypatch, host):
    monkeypatch.setattr(hf_http, "time", SimpleNamespace(sleep=lambda seconds: None))
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        endpoint = f"http://{host}:{unused.getsockname()[1]}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    with pytest.raises(HubError) as exc:
        download_source(REPO, SHA, ["LICENSE"], tmp_path)
    message = str(exc.value)  # not "interrupted ...; run again to resume"
    assert "\n" not in message and f"cannot reach the Hub at {endpoint} to download LICENSE" in message
    assert message.endswith("check HF_ENDPOINT and the network, then run again (the files downloaded are kept)")


def test_a_storage_host_that_cannot_be_reached_is_named_not_the_hub(tmp_path, monkeypatch):
    """The Hub answers, then sends a file's content from its storage host, which a firewall may block:
    HF_ENDPOINT is not what to check."""
    monkeypatch.setattr(hf_http, "time", SimpleNamespace(sleep=lambda seconds: None))
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        storage = f"127.0.0.1:{unused.getsockname()[1]}"
    answer = hub_server._Handler._route

    def to_storage(handler, method):
        if method == "GET" and "/resolve/" in handler.path:  # as the Hub redirects an LFS file to its CDN
            handler.send_response(302)
            handler.send_header("Location", f"http://{storage}/lfs/blob")
            handler.send_header("Content-Length", "0")
            return handler.end_headers()
        return answer(handler, method)

    monkeypatch.setattr(hub_server._Handler, "_route", to_storage)
    with serve_hub({REPO: {"sha": SHA, "files": FILES}}) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        with pytest.raises(HubError) as exc:
            download_source(REPO, SHA, ["LICENSE"], tmp_path)
    message = str(exc.value)
    assert f"cannot reach {storage}, where the Hub sends it, to download LICENSE" in message
    assert "HF_ENDPOINT" not in message and "then run again" in message


def test_a_download_cut_off_is_one_line_naming_the_file(hub, tmp_path):
    with pytest.raises(HubError, match="interrupted") as exc:
        download_source("acme/flaky", SHA, ["data/test-*.parquet"], tmp_path)
    message = str(exc.value)
    assert "\n" not in message and "acme/flaky" in message and SHA in message and "data/test-*.parquet" in message


def test_a_server_error_on_a_file_is_tried_again(hub, tmp_path):
    paths = download_source("acme/busy", SHA, ["data/*.parquet", "README.md"], tmp_path)
    names = ["data/test-00000-of-00001.parquet", "data/train-00000-of-00002.parquet",
             "data/train-00001-of-00002.parquet", "README.md"]
    assert [p.read_bytes() for p in paths] == [FILES[name] for name in names]
    assert hub.count("GET", "/resolve/") == 5  # the file answered 503 and then 200; the others, kept, once


def test_a_server_error_that_lasts_is_one_line_naming_the_file(hub, tmp_path, monkeypatch):
    monkeypatch.setattr("sftmix.hub.SERVER_ERROR_WAITS", (0, 0))
    with pytest.raises(HubError, match="HTTP 503") as exc:
        download_source("acme/busy", SHA, ["README.md", "LICENSE"], tmp_path)
    message = str(exc.value)
    assert "\n" not in message and "acme/busy" in message and SHA in message
    assert "while downloading LICENSE" in message and "run again to resume" in message
    assert hub.count("GET", "/resolve/") == 1 + 3  # README.md once, LICENSE on each of the 3 tries


def test_a_server_error_on_many_files_each_passing_when_tried_again_does_not_stop_a_long_download(
        hub, tmp_path, monkeypatch):
    """Each try that adds files to the cache starts the waits over: sporadic errors on a long download, each
    recovered, are not summed into one budget (it stopped at the 4th: 'HTTP 503 while downloading
    data/012.parquet')."""
    waited = []
    monkeypatch.setattr("sftmix.hub.time", SimpleNamespace(sleep=waited.append))
    # One file at a time (huggingface_hub runs 8), so which files each try reaches before its error is fixed
    monkeypatch.setattr("sftmix.hub.snapshot_download", partial(snapshot_download, max_workers=1))
    files = {f"data/{i:03}.parquet": b"PAR1 %d" % i for i in range(20)}
    sporadic = [f"data/{i:03}.parquet" for i in (0, 4, 8, 12, 16)]
    with serve_hub({REPO: {"sha": SHA, "files": files, "unavailable": dict.fromkeys(sporadic, 1)}}) as busy:
        monkeypatch.setenv("HF_ENDPOINT", busy)
        paths = download_source(REPO, SHA, ["data/*.parquet"], tmp_path)
    assert [p.read_bytes() for p in paths] == list(files.values())
    assert [busy.count("GET", name) for name in sporadic] == [2] * 5  # each 503 once, then 200
    assert waited == [1] * 5


@pytest.mark.parametrize(("method", "part"), [("GET", "/tree/"), ("HEAD", "/LICENSE")])
def test_a_server_error_huggingface_hub_does_not_try_again_on_the_listing_or_a_head_is_tried_again(
        hub, tmp_path, monkeypatch, method, part):
    """huggingface_hub tries the listing and a HEAD again on 500, 502, 503 and 504 only: a 520 (a CDN's
    'unknown error') was the build's HubError."""
    waited = []
    monkeypatch.setattr(hf_http, "time", SimpleNamespace(sleep=waited.append))
    monkeypatch.setattr("sftmix.hub.time", SimpleNamespace(sleep=waited.append))
    fail_first(monkeypatch, 520, method=method, part=part)
    (p,) = download_source(REPO, SHA, ["LICENSE"], tmp_path)
    assert p.read_bytes() == FILES["LICENSE"]
    assert hub.count(method, part) == 2 and waited == [1]


def test_files_another_download_adds_for_another_revision_do_not_start_the_waits_over(hub, tmp_path, monkeypatch):
    """The cache's blobs folder is shared by every revision and process downloading the repo (two manifest
    entries of one repo, the multiprocess executor): counted there, another download's files started the waits
    over after every try and a lasting 503 did not stop the build."""
    storage, other_revision = tmp_path / "datasets--acme--busy", "f" * 40
    waited = []

    def another_download_adds_a_file(seconds):
        waited.append(seconds)
        blob = storage / "blobs" / f"{len(waited):040x}"
        link = storage / "snapshots" / other_revision / "data" / f"{len(waited)}.parquet"
        for folder in (blob.parent, link.parent):
            folder.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(b"PAR1")
        link.symlink_to(blob)

    monkeypatch.setattr("sftmix.hub.time", SimpleNamespace(sleep=another_download_adds_a_file))
    with pytest.raises(HubError, match="HTTP 503 while downloading LICENSE"):
        download_source("acme/busy", SHA, ["LICENSE"], tmp_path)
    assert waited == [1, 2, 4] and hub.count("GET", "/LICENSE") == 4


def test_a_hub_that_is_down_stops_a_download_after_huggingface_hubs_retries_and_these(hub, tmp_path, monkeypatch):
    """huggingface_hub tries the listing 6 times, 1, 2, 4, 8 and 8 s apart, on each of the 4 tries here, 1, 2 and
    4 s apart: 99 s."""
    waited = []
    monkeypatch.setattr(hf_http, "time", SimpleNamespace(sleep=waited.append))
    monkeypatch.setattr("sftmix.hub.time", SimpleNamespace(sleep=waited.append))
    fail_first(monkeypatch, 503, times=10**6)
    with pytest.raises(HubError, match="HTTP 503") as exc:
        download_source(REPO, SHA, ["LICENSE"], tmp_path)
    message = str(exc.value)
    assert "\n" not in message and "while downloading LICENSE" in message and "run again to resume" in message
    assert waited == [1, 2, 4, 8, 8, 1] + [1, 2, 4, 8, 8, 2] + [1, 2, 4, 8, 8, 4] + [1, 2, 4, 8, 8]
    assert sum(waited) == 99 and sum(hub.requests.values()) == hub.count("GET", "/tree/") == 4 * 6


def test_a_server_error_on_a_files_head_that_lasts_is_named_not_blamed_on_the_connection(hub, tmp_path, monkeypatch):
    waited = []
    monkeypatch.setattr(hf_http, "time", SimpleNamespace(sleep=waited.append))
    monkeypatch.setattr("sftmix.hub.time", SimpleNamespace(sleep=waited.append))
    with pytest.raises(HubError, match="HTTP 503") as exc:
        download_source("acme/busy-heads", SHA, ["LICENSE"], tmp_path)
    message = str(exc.value)
    assert "\n" not in message and "while downloading LICENSE" in message and "run again to resume" in message
    # on each of the 4 tries here, huggingface_hub's HEAD, then its 6 with backoff (23 s)
    assert "connection" not in message and hub.count("HEAD", "/LICENSE") == 4 * 7 and sum(waited) == 4 * 23 + 7


def test_a_xet_storage_outage_is_one_line_naming_the_files(hub, tmp_path, monkeypatch):
    # The Hub serves LFS files through Xet, downloaded by hf_xet, whose errors are not huggingface_hub's.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)
    monkeypatch.setenv("HF_XET_CLIENT_RETRY_MAX_ATTEMPTS", "1")  # hf_xet retries for minutes by default
    monkeypatch.setenv("HF_XET_CLIENT_RETRY_MAX_DURATION", "1s")
    monkeypatch.setattr(_xet, "_GLOBAL_XET_HOLDER", _xet.XetSessionHolder())  # a session made with these settings
    with pytest.raises(HubError, match="interrupted") as exc:
        download_source("acme/xet", SHA, ["data/train-*.parquet"], tmp_path)
    message = str(exc.value)
    assert "\n" not in message and "acme/xet" in message and SHA in message
    assert "data/train-*.parquet" in message and "run again to resume" in message
    assert hub.count("GET", "/xet-read-token/") == 1 and hub.count("GET", "/cas/acme/xet/")  # the hf_xet path was taken


@pytest.mark.parametrize(("status", "says"), [
    (401, "Xet storage refused access (HTTP 401) while downloading data/train-*.parquet; running again fetches a "
          "fresh storage token (an expired one is refused), and a gated or private repo needs HF_TOKEN"),
    (403, "Xet storage refused access (HTTP 403) while downloading data/train-*.parquet; running again fetches a "
          "fresh storage token (an expired one is refused), and a gated or private repo needs HF_TOKEN"),
    (404, "download of data/train-*.parquet from Xet storage interrupted (HTTP 404: ")], ids=["401", "403", "404"])
def test_a_xet_storage_error_names_its_status(hub, tmp_path, monkeypatch, status, says):
    """hf_xet raises a bare RuntimeError for these too, "... HTTP status client error (403 Forbidden), domain: ...".
    A 401/403 comes from the storage token the Hub gave hf_xet (expired, or not good for the files); a 404, from
    the storage while the listing has just shown the files: neither is a missing HF_TOKEN or file."""
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)
    monkeypatch.setenv("HF_XET_CLIENT_RETRY_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("HF_XET_CLIENT_RETRY_MAX_DURATION", "1s")
    monkeypatch.setattr(_xet, "_GLOBAL_XET_HOLDER", _xet.XetSessionHolder())
    with pytest.raises(HubError) as exc:
        download_source(f"acme/xet-{status}", SHA, ["data/train-*.parquet"], tmp_path)
    message = str(exc.value)
    assert "\n" not in message and f"acme/xet-{status}" in message and says in message
    assert ("interrupted" in message) == (status == 404) and "set HF_TOKEN to a token that can read" not in message
    assert message.endswith("run again to resume") == (status == 404)
    assert hub.count("GET", f"/cas/acme/xet-{status}/")  # the hf_xet path was taken
