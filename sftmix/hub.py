"""Download raw files of a Hub repo pinned at a revision, through huggingface_hub's cache.

`HF_ENDPOINT` is read at *call* time and passed as `endpoint=` (huggingface_hub only reads it once, at import,
into `constants.ENDPOINT`). `HF_TOKEN` is left to huggingface_hub, which reads it per request; it is never
logged or stored here.

Every failure is one HubError line naming repo, revision and file(s); those that running again can get past
(a connection cut, a server error that lasted, a Xet storage outage or expired storage token) say so. A 5xx
answer to any request of a download (a tag's lookup, the file listing, a file's HEAD or content GET) is tried
again here, `SERVER_ERROR_WAITS` apart: the files already downloaded stay in the cache and a new try fetches
only the others. huggingface_hub tries some of these requests again itself, on 408, 429, 500, 502, 503 and
504 only: the listing in 6 requests and a file's HEAD in 7 (one, then 6), 1, 2, 4, 8 and 8 s apart (each
wait the server's Retry-After + 1 s instead when it sends one); a tag's lookup not at all, a content GET on
408/429 only. So a Hub answering 503 to everything stops a download after 4 x 23 + 1 + 2 + 4 = 99 s of waits,
plus each request's own time. hf_xet, which downloads the files the Hub stores in Xet (most LFS files),
retries on its own and then raises a bare RuntimeError whose message carries the storage's HTTP status as
reqwest writes it ("HTTP status client error (403 Forbidden)").
"""

from __future__ import annotations

import os
import re
import time
import traceback
from pathlib import Path
from urllib.parse import unquote, urlsplit

