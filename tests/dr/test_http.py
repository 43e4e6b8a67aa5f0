"""The grid company's read-only JSON endpoint over a real loopback socket."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dr.http import DrHttpServer, serve_dr_http
from dr.report import event_report
from parkctl.errors import ParkError
from tests.dr.evidence_support import sample_db


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DrHttpServer]:
    srv = serve_dr_http(sample_db(tmp_path / "park.db"), port=0)
    try:
        yield srv
    finally:
        srv.close()


def get(url: str) -> tuple[int, str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], json.loads(exc.read())


def test_list_and_detail(server: DrHttpServer, tmp_path: Path) -> None:
    assert server.host == "127.0.0.1" and server.port > 0
    status, ctype, body = get(server.url)
    assert status == 200 and ctype.startswith("application/json")
    assert [(e["event_id"], e["outcome"]) for e in body["events"]] == [("ev1", "met"), ("ev2/bad", "rejected")]
    assert body["events"][0]["totals"]["delivered_kwh"] == pytest.approx(100.0)
    status, _, detail = get(server.url + "/ev1")
    assert status == 200 and detail == event_report(tmp_path / "park.db", "ev1")
    status, _, detail = get(server.url + "/ev2%2Fbad")
    assert status == 200 and detail["outcome"] == "rejected"


def test_unknown_event_and_path_are_json_404(server: DrHttpServer) -> None:
    status, ctype, body = get(server.url + "/nope")
    assert status == 404 and ctype.startswith("application/json") and "no demand-response event 'nope'" in body["error"]
    status, _, body = get(server.url.replace("/dr/events", "/metrics"))
    assert status == 404 and "try /dr/events" in body["error"]


def test_a_database_without_evidence_is_a_503_and_a_busy_port_a_clear_error(tmp_path: Path,
                                                                            server: DrHttpServer) -> None:  # fmt: skip
    srv = serve_dr_http(tmp_path / "missing.db", port=0)
    try:
        status, _, body = get(srv.url)
        assert status == 503 and "no such database" in body["error"]
    finally:
        srv.close()
    with pytest.raises(ParkError, match="port already in use"):
        serve_dr_http(tmp_path / "park.db", port=server.port)
