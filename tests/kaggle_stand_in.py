"""A local stand-in for Kaggle's API server, enough for the real `kaggle`
client (KAGGLE_API_ENVIRONMENT=LOCALHOST -> http://localhost, port 80) to
push a kernel and create or version a dataset. It records every request.

Protocol as the client speaks it: JSON POSTs to /api/v1/<service>/<method>;
a dataset file is first announced (StartBlobUpload -> token + createUrl),
then PUT to createUrl, then named by its token in CreateDataset."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API = "/api/v1/"


class StandIn(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int = 80):
        super().__init__(("127.0.0.1", port), Handler)
        self.calls: list[tuple[str, dict]] = []  # (method, JSON body)
        self.blobs: dict[str, bytes] = {}  # token -> uploaded bytes
        self.names: dict[str, str] = {}  # token -> file name announced
        self.datasets: set[str] = set()  # owner/slug created so far
        self._lock = threading.Lock()

    def __enter__(self):
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()

    def bodies(self, method: str) -> list[dict]:
        return [body for name, body in self.calls if name == method]

    def answer(self, method: str, body: dict) -> tuple[int, dict]:
        with self._lock:
            self.calls.append((method, body))
            if method == "StartBlobUpload":
                token = f"blob-{len(self.names)}"
                self.names[token] = body["name"]
                return 200, {"token": token, "createUrl": f"http://localhost/upload/{token}"}
            if method == "GetDatasetStatus":
                ref = f"{body['ownerSlug']}/{body['datasetSlug']}"
                if ref not in self.datasets:
                    return 404, {"message": f"dataset {ref} not found"}
                return 200, {"status": "READY"}
            if method == "CreateDataset":
                ref = f"{body['ownerSlug']}/{body['slug']}"
                self.datasets.add(ref)
                return 200, {"ref": ref, "url": f"http://localhost/datasets/{ref}", "status": "ok"}
            if method == "CreateDatasetVersion":
                return 200, {"ref": "", "url": "http://localhost/datasets/v", "status": "ok"}
            if method == "SaveKernel":
                ref = body["slug"]
                return 200, {"ref": ref, "url": f"http://localhost/code/{ref}", "versionNumber": 1}
            return 404, {"message": f"the stand-in does not answer {method}"}


class Handler(BaseHTTPRequestHandler):
    server: StandIn

    def log_message(self, *args) -> None:  # quiet
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        data = b""
        while size := int(self.rfile.readline().split(b";")[0], 16):
            data += self.rfile.read(size)
            self.rfile.readline()  # the CRLF after each chunk
        self.rfile.readline()  # the CRLF after the last, empty chunk
        return data

    def do_POST(self) -> None:
        if not self.path.startswith(API):
            return self._reply(404, {"message": self.path})
        method = self.path.rsplit("/", 1)[-1].split(".")[-1]
        raw = self._body()
        self._reply(*self.server.answer(method, json.loads(raw or b"{}")))

    def do_PUT(self) -> None:
        token = self.path.rsplit("/", 1)[-1]
        data = self._body()
        with self.server._lock:
            self.server.blobs[token] = data
        self._reply(200, {})
