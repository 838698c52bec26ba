"""A tiny local fake of the Hugging Face Hub, enough for huggingface_hub 2.4.0's download path.

    with serve_hub({"org/ds": {"files": {"data/a.parquet": b"..."}}}) as url:
        ...  # url is a str (base URL); url.requests counts requests per (METHOD, path)

Repo spec keys: `files` (dict repo-path -> bytes/str/Path, or a directory to walk), optional `sha`
(40-hex commit; default derived from the content), `refs` (extra tag/branch name -> sha; `main` always
points at `sha`), `token` (makes the repo gated: only `Authorization: Bearer <token>` gets in),
`cut` (repo paths whose GET sends half the body it announces, then closes the connection),
`unavailable` (repo path -> how many of its first content GETs answer 503), `unavailable_heads` (the same
for its HEADs) and
`xet` (True: every file is advertised as stored in Xet, as the Hub does LFS files, with this server under
/cas/{repo} as the Xet storage; that storage answers 503 to every request, or `xet_status` if given (401, 403,
404), since this fake cannot serve Xet's chunks, so only its failures can be tested, and hf_xet's retries
are set with HF_XET_CLIENT_RETRY_*).

Endpoints (dataset repos only), as huggingface_hub 2.4.0 calls them:
  GET  /api/datasets/{repo}/revision/{rev}     repo_info; snapshot_download calls it only when rev is not a sha
  GET  /api/datasets/{repo}/tree/{rev}[/dir]   list_repo_tree(recursive=True): the file listing (one page)
  HEAD /datasets/{repo}/resolve/{rev}/{path}   file metadata: X-Repo-Commit, ETag, Content-Length
  GET  /datasets/{repo}/resolve/{rev}/{path}   file content
  GET  /api/datasets/{repo}/xet-read-token/{rev}  Xet storage URL and token (`xet` repos)
  *    /cas/{repo}/...                             Xet storage: 503 (or the repo's `xet_status`)
Errors carry `X-Error-Code` (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo) because
huggingface_hub maps errors by that header, not by status. Without `xet`, no Xet headers/fields
(X-Xet-Hash, xetHash) are sent, so the hf_xet download path is not taken.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


class FakeHubURL(str):
    """The base URL, carrying the server's request counters."""

    requests: Counter

    def count(self, method: str, contains: str = "") -> int:
        """Number of `method` requests whose path contains `contains`."""
        return sum(n for (m, p), n in list(self.requests.items()) if m == method and contains in p)


def _git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _load_repo(spec: dict) -> dict:
    files = spec["files"]
    if isinstance(files, (str, Path)):
        root = Path(files)
        files = {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}
    blobs = {}
    for path, content in files.items():
        if isinstance(content, Path):
            content = content.read_bytes()
        elif isinstance(content, str):
            content = content.encode()
        blobs[path] = content
    sha = spec.get("sha") or hashlib.sha1(
        b"".join(p.encode() + _git_blob_sha(d).encode() for p, d in sorted(blobs.items()))).hexdigest()
    return {"sha": sha, "refs": {"main": sha, **spec.get("refs", {})}, "blobs": blobs, "token": spec.get("token"),
            "cut": set(spec.get("cut", ())), "unavailable": dict(spec.get("unavailable", {})),
            "unavailable_heads": dict(spec.get("unavailable_heads", {})), "xet": bool(spec.get("xet")),
            "xet_status": spec.get("xet_status", 503)}


