"""Everything the controller serves binds to loopback unless the configuration deliberately opens it."""

from __future__ import annotations

import inspect

from prometheus_client import CollectorRegistry

from controller.config import ControllerConfig
from controller.metrics import serve_metrics
from dr.config import DrHttpConfig

MINIMAL = {"site": {"name": "s"}, "grid": {"import_cap_kw": 100, "export_cap_kw": 0},
           "modbus": [{"id": "m", "kind": "meter"}]}  # fmt: skip


def test_default_configuration_serves_metrics_on_loopback_only() -> None:
    config = ControllerConfig.model_validate(MINIMAL)
    assert config.metrics.host == "127.0.0.1"
    assert inspect.signature(serve_metrics).parameters["host"].default == "127.0.0.1"
    server = serve_metrics(CollectorRegistry(), config.metrics.host, 0)  # the default host, any free port
    try:
        assert server._httpd.socket.getsockname()[0] == "127.0.0.1"  # the socket really is bound there
    finally:
        server.close()


def test_dr_endpoint_defaults_to_loopback() -> None:
    assert DrHttpConfig().host == "127.0.0.1"