from huggingface_hub import constants, get_cached_repo_tree, snapshot_download
from huggingface_hub.file_download import repo_folder_name
from huggingface_hub.errors import (
    CachedRepoTreeNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import filter_repo_objects
from huggingface_hub.utils import httpx as hub_http  # the HTTP client huggingface_hub raises from

UNPINNED_REVISIONS = {"", "main", "master"}
SERVER_ERROR_WAITS = (1, 2, 4)  # seconds before each new try after a 5xx answer
XET_HTTP_STATUS = re.compile(r"HTTP status (?:client|server) error \((\d{3})")  # reqwest's Error Display


class HubError(Exception):
    """A download from the Hub failed; the message is one line naming repo, revision and file(s)."""


def download_source(
    hub_id: str,
    revision: str,
    files: list[str],
    cache_dir: str | Path,
    repo_type: str = "dataset",
    *,
    allow_unpinned: bool = False,
) -> list[Path]:
    """Download `files` (repo paths or glob patterns) of `hub_id` at `revision` into `cache_dir`.

    Returns local paths in pattern order, each pattern's matches sorted by repo path, without duplicates.
    With a commit sha as revision, a second call is served from the cache without any request.
    """
    where = f"{repo_type} repo '{hub_id}' at revision '{revision}'"
    if not allow_unpinned and (revision or "").strip() in UNPINNED_REVISIONS:
        raise HubError(f"{where}: revision must be pinned (commit sha or tag), not a moving branch; "
                       "pass allow_unpinned=True to override")
    if not files:
        raise HubError(f"{where}: no files requested")
    endpoint = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/") or None
    snapshot, sizes = _snapshot(hub_id, revision, repo_type, list(files), cache_dir, endpoint, where, force=False)
    out: list[Path] = []
    for pattern in files:
        matched = list(filter_repo_objects(sorted(sizes), allow_patterns=[pattern]))
        if not matched:
            raise HubError(f"{where}: file pattern '{pattern}' matched no file")
        out.extend(Path(snapshot, m) for m in matched if Path(snapshot, m) not in out)
    # A cached file cut short (a disk that filled, a copy stopped half way) would be read as a shorter
    # file and its missing rows never counted: its size is checked against the repo's listing.
    damaged = [path for path in out if path.stat().st_size != sizes[path.relative_to(snapshot).as_posix()]]
    if damaged:
        repaired = [path.relative_to(snapshot).as_posix() for path in damaged]
        _snapshot(hub_id, revision, repo_type, repaired, cache_dir, endpoint, where, force=True)
        for name in repaired:
            if (got := Path(snapshot, name).stat().st_size) != sizes[name]:
                raise HubError(f"{where}: {name} has {got} bytes after a fresh download, the repo lists {sizes[name]}")
    return out


def _snapshot(hub_id: str, revision: str, repo_type: str, files: list[str], cache_dir: str | Path,
              endpoint: str | None, where: str, *, force: bool) -> tuple[str, dict[str, int]]:
    """snapshot_download of `files`; returns the snapshot folder and the size of every file of the repo
    at `revision`. Each failure becomes a one-line HubError."""
    wanted = ", ".join(files)
    try:
        snapshot = _snapshot_download(
            repo_id=hub_id,
            repo_type=repo_type,
            revision=revision,
            cache_dir=cache_dir,
            allow_patterns=files,
            endpoint=endpoint,
            force_download=force,
        )
        # Full file listing at this revision, cached on disk by snapshot_download (no request).
        sizes = {f.path: f.size for f in get_cached_repo_tree(
            hub_id, repo_type=repo_type, revision=revision, cache_dir=cache_dir)}
    except RevisionNotFoundError as err:
        raise HubError(f"{where}: revision not found (files: {wanted})") from err
    except GatedRepoError as err:
        raise HubError(f"{where}: gated repo, access refused (files: {wanted}); set HF_TOKEN and accept the "
                       "dataset's terms on its Hub page") from err
    except RepositoryNotFoundError as err:
        raise HubError(f"{where}: repo not found or private (files: {wanted}); check the id, or set HF_TOKEN "
                       "to a token with access") from err
    except HfHubHTTPError as err:
        status, file = err.response.status_code, _file_in(str(err.response.url), wanted)
        hint = ("; set HF_TOKEN and accept the terms" if status in (401, 403) else
                " (a server error that lasted through the retries); run again to resume" if status >= 500 else "")
        raise HubError(f"{where}: HTTP {status} while downloading {file}{hint}") from err
    except hub_http.ConnectError as err:  # after huggingface_hub's retries: a wrong HF_ENDPOINT, a proxy, no network
        hub, host = endpoint or constants.ENDPOINT, _host_of(err)
        if host in (None, hub_http.URL(hub).netloc.decode()):  # as httpx writes it: lowercase, no default port
            unreachable, check = f"the Hub at {hub}", "HF_ENDPOINT and the network"
        else:  # the Hub answered and sent the file's content from its storage host, which a firewall may block
            unreachable, check = f"{host}, where the Hub sends it,", "the network"
        raise HubError(f"{where}: cannot reach {unreachable} to download {wanted} ({_first_line(err)}); check {check}, "
                       "then run again (the files downloaded are kept)") from err
    except hub_http.TransportError as err:  # a connection cut or timed out after huggingface_hub's retries
        raise HubError(f"{where}: download of {wanted} interrupted ({_first_line(err)}); run again to resume") from err
    except RuntimeError as err:
        if not _raised_by_hf_xet(err):
            raise
        status = int(found[1]) if (found := XET_HTTP_STATUS.search(str(err))) else None
        if status in (401, 403):  # the storage token hf_xet got from the Hub, expired or not good for the files
            raise HubError(f"{where}: Xet storage refused access (HTTP {status}) while downloading {wanted}; running "
                           "again fetches a fresh storage token (an expired one is refused), and a gated or private "
                           "repo needs HF_TOKEN set to a token with access") from err
        detail = f"HTTP {status}: {_first_line(err)}" if status else _first_line(err)
        raise HubError(f"{where}: download of {wanted} from Xet storage interrupted ({detail}); "
                       "run again to resume") from err
    except (LocalEntryNotFoundError, CachedRepoTreeNotFoundError, HFValidationError, OSError, ValueError) as err:
        raise HubError(f"{where}: cannot download {wanted} ({_first_line(err)})") from err
    return snapshot, sizes


def _snapshot_download(**kwargs) -> str:
    """snapshot_download, tried again after a 5xx answer to any of its requests, once per wait in
    SERVER_ERROR_WAITS. The waits start over after a try that added files of the revision to its snapshot
    folder: on a long download each sporadic error costs one wait, and only a Hub that keeps failing without
    delivering a file stops it. The blobs folder would not do: every revision and process downloading the repo
    into this cache adds to it.

    A request that failed while huggingface_hub located the files (a tag's lookup, the listing, a file's HEAD)
    comes wrapped in LocalEntryNotFoundError, whose message blames the user's connection even for a Hub
    answering 503, or, when a damaged file is downloaded again, in ValueError ("Force download failed due
    to the above error"): the request's own error is raised instead, so it is tried again and named."""
    storage = Path(kwargs["cache_dir"], repo_folder_name(repo_id=kwargs["repo_id"], repo_type=kwargs["repo_type"]))
    revision = kwargs["revision"] or constants.DEFAULT_REVISION
    waits, cached = iter(SERVER_ERROR_WAITS), _snapshot_files(storage, revision)
    while True:
        try:
            try:
                return snapshot_download(**kwargs)
            except (LocalEntryNotFoundError, ValueError) as err:
                if isinstance(err.__cause__, (HfHubHTTPError, hub_http.TransportError)):
                    raise err.__cause__
                raise
        except HfHubHTTPError as err:
            if err.response.status_code < 500:
                raise
            if (now := _snapshot_files(storage, revision)) > cached:
                waits, cached = iter(SERVER_ERROR_WAITS), now
            if (wait := next(waits, None)) is None:
                raise
        time.sleep(wait)


def _snapshot_files(storage: Path, revision: str) -> int:
    """Number of files of `revision` in a repo's cache folder: its snapshot folder holds a file once it is
    complete. A tag's commit is the one snapshot_download recorded in refs/ when it looked the tag up; before
    that, 0."""
    ref = storage / "refs" / revision
    commit = ref.read_text().strip() if ref.is_file() else revision
    return sum(path.is_file() for path in (storage / "snapshots" / commit).rglob("*"))


def _raised_by_hf_xet(err: RuntimeError) -> bool:
    """hf_xet's errors come from its compiled code, so the innermost Python frame is the call into it in
    huggingface_hub's xet_get."""
    *_, (frame, _) = traceback.walk_tb(err.__traceback__)
    return frame.f_code.co_name == "xet_get"


def _host_of(err: hub_http.TransportError) -> str | None:
    """The host a failed request went to; None when the error carries no request."""
    try:
        return err.request.url.netloc.decode()
    except RuntimeError:  # httpx raises it for an error raised outside a request
        return None


def _file_in(url: str, wanted: str) -> str:
    """The repo file a /resolve/ URL names; `wanted` for any other URL (the listing's, a CDN's)."""
    _, resolve, rest = urlsplit(url).path.partition("/resolve/")
    return unquote(rest.partition("/")[2]) if resolve else wanted


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
