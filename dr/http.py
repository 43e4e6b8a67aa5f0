"""Read-only JSON over HTTP for the grid company: ``GET /dr/events`` and ``GET /dr/events/{id}``.

The standard library's :class:`~http.server.ThreadingHTTPServer` in a daemon thread; each request
reads the database file through its own read-only SQLite connection, so the endpoint never touches
the controller's connection or blocks its writes (WAL readers do not block the writer). Loopback
by default: expose it through the site's reverse proxy / VPN, which handles authentication.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from dr.evidence import Evidence, EvidenceError
from dr.report import all_reports, build_report, dumps
from parkctl.http_serve import ServedHttp, bind_error

log = logging.getLogger(__name__)
PREFIX = "/dr/events"


def summary(rep: dict[str, Any]) -> dict[str, Any]:
    """The list entry of an event: what it was, how it ended, its totals (details at /dr/events/{id})."""
    spec = rep.get("spec") or {}
    ivs = spec.get("intervals") or []
    return {
        "event_id": rep["event_id"], "programme_id": spec.get("programme_id"), "state": rep["state"],
        "outcome": rep["outcome"], "start": ivs[0]["start"] if ivs else None, "end": ivs[-1]["end"] if ivs else None,
        "totals": rep["totals"], "href": f"{PREFIX}/{quote(rep['event_id'], safe='')}",
    }  # fmt: skip


class _Handler(BaseHTTPRequestHandler):
    db_path: str = ""  # set on the subclass made per server

    def do_GET(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        try:
            if path == PREFIX:
                with Evidence.open_readonly(self.db_path) as ev:
                    self._send(HTTPStatus.OK, {"events": [summary(r) for r in all_reports(ev)]})
            elif path.startswith(PREFIX + "/") and "/" not in path[len(PREFIX) + 1 :]:
                event_id = unquote(path[len(PREFIX) + 1 :])
                with Evidence.open_readonly(self.db_path) as ev:
                    rep = build_report(ev, event_id)
                if rep is None:
                    self._send(HTTPStatus.NOT_FOUND, {"error": f"no demand-response event {event_id!r}"})
                else:
                    self._send(HTTPStatus.OK, rep)
            else:
                self._send(HTTPStatus.NOT_FOUND, {"error": f"no resource {path!r}; try {PREFIX}"})
        except EvidenceError as exc:
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc)})
        except Exception:
            log.exception("DR HTTP request %s failed", self.path)
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error"})

    def _send(self, status: HTTPStatus, body: Any) -> None:
        data = dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


DrHttpServer = ServedHttp  # the DR events endpoint


def serve_dr_http(db: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 9466) -> DrHttpServer:
    """Serve the events of database file ``db`` from a daemon thread."""
    handler = type("DrHandler", (_Handler,), {"db_path": os.fspath(db)})
    try:
        server_cls = _V6Server if ":" in host else ThreadingHTTPServer
        httpd = server_cls((host, port), handler)
    except OSError as exc:
        raise bind_error("DR events", host, port, exc) from None
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.1,), name="dr-http", daemon=True)
    thread.start()
    return ServedHttp(host, int(httpd.server_address[1]), PREFIX, httpd, thread)