def repo_sha(spec: dict) -> str:
    """The commit sha a spec is served at (handy when `sha` was not given)."""
    return _load_repo(spec)["sha"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response sets Content-Length
    disable_nagle_algorithm = True
    repos: dict = {}
    requests: Counter = Counter()
    lock = threading.Lock()

    def log_message(self, *args):  # quiet
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, ctype="application/json",
              cut: bool = False):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body[:len(body) // 2] if cut else body)
        if cut:
            self.close_connection = True

    def _error(self, status: int, code: str, message: str, headers: dict | None = None):
        self._send(status, json.dumps({"error": message}).encode(),
                   {"X-Error-Code": code, "X-Error-Message": message, **(headers or {})})

    def _route(self, method: str):
        path = unquote(urlsplit(self.path).path)
        with self.lock:
            self.requests[(method, path)] += 1
        if path.startswith("/cas/"):  # /cas/{repo}/...: the repo's Xet storage
            status = next((repo["xet_status"] for repo_id, repo in self.repos.items()
                           if path.startswith(f"/cas/{repo_id}/")), 404)
            return self._error(status, "", f"Xet storage answers {status}")
        m = re.match(r"^/api/datasets/(.+?)/(revision|tree|xet-read-token)/([^/]+)(?:/(.*))?$", path) or re.match(
            r"^/datasets/(.+?)/(resolve)/([^/]+)/(.+)$", path)
        if not m or (m[2] != "resolve" and method != "GET"):
            return self._error(404, "NotFound", f"no such endpoint: {method} {path}")
        repo_id, kind, rev, rest = m[1], m[2], m[3], m[4] or ""
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._error(404, "RepoNotFound", f"Repository not found: {repo_id}")
        if repo["token"] and self.headers.get("Authorization") != f"Bearer {repo['token']}":
            return self._error(401, "GatedRepo", f"Access to dataset {repo_id} is restricted.")
        sha = repo["refs"].get(rev, rev if rev == repo["sha"] else None)
        if sha is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        blobs = repo["blobs"]
        if kind == "xet-read-token":
            if not repo["xet"]:
                return self._error(404, "NotFound", f"{repo_id} is not stored in Xet")
            cas, token = f"http://{self.headers['Host']}/cas/{repo_id}", "xet-test-token"
            expires = int(time.time()) + 3600
            return self._send(200, json.dumps({"casUrl": cas, "accessToken": token, "exp": expires}).encode(),
                              {"X-Xet-Cas-Url": cas, "X-Xet-Access-Token": token,
                               "X-Xet-Token-Expiration": str(expires)})
        if kind == "revision":
            info = {"id": repo_id, "sha": sha, "private": False, "gated": bool(repo["token"]),
                    "siblings": [{"rfilename": p} for p in sorted(blobs)]}
            return self._send(200, json.dumps(info).encode())
        if kind == "tree":
            prefix = rest.strip("/") + "/" if rest.strip("/") else ""
            entries, dirs = [], set()
            for p in sorted(blobs):
                if p.startswith(prefix):
                    parts = p.split("/")
                    dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
                    entries.append({"type": "file", "oid": _git_blob_sha(blobs[p]), "size": len(blobs[p]), "path": p})
                    if repo["xet"]:  # as the Hub lists an LFS file stored in Xet
                        sha256 = hashlib.sha256(blobs[p]).hexdigest()
                        entries[-1] |= {"lfs": {"oid": sha256, "size": len(blobs[p]), "pointerSize": 134},
                                        "xetHash": sha256}
            entries += [{"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
                        for d in sorted(dirs) if d.startswith(prefix)]
            return self._send(200, json.dumps(entries).encode())
        if rest not in blobs:  # resolve
            return self._error(404, "EntryNotFound", f"{rest} does not exist on {rev}", {"X-Repo-Commit": sha})
        unavailable = repo["unavailable" if method == "GET" else "unavailable_heads"]
        if unavailable.get(rest):
            with self.lock:
                unavailable[rest] -= 1
            return self._error(503, "", "Service Unavailable")
        data = blobs[rest]
        headers = {"X-Repo-Commit": sha, "ETag": f'"{_git_blob_sha(data)}"', "Accept-Ranges": "bytes"}
        if repo["xet"]:
            token_url = f"http://{self.headers['Host']}/api/datasets/{repo_id}/xet-read-token/{sha}"
            headers |= {"X-Xet-Hash": hashlib.sha256(data).hexdigest(), "X-Xet-Refresh-Route": token_url}
        return self._send(200, data, headers, ctype="application/octet-stream", cut=rest in repo["cut"])

    def do_GET(self):
        self._route("GET")

    def do_HEAD(self):
        self._route("HEAD")


@contextlib.contextmanager
def serve_hub(repos: dict):
    """Serve `repos` ({repo_id: spec}) on 127.0.0.1 (free port); yields the base URL as a FakeHubURL."""
    handler = type("Handler", (_Handler,), {"repos": {k: _load_repo(v) for k, v in repos.items()},
                                            "requests": Counter(), "lock": threading.Lock()})
    server_cls = type("Server", (ThreadingHTTPServer,), {"request_queue_size": 128, "daemon_threads": True})
    server = server_cls(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = FakeHubURL(f"http://127.0.0.1:{server.server_address[1]}")
    url.requests = handler.requests
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
